"""Invocations and outputs: canonical bytes that commit to every input the guest can see."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from poe import Invocation, Output, Payload, Value
from poe.errors import ArgumentError, EncodingError


def _inv() -> Invocation:
    return Invocation.build(
        "_start", argv=["prog", "a b", "ü"], env={"K": "v", "EMPTY": ""}, stdin=b"hello\n",
        files={"dir/b.txt": b"bbb", "a.txt": b"aaaa"}, seed=bytes(range(32)),
    )


def _blobs(inv: Invocation) -> dict[bytes, bytes]:
    return {p.digest: p.data for p in inv.blobs()}


def test_invocation_round_trips_with_its_payloads():
    inv = _inv()
    back = Invocation.decode(inv.encoded, _blobs(inv).__getitem__)
    assert back == inv and back.digest == inv.digest
    assert [n for n, _ in back.files] == ["a.txt", "dir/b.txt"]
    assert inv.payload_bytes == len(inv.encoded) + 6 + 3 + 4


def test_invocation_with_a_missing_payload_is_rejected():
    inv = _inv()
    blobs = _blobs(inv)
    del blobs[inv.stdin.digest]
    with pytest.raises(EncodingError, match="missing"):
        Invocation.decode(inv.encoded, blobs.__getitem__)


def test_invocation_whose_payload_was_swapped_is_rejected():
    inv = _inv()
    blobs = _blobs(inv)
    blobs[inv.stdin.digest] = b"HELLO\n"
    with pytest.raises(EncodingError, match="does not match"):
        Invocation.decode(inv.encoded, blobs.__getitem__)


@pytest.mark.parametrize("cut", [0, 1, 10, -1])
def test_truncated_invocation_is_rejected(cut):
    inv = _inv()
    with pytest.raises(EncodingError):
        Invocation.decode(inv.encoded[:cut], _blobs(inv).__getitem__)


def test_invocation_with_unsorted_files_is_not_canonical():
    inv = _inv()
    raw = inv.encoded
    a, b = raw.index(b"a.txt"), raw.index(b"dir/b.txt")
    entry_a = raw[a - 2 : a + 5 + 40]
    entry_b = raw[b - 2 : b + 9 + 40]
    swapped = raw[: a - 2] + entry_b + entry_a + raw[b + 9 + 40 :]
    with pytest.raises(EncodingError):
        Invocation.decode(swapped, _blobs(inv).__getitem__)


@pytest.mark.parametrize("name", ["../etc/passwd", "/abs", "a//b", "./x", ""])
def test_file_names_that_escape_the_directory_are_refused(name):
    with pytest.raises(ArgumentError):
        Invocation.build(files={name: b"x"})


def test_seed_changes_the_input_digest():
    inv = _inv()
    assert inv.with_seed(bytes(32)).digest != inv.digest


@pytest.mark.parametrize(("t", "text", "expect"), [("i32", "-1", 0xFFFFFFFF), ("i64", "0x10", 16), ("f64", "-0.0", 1 << 63)])
def test_values_parse_to_their_bit_patterns(t, text, expect):
    assert Value.parse(t, text).bits == expect


@pytest.mark.parametrize(("t", "text"), [("i32", "4294967296"), ("i32", "x"), ("f32", "nope"), ("v128", "0")])
def test_unparseable_values_are_argument_errors(t, text):
    with pytest.raises(ArgumentError):
        Value.parse(t, text)


def test_nan_payload_survives_as_bits():
    v = Value("f32", 0x7FC00001)
    assert math.isnan(v.python) and v.bits == 0x7FC00001


@given(
    results=st.lists(st.tuples(st.sampled_from(["i32", "i64", "f32", "f64"]), st.integers(0, 2**32 - 1)), max_size=4),
    out=st.binary(max_size=64), err=st.binary(max_size=64),
)
def test_outputs_round_trip(results, out, err):
    o = Output(tuple(Value(t, b) for t, b in results), Payload(out), Payload(err))
    blobs = {p.digest: p.data for p in o.blobs()}
    assert Output.decode(o.encoded, blobs.__getitem__) == o


@given(st.binary(max_size=200))
def test_arbitrary_bytes_never_crash_the_invocation_decoder(data):
    try:
        Invocation.decode(data, {}.__getitem__)
    except EncodingError:
        pass


def test_output_with_an_i32_wider_than_32_bits_is_rejected():
    o = Output((Value("i32", 5),))
    raw = bytearray(o.encoded)
    raw[1 + 4 + 1 + 4] = 1  # a bit above the low 32 of the first result
    with pytest.raises(EncodingError, match="above 32"):
        Output.decode(bytes(raw), {p.digest: p.data for p in o.blobs()}.__getitem__)

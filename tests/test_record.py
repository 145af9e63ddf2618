"""Records are the committed bytes: one encoding per record, and every malformed one refused."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from poe import RECORD_SIZE, Outcome, Record, TrapKind
from poe.errors import EncodingError, LimitError


def _record(**kw) -> Record:
    base = dict(
        index=7, outcome=Outcome.OK, outcome_code=0, fuel=123_456, peak_pages=17, input_bytes=300,
        output_bytes=42, host_calls=9, module_digest=b"\x01" * 32, cost_model_digest=b"\x02" * 32,
        input_digest=b"\x03" * 32, output_digest=b"\x04" * 32, io_digest=b"\x05" * 32,
    )
    base.update(kw)
    return Record(**base)


def test_record_round_trips_through_its_encoding():
    r = _record()
    raw = r.encode()
    assert len(raw) == RECORD_SIZE
    assert Record.decode(raw) == r
    assert r.mem == r.peak_pages * r.fuel
    assert r.quantities() == (r.fuel, r.mem, r.io)


@given(
    fuel=st.integers(0, 2**48), pages=st.integers(0, 65536), inb=st.integers(0, 2**40), outb=st.integers(0, 2**40),
    code=st.sampled_from(list(TrapKind)), index=st.integers(0, 2**64 - 1),
)
def test_any_valid_trap_record_round_trips(fuel, pages, inb, outb, code, index):
    r = _record(fuel=fuel, peak_pages=pages, input_bytes=inb, output_bytes=outb, outcome=Outcome.TRAP, outcome_code=int(code), index=index)
    assert Record.decode(r.encode()) == r


@pytest.mark.parametrize("cut", [0, 1, RECORD_SIZE - 1])
def test_truncated_record_is_rejected(cut):
    with pytest.raises(EncodingError):
        Record.decode(_record().encode()[:cut])


def test_record_with_trailing_garbage_is_rejected():
    with pytest.raises(EncodingError):
        Record.decode(_record().encode() + b"\x00")


def test_record_from_a_future_version_is_rejected():
    raw = bytearray(_record().encode())
    raw[0:2] = struct.pack("<H", 2)
    with pytest.raises(EncodingError) as e:
        Record.decode(bytes(raw))
    assert e.value.details["observed"] == 2


@pytest.mark.parametrize("offset", [3, 28])
def test_record_with_nonzero_reserved_bytes_is_rejected(offset):
    raw = bytearray(_record().encode())
    raw[offset] = 1
    with pytest.raises(EncodingError):
        Record.decode(bytes(raw))


def test_record_with_inflated_mem_field_is_rejected():
    raw = bytearray(_record().encode())
    (mem,) = struct.unpack_from("<Q", raw, 32)
    struct.pack_into("<Q", raw, 32, mem + 1)
    with pytest.raises(EncodingError) as e:
        Record.decode(bytes(raw))
    assert e.value.details["observed"] == e.value.details["expected"] + 1


def test_record_with_unknown_outcome_is_rejected():
    raw = bytearray(_record().encode())
    raw[2] = 99
    with pytest.raises(EncodingError):
        Record.decode(bytes(raw))


def test_ok_record_carrying_an_exit_code_is_rejected():
    raw = bytearray(_record().encode())
    struct.pack_into("<I", raw, 4, 3)
    with pytest.raises(EncodingError):
        Record.decode(bytes(raw))


def test_record_whose_mem_would_wrap_cannot_be_encoded():
    with pytest.raises(LimitError):
        _record(fuel=2**63, peak_pages=4).encode()


@given(st.binary(max_size=400))
def test_arbitrary_bytes_decode_or_raise_encoding_error(data):
    try:
        r = Record.decode(data)
    except EncodingError:
        return
    assert r.encode() == data

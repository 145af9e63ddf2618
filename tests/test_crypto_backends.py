"""Signature backends (poe/crypto/backends): every backend gives the same bytes and the same
answers, poe's guards hold where a library alone is lax, and the choice of backend is what
POE_CRYPTO_BACKEND asks for, saying so when it falls back to the slow reference."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import types
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from poe.crypto import backends
from poe.crypto.schemes import get_scheme
from poe.errors import BackendError, BatchVerificationError, KeyFormatError, SignatureError

REPO = Path(__file__).resolve().parents[1]


def _loadable(scheme: str) -> list:
    return [get_scheme(scheme, name) for name, why in backends.available(scheme).items() if why is None]


BLS_ALL = _loadable("bls12-381")
K1_ALL = _loadable("secp256k1")
needs_two = pytest.mark.skipif(len(BLS_ALL) < 2 or len(K1_ALL) < 2, reason="a cross-check needs a native backend beside py-ecc")
CROSS = settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])


# -- cross-checks: sign with one, verify with every other, compare bytes -----------------------


@needs_two
@CROSS
@given(seed=st.binary(min_size=32, max_size=48), message=st.binary(max_size=64))
def test_bls_backends_agree_byte_for_byte(seed, message):
    sk = BLS_ALL[0].generate_key(seed)
    pks = {s.backend.name: s.public_key(sk) for s in BLS_ALL}
    sigs = {s.backend.name: s.sign(sk, message) for s in BLS_ALL}
    pops = {s.backend.name: s.pop_prove(sk) for s in BLS_ALL}
    hashes = {s.backend.name: s.hash_to_g2(message) for s in BLS_ALL}
    for table in (pks, sigs, pops, hashes):
        assert len(set(table.values())) == 1, table
    pk, sig, pop = next(iter(pks.values())), next(iter(sigs.values())), next(iter(pops.values()))
    for verifier in BLS_ALL:
        verifier.verify(pk, message, sig)
        verifier.pop_verify(pk, pop)
        with pytest.raises(SignatureError):
            verifier.verify(pk, message + b"!", sig)


@needs_two
@CROSS
@given(seeds=st.lists(st.binary(min_size=32, max_size=32), min_size=2, max_size=4, unique=True), message=st.binary(max_size=32))
def test_bls_aggregates_agree_across_backends(seeds, message):
    signer = BLS_ALL[0]
    keys = [signer.generate_key(s) for s in seeds]
    pks = [signer.public_key(k) for k in keys]
    sigs = [signer.sign(k, message) for k in keys]
    aggregates = {s.backend.name: s.aggregate(sigs) for s in BLS_ALL}
    assert len(set(aggregates.values())) == 1
    agg = aggregates[signer.backend.name]
    for verifier in BLS_ALL:
        verifier.fast_aggregate_verify(pks, message, agg)
        verifier.batch_verify([(pk, message, sig) for pk, sig in zip(pks, sigs)])
        with pytest.raises(SignatureError):
            verifier.fast_aggregate_verify(pks[:-1], message, agg)


@needs_two
@settings(max_examples=40, deadline=None)
@given(seed=st.binary(min_size=32, max_size=64), digest=st.binary(min_size=32, max_size=32))
def test_secp256k1_backends_agree_byte_for_byte(seed, digest):
    sk = K1_ALL[0].generate_key(seed)
    pks = {s.backend.name: s.public_key(sk) for s in K1_ALL}
    sigs = {s.backend.name: s.sign(sk, digest) for s in K1_ALL}
    raw = {s.backend.name: s.sign_hash(sk, digest) for s in K1_ALL}
    for table in (pks, sigs, raw):
        assert len(set(table.values())) == 1, table
    pk, sig = next(iter(pks.values())), next(iter(sigs.values()))
    for verifier in K1_ALL:
        verifier.verify(pk, digest, sig)
        assert verifier.recover(digest, sig) == verifier.identity(pk)
        assert verifier.recover_hash_public_key(digest, raw[verifier.backend.name]) == pk
        with pytest.raises(SignatureError):
            verifier.verify(pk, bytes(32) if digest != bytes(32) else b"\x01" * 32, sig)


@needs_two
@settings(max_examples=60, deadline=None)
@given(digest=st.binary(min_size=32, max_size=32), sig=st.binary(min_size=64, max_size=64), v=st.sampled_from([27, 28]))
def test_secp256k1_backends_recover_the_same_key_from_any_signature(digest, sig, v):
    """On arbitrary (r, s): either every backend recovers the same key or every one refuses."""
    outcomes = set()
    for scheme in K1_ALL:
        try:
            outcomes.add(scheme.recover_hash_public_key(digest, sig + bytes([v])))
        except SignatureError as exc:
            outcomes.add(exc.details["reason"])
    assert len(outcomes) == 1, outcomes


# -- where a library alone is lax, poe's guards hold on every backend ----------------------------

NONCANONICAL_INFINITY = [
    bytes([0xC0]) + bytes(46) + b"\x01",  # infinity flag with a nonzero x
    bytes([0xE0]) + bytes(47),  # infinity flag with the sign flag
    bytes([0xC1]) + bytes(47),  # infinity with a stray coordinate bit
]


@pytest.mark.parametrize("bls", BLS_ALL, ids=lambda s: s.backend.name)
@pytest.mark.parametrize("raw", NONCANONICAL_INFINITY, ids=["x-nonzero", "sign-flag", "stray-bit"])
def test_noncanonical_infinity_is_refused_on_every_backend(bls, raw):
    with pytest.raises(KeyFormatError) as info:
        bls.decode_g1(raw)
    assert info.value.details["reason"] == "encoding"
    with pytest.raises(SignatureError):
        bls.decode_g2(raw + bytes(48))


def test_the_arkworks_decoder_alone_accepts_a_noncanonical_infinity():
    """Why the byte check exists: the library maps these encodings to the identity."""
    if "arkworks" not in {s.backend.name for s in BLS_ALL}:
        pytest.skip("arkworks is not installed")
    raw = NONCANONICAL_INFINITY[0]
    backend = backends.load("bls12-381", "arkworks")
    assert backend.g1_is_identity(backend.g1_decode(raw))


@pytest.mark.parametrize("bls", BLS_ALL, ids=lambda s: s.backend.name)
def test_two_invalid_signatures_that_cancel_in_an_aggregate_are_rejected_by_the_batch(bls):
    """sig_a + T and sig_b - T aggregate to a valid signature, so aggregate-then-verify accepts
    the pair; the random linear combination names both."""
    keys = [bls.generate_key(bytes([i]) * 32) for i in (1, 2)]
    msgs = [b"statement a" + bytes(21), b"statement b" + bytes(21)]
    items = [(bls.public_key(k), m, bls.sign(k, m)) for k, m in zip(keys, msgs)]
    b = bls.backend
    offset = b.g2_decode(bls.hash_to_g2(b"cancel"))
    minus = b.g2_mul(offset, 0x73EDA753299D7D483339D80809A1D80553BDA402FFFE5BFEFFFFFFFF00000000)  # (r - 1) T = -T
    forged = [
        b.g2_encode(b.g2_sum([b.g2_decode(items[0][2]), offset])),
        b.g2_encode(b.g2_sum([b.g2_decode(items[1][2]), minus])),
    ]
    bls.aggregate_verify([i[0] for i in items], msgs, bls.aggregate(forged))  # the aggregate is fooled
    with pytest.raises(BatchVerificationError) as info:
        bls.batch_verify([(pk, m, f) for (pk, m, _), f in zip(items, forged)])
    assert info.value.bad_indices == [0, 1]


@pytest.mark.parametrize("bls", BLS_ALL, ids=lambda s: s.backend.name)
def test_identity_and_zero_keys_are_refused_on_every_backend(bls):
    infinity_pk, infinity_sig = b"\xc0" + bytes(47), b"\xc0" + bytes(95)
    with pytest.raises(KeyFormatError):
        bls.sign(bytes(32), b"m")
    with pytest.raises(KeyFormatError):
        bls.verify(infinity_pk, b"m", infinity_sig)
    with pytest.raises(KeyFormatError):
        bls.fast_aggregate_verify([infinity_pk], b"m", infinity_sig)
    pk = bls.public_key(bls.generate_key(b"\x05" * 32))
    minus_pk = bytes([pk[0] ^ 0x20]) + pk[1:]
    with pytest.raises(SignatureError):  # keys summing to the identity, with the identity signature
        bls.fast_aggregate_verify([pk, minus_pk], b"m", infinity_sig)
    with pytest.raises(SignatureError):  # the identity is not a signature of any message
        bls.verify(pk, b"m", infinity_sig)


# -- choosing a backend -------------------------------------------------------------------------

_PROBE = """
import json, sys, warnings
for blocked in sys.argv[1:]:
    sys.modules[blocked] = None  # makes `import blocked` raise ImportError
warnings.simplefilter("always")
with warnings.catch_warnings(record=True) as caught:
    from poe.crypto.schemes import get_scheme
    try:
        chosen = {}
        for _ in range(3):
            for name in ("bls12-381", "secp256k1"):
                scheme = get_scheme(name)
                sk = scheme.generate_key(bytes(32))
                scheme.verify(scheme.public_key(sk), bytes(32), scheme.sign(sk, bytes(32)))
                chosen[name] = scheme.backend.name
        out = {"chosen": chosen}
    except Exception as exc:
        out = {"error": type(exc).__name__, "code": getattr(exc, "code", None), "message": str(exc)}
out["warnings"] = [str(w.message) for w in caught if w.category.__name__ == "SlowBackendWarning"]
out["py_ecc_loaded"] = any(m.split(".")[0] == "py_ecc" for m in sys.modules)
print(json.dumps(out))
"""


def _probe(env_value: str | None, *blocked: str) -> dict:
    env = dict(os.environ)
    env.pop(backends.ENV, None)
    if env_value is not None:
        env[backends.ENV] = env_value
    out = subprocess.run([sys.executable, "-c", _PROBE, *blocked], capture_output=True, text=True, timeout=300, cwd=REPO, env=env)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])


NATIVE = pytest.mark.skipif(len(BLS_ALL) < 2 or len(K1_ALL) < 2, reason="the native backends are not installed")


@NATIVE
def test_default_choice_is_native_and_never_imports_py_ecc():
    out = _probe(None)
    assert out["chosen"] == {"bls12-381": "arkworks", "secp256k1": "coincurve"}
    assert out["warnings"] == [] and out["py_ecc_loaded"] is False


def test_py_ecc_can_be_forced():
    out = _probe("py-ecc")
    assert out["chosen"] == {"bls12-381": "py-ecc", "secp256k1": "py-ecc"} and out["warnings"] == []


@NATIVE
def test_one_backend_can_be_named_and_the_other_scheme_stays_automatic():
    assert _probe("coincurve")["chosen"] == {"bls12-381": "arkworks", "secp256k1": "coincurve"}


def test_falling_back_to_the_reference_says_so_once_per_scheme():
    out = _probe(None, "py_arkworks_bls12381", "coincurve")
    assert out["chosen"] == {"bls12-381": "py-ecc", "secp256k1": "py-ecc"}
    assert len(out["warnings"]) == 2, out["warnings"]
    assert all("pure-Python reference" in w for w in out["warnings"])


def test_native_required_but_missing_is_an_error_not_a_fallback():
    out = _probe("native", "py_arkworks_bls12381", "coincurve")
    assert out["error"] == "BackendError" and out["code"] == "crypto.backend" and "arkworks" in out["message"]


def test_unknown_backend_name_is_an_error_naming_the_known_ones():
    out = _probe("blst")
    assert out["code"] == "crypto.backend" and "py-ecc" in out["message"] and "arkworks" in out["message"]


def test_an_untested_library_release_is_refused():
    newer = types.SimpleNamespace(__version__="22.0.0")
    with pytest.raises(backends.Unavailable, match="tested with releases from 21.0"):
        backends.library_version("coincurve", newer, (2100, 2200))
    assert backends.library_version("coincurve", types.SimpleNamespace(__version__="21.0.3"), (2100, 2200)) == "21.0.3"


def test_loading_an_unknown_backend_is_a_backend_error():
    with pytest.raises(BackendError):
        backends.load("bls12-381", "coincurve")



def test_the_command_line_says_once_per_scheme_in_one_line_that_it_runs_on_the_reference(tmp_path):
    # A user without the native wheels gets a working, slower poe and one plain note per scheme,
    # not Python's warning format and not a note per signature.
    scheme = get_scheme("secp256k1")
    sk = scheme.generate_key(b"the command line fallback test key!!")
    key = tmp_path / "k.key"
    from poe.crypto.keys import write_key_file

    write_key_file(str(key), scheme.name, sk, scheme.public_key(sk))
    script = (
        "import sys\n"
        "sys.modules['py_arkworks_bls12381'] = None\n"
        "sys.modules['coincurve'] = None\n"
        "from poe.cli import main\n"
        "sys.argv = ['poe', 'pubkey', sys.argv[1]]\n"
        "main()\n"
    )
    env = {k: v for k, v in os.environ.items() if k != backends.ENV}
    out = subprocess.run([sys.executable, "-c", script, str(key)], capture_output=True, text=True, timeout=300, cwd=REPO, env=env)
    assert out.returncode == 0, out.stderr
    notes = [line for line in out.stderr.splitlines() if line.startswith("poe:")]
    assert len(notes) == 1 and notes[0].startswith("poe: note: secp256k1 signatures run on the pure-Python reference"), out.stderr
    assert "Warning" not in out.stderr and scheme.identity(scheme.public_key(sk)) in out.stderr


@pytest.mark.skipif("coincurve" not in backends.available("secp256k1") or backends.available("secp256k1")["coincurve"] is not None,
                    reason="coincurve is not installed")
@settings(max_examples=200, deadline=None)
@given(digest=st.binary(min_size=32, max_size=32), rs=st.binary(min_size=64, max_size=64), parity=st.sampled_from([0, 1]))
def test_coincurve_direct_recovery_matches_its_documented_api(digest, rs, parity):
    # The backend calls libsecp256k1 through coincurve's cffi handles for speed; the documented
    # object API must give the same key (or refuse alike) on anything, valid or not.
    from poe.crypto.backends import k1_coincurve

    assert k1_coincurve.BACKEND.recover is not k1_coincurve._public_recover
    assert k1_coincurve.BACKEND.recover(digest, rs, parity) == k1_coincurve._public_recover(digest, rs, parity)


@pytest.mark.skipif(backends.available("secp256k1").get("coincurve") is not None, reason="coincurve is not installed")
@pytest.mark.parametrize("digest_len, rs_len, parity", [(31, 64, 0), (32, 63, 0), (32, 64, 2), (32, 64, 4), (32, 64, -1)])
def test_coincurve_recovery_refuses_what_libsecp256k1_would_read_past_or_abort_on(digest_len, rs_len, parity):
    # libsecp256k1 reads 32 and 64 bytes whatever it is given and aborts the process on a
    # recovery id outside 0..3; the direct path must refuse first, as coincurve's own call does.
    from poe.crypto.backends import k1_coincurve

    assert k1_coincurve.BACKEND.recover(b"\x01" * digest_len, b"\x02" * rs_len, parity) is None

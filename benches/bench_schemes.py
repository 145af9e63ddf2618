"""Signatures on every backend, each against py-ecc in the same run.

Groups (the *_baseline test of each is py-ecc; every other test is poe on one backend, named in
brackets, so a ratio below 1 is that backend's speed-up over the reference):

* ``bls-sign``, ``bls-verify``: py-ecc's own ``G2ProofOfPossession`` entry points as baseline;
* ``bls-batch``: BATCH attestations (distinct messages, 10 keys) checked one by one with poe on
  py-ecc as baseline, against poe's randomized batch on each backend;
* ``k1-sign``, ``k1-verify``: py-ecc's raw ECDSA on the already hashed message as baseline;
* ``request-check``: what a provider does per customer request (``poe request v1``): decode the
  document strictly, its EIP-712 digest, recovery of its signer, compared with the customer
  (the ceiling is libsecp256k1's ecrecover alone, measured beside it as ``raw-ecrecover``);
* ``verify-attestation``: ``poe verify-attestation`` of 100 BLS envelopes as a whole process
  (start-up included), with ``POE_CRYPTO_BACKEND=py-ecc`` as baseline against the default.

py-ecc is pure Python: a BLS verification costs a few hundred milliseconds, so the BLS groups run
few rounds; the whole file takes about two minutes.

    python3 -m pytest benches/bench_schemes.py --benchmark-enable
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import pytest
from py_ecc.bls import G2ProofOfPossession
from py_ecc.secp256k1 import secp256k1 as k1

from poe.crypto import backends
from poe.crypto.schemes import get_scheme

BATCH = 100  # distinct messages, 10 signing keys
MESSAGE = hashlib.sha256(b"poe attestation statement").digest()
REPO = Path(__file__).resolve().parents[1]


def _backends(scheme: str) -> list[str]:
    return [name for name, why in backends.available(scheme).items() if why is None]


BLS_BACKENDS = _backends("bls12-381")
K1_BACKENDS = _backends("secp256k1")


def _note(measured, scheme) -> None:
    b = scheme.backend
    measured.extra_info["backend"] = f"{b.library} {b.version}"


@pytest.fixture(scope="module")
def bls_key():
    bls = get_scheme("bls12-381", "py-ecc")
    sk = bls.generate_key(b"\x01" * 32)
    return sk, bls.public_key(sk), bls.sign(sk, MESSAGE)


@pytest.fixture(scope="module")
def k1_key():
    scheme = get_scheme("secp256k1", "py-ecc")
    sk = scheme.generate_key(b"\x01" * 32)
    return sk, scheme.public_key(sk), scheme.sign(sk, MESSAGE)


@pytest.fixture(scope="module")
def bls_batch():
    bls = get_scheme("bls12-381", BLS_BACKENDS[0])  # the fastest loadable signer; the bytes are the same
    keys = [bls.generate_key(bytes([i + 1]) * 32) for i in range(10)]
    pks = [bls.public_key(sk) for sk in keys]
    items = []
    for i in range(BATCH):
        msg = hashlib.sha256(b"statement %d" % i).digest()
        items.append((pks[i % 10], msg, bls.sign(keys[i % 10], msg)))
    return items


# -- BLS12-381 ----------------------------------------------------------------------------------


@pytest.mark.benchmark(group="bls-sign")
def test_bls_sign_baseline(measured, bls_key):
    """py-ecc's G2ProofOfPossession.Sign."""
    sk = int.from_bytes(bls_key[0], "big")
    measured.pedantic(G2ProofOfPossession.Sign, args=(sk, MESSAGE), rounds=5, iterations=1)


@pytest.mark.benchmark(group="bls-sign")
@pytest.mark.parametrize("backend", BLS_BACKENDS)
def test_bls_sign_poe(measured, bls_key, backend):
    bls = get_scheme("bls12-381", backend)
    _note(measured, bls)
    measured.pedantic(bls.sign, args=(bls_key[0], MESSAGE), rounds=5 if backend == "py-ecc" else 200, iterations=1)


@pytest.mark.benchmark(group="bls-verify")
def test_bls_verify_baseline(measured, bls_key):
    """py-ecc's G2ProofOfPossession.Verify (returns a bool)."""
    _, pk, sig = bls_key
    assert measured.pedantic(G2ProofOfPossession.Verify, args=(pk, MESSAGE, sig), rounds=5, iterations=1)


@pytest.mark.benchmark(group="bls-verify")
@pytest.mark.parametrize("backend", BLS_BACKENDS)
def test_bls_verify_poe(measured, bls_key, backend):
    bls = get_scheme("bls12-381", backend)
    _note(measured, bls)
    _, pk, sig = bls_key
    measured.pedantic(bls.verify, args=(pk, MESSAGE, sig), rounds=5 if backend == "py-ecc" else 200, iterations=1)


@pytest.mark.benchmark(group="bls-batch")
def test_bls_batch_baseline(measured, bls_batch):
    """BATCH attestations verified one by one with poe on py-ecc."""
    bls = get_scheme("bls12-381", "py-ecc")

    def one_by_one():
        for item in bls_batch:
            bls.verify(*item)

    measured.pedantic(one_by_one, rounds=1, iterations=1)
    measured.extra_info["items"] = BATCH


@pytest.mark.benchmark(group="bls-batch")
@pytest.mark.parametrize("backend", BLS_BACKENDS)
def test_bls_batch_poe(measured, bls_batch, backend):
    """The same BATCH attestations in one randomized batch (one Miller loop per distinct message
    plus one, a single final exponentiation)."""
    bls = get_scheme("bls12-381", backend)
    _note(measured, bls)
    measured.pedantic(bls.batch_verify, args=(bls_batch,), rounds=1 if backend == "py-ecc" else 10, iterations=1)
    measured.extra_info["items"] = BATCH


# -- secp256k1 ----------------------------------------------------------------------------------


@pytest.mark.benchmark(group="k1-sign")
def test_k1_sign_baseline(measured, k1_key):
    """py-ecc's ecdsa_raw_sign on the already computed EIP-191 hash."""
    h = get_scheme("secp256k1", "py-ecc").message_hash(MESSAGE)
    measured(k1.ecdsa_raw_sign, h, k1_key[0])


@pytest.mark.benchmark(group="k1-sign")
@pytest.mark.parametrize("backend", K1_BACKENDS)
def test_k1_sign_poe(measured, k1_key, backend):
    """Includes the EIP-191 hash and the low-s and range checks."""
    scheme = get_scheme("secp256k1", backend)
    _note(measured, scheme)
    measured(scheme.sign, k1_key[0], MESSAGE)


@pytest.mark.benchmark(group="k1-verify")
def test_k1_verify_baseline(measured, k1_key):
    """py-ecc's ecdsa_raw_recover on the already computed hash, compared with the key."""
    _, pk, sig = k1_key
    h = get_scheme("secp256k1", "py-ecc").message_hash(MESSAGE)
    vrs = (sig[64], int.from_bytes(sig[:32], "big"), int.from_bytes(sig[32:64], "big"))
    expected = k1.privtopub(k1_key[0])
    measured(lambda: k1.ecdsa_raw_recover(h, vrs) == expected)


@pytest.mark.benchmark(group="k1-verify")
@pytest.mark.parametrize("backend", K1_BACKENDS)
def test_k1_verify_poe(measured, k1_key, backend):
    """EIP-191 hash, range, low-s and key checks, recovery, comparison."""
    scheme = get_scheme("secp256k1", backend)
    _note(measured, scheme)
    _, pk, sig = k1_key
    measured(scheme.verify, pk, MESSAGE, sig)


# -- a customer's request, as a provider checks it ----------------------------------------------


@pytest.fixture(scope="module")
def signed_request():
    """A customer's signed request (poe request v1, spec §14.1), as the JSON document a provider receives."""
    from poe.protocol.request import sign_request

    scheme = get_scheme("secp256k1", K1_BACKENDS[0])
    sk = scheme.generate_key(b"a customer of the benchmark, 32+ bytes")
    signed = sign_request(sk, chain_id=1, deal=hashlib.sha256(b"deal").digest(), sequence=41,
                          invocation=hashlib.sha256(b"invocation").digest(), fuel_budget=10_000_000, not_before=3, not_after=9)
    return signed.to_json()


def _request_check(scheme, doc):
    """What a provider does per request: decode the document strictly, hash it (EIP-712), recover
    the signer and compare it with the customer."""
    from poe.protocol.request import SignedRequest

    signed = SignedRequest.from_json(doc)
    if scheme.recover_hash_address(signed.digest, signed.signature) != signed.request.customer:
        raise AssertionError("the request's signer is not its customer")


@pytest.mark.benchmark(group="request-check")
def test_request_check_baseline(measured, signed_request):
    """The check on the py-ecc reference."""
    measured(_request_check, get_scheme("secp256k1", "py-ecc"), signed_request)


@pytest.mark.benchmark(group="request-check")
@pytest.mark.parametrize("backend", [b for b in K1_BACKENDS if b != "py-ecc"])
def test_request_check_poe(measured, signed_request, backend):
    scheme = get_scheme("secp256k1", backend)
    _note(measured, scheme)
    measured(_request_check, scheme, signed_request)
    stats = getattr(measured, "stats", None)
    if stats is not None and getattr(stats, "stats", None) is not None:
        measured.extra_info["per_second"] = round(1 / stats.stats.median)


def _hash_and_recover(scheme, signed):
    """The issue's measure: the EIP-712 hash of an already decoded request (computed afresh, not
    from its cache) and the recovery of its signer, compared with its customer."""
    digest = type(signed.request).digest.func(signed.request)
    if scheme.recover_hash_address(digest, signed.signature) != signed.request.customer:
        raise AssertionError("the request's signer is not its customer")


@pytest.mark.benchmark(group="request-hash-recover")
def test_request_hash_recover_baseline(measured, signed_request):
    """The same on the py-ecc reference."""
    from poe.protocol.request import SignedRequest

    measured(_hash_and_recover, get_scheme("secp256k1", "py-ecc"), SignedRequest.from_json(signed_request))


@pytest.mark.benchmark(group="request-hash-recover")
@pytest.mark.parametrize("backend", [b for b in K1_BACKENDS if b != "py-ecc"])
def test_request_hash_recover_poe(measured, signed_request, backend):
    from poe.protocol.request import SignedRequest

    scheme = get_scheme("secp256k1", backend)
    _note(measured, scheme)
    measured(_hash_and_recover, scheme, SignedRequest.from_json(signed_request))
    stats = getattr(measured, "stats", None)
    if stats is not None and getattr(stats, "stats", None) is not None:
        measured.extra_info["per_second"] = round(1 / stats.stats.median)


@pytest.mark.benchmark(group="request-check")
def test_request_check_raw_ecrecover(measured, signed_request):
    """For reference: coincurve's recovery alone on the same digest, no hashing and no checks."""
    from coincurve import PublicKey

    from poe.protocol.request import SignedRequest

    signed = SignedRequest.from_json(signed_request)
    rsv = signed.signature[:64] + bytes([signed.signature[64] - 27])
    measured(PublicKey.from_signature_and_message, rsv, signed.digest, hasher=None)


# -- poe verify-attestation of 100 envelopes, as a whole process ---------------------------------


@pytest.fixture(scope="module")
def envelopes(tmp_path_factory):
    """A chain of 100 attested epochs of 3 segments each, signed with BLS."""
    from poe import CostModel, Executor, Invocation, Limits, Service, TraceStore, Value
    from poe.provider.attest import sign_epoch

    out = tmp_path_factory.mktemp("envelopes")
    cm = CostModel.current(Limits(fuel=10_000_000, memory_pages=64))
    service = Service((REPO / "vectors" / "modules" / "funcs.wasm").read_bytes(), name="funcs.wasm")
    executor, bls = Executor(service, cm), get_scheme("bls12-381", BLS_BACKENDS[0])
    sk = bls.generate_key(b"provider" * 4)
    paths = []
    with TraceStore.create_or_open(str(out / "trace.poe"), cm) as store:
        store.register_service(service)
        for epoch in range(100):
            for i in range(3):
                store.append(executor.run(Invocation.build("fib", params=[Value.of("i32", i + 5)]), store.next_index))
            paths.append(out / f"e{epoch:03d}.json")
            paths[-1].write_text(sign_epoch(store, bls, sk, "deal-1").dumps())
    return [str(p) for p in paths]


def _verify_attestation(paths, backend):
    env = dict(os.environ, POE_CRYPTO_BACKEND=backend)
    subprocess.run([sys.executable, "-m", "poe", "verify-attestation", *paths, "--json"], env=env, check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


@pytest.mark.benchmark(group="verify-attestation")
def test_verify_attestation_baseline(measured, envelopes):
    """The command forced onto the py-ecc reference."""
    measured.pedantic(_verify_attestation, args=(envelopes, "py-ecc"), rounds=1, iterations=1)


@pytest.mark.benchmark(group="verify-attestation")
def test_verify_attestation_poe(measured, envelopes):
    """The command as installed (the native backend chosen at import)."""
    measured.pedantic(_verify_attestation, args=(envelopes, "auto"), rounds=5, iterations=1)
    measured.extra_info["envelopes"] = len(envelopes)

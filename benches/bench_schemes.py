"""Attestation signatures: sign and verify per scheme, and a BLS batch against one-by-one checks.

Baselines are py-ecc's own entry points on the same inputs (for the batch: poe's single
``verify`` on every item, which is what a caller without batching would do). py-ecc is pure
Python: a BLS verification costs a few hundred milliseconds, so the batch group runs one round
of BATCH items; even so it takes about a minute (signing the batch included).
"""

from __future__ import annotations

import hashlib

import pytest
from py_ecc.bls import G2ProofOfPossession
from py_ecc.secp256k1 import secp256k1 as k1

from poe.crypto.schemes import BLS, SECP256K1

BATCH = 100  # distinct messages, 10 signing keys
MESSAGE = hashlib.sha256(b"poe attestation statement").digest()


@pytest.fixture(scope="module")
def bls_key():
    sk = BLS.generate_key(b"\x01" * 32)
    return sk, BLS.public_key(sk), BLS.sign(sk, MESSAGE)


@pytest.fixture(scope="module")
def k1_key():
    sk = SECP256K1.generate_key(b"\x01" * 32)
    return sk, SECP256K1.public_key(sk), SECP256K1.sign(sk, MESSAGE)


@pytest.fixture(scope="module")
def bls_batch():
    keys = [BLS.generate_key(bytes([i + 1]) * 32) for i in range(10)]
    pks = [BLS.public_key(sk) for sk in keys]
    items = []
    for i in range(BATCH):
        msg = hashlib.sha256(b"statement %d" % i).digest()
        items.append((pks[i % 10], msg, BLS.sign(keys[i % 10], msg)))
    return items


# -- BLS12-381 ----------------------------------------------------------------------------------


@pytest.mark.benchmark(group="bls-sign")
def test_bls_sign_baseline(measured, bls_key):
    """py-ecc's G2ProofOfPossession.Sign."""
    sk = int.from_bytes(bls_key[0], "big")
    measured.pedantic(G2ProofOfPossession.Sign, args=(sk, MESSAGE), rounds=5, iterations=1)


@pytest.mark.benchmark(group="bls-sign")
def test_bls_sign_poe(measured, bls_key):
    measured.pedantic(BLS.sign, args=(bls_key[0], MESSAGE), rounds=5, iterations=1)


@pytest.mark.benchmark(group="bls-verify")
def test_bls_verify_baseline(measured, bls_key):
    """py-ecc's G2ProofOfPossession.Verify (returns a bool)."""
    _, pk, sig = bls_key
    assert measured.pedantic(G2ProofOfPossession.Verify, args=(pk, MESSAGE, sig), rounds=5, iterations=1)


@pytest.mark.benchmark(group="bls-verify")
def test_bls_verify_poe(measured, bls_key):
    _, pk, sig = bls_key
    measured.pedantic(BLS.verify, args=(pk, MESSAGE, sig), rounds=5, iterations=1)


@pytest.mark.benchmark(group="bls-batch")
def test_bls_batch_baseline(measured, bls_batch):
    """BATCH attestations verified one by one with poe's BLS.verify."""

    def one_by_one():
        for item in bls_batch:
            BLS.verify(*item)

    measured.pedantic(one_by_one, rounds=1, iterations=1)
    measured.extra_info["items"] = BATCH


@pytest.mark.benchmark(group="bls-batch")
def test_bls_batch_poe(measured, bls_batch):
    """The same BATCH attestations in one randomized batch (BATCH + 1 Miller loops, one final
    exponentiation)."""
    measured.pedantic(BLS.batch_verify, args=(bls_batch,), rounds=1, iterations=1)
    measured.extra_info["items"] = BATCH


# -- secp256k1 ----------------------------------------------------------------------------------


@pytest.mark.benchmark(group="k1-sign")
def test_k1_sign_baseline(measured, k1_key):
    """py-ecc's ecdsa_raw_sign on the already computed EIP-191 hash."""
    h = SECP256K1.message_hash(MESSAGE)
    measured(k1.ecdsa_raw_sign, h, k1_key[0])


@pytest.mark.benchmark(group="k1-sign")
def test_k1_sign_poe(measured, k1_key):
    """Includes the EIP-191 hash (pure-Python Keccak) and full RFC 6979."""
    measured(SECP256K1.sign, k1_key[0], MESSAGE)


@pytest.mark.benchmark(group="k1-verify")
def test_k1_verify_baseline(measured, k1_key):
    """py-ecc's ecdsa_raw_recover on the already computed hash, compared with the key."""
    _, pk, sig = k1_key
    h = SECP256K1.message_hash(MESSAGE)
    vrs = (sig[64], int.from_bytes(sig[:32], "big"), int.from_bytes(sig[32:64], "big"))
    expected = k1.privtopub(k1_key[0])
    measured(lambda: k1.ecdsa_raw_recover(h, vrs) == expected)


@pytest.mark.benchmark(group="k1-verify")
def test_k1_verify_poe(measured, k1_key):
    _, pk, sig = k1_key
    measured(SECP256K1.verify, pk, MESSAGE, sig)

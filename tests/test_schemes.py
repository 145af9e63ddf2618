"""Signature schemes (poe/crypto: scheme, bls, secp256k1, the schemes registry) and Keccak-256 (poe/crypto/keccak.py).

BLS is checked against the Ethereum BLS12-381 vectors in ../shared/vectors/bls12-381 (read in place,
never copied); secp256k1 against published answers (addresses, a web3.js personal_sign example,
the RFC 6979 nonce for "Satoshi Nakamoto") and, where installed, OpenSSL through ``cryptography``.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import random
import re
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from poe.crypto import backends
from poe.crypto.keccak import keccak256
from poe.crypto.schemes import SCHEMES, Scheme, checksum_address, get_scheme
from poe.crypto.secp256k1 import personal_sign_hash
from poe.errors import (
    BatchVerificationError,
    InputError,
    KeyFormatError,
    PoEError,
    SignatureError,
    VerificationError,
)

VECTORS = Path(__file__).resolve().parents[2] / "shared" / "vectors" / "bls12-381"
KINDS = (
    "sign",
    "verify",
    "aggregate",
    "fast_aggregate_verify",
    "aggregate_verify",
    "batch_verify",
    "deserialization_G1",
    "deserialization_G2",
    "hash_to_G2",
)
N = SECP256K1_ORDER = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141
SLOW = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _backend_params(scheme: str) -> list:
    """The scheme on every backend; one that cannot load here is skipped, saying why, unless
    POE_REQUIRE_NATIVE is set (as CI sets it), where a missing native backend fails the run."""
    out = []
    for name, why in backends.available(scheme).items():
        if why is None:
            out.append(pytest.param(get_scheme(scheme, name), id=name))
        elif os.environ.get("POE_REQUIRE_NATIVE") == "1":
            raise RuntimeError(f"POE_REQUIRE_NATIVE is set but {why}")
        else:
            out.append(pytest.param(None, id=name, marks=pytest.mark.skip(reason=why)))
    return out


BLS_PARAMS = _backend_params("bls12-381")
K1_PARAMS = _backend_params("secp256k1")
on_bls = pytest.mark.parametrize("bls", BLS_PARAMS)
on_k1 = pytest.mark.parametrize("k1", K1_PARAMS)
on_every_scheme = pytest.mark.parametrize("scheme", BLS_PARAMS + K1_PARAMS)
# The fixtures' keys and signatures do not depend on the backend (the cross-checks show it).
BLS = get_scheme("bls12-381")
SECP256K1 = get_scheme("secp256k1")


def _hex(s: str) -> bytes:
    return bytes.fromhex(s[2:] if s.startswith("0x") else s)


def _cases(kind: str) -> list:
    if not VECTORS.is_dir():
        return [pytest.param(None, marks=pytest.mark.skip(reason=f"Ethereum BLS vectors not found at {VECTORS}"))]
    return [pytest.param(p, id=p.stem) for p in sorted((VECTORS / kind).glob("*.json"))]


def _load(path: Path) -> tuple[dict, object]:
    data = json.loads(path.read_text())
    return data["input"], data["output"]


# Which poe error each expected failure must raise (exact class), by vector kind and case name.
_EXPECTED_ERRORS = [
    ("sign", r"zero_privkey", KeyFormatError),
    ("verify", r"infinity_pubkey", KeyFormatError),
    ("verify", r"tampered_signature|wrong_pubkey", SignatureError),
    ("aggregate", r"na_signatures", InputError),
    ("fast_aggregate_verify", r"infinity_pubkey", KeyFormatError),
    ("fast_aggregate_verify", r"na_pubkeys", InputError),
    ("fast_aggregate_verify", r"extra_pubkey|tampered_signature", SignatureError),
    ("aggregate_verify", r"infinity_pubkey", KeyFormatError),
    ("aggregate_verify", r"na_pubkeys", InputError),
    ("aggregate_verify", r"tampered_signature", SignatureError),
    ("batch_verify", r"invalid", BatchVerificationError),
    ("deserialization_G1", r"fails", KeyFormatError),
    ("deserialization_G2", r"fails", SignatureError),
]


def _expected_error(kind: str, name: str) -> type[PoEError]:
    for k, pattern, cls in _EXPECTED_ERRORS:
        if k == kind and re.search(pattern, name):
            return cls
    raise AssertionError(f"no expected poe error is declared for failing vector {kind}/{name}")


def _raises_exactly(cls: type[PoEError], fn, *args):
    with pytest.raises(PoEError) as info:
        fn(*args)
    assert type(info.value) is cls, f"expected {cls.__name__}, got {type(info.value).__name__}: {info.value}"
    return info.value


# --------------------------------------------------------------------------------------------
# Ethereum BLS12-381 vectors
# --------------------------------------------------------------------------------------------


@pytest.mark.skipif(not VECTORS.is_dir(), reason=f"Ethereum BLS vectors not found at {VECTORS}")
def test_vector_set_is_complete():
    """Every kind of the set is run, and a kind added upstream is not silently ignored."""
    present = {p.name for p in VECTORS.iterdir() if p.is_dir()}
    assert present == set(KINDS)
    for kind in KINDS:
        assert list((VECTORS / kind).glob("*.json")), kind


@on_bls
@pytest.mark.parametrize("path", _cases("sign"))
def test_vector_sign(bls, path):
    inp, out = _load(path)
    sk, msg = _hex(inp["privkey"]), _hex(inp["message"])
    if out is None:
        _raises_exactly(_expected_error("sign", path.stem), bls.sign, sk, msg)
    else:
        assert bls.sign(sk, msg) == _hex(out)


@on_bls
@pytest.mark.parametrize("path", _cases("verify"))
def test_vector_verify(bls, path):
    inp, out = _load(path)
    args = (_hex(inp["pubkey"]), _hex(inp["message"]), _hex(inp["signature"]))
    if out:
        assert bls.verify(*args) is None
    else:
        _raises_exactly(_expected_error("verify", path.stem), bls.verify, *args)


@on_bls
@pytest.mark.parametrize("path", _cases("aggregate"))
def test_vector_aggregate(bls, path):
    inp, out = _load(path)
    sigs = [_hex(s) for s in inp]
    if out is None:
        _raises_exactly(_expected_error("aggregate", path.stem), bls.aggregate, sigs)
    else:
        assert bls.aggregate(sigs) == _hex(out)


@on_bls
@pytest.mark.parametrize("path", _cases("fast_aggregate_verify"))
def test_vector_fast_aggregate_verify(bls, path):
    inp, out = _load(path)
    args = ([_hex(p) for p in inp["pubkeys"]], _hex(inp["message"]), _hex(inp["signature"]))
    if out:
        assert bls.fast_aggregate_verify(*args) is None
    else:
        _raises_exactly(_expected_error("fast_aggregate_verify", path.stem), bls.fast_aggregate_verify, *args)


@on_bls
@pytest.mark.parametrize("path", _cases("aggregate_verify"))
def test_vector_aggregate_verify(bls, path):
    inp, out = _load(path)
    args = ([_hex(p) for p in inp["pubkeys"]], [_hex(m) for m in inp["messages"]], _hex(inp["signature"]))
    if out:
        assert bls.aggregate_verify(*args) is None
    else:
        _raises_exactly(_expected_error("aggregate_verify", path.stem), bls.aggregate_verify, *args)


@on_bls
@pytest.mark.parametrize("path", _cases("batch_verify"))
def test_vector_batch_verify(bls, path):
    inp, out = _load(path)
    items = list(zip(map(_hex, inp["pubkeys"]), map(_hex, inp["messages"]), map(_hex, inp["signatures"])))
    if out:
        assert bls.batch_verify(items) is None
        return
    err = _raises_exactly(_expected_error("batch_verify", path.stem), bls.batch_verify, items)
    # The batch names exactly the items that fail on their own.
    alone = []
    for i, item in enumerate(items):
        try:
            bls.verify(*item)
        except SignatureError:
            alone.append(i)
    assert err.bad_indices == alone and alone


@on_bls
@pytest.mark.parametrize("path", _cases("deserialization_G1"))
def test_vector_deserialization_g1(bls, path):
    inp, out = _load(path)
    raw = _hex(inp["pubkey"])
    if not out:
        _raises_exactly(_expected_error("deserialization_G1", path.stem), bls.decode_g1, raw)
        return
    assert bls.decode_g1(raw) == raw  # the encoding is canonical
    if "infinity" in path.stem:
        # Deserializes, but KeyValidate refuses the identity as a public key.
        err = _raises_exactly(KeyFormatError, bls.check_public_key, raw)
        assert err.details["reason"] == "identity"
    else:
        bls.check_public_key(raw)


@on_bls
@pytest.mark.parametrize("path", _cases("deserialization_G2"))
def test_vector_deserialization_g2(bls, path):
    inp, out = _load(path)
    raw = _hex(inp["signature"])
    if not out:
        _raises_exactly(_expected_error("deserialization_G2", path.stem), bls.decode_g2, raw)
        return
    assert bls.decode_g2(raw) == raw


# The hash_to_G2 vectors use the RFC 9380 test suite's tag (the JSON files do not repeat it).
_H2C_TEST_DST = b"QUUX-V01-CS02-with-BLS12381G2_XMD:SHA-256_SSWU_RO_"


_P = 0x1A0111EA397FE69A4B1BA7B6434BACD764774B84F38512BF6730D2A0F6B0F6241EABFFFEB153FFFFB9FEFFFFFFFFAAAB


def _compress_g2(x: tuple[int, int], y: tuple[int, int]) -> bytes:
    """ZCash compression of an affine G2 point given as (re, im) pairs: x_im || x_re with the
    compression flag, and the sign flag set when y is the lexicographically larger root."""
    y_re, y_im = y
    larger = y_im > (_P - 1) // 2 if y_im else y_re > (_P - 1) // 2
    raw = bytearray(x[1].to_bytes(48, "big") + x[0].to_bytes(48, "big"))
    raw[0] |= 0x80 | (0x20 if larger else 0)
    return bytes(raw)


@on_bls
@pytest.mark.parametrize("path", _cases("hash_to_G2"))
def test_vector_hash_to_g2(bls, path):
    inp, out = _load(path)
    coords = [tuple(int(c, 16) for c in out[k].split(",")) for k in ("x", "y")]  # (re, im)
    assert bls.hash_to_g2(inp["msg"].encode(), _H2C_TEST_DST) == _compress_g2(*coords)


# --------------------------------------------------------------------------------------------
# BLS: keys, proof of possession, aggregation edge cases
# --------------------------------------------------------------------------------------------


@on_bls
def test_bls_keygen_matches_eip2333_master_key(bls):
    """EIP-2333 test case 0: its derive_master_SK is the BLS draft's KeyGen on the seed."""
    seed = _hex(
        "c55257c360c07c72029aebc1b53c05ed0362ada38ead3e3e9efa3708e5349553"
        "1f09a6987599d18264c1e1c92f2cf141630c7a3c4ab7c81b2f001698e7463b04"
    )
    sk = bls.generate_key(seed)
    assert int.from_bytes(sk, "big") == 6083874454709270928345386274498605044986640685124978867557563392430687146096


@on_every_scheme
def test_generate_key(scheme):
    seed = bytes(range(32))
    a = scheme.generate_key(seed)
    assert a == scheme.generate_key(seed) and len(a) == 32
    assert scheme.generate_key(seed[::-1]) != a
    random_key = scheme.generate_key()
    assert len(random_key) == 32 and random_key != scheme.generate_key()
    assert len(scheme.public_key(random_key)) == scheme.public_key_size
    _raises_exactly(InputError, scheme.generate_key, bytes(31))
    _raises_exactly(InputError, scheme.generate_key, "a string seed of sufficient length....")


@on_k1
def test_secp256k1_keygen_rule_as_documented(k1):
    seed = b"poe test seed, thirty-two bytes!"
    expected = hmac.new(b"poe 2026-11 secp256k1 keygen v1", bytes(4) + seed, hashlib.sha256).digest()
    assert k1.generate_key(seed) == expected


@on_every_scheme
def test_secret_key_range(scheme):
    order = 0x73EDA753299D7D483339D80809A1D80553BDA402FFFE5BFEFFFFFFFF00000001 if scheme.aggregatable else N
    for bad in (bytes(32), order.to_bytes(32, "big"), (2**256 - 1).to_bytes(32, "big"), bytes(31) + b"\x01" + b"\x00"):
        _raises_exactly(KeyFormatError, scheme.public_key, bad)
    assert scheme.public_key((order - 1).to_bytes(32, "big"))


def _negated(point: bytes) -> bytes:
    """-P of a compressed finite point: the same x, the other y, so only the sign flag flips."""
    return bytes([point[0] ^ 0x20]) + point[1:]


@on_bls
def test_bls_round_trip_and_identity(bls, bls_keys):
    sk, pk = bls_keys[0]
    msg = b"\x11" * 32
    sig = bls.sign(sk, msg)
    assert len(pk) == 48 and len(sig) == 96
    bls.verify(pk, msg, sig)
    assert bls.identity(pk) == "0x" + pk.hex()
    err = _raises_exactly(SignatureError, bls.verify, bls_keys[1][1], msg, sig)
    assert err.expected == bls.identity(bls_keys[1][1]) and err.code == "attest.bad-signature"
    assert isinstance(err, VerificationError) and err.exit_code == 1
    # The negation of a valid signature is a valid point but not a signature.
    neg_sig = _negated(sig)
    _raises_exactly(SignatureError, bls.verify, pk, msg, neg_sig)


@on_bls
def test_bls_proof_of_possession(bls, bls_keys):
    (sk_a, pk_a), (_, pk_b) = bls_keys[0], bls_keys[1]
    proof = bls.pop_prove(sk_a)
    bls.pop_verify(pk_a, proof)
    _raises_exactly(SignatureError, bls.pop_verify, pk_b, proof)
    # A plain signature on the public key is not a proof: the POP tag separates the domains.
    _raises_exactly(SignatureError, bls.pop_verify, pk_a, bls.sign(sk_a, pk_a))


@on_bls
def test_bls_aggregate_of_cancelling_keys_is_refused(bls, bls_keys):
    """pk + (-pk) is the identity, and the identity signature would satisfy the pairing equation."""
    pk = bls_keys[0][1]
    minus_pk = _negated(pk)
    infinity_sig = b"\xc0" + bytes(95)
    err = _raises_exactly(SignatureError, bls.fast_aggregate_verify, [pk, minus_pk], b"m" * 32, infinity_sig)
    assert err.details["reason"] == "identity"


@on_bls
def test_bls_aggregation_round_trip(bls, bls_keys):
    msg = b"\x22" * 32
    sigs = [bls.sign(sk, msg) for sk, _ in bls_keys[:3]]
    agg = bls.aggregate(sigs)
    bls.fast_aggregate_verify([pk for _, pk in bls_keys[:3]], msg, agg)
    _raises_exactly(SignatureError, bls.fast_aggregate_verify, [pk for _, pk in bls_keys[:2]], msg, agg)
    _raises_exactly(InputError, bls.aggregate_verify, [bls_keys[0][1]], [msg, msg], agg)
    _raises_exactly(InputError, bls.aggregate, b"not a list")


# --------------------------------------------------------------------------------------------
# secp256k1
# --------------------------------------------------------------------------------------------


@on_k1
@pytest.mark.parametrize(
    "sk, address",
    [
        # private key 1 (the generator)
        ("0000000000000000000000000000000000000000000000000000000000000001", "0x7E5F4552091A69125d5DfCb7b8C2659029395Bdf"),
        # web3.js docs, web3.eth.accounts.privateKeyToAccount
        ("348ce564d427a3311b6536bbcff9390d69395b06ed6c486954e971d960fe8709", "0xb8CE9ab6943e0eCED004cDe8e3bBed6568B2Fa01"),
        # Hardhat / Anvil default account #0
        ("ac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80", "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266"),
    ],
)
def test_secp256k1_known_addresses(k1, sk, address):
    pk = k1.public_key(_hex(sk))
    assert k1.identity(pk) == address


@pytest.mark.parametrize(
    "address",
    [  # EIP-55's own examples: all caps, all lower, and mixed
        "0x52908400098527886E0F7030069857D2E4169EE7",
        "0x8617E340B3D01FA5F11F306F4090FD50E238070D",
        "0xde709f2102306220921060314715629080e2fb77",
        "0x27b1fdb04752bbc536007a920d24acb045561c26",
        "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed",
        "0xfB6916095ca1df60bB79Ce92cE3Ea74c37c5d359",
        "0xdbF03B407c01E7cD3CBea99509d93f8DDDC8C6FB",
        "0xD1220A0cf47c7B9Be7A2E6BA89F429762e7b9aDb",
    ],
)
def test_eip55_checksum(address):
    assert checksum_address(bytes.fromhex(address[2:])) == address


@settings(max_examples=500)
@given(raw=st.binary(min_size=20, max_size=20))
def test_eip55_checksum_matches_eth_utils_on_random_addresses(raw):
    # checksum_address works on all 40 characters as one integer; eth-utils goes character by character.
    from eth_utils import to_checksum_address

    assert checksum_address(raw) == to_checksum_address(raw)


@on_k1
def test_personal_sign_matches_web3js_example(k1):
    """docs.web3js.org, web3.eth.accounts.sign('Some data', '0x4c08...2318'): RFC 6979 nonces make
    the signature itself reproducible, byte for byte."""
    secret = int("4c0883a69102937d6231471b5dbb6204fe5129617082792ae468d01a3f362318", 16)
    digest = personal_sign_hash(b"Some data")
    assert digest.hex() == "1da44b586eb0729ff70a73c326926f6ed5a25f5b056e7f47fbc6e58d86871655"
    sig = k1.sign_hash(secret.to_bytes(32, "big"), digest)
    assert sig.hex() == (
        "b91467e570a6466aa9e9876cbcd013baba02900b8979d43fe208a4a4f339f5fd"
        "6007e74cd82e037b800186422fc2da167c747ef045e5d18a5f5d4300f8e1a029"
        "1c"
    )
    assert k1.recover_hash_public_key(digest, sig) == k1.public_key(secret.to_bytes(32, "big"))


@on_k1
def test_rfc6979_nonce_known_answer(k1):
    """The widely used secp256k1 RFC 6979 vector, key 1 and SHA-256("Satoshi Nakamoto"), whose
    nonce k is published: the backend's signature must be the one that nonce gives, r = x(kG)
    (computed by OpenSSL) and s = k^-1 (h + r) mod n, low-s."""
    ec = pytest.importorskip("cryptography.hazmat.primitives.asymmetric.ec")
    k = 0x8F8A276C19F4149656B280621E358CCE24F5F52542772691EE69063B74F15D15
    h = hashlib.sha256(b"Satoshi Nakamoto").digest()
    r = ec.derive_private_key(k, ec.SECP256K1()).public_key().public_numbers().x
    s = pow(k, -1, N) * (int.from_bytes(h, "big") + r) % N
    sig = k1.sign_hash((1).to_bytes(32, "big"), h)
    assert sig[:64] == r.to_bytes(32, "big") + min(s, N - s).to_bytes(32, "big")


@on_k1
def test_secp256k1_message_hash_is_eip191_of_the_digest(k1):
    digest = bytes(range(32))
    assert k1.message_hash(digest) == keccak256(b"\x19Ethereum Signed Message:\n32" + digest)


@on_k1
def test_secp256k1_round_trip(k1, k1_keys):
    for sk, pk in k1_keys:
        msg = os.urandom(32)
        sig = k1.sign(sk, msg)
        assert len(sig) == 65 and sig[64] in (27, 28)
        assert int.from_bytes(sig[32:64], "big") <= N // 2
        assert sig == k1.sign(sk, msg)  # deterministic
        k1.verify(pk, msg, sig)
        assert k1.recover(msg, sig) == k1.identity(pk)
        assert k1.recover_public_key(msg, sig) == pk


@on_k1
def test_secp256k1_tampering_rejected(k1, k1_keys):
    (sk, pk), (_, other_pk) = k1_keys[0], k1_keys[1]
    msg = b"\x42" * 32
    sig = k1.sign(sk, msg)
    err = _raises_exactly(SignatureError, k1.verify, pk, b"\x43" * 32, sig)
    assert err.expected == k1.identity(pk) and err.observed not in (None, err.expected)
    err = _raises_exactly(SignatureError, k1.verify, other_pk, msg, sig)
    assert err.observed == k1.identity(pk)
    flipped_v = sig[:64] + bytes([55 - sig[64]])
    _raises_exactly(SignatureError, k1.verify, pk, msg, flipped_v)
    for v in (0, 1, 26, 29, 255):
        err = _raises_exactly(SignatureError, k1.verify, pk, msg, sig[:64] + bytes([v]))
        assert err.details["reason"] == "recovery-id"
    for pos in (0, 31, 32, 63):
        tampered = bytearray(sig)
        tampered[pos] ^= 0x01
        _raises_exactly(SignatureError, k1.verify, pk, msg, bytes(tampered))
    zero_r = bytes(32) + sig[32:]
    zero_s = sig[:32] + bytes(32) + sig[64:]
    big_r = N.to_bytes(32, "big") + sig[32:]
    for bad in (zero_r, zero_s, big_r):
        assert _raises_exactly(SignatureError, k1.verify, pk, msg, bad).details["reason"] == "range"


@on_k1
def test_secp256k1_high_s_rejected(k1, k1_keys):
    """(r, n - s) with the other recovery id is the malleated twin: valid ECDSA, refused here."""
    sk, pk = k1_keys[0]
    msg = b"\x99" * 32
    sig = k1.sign(sk, msg)
    s = int.from_bytes(sig[32:64], "big")
    twin = sig[:32] + (N - s).to_bytes(32, "big") + bytes([55 - sig[64]])
    err = _raises_exactly(SignatureError, k1.verify, pk, msg, twin)
    assert err.details["reason"] == "high-s"
    ec = pytest.importorskip("cryptography.hazmat.primitives.asymmetric.ec")
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import utils

    key = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256K1(), pk)
    der = utils.encode_dss_signature(int.from_bytes(sig[:32], "big"), N - s)
    key.verify(der, k1.message_hash(msg), ec.ECDSA(utils.Prehashed(hashes.SHA256())))


@on_k1
def test_secp256k1_against_openssl(k1, k1_keys):
    """OpenSSL (via cryptography) verifies our signatures, and its RFC 6979 signatures have our r and,
    after low-s normalization, our s."""
    ec = pytest.importorskip("cryptography.hazmat.primitives.asymmetric.ec")
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import utils

    prehashed = ec.ECDSA(utils.Prehashed(hashes.SHA256()))
    try:
        deterministic = ec.ECDSA(utils.Prehashed(hashes.SHA256()), deterministic_signing=True)
    except TypeError:  # cryptography < 43
        deterministic = None
    rng = random.Random(6979)
    for sk, pk in k1_keys:
        msg = rng.randbytes(32)
        sig = k1.sign(sk, msg)
        h = k1.message_hash(msg)
        r, s = int.from_bytes(sig[:32], "big"), int.from_bytes(sig[32:64], "big")
        ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256K1(), pk).verify(
            utils.encode_dss_signature(r, s), h, prehashed
        )
        if deterministic is not None:
            private = ec.derive_private_key(int.from_bytes(sk, "big"), ec.SECP256K1())
            r2, s2 = utils.decode_dss_signature(private.sign(h, deterministic))
            assert (r2, min(s2, N - s2)) == (r, s)
    if deterministic is not None:
        # A hash that is not below n: RFC 6979 reduces it (bits2octets) before the HMAC.
        h = (N + 5).to_bytes(32, "big")
        ours = k1.sign_hash((7).to_bytes(32, "big"), h)
        r2, s2 = utils.decode_dss_signature(ec.derive_private_key(7, ec.SECP256K1()).sign(h, deterministic))
        assert (r2, min(s2, N - s2)) == (int.from_bytes(ours[:32], "big"), int.from_bytes(ours[32:64], "big"))


@on_k1
def test_secp256k1_message_must_be_a_digest(k1, k1_keys):
    sk, pk = k1_keys[0]
    for bad in (b"", b"x" * 31, b"x" * 33):
        _raises_exactly(InputError, k1.sign, sk, bad)
        _raises_exactly(InputError, k1.verify, pk, bad, bytes(65))


# --------------------------------------------------------------------------------------------
# Batches
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def bls_keys():
    keys = [BLS.generate_key(bytes([i]) * 32) for i in range(4)]
    return [(sk, BLS.public_key(sk)) for sk in keys]


@pytest.fixture(scope="module")
def k1_keys():
    keys = [SECP256K1.generate_key(bytes([i]) * 32) for i in range(8)]
    return [(sk, SECP256K1.public_key(sk)) for sk in keys]


@pytest.fixture(scope="module")
def batches(bls_keys, k1_keys):
    """Eight valid (pk, message, sig) items per scheme, distinct messages, keys reused."""
    out = {}
    for scheme, keys in ((BLS, bls_keys), (SECP256K1, k1_keys)):
        items = []
        for i in range(8):
            sk, pk = keys[i % len(keys)]
            msg = hashlib.sha256(b"statement %d" % i).digest()
            items.append((pk, msg, scheme.sign(sk, msg)))
        out[scheme.name] = items
    return out


@on_every_scheme
def test_batch_all_valid(batches, scheme):
    name = scheme.name
    assert scheme.batch_verify(batches[name]) is None
    assert scheme.batch_verify([]) is None


@on_every_scheme
def test_batch_names_one_bad_item(batches, scheme):
    name = scheme.name
    items = list(batches[name])
    items[5] = (items[5][0], items[5][1], items[4][2])  # a well-formed signature on another message
    err = _raises_exactly(BatchVerificationError, scheme.batch_verify, items)
    assert err.bad_indices == [5]
    assert err.code == "attest.batch-failed" and isinstance(err, SignatureError)
    assert err.to_json()["failures"][0]["index"] == 5
    assert (err.expected, err.observed) == (8, 7)


@on_every_scheme
def test_batch_names_two_bad_items(batches, scheme):
    name = scheme.name
    items = list(batches[name])
    items[1] = (items[1][0], b"\x00" * 32, items[1][2])  # wrong message
    sig6 = bytearray(items[6][2])
    sig6[10] ^= 0x40
    items[6] = (items[6][0], items[6][1], bytes(sig6))  # corrupted bytes
    err = _raises_exactly(BatchVerificationError, scheme.batch_verify, items)
    assert err.bad_indices == [1, 6]


@on_every_scheme
def test_batch_names_malformed_items(batches, scheme):
    name = scheme.name
    items = list(batches[name])
    items[0] = (b"\x00" * 3, items[0][1], items[0][2])
    items[7] = (items[7][0], items[7][1], b"")
    err = _raises_exactly(BatchVerificationError, scheme.batch_verify, items)
    assert err.bad_indices == [0, 7]
    codes = {f["index"]: f["code"] for f in err.details["failures"]}
    assert codes == {0: "attest.bad-key", 7: "attest.bad-signature"}
    _raises_exactly(InputError, scheme.batch_verify, [items[1][:2]])


@on_bls
def test_bls_batch_cancellation_attempt_rejected(bls, batches):
    """sig_2 + T and sig_3 - T sum to a valid aggregate, so an unweighted sum check accepts them;
    independent random weights do not."""
    items = list(batches[bls.name])
    g2 = bls.backend
    offset = bls.hash_to_g2(b"offset")
    s2, s3 = g2.g2_decode(items[2][2]), g2.g2_decode(items[3][2])
    forged2 = g2.g2_encode(g2.g2_sum([s2, g2.g2_decode(offset)]))
    forged3 = g2.g2_encode(g2.g2_sum([s3, g2.g2_decode(_negated(offset))]))
    # Each forgery alone is invalid; their plain sum is the valid aggregate.
    for i, forged in ((2, forged2), (3, forged3)):
        _raises_exactly(SignatureError, bls.verify, items[i][0], items[i][1], forged)
    bls.aggregate_verify([items[2][0], items[3][0]], [items[2][1], items[3][1]], bls.aggregate([forged2, forged3]))
    items[2] = (items[2][0], items[2][1], forged2)
    items[3] = (items[3][0], items[3][1], forged3)
    err = _raises_exactly(BatchVerificationError, bls.batch_verify, items)
    assert err.bad_indices == [2, 3]


@on_bls
def test_bls_batch_groups_shared_messages(bls, bls_keys):
    msg = b"\x33" * 32
    items = [(pk, msg, bls.sign(sk, msg)) for sk, pk in bls_keys]
    bls.batch_verify(items)
    items[1] = (items[1][0], msg, items[2][2])
    assert _raises_exactly(BatchVerificationError, bls.batch_verify, items).bad_indices == [1]


# --------------------------------------------------------------------------------------------
# Garbage never escapes as a raw exception
# --------------------------------------------------------------------------------------------


@on_every_scheme
def test_every_wrong_length_is_a_typed_error(batches, scheme):
    name = scheme.name
    pk, msg, sig = batches[name][0]
    rng = random.Random(len(name))
    for n in range(0, 131):
        blob = rng.randbytes(n)
        if n != scheme.public_key_size:
            _raises_exactly(KeyFormatError, scheme.verify, blob, msg, sig)
            _raises_exactly(KeyFormatError, scheme.identity, blob)
        if n != scheme.signature_size:
            _raises_exactly(SignatureError, scheme.verify, pk, msg, blob)
        if n != scheme.secret_key_size:
            _raises_exactly(KeyFormatError, scheme.sign, blob, msg)
    for not_bytes in (None, "00" * 48, 7, [1, 2]):
        _raises_exactly(InputError, scheme.verify, not_bytes, msg, sig)
        _raises_exactly(InputError, scheme.verify, pk, msg, not_bytes)
        _raises_exactly(InputError, scheme.sign, not_bytes, msg)


def _garbage(size: int, top_bits: int | None = None):
    """Random bytes of one length; optionally with the top three bits fixed (BLS flags)."""
    def fix(b: bytes) -> bytes:
        if top_bits is None or not b:
            return b
        return bytes([(b[0] & 0x1F) | (top_bits << 5)]) + b[1:]

    return st.binary(min_size=size, max_size=size).map(fix)


@on_bls
@SLOW
@given(blob=st.one_of(_garbage(48), _garbage(48, 0b100), _garbage(48, 0b101)))
def test_bls_garbage_public_key(bls, blob):
    with pytest.raises(KeyFormatError):
        bls.verify(blob, b"m", b"\xc0" + bytes(95))


@on_bls
@SLOW
@given(blob=st.one_of(_garbage(96), _garbage(96, 0b100), _garbage(96, 0b101)))
def test_bls_garbage_signature(bls, blob, bls_keys):
    with pytest.raises(SignatureError):
        bls.verify(bls_keys[0][1], b"m", blob)


@on_k1
@settings(max_examples=100, deadline=None)
@given(pk=_garbage(33), sig=_garbage(65), sk=_garbage(32))
def test_secp256k1_garbage(k1, pk, sig, sk):
    try:
        k1.verify(pk, b"\x00" * 32, sig)
    except (KeyFormatError, SignatureError):
        pass
    else:  # pragma: no cover - would mean a forged signature
        raise AssertionError("random bytes verified")
    try:
        assert len(k1.public_key(sk)) == 33
    except KeyFormatError:
        pass


@on_bls
@settings(max_examples=15, deadline=None)
@given(sk=_garbage(32))
def test_bls_garbage_secret_key(bls, sk):
    try:
        assert len(bls.public_key(sk)) == 48
    except KeyFormatError:
        pass


# --------------------------------------------------------------------------------------------
# Registry
# --------------------------------------------------------------------------------------------


def test_get_scheme():
    assert get_scheme("bls12-381") is BLS and get_scheme("secp256k1") is SECP256K1
    assert set(SCHEMES) == {"bls12-381", "secp256k1"}
    assert all(isinstance(s, Scheme) for s in SCHEMES.values())
    for bad in ("BLS", "ed25519", "", None):
        _raises_exactly(InputError, get_scheme, bad)


# --------------------------------------------------------------------------------------------
# Keccak-256
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "data, digest",
    [
        (b"", "c5d2460186f7233c927e7db2dcc703c0e500b653ca82273b7bfad8045d85a470"),
        (b"abc", "4e03657aea45a94fc7d47ba826c8d667c0d1e6e33a64a036ec44f58fa12d6c45"),
        (b"The quick brown fox jumps over the lazy dog", "4d741b6f1eb29cb2a9b9911c82f56fa8d73b04959d3d9d222895df6c0b28aa15"),
    ],
)
def test_keccak256_known_answers(data, digest):
    assert keccak256(data).hex() == digest
    assert keccak256(data) != hashlib.sha3_256(data).digest()  # not FIPS 202 SHA3-256


def test_keccak256_against_pycryptodome():
    keccak = pytest.importorskip("Crypto.Hash.keccak", reason="pycryptodome is not installed")
    rng = random.Random(256)
    for size in list(range(0, 300, 7)) + [1000, 4096]:
        data = rng.randbytes(size)
        assert keccak256(data) == keccak.new(digest_bits=256, data=data).digest()

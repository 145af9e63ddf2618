"""Signature schemes for attestations: BLS12-381 and secp256k1 ECDSA, behind one interface.

Both schemes are built on py-ecc (pure Python, *not* constant time: keep signing keys on hosts where
timing is not observable by others). Keys and signatures are plain bytes; every failure raises a
typed poe error, never returns False:

* :class:`~poe.errors.KeyFormatError` (``attest.bad-key``): a secret or public key that is not a
  valid key of the scheme: wrong length, bad encoding, out of range, not in the prime-order
  subgroup, or the identity point.
* :class:`~poe.errors.SignatureError` (``attest.bad-signature``): a signature that does not verify,
  *including* bytes that do not decode as a signature at all (wrong length, bad flags, a point off
  the curve or outside the subgroup, a high-s or out-of-range ECDSA value, a bad recovery id). A
  provider that hands over garbage has handed over an invalid signature; ``details["reason"]`` says
  which check failed.
* :class:`~poe.errors.BatchVerificationError` (``attest.batch-failed``): a batch with invalid items;
  ``bad_indices`` names every one of them, ``details["failures"]`` gives each one's code and reason.
* :class:`~poe.errors.InputError`: misuse that is nobody's signature: a non-bytes argument, an
  empty key list, key and message lists of different lengths, an unknown scheme name, a seed shorter
  than 32 bytes, a secp256k1 message that is not a 32-byte digest.

BLS12-381 (``"bls12-381"``)
    The IETF BLS signature draft (draft-irtf-cfrg-bls-signature-05, as py-ecc implements it),
    minimal-pubkey-size variant, proof-of-possession ciphersuite
    ``BLS_SIG_BLS12381G2_XMD:SHA-256_SSWU_RO_POP_`` as Ethereum uses it: secret keys are 32-byte
    big-endian scalars in [1, r), public keys 48-byte compressed G1 points, signatures 96-byte
    compressed G2 points (ZCash serialization). Public keys must pass
    KeyValidate (on the curve, in the subgroup, not the identity); signatures must decode and be in
    the subgroup. Aggregation is safe against rogue keys only for keys whose proof of possession
    (:meth:`BLSScheme.pop_prove` / :meth:`BLSScheme.pop_verify`) was checked once at registration.
    ``identity(pk)`` is ``"0x"`` followed by the public key's 96 lowercase hex digits.

secp256k1 (``"secp256k1"``)
    ECDSA over secp256k1, built to be checked on chain by ``ecrecover``. The message poe passes is a
    32-byte statement digest ``d``; the hash actually signed is the EIP-191 ``personal_sign`` hash::

        h = keccak256(b"\\x19Ethereum Signed Message:\\n32" || d)

    (Keccak-256 with the original 0x01 padding, not FIPS 202 SHA3-256), so a Solidity contract
    checks an attestation with ``ecrecover(h, v, r, s)`` where it computes ``h`` from ``d`` exactly
    as above (OpenZeppelin's ``MessageHashUtils.toEthSignedMessageHash(bytes32)``). Signatures are
    65 bytes ``r || s || v``: r and s 32-byte big-endian, s in the lower half of the group order
    (EIP-2 low-s; a high-s signature is rejected as malleable), v = 27 + parity of R's y
    coordinate. Nonces are deterministic per RFC 6979 (HMAC-SHA-256 over the secret key and ``h``);
    a candidate nonce is skipped, and the RFC's generator continued, if it gives r = 0, s = 0, or an
    R whose x coordinate is not below the group order (v cannot express that case). Public keys are
    33-byte compressed SEC1 points. ``identity(pk)`` is the EIP-55 checksummed Ethereum address:
    the last 20 bytes of keccak256 of the uncompressed point's 64 coordinate bytes.

Deterministic keys: ``generate_key(seed)`` takes a seed of at least 32 bytes. BLS runs the draft's
KeyGen(IKM=seed, key_info=""). secp256k1 takes the first counter c = 0, 1, 2, ... for which
``HMAC-SHA-256(key=b"poe 2026-11 secp256k1 keygen v1", msg=u32be(c) || seed)``, read as a big-endian
integer, lies in [1, n) (rejection sampling: uniform, and c = 0 succeeds except with probability
~2^-128). Without a seed both draw 32 bytes from :mod:`secrets` and proceed the same way.

Batch verification is sound for both schemes. secp256k1 has no cheap batch check, so it verifies
every item. BLS checks one random linear combination (a fresh 64-bit nonzero scalar per item from
:mod:`secrets`): ``e(sum r_i sig_i, -g1) * prod_m e(H(m), sum_{i: m_i = m} r_i pk_i) == 1``, one
Miller loop per distinct message plus one, and a single final exponentiation. Every point has been
checked to lie in its prime-order subgroup, so a batch with an invalid item passes with probability
at most 1/(2^64 - 1), whatever the other items are (two signatures that cancel in a plain sum do not
cancel under independent random weights). When the combination fails, bisection with fresh
scalars names the invalid items.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from abc import ABC, abstractmethod
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import sys as _sys

_RECURSION_LIMIT = _sys.getrecursionlimit()
from py_ecc.bls import G2ProofOfPossession as _PoP  # noqa: E402

# py_ecc raises the interpreter's recursion limit to 100000 on import; nothing poe calls needs
# that, and with it a deeply nested JSON document overflows the C stack instead of raising.
_sys.setrecursionlimit(_RECURSION_LIMIT)
from py_ecc.bls.g2_primitives import G2_to_signature, pubkey_to_G1, signature_to_G2, subgroup_check
from py_ecc.bls.hash_to_curve import hash_to_G2
from py_ecc.optimized_bls12_381 import (
    FQ12,
    G1,
    Z1,
    Z2,
    add,
    curve_order,
    double,
    final_exponentiate,
    is_inf,
    neg,
    pairing,
)
from py_ecc.secp256k1 import secp256k1 as _k1

from poe.crypto.keccak import keccak256
from poe.errors import BatchVerificationError, InputError, InternalError, KeyFormatError, PoEError, SignatureError

__all__ = [
    "Scheme",
    "BLSScheme",
    "Secp256k1Scheme",
    "BLS",
    "SECP256K1",
    "SCHEMES",
    "get_scheme",
    "checksum_address",
]

# Exceptions py-ecc raises for malformed points (its decoders raise ValueError; some paths assert).
_ECC_ERRORS = (ValueError, AssertionError, ArithmeticError, TypeError, IndexError)


def _as_bytes(value: object, what: str) -> bytes:
    if isinstance(value, bytes):
        return value
    if isinstance(value, (bytearray, memoryview)):
        return bytes(value)
    raise InputError(f"{what} must be bytes, not {type(value).__name__}")


def _seed_bytes(seed: object) -> bytes:
    if seed is None:
        return secrets.token_bytes(32)
    raw = _as_bytes(seed, "key seed")
    if len(raw) < 32:
        raise InputError(f"a key seed must have at least 32 bytes of entropy, got {len(raw)} bytes")
    return raw


def _items(items: Iterable[Any]) -> list[tuple[object, object, object]]:
    out = []
    for i, item in enumerate(items):
        if not isinstance(item, (tuple, list)) or len(item) != 3:
            raise InputError(f"batch item {i} is not a (public key, message, signature) triple")
        out.append((item[0], item[1], item[2]))
    return out


def _failure(exc: PoEError) -> tuple[str, str]:
    return exc.code, exc.message


def _raise_batch(n: int, failures: dict[int, tuple[str, str]]) -> None:
    if not failures:
        return
    bad = sorted(failures)
    shown = ", ".join(str(i) for i in bad[:16]) + (", ..." if len(bad) > 16 else "")
    raise BatchVerificationError(
        f"{len(bad)} of {n} signatures in the batch do not verify (indices {shown})",
        bad_indices=bad,
        expected=n,
        observed=n - len(bad),
        failures=[{"index": i, "code": failures[i][0], "reason": failures[i][1]} for i in bad],
    )


def _secret_scalar(sk: object, scheme: str, order: int, symbol: str) -> int:
    """A 32-byte big-endian secret key as a scalar in [1, order)."""
    raw = _as_bytes(sk, f"{scheme} secret key")
    if len(raw) != 32:
        raise KeyFormatError(f"a {scheme} secret key has 32 bytes, got {len(raw)}", reason="length")
    value = int.from_bytes(raw, "big")
    if not 0 < value < order:
        raise KeyFormatError(f"a {scheme} secret key must lie in [1, {symbol})", reason="range")
    return value


class Scheme(ABC):
    """A signature scheme poe can attest with. Instances: :data:`BLS`, :data:`SECP256K1`."""

    name: str
    secret_key_size: int
    public_key_size: int
    signature_size: int
    # Capabilities, so callers ask what a scheme can do instead of comparing names.
    aggregatable: bool = False  # signatures aggregate; keys then need a proof of possession (pop_prove/pop_verify)
    batchable: bool = False  # batch_verify is cheaper than verifying each item

    @abstractmethod
    def generate_key(self, seed: bytes | None = None) -> bytes:
        """A secret key: random, or derived from ``seed`` (at least 32 bytes) deterministically."""

    @abstractmethod
    def public_key(self, sk: bytes) -> bytes:
        """The encoded public key of secret key ``sk``."""

    @abstractmethod
    def sign(self, sk: bytes, message: bytes) -> bytes:
        """Sign ``message`` (for poe: a 32-byte statement digest)."""

    @abstractmethod
    def verify(self, pk: bytes, message: bytes, sig: bytes) -> None:
        """Return if ``sig`` is ``pk``'s signature on ``message``; raise SignatureError otherwise."""

    @abstractmethod
    def identity(self, pk: bytes) -> str:
        """A short printable identity of public key ``pk``."""

    @abstractmethod
    def check_public_key(self, pk: bytes) -> None:
        """Raise KeyFormatError unless ``pk`` is a valid public key of this scheme."""

    @abstractmethod
    def batch_verify(self, items: Iterable[tuple[bytes, bytes, bytes]]) -> None:
        """Verify (pk, message, sig) triples; raise BatchVerificationError naming every bad one.

        Malformed keys and signatures make their item bad (they do not abort the batch); an item
        that is not a triple raises InputError. An empty batch verifies."""

    def __repr__(self) -> str:
        return f"<poe signature scheme {self.name}>"


# --------------------------------------------------------------------------------------------
# BLS12-381
# --------------------------------------------------------------------------------------------

_BLS_DST = _PoP.DST  # b"BLS_SIG_BLS12381G2_XMD:SHA-256_SSWU_RO_POP_"
_BLS_POP_DST = _PoP.POP_TAG  # b"BLS_POP_BLS12381G2_XMD:SHA-256_SSWU_RO_POP_"
_NEG_G1 = neg(G1)
_BATCH_SCALAR_BITS = 64

# G1/G2 points are py-ecc's projective triples; typed loosely to stay independent of its typing.
_Point = Any


def _hash_to_g2(message: bytes, dst: bytes = _BLS_DST) -> _Point:
    """hash_to_curve BLS12381G2_XMD:SHA-256_SSWU_RO_ with domain separation tag ``dst``."""
    return hash_to_G2(message, dst, hashlib.sha256)


def _g1_from_bytes(data: object) -> _Point:
    """Decode a compressed G1 point and check it is in the subgroup (the identity is accepted)."""
    raw = _as_bytes(data, "BLS public key")
    if len(raw) != 48:
        raise KeyFormatError(f"a BLS public key has 48 bytes, got {len(raw)}", reason="length")
    try:
        point = pubkey_to_G1(raw)
    except _ECC_ERRORS as exc:
        raise KeyFormatError(f"not a compressed G1 point: {exc}", reason="encoding") from None
    if not is_inf(point) and not subgroup_check(point):
        raise KeyFormatError("the public key is on the curve but not in the G1 subgroup", reason="subgroup")
    return point


@lru_cache(maxsize=4096)
def _public_key_point(raw: bytes) -> _Point:
    """KeyValidate: a G1 point in the subgroup that is not the identity. Cached: keys recur."""
    point = _g1_from_bytes(raw)
    if is_inf(point):
        raise KeyFormatError("the BLS public key is the point at infinity", reason="identity")
    return point


def _g2_from_bytes(data: object) -> _Point:
    """Decode a compressed G2 signature point and check it is in the subgroup (identity accepted)."""
    raw = _as_bytes(data, "BLS signature")
    if len(raw) != 96:
        raise SignatureError(f"a BLS signature has 96 bytes, got {len(raw)}", reason="length")
    try:
        point = signature_to_G2(raw)
    except _ECC_ERRORS as exc:
        raise SignatureError(f"not a compressed G2 point: {exc}", reason="encoding") from None
    if not is_inf(point) and not subgroup_check(point):
        raise SignatureError("the signature is on the curve but not in the G2 subgroup", reason="subgroup")
    return point


def _pairing_product_is_one(pairs: Sequence[tuple[_Point, _Point]]) -> bool:
    """prod e(Q_i, P_i) == 1 for (G2, G1) pairs: one Miller loop each, one final exponentiation."""
    acc = FQ12.one()
    for q, p in pairs:
        acc = acc * pairing(q, p, final_exponentiate=False)
    return final_exponentiate(acc) == FQ12.one()


def _multi_multiply(points: Sequence[_Point], scalars: Sequence[int], zero: _Point) -> _Point:
    """sum s_i * P_i with one shared doubling chain (Straus): for 64-bit scalars this costs 64
    doublings plus about 32 additions per point, instead of 64 doublings and 32 additions each."""
    top = max((s.bit_length() for s in scalars), default=0)
    acc = None
    for bit in range(top - 1, -1, -1):
        if acc is not None:
            acc = double(acc)
        for point, scalar in zip(points, scalars):
            if (scalar >> bit) & 1:
                acc = point if acc is None else add(acc, point)
    return zero if acc is None else acc


@dataclass(frozen=True)
class _BlsItem:
    index: int
    pk: _Point
    message: bytes
    sig: _Point


class BLSScheme(Scheme):
    """BLS12-381, proof-of-possession ciphersuite (see the module docstring)."""

    name = "bls12-381"
    aggregatable = True
    batchable = True
    secret_key_size = 32
    public_key_size = 48
    signature_size = 96

    # -- keys -----------------------------------------------------------------------------------

    @staticmethod
    def _secret_scalar(sk: object) -> int:
        return _secret_scalar(sk, "BLS", curve_order, "r")

    def generate_key(self, seed: bytes | None = None) -> bytes:
        return _PoP.KeyGen(_seed_bytes(seed)).to_bytes(32, "big")

    def public_key(self, sk: bytes) -> bytes:
        return bytes(_PoP.SkToPk(self._secret_scalar(sk)))

    def check_public_key(self, pk: bytes) -> None:
        _public_key_point(_as_bytes(pk, "BLS public key"))

    def identity(self, pk: bytes) -> str:
        raw = _as_bytes(pk, "BLS public key")
        _public_key_point(raw)
        return "0x" + raw.hex()

    # -- single signatures ------------------------------------------------------------------------

    def sign(self, sk: bytes, message: bytes) -> bytes:
        scalar = self._secret_scalar(sk)
        return bytes(_PoP.Sign(scalar, _as_bytes(message, "message")))

    def verify(self, pk: bytes, message: bytes, sig: bytes) -> None:
        raw_pk = _as_bytes(pk, "BLS public key")
        point = _public_key_point(raw_pk)
        msg = _as_bytes(message, "message")
        signature = _g2_from_bytes(sig)
        if not _pairing_product_is_one([(signature, _NEG_G1), (_hash_to_g2(msg), point)]):
            raise SignatureError(
                "the BLS signature does not verify under this public key and message",
                expected="0x" + raw_pk.hex(),
                observed=None,
                reason="pairing",
            )

    # -- aggregation --------------------------------------------------------------------------------

    @staticmethod
    def _public_key_points(pks: object) -> list[_Point]:
        if isinstance(pks, (bytes, bytearray, memoryview)) or not isinstance(pks, Iterable):
            raise InputError("public keys must be given as a list of byte strings")
        points = []
        for i, pk in enumerate(pks):
            try:
                points.append(_public_key_point(_as_bytes(pk, "BLS public key")))
            except KeyFormatError as exc:
                raise KeyFormatError(f"public key {i}: {exc.message}", index=i, **exc.details) from None
        if not points:
            raise InputError("at least one public key is needed")
        return points

    def aggregate(self, sigs: Sequence[bytes]) -> bytes:
        """Sum of signatures (each must decode and be in the subgroup)."""
        if isinstance(sigs, (bytes, bytearray, memoryview)) or not isinstance(sigs, Iterable):
            raise InputError("signatures must be given as a list of byte strings")
        total = Z2
        count = 0
        for i, sig in enumerate(sigs):
            try:
                point = _g2_from_bytes(sig)
            except SignatureError as exc:
                raise SignatureError(f"signature {i}: {exc.message}", index=i, **exc.details) from None
            total = add(total, point)
            count += 1
        if not count:
            raise InputError("at least one signature is needed to aggregate")
        return bytes(G2_to_signature(total))

    def fast_aggregate_verify(self, pks: Sequence[bytes], message: bytes, sig: bytes) -> None:
        """Verify an aggregate signature of many keys on one message (keys must have proven
        possession)."""
        points = self._public_key_points(pks)
        msg = _as_bytes(message, "message")
        signature = _g2_from_bytes(sig)
        total = Z1
        for point in points:
            total = add(total, point)
        if is_inf(total):
            raise SignatureError("the aggregate public key is the point at infinity", reason="identity")
        if not _pairing_product_is_one([(signature, _NEG_G1), (_hash_to_g2(msg), total)]):
            raise SignatureError(
                f"the aggregate BLS signature does not verify for these {len(points)} keys and message",
                expected=len(points),
                observed=None,
                reason="pairing",
            )

    def aggregate_verify(self, pks: Sequence[bytes], messages: Sequence[bytes], sig: bytes) -> None:
        """Verify an aggregate signature over (key_i, message_i) pairs."""
        points = self._public_key_points(pks)
        if isinstance(messages, (bytes, bytearray, memoryview)) or not isinstance(messages, Iterable):
            raise InputError("messages must be given as a list of byte strings")
        msgs = [_as_bytes(m, f"message {i}") for i, m in enumerate(messages)]
        if len(msgs) != len(points):
            raise InputError(f"{len(points)} public keys but {len(msgs)} messages")
        signature = _g2_from_bytes(sig)
        pairs = [(signature, _NEG_G1)]
        pairs.extend((_hash_to_g2(m), p) for m, p in zip(msgs, points))
        if not _pairing_product_is_one(pairs):
            raise SignatureError(
                f"the aggregate BLS signature does not verify for these {len(points)} (key, message) pairs",
                expected=len(points),
                observed=None,
                reason="pairing",
            )

    # -- proof of possession ----------------------------------------------------------------------

    def pop_prove(self, sk: bytes) -> bytes:
        """A proof that the holder of ``pk`` knows its secret key (a signature on ``pk`` under the
        POP tag). Check it once per key before trusting the key in an aggregate."""
        return bytes(_PoP.PopProve(self._secret_scalar(sk)))

    def pop_verify(self, pk: bytes, proof: bytes) -> None:
        raw_pk = _as_bytes(pk, "BLS public key")
        point = _public_key_point(raw_pk)
        signature = _g2_from_bytes(proof)
        if not _pairing_product_is_one([(signature, _NEG_G1), (_hash_to_g2(raw_pk, _BLS_POP_DST), point)]):
            raise SignatureError(
                "the proof of possession does not verify for this public key",
                expected="0x" + raw_pk.hex(),
                observed=None,
                reason="pop",
            )

    # -- batches ----------------------------------------------------------------------------------

    def batch_verify(self, items: Iterable[tuple[bytes, bytes, bytes]]) -> None:
        triples = _items(items)
        failures: dict[int, tuple[str, str]] = {}
        good: list[_BlsItem] = []
        for i, (pk, message, sig) in enumerate(triples):
            try:
                point = _public_key_point(_as_bytes(pk, "BLS public key"))
                msg = _as_bytes(message, "message")
                signature = _g2_from_bytes(sig)
            except PoEError as exc:
                failures[i] = _failure(exc)
                continue
            good.append(_BlsItem(i, point, msg, signature))
        hashes: dict[bytes, _Point] = {}
        for item in good:
            if item.message not in hashes:
                hashes[item.message] = _hash_to_g2(item.message)
        if good and not self._combination_holds(good, hashes):
            bad = self._bisect(good, hashes, known_failing=True)
            if not bad:
                # Only if a sub-batch passed by the 2^-64 chance: fall back to checking each.
                bad = [item.index for item in good if not self._combination_holds([item], hashes)]
            if not bad:
                raise InternalError("a BLS batch failed but no item fails on its own")
            for i in bad:
                failures[i] = (SignatureError.code, "the BLS signature does not verify under its key and message")
        _raise_batch(len(triples), failures)

    @staticmethod
    def _combination_holds(items: Sequence[_BlsItem], hashes: dict[bytes, Any]) -> bool:
        if len(items) == 1:
            item = items[0]
            return _pairing_product_is_one([(item.sig, _NEG_G1), (hashes[item.message], item.pk)])
        scalars = [secrets.randbelow((1 << _BATCH_SCALAR_BITS) - 1) + 1 for _ in items]
        groups: dict[bytes, tuple[list[_Point], list[int]]] = {}
        for item, r in zip(items, scalars):
            pts, rs = groups.setdefault(item.message, ([], []))
            pts.append(item.pk)
            rs.append(r)
        pairs = [(hashes[msg], _multi_multiply(pts, rs, Z1)) for msg, (pts, rs) in groups.items()]
        pairs.append((_multi_multiply([item.sig for item in items], scalars, Z2), _NEG_G1))
        return _pairing_product_is_one(pairs)

    def _bisect(self, items: Sequence[_BlsItem], hashes: dict[bytes, Any], known_failing: bool) -> list[int]:
        """Indices of the invalid items. ``known_failing``: a check of exactly these items already
        failed (a failure is never a false alarm, so it need not be repeated); singletons are
        always checked directly, without randomness."""
        if len(items) == 1:
            return [] if self._combination_holds(items, hashes) else [items[0].index]
        if not known_failing and self._combination_holds(items, hashes):
            return []
        mid = len(items) // 2
        left = self._bisect(items[:mid], hashes, known_failing=False)
        # The whole failed; if the left half is clean the right half must fail: skip that check.
        right = self._bisect(items[mid:], hashes, known_failing=not left)
        return left + right


# --------------------------------------------------------------------------------------------
# secp256k1
# --------------------------------------------------------------------------------------------

_P = _k1.P
_N = _k1.N
_HALF_N = _N // 2
_G = _k1.G
_KEYGEN_KEY = b"poe 2026-11 secp256k1 keygen v1"
_EIP191_PREFIX = b"\x19Ethereum Signed Message:\n"


def checksum_address(address: bytes) -> str:
    """EIP-55 mixed-case hex of a 20-byte address: a hex letter is upper case where the matching
    nibble of keccak256(lower-case hex) is 8 or more."""
    raw = _as_bytes(address, "address")
    if len(raw) != 20:
        raise InputError(f"an Ethereum address has 20 bytes, got {len(raw)}")
    lower = raw.hex()
    digest = keccak256(lower.encode("ascii")).hex()
    return "0x" + "".join(c.upper() if c.isalpha() and int(h, 16) >= 8 else c for c, h in zip(lower, digest))


def _personal_sign_hash(data: bytes) -> bytes:
    """EIP-191 version 0x45: keccak256("\\x19Ethereum Signed Message:\\n" || decimal len || data)."""
    return keccak256(_EIP191_PREFIX + str(len(data)).encode("ascii") + data)


def _point_address(point: tuple[int, int]) -> str:
    x, y = point
    return checksum_address(keccak256(x.to_bytes(32, "big") + y.to_bytes(32, "big"))[12:])


def _compress(point: tuple[int, int]) -> bytes:
    x, y = point
    return bytes([2 | (y & 1)]) + x.to_bytes(32, "big")


def _decompress(data: object) -> tuple[int, int]:
    raw = _as_bytes(data, "secp256k1 public key")
    if len(raw) != 33:
        raise KeyFormatError(f"a secp256k1 public key has 33 bytes (compressed SEC1), got {len(raw)}", reason="length")
    if raw[0] not in (2, 3):
        raise KeyFormatError(f"a compressed SEC1 point starts with 0x02 or 0x03, not 0x{raw[0]:02x}", reason="encoding")
    x = int.from_bytes(raw[1:], "big")
    if x >= _P:
        raise KeyFormatError("the x coordinate is not below the field modulus", reason="encoding")
    y = _lift_x(x, raw[0] & 1)
    if y is None:
        raise KeyFormatError("no curve point has this x coordinate", reason="curve")
    return x, y


def _lift_x(x: int, parity: int) -> int | None:
    alpha = (pow(x, 3, _P) + 7) % _P
    y = pow(alpha, (_P + 1) // 4, _P)  # p = 3 mod 4
    if y * y % _P != alpha:
        return None
    return y if y & 1 == parity else _P - y


def _rfc6979_nonces(secret: int, digest: bytes) -> Iterable[int]:
    """RFC 6979 §3.2 candidate nonces for HMAC-SHA-256 and qlen = hlen = 256."""
    x = secret.to_bytes(32, "big")
    h = (int.from_bytes(digest, "big") % _N).to_bytes(32, "big")  # bits2octets
    v = b"\x01" * 32
    k = b"\x00" * 32
    k = hmac.new(k, v + b"\x00" + x + h, hashlib.sha256).digest()
    v = hmac.new(k, v, hashlib.sha256).digest()
    k = hmac.new(k, v + b"\x01" + x + h, hashlib.sha256).digest()
    v = hmac.new(k, v, hashlib.sha256).digest()
    while True:
        v = hmac.new(k, v, hashlib.sha256).digest()
        candidate = int.from_bytes(v, "big")
        if 0 < candidate < _N:
            yield candidate
        k = hmac.new(k, v + b"\x00", hashlib.sha256).digest()
        v = hmac.new(k, v, hashlib.sha256).digest()


def _ecdsa_sign(secret: int, digest: bytes) -> bytes:
    z = int.from_bytes(digest, "big") % _N
    for k in _rfc6979_nonces(secret, digest):
        rx, ry = _k1.multiply(_G, k)
        if rx >= _N:  # r = rx mod n would lose the information v must carry
            continue
        r = rx
        if r == 0:
            continue
        s = pow(k, -1, _N) * (z + r * secret) % _N
        if s == 0:
            continue
        parity = ry & 1
        if s > _HALF_N:
            s = _N - s
            parity ^= 1
        return r.to_bytes(32, "big") + s.to_bytes(32, "big") + bytes([27 + parity])
    raise InternalError("RFC 6979 nonce generator ended")  # pragma: no cover - it never ends


def _ecdsa_recover(digest: bytes, sig: object) -> tuple[int, int]:
    """The public key point that signed ``digest`` with ``sig`` (r || s || v), or SignatureError."""
    raw = _as_bytes(sig, "secp256k1 signature")
    if len(raw) != 65:
        raise SignatureError(f"a secp256k1 signature has 65 bytes (r || s || v), got {len(raw)}", reason="length")
    r = int.from_bytes(raw[:32], "big")
    s = int.from_bytes(raw[32:64], "big")
    v = raw[64]
    if v not in (27, 28):
        raise SignatureError(f"the recovery id v must be 27 or 28, got {v}", reason="recovery-id")
    if not 0 < r < _N:
        raise SignatureError("r is not in [1, n)", reason="range")
    if not 0 < s < _N:
        raise SignatureError("s is not in [1, n)", reason="range")
    if s > _HALF_N:
        raise SignatureError("s is in the upper half of the group order (malleable high-s form)", reason="high-s")
    ry = _lift_x(r, v - 27)
    if ry is None:
        raise SignatureError("r is not the x coordinate of a curve point", reason="curve")
    z = int.from_bytes(digest, "big") % _N
    r_inv = pow(r, -1, _N)
    u1 = (-z * r_inv) % _N
    u2 = (s * r_inv) % _N
    q = _k1.jacobian_add(
        _k1.jacobian_multiply(_k1.to_jacobian(_G), u1),
        _k1.jacobian_multiply(_k1.to_jacobian((r, ry)), u2),
    )
    if q[1] % _P == 0 or q[2] % _P == 0:  # py-ecc's point at infinity has y = 0
        raise SignatureError("the signature recovers to the point at infinity", reason="infinity")
    return _k1.from_jacobian(q)


class Secp256k1Scheme(Scheme):
    """ECDSA over secp256k1 on EIP-191 personal-sign hashes (see the module docstring)."""

    name = "secp256k1"
    secret_key_size = 32
    public_key_size = 33
    signature_size = 65

    @staticmethod
    def _secret_scalar(sk: object) -> int:
        return _secret_scalar(sk, "secp256k1", _N, "n")

    @staticmethod
    def _digest(message: object) -> bytes:
        msg = _as_bytes(message, "message")
        if len(msg) != 32:
            raise InputError(f"secp256k1 attestations sign a 32-byte digest, got {len(msg)} bytes")
        return msg

    def message_hash(self, message: bytes) -> bytes:
        """The hash actually signed: keccak256(b"\\x19Ethereum Signed Message:\\n32" || message)."""
        return _personal_sign_hash(self._digest(message))

    def generate_key(self, seed: bytes | None = None) -> bytes:
        material = _seed_bytes(seed)
        counter = 0
        while True:
            candidate = hmac.new(_KEYGEN_KEY, counter.to_bytes(4, "big") + material, hashlib.sha256).digest()
            if 0 < int.from_bytes(candidate, "big") < _N:
                return candidate
            counter += 1

    def public_key(self, sk: bytes) -> bytes:
        return _compress(_k1.multiply(_G, self._secret_scalar(sk)))

    def check_public_key(self, pk: bytes) -> None:
        _decompress(pk)

    def identity(self, pk: bytes) -> str:
        return _point_address(_decompress(pk))

    def sign(self, sk: bytes, message: bytes) -> bytes:
        secret = self._secret_scalar(sk)
        return _ecdsa_sign(secret, self.message_hash(message))

    def recover(self, message: bytes, sig: bytes) -> str:
        """The EIP-55 address whose key made ``sig`` on ``message`` (what ``ecrecover`` returns)."""
        return _point_address(_ecdsa_recover(self.message_hash(message), sig))

    def recover_public_key(self, message: bytes, sig: bytes) -> bytes:
        """The compressed public key that made ``sig`` on ``message``."""
        return _compress(_ecdsa_recover(self.message_hash(message), sig))

    def verify(self, pk: bytes, message: bytes, sig: bytes) -> None:
        point = _decompress(pk)
        digest = self.message_hash(message)
        try:
            recovered = _ecdsa_recover(digest, sig)
        except SignatureError as exc:
            details = {k: v for k, v in exc.details.items() if k not in ("expected", "observed")}
            raise SignatureError(exc.message, expected=_point_address(point), observed=None, **details) from None
        if recovered != point:
            raise SignatureError(
                "the secp256k1 signature was made by another key (or on another message)",
                expected=_point_address(point),
                observed=_point_address(recovered),
                reason="signer",
            )

    def batch_verify(self, items: Iterable[tuple[bytes, bytes, bytes]]) -> None:
        triples = _items(items)
        failures: dict[int, tuple[str, str]] = {}
        for i, (pk, message, sig) in enumerate(triples):
            try:
                self.verify(pk, message, sig)  # type: ignore[arg-type]
            except PoEError as exc:
                if not isinstance(exc, (InputError, SignatureError)):
                    raise
                failures[i] = _failure(exc)
        _raise_batch(len(triples), failures)


BLS = BLSScheme()
SECP256K1 = Secp256k1Scheme()
SCHEMES: dict[str, Scheme] = {BLS.name: BLS, SECP256K1.name: SECP256K1}


def get_scheme(name: str) -> Scheme:
    """The scheme called ``name`` ("bls12-381" or "secp256k1")."""
    try:
        return SCHEMES[name]
    except (KeyError, TypeError):
        raise InputError(
            f"unknown signature scheme {name!r}; known: {', '.join(sorted(SCHEMES))}", observed=str(name)
        ) from None

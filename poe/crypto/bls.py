"""BLS12-381 signatures (``"bls12-381"``): poe's rules, over a backend's group arithmetic.

The IETF BLS signature draft (draft-irtf-cfrg-bls-signature-05), minimal-pubkey-size variant,
proof-of-possession ciphersuite ``BLS_SIG_BLS12381G2_XMD:SHA-256_SSWU_RO_POP_`` as Ethereum uses
it: secret keys are 32-byte big-endian scalars in [1, r), public keys 48-byte compressed G1 points,
signatures 96-byte compressed G2 points (ZCash serialization). ``identity(pk)`` is ``"0x"``
followed by the public key's 96 lowercase hex digits. ``generate_key(seed)`` runs the draft's
KeyGen(IKM=seed, key_info="") (§2.3: HKDF-SHA-256, retried until the scalar is nonzero).

The arithmetic comes from a backend (:mod:`poe.crypto.backends`: arkworks, or the py-ecc
reference); every rule that decides what is valid lives here, so each backend gives the same
answers, including where a library alone is lax:

* encodings are checked byte by byte before any library sees them: the compression flag set, the
  one canonical encoding of infinity (``0xc0`` then zeros, no sign bit), every coordinate below p;
* the backend decodes to a point on the curve and in the prime-order subgroup, or refuses;
* public keys pass KeyValidate (also not the identity); a zero secret key is refused;
* aggregates need at least one item; an aggregate public key that sums to the identity is
  refused; aggregation is safe against rogue keys only for keys whose proof of possession
  (:meth:`BLSScheme.pop_prove` / :meth:`BLSScheme.pop_verify`) was checked at registration.

Batch verification checks one random linear combination (a fresh 64-bit nonzero scalar per item
from :mod:`secrets`): ``e(-g1, sum r_i sig_i) * prod_m e(sum_{i: m_i = m} r_i pk_i, H(m)) == 1``,
one Miller loop per distinct message plus one and a single final exponentiation. Every point lies
in its prime-order subgroup, so a batch with an invalid item passes with probability at most
1/(2^64 - 1) whatever the other items are: two signatures that cancel in a plain sum do not cancel
under independent random weights. When the combination fails, bisection with fresh scalars names
the invalid items.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from poe.crypto.scheme import (
    Scheme,
    as_bytes,
    batch_triples,
    failure,
    raise_batch_failures,
    secret_scalar,
    seed_bytes,
)
from poe.errors import InputError, InternalError, KeyFormatError, PoEError, SignatureError

__all__ = ["BLSScheme", "keygen"]

#: the field modulus p and the group order r of BLS12-381
P = 0x1A0111EA397FE69A4B1BA7B6434BACD764774B84F38512BF6730D2A0F6B0F6241EABFFFEB153FFFFB9FEFFFFFFFFAAAB
R = 0x73EDA753299D7D483339D80809A1D80553BDA402FFFE5BFEFFFFFFFF00000001
DST = b"BLS_SIG_BLS12381G2_XMD:SHA-256_SSWU_RO_POP_"
POP_DST = b"BLS_POP_BLS12381G2_XMD:SHA-256_SSWU_RO_POP_"
_BATCH_SCALAR_BITS = 64
_KEYGEN_SALT = b"BLS-SIG-KEYGEN-SALT-"
_KEYGEN_L = 48  # ceil(3 * ceil(log2(r)) / 16)

# Points are the backend's own objects.
_Point = Any


def keygen(ikm: bytes, key_info: bytes = b"") -> int:
    """KeyGen of draft-irtf-cfrg-bls-signature-05 §2.3 (HKDF-SHA-256; the salt rehashed on each
    retry). Written out because it is eight lines of HMAC and the native libraries either lack
    it or implement an older draft; the tests check it against py-ecc and EIP-2333's vector."""
    salt = _KEYGEN_SALT
    while True:
        salt = hashlib.sha256(salt).digest()
        prk = hmac.new(salt, ikm + b"\x00", hashlib.sha256).digest()
        info = key_info + _KEYGEN_L.to_bytes(2, "big")
        okm, block = b"", b""
        for counter in range(1, -(-_KEYGEN_L // 32) + 1):
            block = hmac.new(prk, block + info + bytes([counter]), hashlib.sha256).digest()
            okm += block
        sk = int.from_bytes(okm[:_KEYGEN_L], "big") % R
        if sk:
            return sk


def _check_canonical(raw: bytes, what: str, error: type[PoEError]) -> None:
    """ZCash compressed encoding: flags C=1, I (infinity) with nothing else set, S only for a
    finite point, and each coordinate (one for G1, two for G2) below p."""
    top = raw[0]
    if not top & 0x80:
        raise error(f"the {what} is not in compressed form (its top flag bit is clear)", reason="encoding")
    if top & 0x40:
        if top != 0xC0 or raw[1:] != bytes(len(raw) - 1):
            raise error(f"a non-canonical encoding of the point at infinity as a {what}", reason="encoding")
        return
    coords = [int.from_bytes(bytes([top & 0x1F]) + raw[1:48], "big")]
    if len(raw) == 96:
        coords.append(int.from_bytes(raw[48:], "big"))
    if any(c >= P for c in coords):
        raise error(f"a coordinate of the {what} is not below the field modulus", reason="encoding")


def _byte_strings_given(value: object, what: str) -> None:
    # A bare bytes object is iterable too; taken as a list it would be read as a list of ints.
    if isinstance(value, (bytes, bytearray, memoryview)) or not isinstance(value, Iterable):
        raise InputError(f"{what} must be given as a list of byte strings")


@dataclass(frozen=True)
class _BlsItem:
    index: int
    pk: _Point
    message: bytes
    sig: _Point


class BLSScheme(Scheme):
    """BLS12-381, proof-of-possession ciphersuite (see the module docstring), on ``backend``."""

    name = "bls12-381"
    aggregatable = True
    batchable = True
    secret_key_size = 32
    public_key_size = 48
    signature_size = 96

    def __init__(self, backend: Any) -> None:
        self.backend = backend
        self._neg_g1 = backend.g1_generator_mul(R - 1)
        # KeyValidate is a square root and a subgroup check; keys recur, so cache per backend.
        self._key_point = lru_cache(maxsize=4096)(self._decode_public_key)
        # A proof of possession is checked once per key (spec §11.2); every attestation repeats it.
        self._proven: dict[tuple[bytes, bytes], None] = {}

    def __repr__(self) -> str:
        return f"<poe signature scheme {self.name} on {self.backend.name}>"

    # -- encodings --------------------------------------------------------------------------------

    def _g1(self, data: object) -> _Point:
        """A compressed G1 point, canonical and in the subgroup (the identity is accepted)."""
        raw = as_bytes(data, "BLS public key")
        if len(raw) != 48:
            raise KeyFormatError(f"a BLS public key has 48 bytes, got {len(raw)}", reason="length")
        _check_canonical(raw, "public key", KeyFormatError)
        try:
            return self.backend.g1_decode(raw)
        except ValueError as exc:
            raise KeyFormatError(f"the public key is not a point of the G1 subgroup: {exc}", reason="subgroup") from None

    def _g2(self, data: object) -> _Point:
        """A compressed G2 point, canonical and in the subgroup (the identity is accepted)."""
        raw = as_bytes(data, "BLS signature")
        if len(raw) != 96:
            raise SignatureError(f"a BLS signature has 96 bytes, got {len(raw)}", reason="length")
        _check_canonical(raw, "signature", SignatureError)
        try:
            return self.backend.g2_decode(raw)
        except ValueError as exc:
            raise SignatureError(f"the signature is not a point of the G2 subgroup: {exc}", reason="subgroup") from None

    def _decode_public_key(self, raw: bytes) -> _Point:
        point = self._g1(raw)
        if self.backend.g1_is_identity(point):
            raise KeyFormatError("the BLS public key is the point at infinity", reason="identity")
        return point

    def decode_g1(self, data: bytes) -> bytes:
        """``data`` re-encoded after decoding as a G1 point (KeyFormatError if it is not one)."""
        return self.backend.g1_encode(self._g1(data))

    def decode_g2(self, data: bytes) -> bytes:
        """``data`` re-encoded after decoding as a G2 point (SignatureError if it is not one)."""
        return self.backend.g2_encode(self._g2(data))

    def hash_to_g2(self, message: bytes, dst: bytes = DST) -> bytes:
        """hash_to_curve BLS12381G2_XMD:SHA-256_SSWU_RO_ under ``dst``, compressed."""
        return self.backend.g2_encode(self.backend.hash_to_g2(as_bytes(message, "message"), as_bytes(dst, "tag")))

    # -- keys -----------------------------------------------------------------------------------

    @staticmethod
    def _secret_scalar(sk: object) -> int:
        return secret_scalar(sk, "BLS", R, "r")

    def generate_key(self, seed: bytes | None = None) -> bytes:
        return keygen(seed_bytes(seed)).to_bytes(32, "big")

    def public_key(self, sk: bytes) -> bytes:
        return self.backend.g1_encode(self.backend.g1_generator_mul(self._secret_scalar(sk)))

    def check_public_key(self, pk: bytes) -> None:
        self._key_point(as_bytes(pk, "BLS public key"))

    def identity(self, pk: bytes) -> str:
        raw = as_bytes(pk, "BLS public key")
        self._key_point(raw)
        return "0x" + raw.hex()

    # -- single signatures ------------------------------------------------------------------------

    def _sign(self, sk: object, message: bytes, dst: bytes) -> bytes:
        scalar = self._secret_scalar(sk)
        return self.backend.g2_encode(self.backend.g2_mul(self.backend.hash_to_g2(message, dst), scalar))

    def _holds(self, pk: _Point, message: bytes, sig: _Point, dst: bytes = DST) -> bool:
        return self.backend.pairing_check([(self._neg_g1, sig), (pk, self.backend.hash_to_g2(message, dst))])

    def sign(self, sk: bytes, message: bytes) -> bytes:
        return self._sign(sk, as_bytes(message, "message"), DST)

    def verify(self, pk: bytes, message: bytes, sig: bytes) -> None:
        raw_pk = as_bytes(pk, "BLS public key")
        point = self._key_point(raw_pk)
        msg = as_bytes(message, "message")
        if not self._holds(point, msg, self._g2(sig)):
            raise SignatureError(
                "the BLS signature does not verify under this public key and message",
                expected="0x" + raw_pk.hex(),
                observed=None,
                reason="pairing",
            )

    # -- aggregation --------------------------------------------------------------------------------

    def _public_key_points(self, pks: object) -> list[_Point]:
        _byte_strings_given(pks, "public keys")
        points = []
        for i, pk in enumerate(pks):  # type: ignore[attr-defined]
            try:
                points.append(self._key_point(as_bytes(pk, "BLS public key")))
            except KeyFormatError as exc:
                raise KeyFormatError(f"public key {i}: {exc.message}", index=i, **exc.details) from None
        if not points:
            raise InputError("at least one public key is needed")
        return points

    def aggregate(self, sigs: Sequence[bytes]) -> bytes:
        """Sum of signatures (each must decode and be in the subgroup); at least one."""
        _byte_strings_given(sigs, "signatures")
        points = []
        for i, sig in enumerate(sigs):
            try:
                points.append(self._g2(sig))
            except SignatureError as exc:
                raise SignatureError(f"signature {i}: {exc.message}", index=i, **exc.details) from None
        if not points:
            raise InputError("at least one signature is needed to aggregate")
        return self.backend.g2_encode(self.backend.g2_sum(points))

    def fast_aggregate_verify(self, pks: Sequence[bytes], message: bytes, sig: bytes) -> None:
        """Verify an aggregate signature of many keys on one message (keys must have proven
        possession)."""
        points = self._public_key_points(pks)
        msg = as_bytes(message, "message")
        signature = self._g2(sig)
        total = self.backend.g1_sum(points)
        if self.backend.g1_is_identity(total):
            raise SignatureError("the aggregate public key is the point at infinity", reason="identity")
        if not self._holds(total, msg, signature):
            raise SignatureError(
                f"the aggregate BLS signature does not verify for these {len(points)} keys and message",
                expected=len(points),
                observed=None,
                reason="pairing",
            )

    def aggregate_verify(self, pks: Sequence[bytes], messages: Sequence[bytes], sig: bytes) -> None:
        """Verify an aggregate signature over (key_i, message_i) pairs."""
        points = self._public_key_points(pks)
        _byte_strings_given(messages, "messages")
        msgs = [as_bytes(m, f"message {i}") for i, m in enumerate(messages)]
        if len(msgs) != len(points):
            raise InputError(f"{len(points)} public keys but {len(msgs)} messages")
        pairs = [(self._neg_g1, self._g2(sig))]
        pairs.extend((p, self.backend.hash_to_g2(m, DST)) for m, p in zip(msgs, points))
        if not self.backend.pairing_check(pairs):
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
        return self._sign(sk, self.public_key(sk), POP_DST)

    def pop_verify(self, pk: bytes, proof: bytes) -> None:
        raw_pk = as_bytes(pk, "BLS public key")
        raw_proof = as_bytes(proof, "BLS signature")
        if (raw_pk, raw_proof) in self._proven:
            return
        point = self._key_point(raw_pk)
        if not self._holds(point, raw_pk, self._g2(raw_proof), POP_DST):
            raise SignatureError(
                "the proof of possession does not verify for this public key",
                expected="0x" + raw_pk.hex(),
                observed=None,
                reason="pop",
            )
        if len(self._proven) >= 4096:
            self._proven.clear()
        self._proven[(raw_pk, raw_proof)] = None

    # -- batches ----------------------------------------------------------------------------------

    def batch_verify(self, items: Iterable[tuple[bytes, bytes, bytes]]) -> None:
        triples = batch_triples(items)
        failures: dict[int, tuple[str, str]] = {}
        good: list[_BlsItem] = []
        for i, (pk, message, sig) in enumerate(triples):
            try:
                point = self._key_point(as_bytes(pk, "BLS public key"))
                msg = as_bytes(message, "message")
                signature = self._g2(sig)
            except PoEError as exc:
                failures[i] = failure(exc)
                continue
            good.append(_BlsItem(i, point, msg, signature))
        # Hashing to G2 dominates a small batch; items often share a message, so hash each once.
        hashes: dict[bytes, _Point] = {}
        for item in good:
            if item.message not in hashes:
                hashes[item.message] = self.backend.hash_to_g2(item.message, DST)
        if good and not self._combination_holds(good, hashes):
            bad = self._bisect(good, hashes, known_failing=True)
            if not bad:
                # Only if a sub-batch passed by the 2^-64 chance: fall back to checking each.
                bad = [item.index for item in good if not self._combination_holds([item], hashes)]
            if not bad:
                raise InternalError("a BLS batch failed but no item fails on its own")
            for i in bad:
                failures[i] = (SignatureError.code, "the BLS signature does not verify under its key and message")
        raise_batch_failures(len(triples), failures)

    def _combination_holds(self, items: Sequence[_BlsItem], hashes: dict[bytes, Any]) -> bool:
        b = self.backend
        if len(items) == 1:
            # A single item needs no random weight, and checking it exactly keeps bisection sound.
            item = items[0]
            return b.pairing_check([(self._neg_g1, item.sig), (item.pk, hashes[item.message])])
        scalars = [secrets.randbelow((1 << _BATCH_SCALAR_BITS) - 1) + 1 for _ in items]
        # Keys signing the same message share its Miller loop: e(sum r_i pk_i, H(m)).
        groups: dict[bytes, tuple[list[_Point], list[int]]] = {}
        for item, r in zip(items, scalars):
            pts, rs = groups.setdefault(item.message, ([], []))
            pts.append(item.pk)
            rs.append(r)
        pairs = [(b.g1_msm(pts, rs), hashes[msg]) for msg, (pts, rs) in groups.items()]
        pairs.append((self._neg_g1, b.g2_msm([item.sig for item in items], scalars)))
        return b.pairing_check(pairs)

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


def __getattr__(name: str) -> Any:
    # BLS, the scheme on the chosen backend, is made on first use: choosing loads a library.
    if name == "BLS":
        from poe.crypto.schemes import get_scheme

        return get_scheme(BLSScheme.name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

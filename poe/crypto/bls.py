"""BLS12-381 signatures (``"bls12-381"``) on py-ecc, behind :class:`~poe.crypto.scheme.Scheme`.

py-ecc is pure Python and *not* constant time: keep signing keys on hosts where timing is not
observable by others. Importing this module loads py-ecc's pairing code (about half a second);
:func:`poe.crypto.schemes.get_scheme` does so only when BLS is first asked for.

The IETF BLS signature draft (draft-irtf-cfrg-bls-signature-05, as py-ecc implements it),
minimal-pubkey-size variant, proof-of-possession ciphersuite
``BLS_SIG_BLS12381G2_XMD:SHA-256_SSWU_RO_POP_`` as Ethereum uses it: secret keys are 32-byte
big-endian scalars in [1, r), public keys 48-byte compressed G1 points, signatures 96-byte
compressed G2 points (ZCash serialization). Public keys must pass KeyValidate (on the curve, in the
subgroup, not the identity); signatures must decode and be in the subgroup. Aggregation is safe
against rogue keys only for keys whose proof of possession (:meth:`BLSScheme.pop_prove` /
:meth:`BLSScheme.pop_verify`) was checked once at registration. ``identity(pk)`` is ``"0x"``
followed by the public key's 96 lowercase hex digits. ``generate_key(seed)`` runs the draft's
KeyGen(IKM=seed, key_info="").

Batch verification checks one random linear combination (a fresh 64-bit nonzero scalar per item
from :mod:`secrets`): ``e(sum r_i sig_i, -g1) * prod_m e(H(m), sum_{i: m_i = m} r_i pk_i) == 1``,
one Miller loop per distinct message plus one, and a single final exponentiation. Every point has
been checked to lie in its prime-order subgroup, so a batch with an invalid item passes with
probability at most 1/(2^64 - 1), whatever the other items are (two signatures that cancel in a
plain sum do not cancel under independent random weights). When the combination fails, bisection
with fresh scalars names the invalid items.
"""

from __future__ import annotations

import hashlib
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
    kept_recursion_limit,
    raise_batch_failures,
    secret_scalar,
    seed_bytes,
)
from poe.errors import InputError, InternalError, KeyFormatError, PoEError, SignatureError

with kept_recursion_limit():
    from py_ecc.bls import G2ProofOfPossession as _PoP
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

__all__ = ["BLSScheme", "BLS"]

# py-ecc's decoders raise ValueError for malformed points, and some of its paths only assert.
_ECC_ERRORS = (ValueError, AssertionError, ArithmeticError, TypeError, IndexError)

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
    raw = as_bytes(data, "BLS public key")
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
    raw = as_bytes(data, "BLS signature")
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
        return secret_scalar(sk, "BLS", curve_order, "r")

    def generate_key(self, seed: bytes | None = None) -> bytes:
        return _PoP.KeyGen(seed_bytes(seed)).to_bytes(32, "big")

    def public_key(self, sk: bytes) -> bytes:
        return bytes(_PoP.SkToPk(self._secret_scalar(sk)))

    def check_public_key(self, pk: bytes) -> None:
        _public_key_point(as_bytes(pk, "BLS public key"))

    def identity(self, pk: bytes) -> str:
        raw = as_bytes(pk, "BLS public key")
        _public_key_point(raw)
        return "0x" + raw.hex()

    # -- single signatures ------------------------------------------------------------------------

    def sign(self, sk: bytes, message: bytes) -> bytes:
        scalar = self._secret_scalar(sk)
        return bytes(_PoP.Sign(scalar, as_bytes(message, "message")))

    def verify(self, pk: bytes, message: bytes, sig: bytes) -> None:
        raw_pk = as_bytes(pk, "BLS public key")
        point = _public_key_point(raw_pk)
        msg = as_bytes(message, "message")
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
        _byte_strings_given(pks, "public keys")
        points = []
        for i, pk in enumerate(pks):  # type: ignore[attr-defined]
            try:
                points.append(_public_key_point(as_bytes(pk, "BLS public key")))
            except KeyFormatError as exc:
                raise KeyFormatError(f"public key {i}: {exc.message}", index=i, **exc.details) from None
        if not points:
            raise InputError("at least one public key is needed")
        return points

    def aggregate(self, sigs: Sequence[bytes]) -> bytes:
        """Sum of signatures (each must decode and be in the subgroup)."""
        _byte_strings_given(sigs, "signatures")
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
        msg = as_bytes(message, "message")
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
        _byte_strings_given(messages, "messages")
        msgs = [as_bytes(m, f"message {i}") for i, m in enumerate(messages)]
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
        raw_pk = as_bytes(pk, "BLS public key")
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
        triples = batch_triples(items)
        failures: dict[int, tuple[str, str]] = {}
        good: list[_BlsItem] = []
        for i, (pk, message, sig) in enumerate(triples):
            try:
                point = _public_key_point(as_bytes(pk, "BLS public key"))
                msg = as_bytes(message, "message")
                signature = _g2_from_bytes(sig)
            except PoEError as exc:
                failures[i] = failure(exc)
                continue
            good.append(_BlsItem(i, point, msg, signature))
        # Hashing to G2 dominates a small batch; items often share a message, so hash each once.
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
        raise_batch_failures(len(triples), failures)

    @staticmethod
    def _combination_holds(items: Sequence[_BlsItem], hashes: dict[bytes, Any]) -> bool:
        if len(items) == 1:
            # A single item needs no random weight, and checking it exactly keeps bisection sound.
            item = items[0]
            return _pairing_product_is_one([(item.sig, _NEG_G1), (hashes[item.message], item.pk)])
        scalars = [secrets.randbelow((1 << _BATCH_SCALAR_BITS) - 1) + 1 for _ in items]
        # Keys signing the same message share its Miller loop: e(H(m), sum r_i pk_i).
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


BLS = BLSScheme()

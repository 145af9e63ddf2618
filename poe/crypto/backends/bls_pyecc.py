"""BLS12-381 on py-ecc: the pure-Python reference backend (what Ethereum's specs were written
against). Its import takes about 0.4 s, so it is loaded only when chosen."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from importlib import metadata
from typing import Any

from poe.crypto.backends import Unavailable
from poe.crypto.scheme import kept_recursion_limit

try:
    with kept_recursion_limit():
        from py_ecc.bls.g2_primitives import G1_to_pubkey, G2_to_signature, pubkey_to_G1, signature_to_G2, subgroup_check
        from py_ecc.bls.hash_to_curve import hash_to_G2
        from py_ecc.optimized_bls12_381 import FQ12, G1, Z1, Z2, add, double, final_exponentiate, is_inf, multiply, pairing
except ImportError as exc:
    raise Unavailable(f"py-ecc is not importable ({exc})") from None

__all__ = ["BACKEND"]

# py-ecc's decoders raise ValueError for malformed points, and some of its paths only assert.
_ECC_ERRORS = (ValueError, AssertionError, ArithmeticError, TypeError, IndexError)


def _multi_multiply(points: Sequence[Any], scalars: Sequence[int], zero: Any) -> Any:
    """sum s_i * P_i with one shared doubling chain (Straus): for 64-bit scalars, 64 doublings in
    all plus about 32 additions per point, instead of 64 doublings and 32 additions each."""
    top = max((s.bit_length() for s in scalars), default=0)
    acc = None
    for bit in range(top - 1, -1, -1):
        if acc is not None:
            acc = double(acc)
        for point, scalar in zip(points, scalars):
            if (scalar >> bit) & 1:
                acc = point if acc is None else add(acc, point)
    return zero if acc is None else acc


def _decoded(decode: Any, raw: bytes) -> Any:
    try:
        point = decode(raw)
    except _ECC_ERRORS as exc:
        raise ValueError(f"not a point on the curve: {exc}") from None
    if not is_inf(point) and not subgroup_check(point):
        raise ValueError("on the curve but not in the prime-order subgroup")
    return point


class _PyEcc:
    name = "py-ecc"
    library = "py-ecc"
    version = metadata.version("py-ecc")

    def g1_decode(self, raw: bytes) -> Any:
        return _decoded(pubkey_to_G1, raw)

    def g2_decode(self, raw: bytes) -> Any:
        return _decoded(signature_to_G2, raw)

    def g1_encode(self, point: Any) -> bytes:
        return bytes(G1_to_pubkey(point))

    def g2_encode(self, point: Any) -> bytes:
        return bytes(G2_to_signature(point))

    def g1_is_identity(self, point: Any) -> bool:
        return bool(is_inf(point))

    g2_is_identity = g1_is_identity

    def g1_sum(self, points: Sequence[Any]) -> Any:
        acc = Z1
        for point in points:
            acc = add(acc, point)
        return acc

    def g2_sum(self, points: Sequence[Any]) -> Any:
        acc = Z2
        for point in points:
            acc = add(acc, point)
        return acc

    def g1_msm(self, points: Sequence[Any], scalars: Sequence[int]) -> Any:
        return _multi_multiply(points, scalars, Z1)

    def g2_msm(self, points: Sequence[Any], scalars: Sequence[int]) -> Any:
        return _multi_multiply(points, scalars, Z2)

    def g1_generator_mul(self, scalar: int) -> Any:
        return multiply(G1, scalar)

    def g2_mul(self, point: Any, scalar: int) -> Any:
        return multiply(point, scalar)

    def hash_to_g2(self, message: bytes, dst: bytes) -> Any:
        return hash_to_G2(message, dst, hashlib.sha256)

    def pairing_check(self, pairs: Sequence[tuple[Any, Any]]) -> bool:
        # One Miller loop per pair and a single final exponentiation.
        acc = FQ12.one()
        for p, q in pairs:
            acc = acc * pairing(q, p, final_exponentiate=False)
        return final_exponentiate(acc) == FQ12.one()


BACKEND = _PyEcc()

"""BLS12-381 on py-arkworks-bls12381 (Rust's arkworks curves, with multi-scalar multiplication
and multi-pairing): the native BLS backend."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from poe.crypto.backends import Unavailable, library_version

try:
    import py_arkworks_bls12381 as _ark
    from py_arkworks_bls12381 import GT, G1Point, G2Point, Scalar
except ImportError as exc:
    raise Unavailable(f"py-arkworks-bls12381 is not importable ({exc})") from None

__all__ = ["BACKEND"]


def _scalar(value: int) -> Any:
    return Scalar.from_be_bytes(value.to_bytes(32, "big"))


class _Arkworks:
    name = "arkworks"
    library = "py-arkworks-bls12381"
    version = library_version(library, _ark, (5, 6))

    _G1 = G1Point()
    _G1_ZERO = G1Point.identity()
    _G2_ZERO = G2Point.identity()

    # from_compressed_bytes checks the point is on the curve and in the subgroup (the
    # "unchecked" variant skips the subgroup check, so poe never uses it).
    def g1_decode(self, raw: bytes) -> Any:
        return G1Point.from_compressed_bytes(raw)

    def g2_decode(self, raw: bytes) -> Any:
        return G2Point.from_compressed_bytes(raw)

    def g1_encode(self, point: Any) -> bytes:
        return bytes(point.to_compressed_bytes())

    def g2_encode(self, point: Any) -> bytes:
        return bytes(point.to_compressed_bytes())

    def g1_is_identity(self, point: Any) -> bool:
        return bool(point == self._G1_ZERO)

    def g2_is_identity(self, point: Any) -> bool:
        return bool(point == self._G2_ZERO)

    def g1_sum(self, points: Sequence[Any]) -> Any:
        acc = self._G1_ZERO
        for point in points:
            acc = acc + point
        return acc

    def g2_sum(self, points: Sequence[Any]) -> Any:
        acc = self._G2_ZERO
        for point in points:
            acc = acc + point
        return acc

    # multiexp_unchecked: "unchecked" means the points are not re-validated; every point poe
    # passes was decoded and checked, or computed from such points.
    def g1_msm(self, points: Sequence[Any], scalars: Sequence[int]) -> Any:
        return G1Point.multiexp_unchecked(list(points), [_scalar(s) for s in scalars])

    def g2_msm(self, points: Sequence[Any], scalars: Sequence[int]) -> Any:
        return G2Point.multiexp_unchecked(list(points), [_scalar(s) for s in scalars])

    def g1_generator_mul(self, scalar: int) -> Any:
        return self._G1 * _scalar(scalar)

    def g2_mul(self, point: Any, scalar: int) -> Any:
        return point * _scalar(scalar)

    def hash_to_g2(self, message: bytes, dst: bytes) -> Any:
        return G2Point.hash_to_curve(message, dst)

    def pairing_check(self, pairs: Sequence[tuple[Any, Any]]) -> bool:
        return bool(GT.pairing_check([p for p, _ in pairs], [q for _, q in pairs]))


BACKEND = _Arkworks()

"""secp256k1 ECDSA on py-ecc: the pure-Python reference backend. py-ecc's signer derives the
RFC 6979 nonce (HMAC-SHA-256) from the key and hash; it lacks the RFC's retry for a candidate not
below n (probability about 2^-128), where its signature would differ from libsecp256k1's but
still verify, and it can emit r >= n with the same probability, which poe refuses."""

from __future__ import annotations

from importlib import metadata

from poe.crypto.backends import Unavailable
from poe.crypto.scheme import kept_recursion_limit

try:
    with kept_recursion_limit():
        from py_ecc.secp256k1 import secp256k1 as _k1
except ImportError as exc:
    raise Unavailable(f"py-ecc is not importable ({exc})") from None

__all__ = ["BACKEND"]

_P, _N = _k1.P, _k1.N


def _compress(point: tuple[int, int]) -> bytes:
    x, y = point
    return bytes([2 | (y & 1)]) + x.to_bytes(32, "big")


class _PyEcc:
    name = "py-ecc"
    library = "py-ecc"
    version = metadata.version("py-ecc")

    def public_key(self, secret: bytes) -> bytes:
        return _compress(_k1.privtopub(secret))

    def uncompressed(self, pk: bytes) -> bytes:
        if len(pk) != 33 or pk[0] not in (2, 3):
            raise ValueError("not a compressed SEC1 point")
        x = int.from_bytes(pk[1:], "big")
        if x >= _P:
            raise ValueError("x is not below p")
        alpha = (pow(x, 3, _P) + 7) % _P
        y = pow(alpha, (_P + 1) // 4, _P)  # a square root by one power, because p = 3 mod 4
        if y * y % _P != alpha:
            raise ValueError("no curve point has this x coordinate")
        if y & 1 != pk[0] & 1:
            y = _P - y
        return x.to_bytes(32, "big") + y.to_bytes(32, "big")

    def sign(self, secret: bytes, digest: bytes) -> tuple[bytes, int]:
        # RFC 6979 feeds the hash reduced mod n (bits2octets) to its HMAC; py-ecc feeds it as
        # given, so reduce first (ECDSA itself only ever uses the hash mod n).
        reduced = (int.from_bytes(digest, "big") % _N).to_bytes(32, "big")
        v, r, s = _k1.ecdsa_raw_sign(reduced, secret)
        if not (0 < r < _N and 0 < s < _N):
            raise ArithmeticError("py-ecc's nonce gave r or s outside [1, n)")
        return r.to_bytes(32, "big") + s.to_bytes(32, "big"), v - 27

    def recover(self, digest: bytes, rs: bytes, parity: int) -> bytes | None:
        r = int.from_bytes(rs[:32], "big")
        s = int.from_bytes(rs[32:], "big")
        try:
            point = _k1.ecdsa_raw_recover(digest, (27 + parity, r, s))
        except ValueError:  # r is not the x coordinate of a curve point
            return None
        if point == (0, 0):  # py-ecc's affine form of the point at infinity
            return None
        return point[0].to_bytes(32, "big") + point[1].to_bytes(32, "big")


BACKEND = _PyEcc()

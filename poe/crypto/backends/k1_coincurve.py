"""secp256k1 ECDSA on coincurve (bindings to Bitcoin Core's libsecp256k1): the native backend.
libsecp256k1 derives nonces by RFC 6979 (HMAC-SHA-256) and signs low-s."""

from __future__ import annotations

from poe.crypto.backends import Unavailable, library_version

try:
    import coincurve as _coincurve
    from coincurve import PrivateKey, PublicKey
except ImportError as exc:
    raise Unavailable(f"coincurve is not importable ({exc})") from None

__all__ = ["BACKEND"]


class _Coincurve:
    name = "coincurve"
    library = "coincurve"
    version = library_version(library, _coincurve, (2100, 2200))

    def public_key(self, secret: bytes) -> bytes:
        return bytes(PrivateKey(secret).public_key.format(compressed=True))

    def uncompressed(self, pk: bytes) -> bytes:
        return bytes(PublicKey(pk).format(compressed=False))[1:]

    def sign(self, secret: bytes, digest: bytes) -> tuple[bytes, int]:
        sig = PrivateKey(secret).sign_recoverable(digest, hasher=None)
        return bytes(sig[:64]), sig[64]

    def recover(self, digest: bytes, rs: bytes, parity: int) -> bytes | None:
        try:
            key = PublicKey.from_signature_and_message(rs + bytes([parity]), digest, hasher=None)
        except ValueError:  # libsecp256k1 found no key (R not on the curve, or Q at infinity)
            return None
        return bytes(key.format(compressed=False))[1:]


BACKEND = _Coincurve()

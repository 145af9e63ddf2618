"""secp256k1 ECDSA on coincurve (bindings to Bitcoin Core's libsecp256k1): the native backend.
libsecp256k1 derives nonces by RFC 6979 (HMAC-SHA-256) and signs low-s.

Recovery, the one call a provider makes per customer request, goes to libsecp256k1 through
coincurve's own cffi handles with buffers allocated once: coincurve's object API costs ~3 µs more
per call (a fifth of what poe adds to the library's ~41 µs). The handles are coincurve's
implementation, not its documented API, so they are used only if present and only after they
recover the same key as the documented API on a fixed signature at import."""

from __future__ import annotations

import threading

from poe.crypto.backends import Unavailable, library_version

try:
    import coincurve as _coincurve
    from coincurve import PrivateKey, PublicKey
except ImportError as exc:
    raise Unavailable(f"coincurve is not importable ({exc})") from None

__all__ = ["BACKEND"]


def _public_recover(digest: bytes, rs: bytes, parity: int) -> bytes | None:
    try:
        key = PublicKey.from_signature_and_message(rs + bytes([parity]), digest, hasher=None)
    except ValueError:  # libsecp256k1 found no key (R not on the curve, or Q at infinity)
        return None
    return bytes(key.format(compressed=False))[1:]


def _direct_recover():  # type: ignore[no-untyped-def]
    """The recovery through coincurve's cffi handles, or None where they are not there."""
    try:
        from coincurve._libsecp256k1 import ffi, lib
        from coincurve.context import GLOBAL_CONTEXT
    except ImportError:
        return None
    ctx, uncompressed = GLOBAL_CONTEXT.ctx, lib.SECP256K1_EC_UNCOMPRESSED
    local = threading.local()  # the buffers are per thread: a gateway may check requests in several

    def recover(digest: bytes, rs: bytes, parity: int) -> bytes | None:
        # What coincurve's own call checks first: libsecp256k1 reads 32 and 64 bytes whatever it
        # is given, and aborts the process on a recovery id outside 0..3.
        if len(digest) != 32 or len(rs) != 64 or parity not in (0, 1):
            return None
        try:
            sig, key, out, size = local.buffers
        except AttributeError:
            local.buffers = sig, key, out, size = (ffi.new("secp256k1_ecdsa_recoverable_signature *"),
                                                   ffi.new("secp256k1_pubkey *"), ffi.new("unsigned char[65]"), ffi.new("size_t *"))
        if not lib.secp256k1_ecdsa_recoverable_signature_parse_compact(ctx, sig, rs, parity):
            return None
        if not lib.secp256k1_ecdsa_recover(ctx, key, sig, digest):
            return None
        size[0] = 65
        lib.secp256k1_ec_pubkey_serialize(ctx, out, size, key, uncompressed)
        return ffi.buffer(out, 65)[1:]

    probe_digest = bytes(range(32))
    probe = PrivateKey(bytes(31) + b"\x07").sign_recoverable(probe_digest, hasher=None)
    if recover(probe_digest, probe[:64], probe[64]) != _public_recover(probe_digest, probe[:64], probe[64]):
        return None
    return recover


class _Coincurve:
    name = "coincurve"
    library = "coincurve"
    version = library_version(library, _coincurve, (2100, 2200))

    def __init__(self) -> None:
        self.recover = _direct_recover() or _public_recover

    def public_key(self, secret: bytes) -> bytes:
        return bytes(PrivateKey(secret).public_key.format(compressed=True))

    def uncompressed(self, pk: bytes) -> bytes:
        return bytes(PublicKey(pk).format(compressed=False))[1:]

    def sign(self, secret: bytes, digest: bytes) -> tuple[bytes, int]:
        sig = PrivateKey(secret).sign_recoverable(digest, hasher=None)
        return bytes(sig[:64]), sig[64]


BACKEND = _Coincurve()

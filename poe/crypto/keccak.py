"""Keccak-256 as Ethereum uses it, from a kept library.

Ethereum's "keccak256"/"sha3" is the Keccak submission to the SHA-3 competition, *not* FIPS 202
SHA3-256: the permutation and rate are the same, but Keccak pads with the byte 0x01 where FIPS 202
pads with 0x06, so ``hashlib.sha3_256`` is the wrong function for addresses, EIP-191 and EIP-712.

The hash comes from safe-pysha3 (a C extension, about 1.2 µs per short message here) or, when it is
not installed, pycryptodome (about 6.8 µs, most of it Python-side object set-up); a customer
request's EIP-712 digest takes three or four of them, so the faster one is the default. Whichever
loads is checked against the empty string's published digest at import, so a same-named package
that computes something else is refused instead of trusted.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from poe.errors import InputError, InternalError

__all__ = ["keccak256", "LIBRARY"]

_EMPTY = bytes.fromhex("c5d2460186f7233c927e7db2dcc703c0e500b653ca82273b7bfad8045d85a470")


def _load() -> tuple[str, Callable[[bytes], Any]]:
    try:
        from sha3 import keccak_256 as digest_object  # safe-pysha3

        def digest(data: bytes) -> bytes:
            return digest_object(data).digest()

        name = "safe-pysha3"
    except ImportError:
        try:
            from Crypto.Hash import keccak as _keccak  # pycryptodome
        except ImportError:
            raise InternalError("no Keccak-256 library: install safe-pysha3 or pycryptodome") from None

        def digest_object(data: bytes) -> Any:
            return _keccak.new(data=data, digest_bits=256)

        def digest(data: bytes) -> bytes:
            return digest_object(data).digest()

        name = "pycryptodome"
    if digest(b"") != _EMPTY:
        raise InternalError(f"{name}'s keccak_256 does not give Keccak-256's published digest of the empty string")
    return name, digest_object


LIBRARY, _hasher = _load()


def keccak256(data: bytes) -> bytes:
    """Keccak-256 of ``data`` (bytes-like); anything else is an InputError, not a silent hash of
    its conversion (``bytes(5)`` would be five zero bytes)."""
    if type(data) is not bytes:  # the common case first: hashing is a few µs of each request
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise InputError(f"keccak256 takes bytes, not {type(data).__name__}")
        data = bytes(data)
    return _hasher(data).digest()

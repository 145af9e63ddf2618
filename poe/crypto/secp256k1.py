"""secp256k1 ECDSA (``"secp256k1"``), built to be checked on chain by ``ecrecover``.

poe's rules live here; the curve arithmetic comes from a backend (:mod:`poe.crypto.backends`:
coincurve, i.e. libsecp256k1, or the py-ecc reference), which also derives the nonces (RFC 6979,
HMAC-SHA-256), so both backends make the same signature for the same key and hash.

The message poe passes is a 32-byte statement digest ``d``; the hash actually signed is the
EIP-191 ``personal_sign`` hash::

    h = keccak256(b"\\x19Ethereum Signed Message:\\n32" || d)

(Keccak-256 with the original 0x01 padding, not FIPS 202 SHA3-256), so a Solidity contract checks
an attestation with ``ecrecover(h, v, r, s)`` where it computes ``h`` from ``d`` exactly as above
(OpenZeppelin's ``MessageHashUtils.toEthSignedMessageHash(bytes32)``). EIP-712 typed data (what
wallets sign for customers, :mod:`poe.crypto.eip712`) is signed with :meth:`Secp256k1Scheme.sign_hash`
on its own digest. Signatures are 65 bytes ``r || s || v``: r and s 32-byte big-endian, s in the
lower half of the group order (EIP-2 low-s; a high-s signature is rejected as malleable),
v = 27 + parity of R's y coordinate. Public keys are 33-byte compressed SEC1 points.
``identity(pk)`` is the EIP-55 checksummed Ethereum address: the last 20 bytes of keccak256 of the
uncompressed point's 64 coordinate bytes.

``generate_key(seed)`` takes the first counter c = 0, 1, 2, ... for which
``HMAC-SHA-256(key=b"poe 2026-11 secp256k1 keygen v1", msg=u32be(c) || seed)``, read as a
big-endian integer, lies in [1, n) (rejection sampling: uniform, and c = 0 succeeds except with
probability ~2^-128).

ECDSA has no cheap sound batch check, so ``batch_verify`` verifies every item (``batchable`` is
False: collecting secp256k1 items into a batch gains nothing).
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable
from functools import lru_cache
from typing import Any

from poe.crypto.keccak import keccak256
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

__all__ = ["Secp256k1Scheme", "checksum_address", "personal_sign_hash"]

P = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEFFFFFC2F
N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141
_HALF_N = N // 2
_KEYGEN_KEY = b"poe 2026-11 secp256k1 keygen v1"
_EIP191_PREFIX = b"\x19Ethereum Signed Message:\n"
_EIP191_32 = _EIP191_PREFIX + b"32"


_EVERY_0X20 = int.from_bytes(b"\x20" * 40, "big")


def checksum_address(address: bytes) -> str:
    """EIP-55 mixed-case hex of a 20-byte address: a hex letter is upper case where the matching
    nibble of keccak256(lower-case hex) is 8 or more."""
    raw = as_bytes(address, "address")
    if len(raw) != 20:
        raise InputError(f"an Ethereum address has 20 bytes, got {len(raw)}")
    lower = raw.hex().encode("ascii")
    # All 40 characters at once, as one integer of ASCII bytes (a per-character loop was a third
    # of a request check): a hex letter has bit 0x40 set and turns upper case by clearing 0x20; a
    # hex digit of the hash is 8 or more when it is a letter (0x40) or one of '8', '9' (0x08).
    text = int.from_bytes(lower, "big")
    nibbles = int.from_bytes(keccak256(lower).hex()[:40].encode("ascii"), "big")
    high = ((nibbles >> 1) | (nibbles << 2)) & _EVERY_0X20
    return "0x" + (text ^ ((text >> 1) & high)).to_bytes(40, "big").decode("ascii")


def personal_sign_hash(data: bytes) -> bytes:
    """EIP-191 version 0x45: keccak256("\\x19Ethereum Signed Message:\\n" || decimal len || data)."""
    return keccak256(_EIP191_PREFIX + str(len(data)).encode("ascii") + data)


def _signature_values(sig: object) -> tuple[bytes, int]:
    """(r || s, parity) of a 65-byte r || s || v signature, each value checked as ecrecover
    would, before any library sees it."""
    raw = as_bytes(sig, "secp256k1 signature")
    if len(raw) != 65:
        raise SignatureError(f"a secp256k1 signature has 65 bytes (r || s || v), got {len(raw)}", reason="length")
    v = raw[64]
    if v not in (27, 28):
        raise SignatureError(f"the recovery id v must be 27 or 28, got {v}", reason="recovery-id")
    r = int.from_bytes(raw[:32], "big")
    s = int.from_bytes(raw[32:64], "big")
    if not 0 < r < N:
        raise SignatureError("r is not in [1, n)", reason="range")
    if not 0 < s < N:
        raise SignatureError("s is not in [1, n)", reason="range")
    if s > _HALF_N:
        raise SignatureError("s is in the upper half of the group order (malleable high-s form)", reason="high-s")
    return raw[:64], v - 27


class Secp256k1Scheme(Scheme):
    """ECDSA over secp256k1 on EIP-191 personal-sign hashes (see the module docstring)."""

    name = "secp256k1"
    recoverable = True
    secret_key_size = 32
    public_key_size = 33
    signature_size = 65

    def __init__(self, backend: Any) -> None:
        self.backend = backend
        self._point = lru_cache(maxsize=4096)(self._decode_public_key)

    def __repr__(self) -> str:
        return f"<poe signature scheme {self.name} on {self.backend.name}>"

    # -- keys -------------------------------------------------------------------------------------

    @staticmethod
    def _secret(sk: object) -> bytes:
        return secret_scalar(sk, "secp256k1", N, "n").to_bytes(32, "big")

    def _decode_public_key(self, raw: bytes) -> bytes:
        """The 64 coordinate bytes of a compressed key, checked by poe's rules first."""
        if len(raw) != 33:
            raise KeyFormatError(f"a secp256k1 public key has 33 bytes (compressed SEC1), got {len(raw)}", reason="length")
        if raw[0] not in (2, 3):
            raise KeyFormatError(f"a compressed SEC1 point starts with 0x02 or 0x03, not 0x{raw[0]:02x}", reason="encoding")
        if int.from_bytes(raw[1:], "big") >= P:
            raise KeyFormatError("the x coordinate is not below the field modulus", reason="encoding")
        try:
            return self.backend.uncompressed(raw)
        except ValueError:
            raise KeyFormatError("no curve point has this x coordinate", reason="curve") from None

    def _address(self, raw_pk: bytes) -> str:
        return checksum_address(keccak256(self._point(raw_pk))[12:])

    def generate_key(self, seed: bytes | None = None) -> bytes:
        material = seed_bytes(seed)
        counter = 0
        while True:
            candidate = hmac.new(_KEYGEN_KEY, counter.to_bytes(4, "big") + material, hashlib.sha256).digest()
            if 0 < int.from_bytes(candidate, "big") < N:
                return candidate
            counter += 1

    def public_key(self, sk: bytes) -> bytes:
        return self.backend.public_key(self._secret(sk))

    def check_public_key(self, pk: bytes) -> None:
        self._point(as_bytes(pk, "secp256k1 public key"))

    def identity(self, pk: bytes) -> str:
        return self._address(as_bytes(pk, "secp256k1 public key"))

    # -- signing and recovery ------------------------------------------------------------------

    @staticmethod
    def _digest(message: object) -> bytes:
        msg = as_bytes(message, "message")
        if len(msg) != 32:
            raise InputError(f"secp256k1 attestations sign a 32-byte digest, got {len(msg)} bytes")
        return msg

    def message_hash(self, message: bytes) -> bytes:
        """The hash actually signed: keccak256(b"\\x19Ethereum Signed Message:\\n32" || message)."""
        return keccak256(_EIP191_32 + self._digest(message))

    def sign_hash(self, sk: bytes, digest: bytes) -> bytes:
        """Sign the 32-byte hash ``digest`` itself (an EIP-712 digest, say); ``sign`` wraps its
        message in EIP-191 first."""
        secret = self._secret(sk)
        rs, parity = self.backend.sign(secret, self._digest(digest))
        s = int.from_bytes(rs[32:], "big")
        if parity not in (0, 1) or not 0 < int.from_bytes(rs[:32], "big") < N or not 0 < s <= _HALF_N:
            # r >= n (recovery id 2 or 3) has probability ~2^-128; v cannot express it.
            raise InternalError(f"the {self.backend.name} backend made a signature ecrecover cannot check")
        return rs + bytes([27 + parity])

    def sign(self, sk: bytes, message: bytes) -> bytes:
        return self.sign_hash(sk, self.message_hash(message))

    def _recover_point(self, digest: bytes, sig: bytes) -> bytes:
        rs, parity = _signature_values(sig)
        xy = self.backend.recover(self._digest(digest), rs, parity)
        if xy is None:
            raise SignatureError("no public key recovers from this signature (r is no curve point's x, or the key is at infinity)", reason="curve")
        return xy

    def recover_hash_public_key(self, digest: bytes, sig: bytes) -> bytes:
        """The compressed public key that made ``sig`` on the 32-byte hash ``digest``."""
        xy = self._recover_point(digest, sig)
        return bytes([2 | (xy[63] & 1)]) + xy[:32]

    def recover_hash_address(self, digest: bytes, sig: bytes) -> bytes:
        """The 20 address bytes whose key made ``sig`` on the 32-byte hash ``digest``: what
        ``ecrecover`` returns, before EIP-55 spells it (what a service compares per request)."""
        return keccak256(self._recover_point(digest, sig))[12:]

    def recover_hash(self, digest: bytes, sig: bytes) -> str:
        """The EIP-55 address whose key made ``sig`` on the 32-byte hash ``digest``: what
        ``ecrecover(digest, v, r, s)`` returns on chain."""
        return checksum_address(self.recover_hash_address(digest, sig))

    def recover(self, message: bytes, sig: bytes) -> str:
        """The EIP-55 address whose key made ``sig`` on ``message`` (EIP-191 wrapped)."""
        return self.recover_hash(self.message_hash(message), sig)

    def recover_public_key(self, message: bytes, sig: bytes) -> bytes:
        """The compressed public key that made ``sig`` on ``message``."""
        return self.recover_hash_public_key(self.message_hash(message), sig)

    def verify_hash(self, pk: bytes, digest: bytes, sig: bytes) -> None:
        """Raise SignatureError unless ``pk`` made ``sig`` on the 32-byte hash ``digest``."""
        raw_pk = as_bytes(pk, "secp256k1 public key")
        self._point(raw_pk)
        try:
            recovered = self.recover_hash_public_key(digest, sig)
        except SignatureError as exc:
            # Recovery knows no expected signer; the caller gave one, so the error names it.
            details = {k: v for k, v in exc.details.items() if k not in ("expected", "observed")}
            raise SignatureError(exc.message, expected=self._address(raw_pk), observed=None, **details) from None
        if recovered != raw_pk:
            raise SignatureError(
                "the secp256k1 signature was made by another key (or on another message)",
                expected=self._address(raw_pk),
                observed=self._address(recovered),
                reason="signer",
            )

    def verify(self, pk: bytes, message: bytes, sig: bytes) -> None:
        self.verify_hash(pk, self.message_hash(message), sig)

    def batch_verify(self, items: Iterable[tuple[bytes, bytes, bytes]]) -> None:
        triples = batch_triples(items)
        failures: dict[int, tuple[str, str]] = {}
        for i, (pk, message, sig) in enumerate(triples):
            try:
                self.verify(pk, message, sig)  # type: ignore[arg-type]
            except PoEError as exc:
                # A bad key or message makes its item bad; anything else is not the item's fault.
                if not isinstance(exc, (InputError, SignatureError)):
                    raise
                failures[i] = failure(exc)
        raise_batch_failures(len(triples), failures)




def __getattr__(name: str) -> Any:
    # SECP256K1, the scheme on the chosen backend, is made on first use: choosing loads a library.
    if name == "SECP256K1":
        from poe.crypto.schemes import get_scheme

        return get_scheme(Secp256k1Scheme.name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

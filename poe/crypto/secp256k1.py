"""secp256k1 ECDSA (``"secp256k1"``), built to be checked on chain by ``ecrecover``.

The ECDSA itself is poe's own code over py-ecc's secp256k1 curve arithmetic (pure Python, *not*
constant time: keep signing keys on hosts where timing is not observable by others). It loads
no pairing code, so a verifier that only meets secp256k1 starts quickly.

The message poe passes is a 32-byte statement digest ``d``; the hash actually signed is the
EIP-191 ``personal_sign`` hash::

    h = keccak256(b"\\x19Ethereum Signed Message:\\n32" || d)

(Keccak-256 with the original 0x01 padding, not FIPS 202 SHA3-256), so a Solidity contract checks
an attestation with ``ecrecover(h, v, r, s)`` where it computes ``h`` from ``d`` exactly as above
(OpenZeppelin's ``MessageHashUtils.toEthSignedMessageHash(bytes32)``). Signatures are 65 bytes
``r || s || v``: r and s 32-byte big-endian, s in the lower half of the group order (EIP-2 low-s; a
high-s signature is rejected as malleable), v = 27 + parity of R's y coordinate. Nonces are
deterministic per RFC 6979 (HMAC-SHA-256 over the secret key and ``h``); a candidate nonce is
skipped, and the RFC's generator continued, if it gives r = 0, s = 0, or an R whose x coordinate is
not below the group order (v cannot express that case). Public keys are 33-byte compressed SEC1
points. ``identity(pk)`` is the EIP-55 checksummed Ethereum address: the last 20 bytes of
keccak256 of the uncompressed point's 64 coordinate bytes.

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

from poe.crypto.keccak import keccak256
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
    from py_ecc.secp256k1 import secp256k1 as _k1

__all__ = ["Secp256k1Scheme", "SECP256K1", "checksum_address"]

_P = _k1.P
_N = _k1.N
_HALF_N = _N // 2
_G = _k1.G
_KEYGEN_KEY = b"poe 2026-11 secp256k1 keygen v1"
_EIP191_PREFIX = b"\x19Ethereum Signed Message:\n"


def checksum_address(address: bytes) -> str:
    """EIP-55 mixed-case hex of a 20-byte address: a hex letter is upper case where the matching
    nibble of keccak256(lower-case hex) is 8 or more."""
    raw = as_bytes(address, "address")
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
    raw = as_bytes(data, "secp256k1 public key")
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
    y = pow(alpha, (_P + 1) // 4, _P)  # a square root by one power, because p = 3 mod 4
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
            # EIP-2: only low-s is accepted on chain; negating s mirrors R, so its parity flips.
            s = _N - s
            parity ^= 1
        return r.to_bytes(32, "big") + s.to_bytes(32, "big") + bytes([27 + parity])
    raise InternalError("RFC 6979 nonce generator ended")  # pragma: no cover - it never ends


def _signature_values(sig: object) -> tuple[int, int, int]:
    """(r, s, parity) of a 65-byte r || s || v signature, each checked as ecrecover would."""
    raw = as_bytes(sig, "secp256k1 signature")
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
    return r, s, v - 27


def _ecdsa_recover(digest: bytes, sig: object) -> tuple[int, int]:
    """The public key point that signed ``digest`` with ``sig`` (r || s || v), or SignatureError."""
    r, s, parity = _signature_values(sig)
    ry = _lift_x(r, parity)
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
    recoverable = True
    secret_key_size = 32
    public_key_size = 33
    signature_size = 65

    @staticmethod
    def _secret_scalar(sk: object) -> int:
        return secret_scalar(sk, "secp256k1", _N, "n")

    @staticmethod
    def _digest(message: object) -> bytes:
        msg = as_bytes(message, "message")
        if len(msg) != 32:
            raise InputError(f"secp256k1 attestations sign a 32-byte digest, got {len(msg)} bytes")
        return msg

    def message_hash(self, message: bytes) -> bytes:
        """The hash actually signed: keccak256(b"\\x19Ethereum Signed Message:\\n32" || message)."""
        return _personal_sign_hash(self._digest(message))

    def generate_key(self, seed: bytes | None = None) -> bytes:
        material = seed_bytes(seed)
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
            # Recovery knows no expected signer; the caller gave one, so the error names it.
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


SECP256K1 = Secp256k1Scheme()

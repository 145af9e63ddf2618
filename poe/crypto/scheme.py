"""The signature-scheme interface every backend implements, and the error contract they share.

A backend (:mod:`poe.crypto.bls`, :mod:`poe.crypto.secp256k1`) is one module holding one
:class:`Scheme` subclass and its instance; :mod:`poe.crypto.schemes` finds it by name and imports
it on first use, so a verifier that only meets secp256k1 never pays for BLS pairing code. Keys and
signatures are plain bytes; every failure raises a typed poe error, never returns False:

* :class:`~poe.errors.KeyFormatError` (``attest.bad-key``): a secret or public key that is not a
  valid key of the scheme: wrong length, bad encoding, out of range, not in the prime-order
  subgroup, or the identity point.
* :class:`~poe.errors.SignatureError` (``attest.bad-signature``): a signature that does not verify,
  *including* bytes that do not decode as a signature at all (wrong length, bad flags, a point off
  the curve or outside the subgroup, a high-s or out-of-range ECDSA value, a bad recovery id). A
  provider that hands over garbage has handed over an invalid signature; ``details["reason"]`` says
  which check failed.
* :class:`~poe.errors.BatchVerificationError` (``attest.batch-failed``): a batch with invalid items;
  ``bad_indices`` names every one of them, ``details["failures"]`` gives each one's code and reason.
* :class:`~poe.errors.InputError`: misuse that is nobody's signature: a non-bytes argument, an
  empty key list, key and message lists of different lengths, an unknown scheme name, a seed shorter
  than 32 bytes, a secp256k1 message that is not a 32-byte digest, or an operation the scheme does
  not have (ask its capabilities first).

Deterministic keys: ``generate_key(seed)`` takes a seed of at least 32 bytes and derives the key
from it by the backend's documented rule; without a seed it draws 32 bytes from :mod:`secrets` and
proceeds the same way. Batch verification is sound for every scheme: a batch with an invalid item
never passes except with a probability the backend states (at most 2^-64).
"""

from __future__ import annotations

import secrets
import sys
from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from poe.errors import BatchVerificationError, InputError, KeyFormatError, PoEError

__all__ = ["Scheme"]


class Scheme(ABC):
    """A signature scheme poe can attest with; get one with :func:`poe.crypto.schemes.get_scheme`."""

    name: str
    secret_key_size: int
    public_key_size: int
    signature_size: int
    # Capabilities, so callers ask what a scheme can do instead of comparing names.
    #: Signatures aggregate (aggregate, fast_aggregate_verify, aggregate_verify), and because of
    #: that every key needs a proof of possession (pop_prove, pop_verify) before it is aggregated.
    aggregatable: bool = False
    #: batch_verify is cheaper than verifying each item, so collecting items into a batch pays.
    batchable: bool = False
    #: The signer's identity can be recovered from a signature and message (recover), as EVM
    #: ``ecrecover`` does.
    recoverable: bool = False

    @abstractmethod
    def generate_key(self, seed: bytes | None = None) -> bytes:
        """A secret key: random, or derived from ``seed`` (at least 32 bytes) deterministically."""

    @abstractmethod
    def public_key(self, sk: bytes) -> bytes:
        """The encoded public key of secret key ``sk``."""

    @abstractmethod
    def sign(self, sk: bytes, message: bytes) -> bytes:
        """Sign ``message`` (for poe: a 32-byte statement digest)."""

    @abstractmethod
    def verify(self, pk: bytes, message: bytes, sig: bytes) -> None:
        """Return if ``sig`` is ``pk``'s signature on ``message``; raise SignatureError otherwise."""

    @abstractmethod
    def identity(self, pk: bytes) -> str:
        """A short printable identity of public key ``pk``."""

    @abstractmethod
    def check_public_key(self, pk: bytes) -> None:
        """Raise KeyFormatError unless ``pk`` is a valid public key of this scheme."""

    @abstractmethod
    def batch_verify(self, items: Iterable[tuple[bytes, bytes, bytes]]) -> None:
        """Verify (pk, message, sig) triples; raise BatchVerificationError naming every bad one.

        Malformed keys and signatures make their item bad (they do not abort the batch); an item
        that is not a triple raises InputError. An empty batch verifies."""

    # Optional operations, present exactly when the matching capability is set. The defaults
    # raise InputError rather than AttributeError, so a caller that skipped the capability check
    # gets a poe error (exit 3) that names the scheme.

    def aggregate(self, sigs: Sequence[bytes]) -> bytes:
        """One signature standing for all of ``sigs`` (``aggregatable`` schemes)."""
        raise self._unsupported("aggregate signatures")

    def fast_aggregate_verify(self, pks: Sequence[bytes], message: bytes, sig: bytes) -> None:
        """Verify an aggregate of many keys' signatures on one message (``aggregatable``)."""
        raise self._unsupported("aggregate signatures")

    def aggregate_verify(self, pks: Sequence[bytes], messages: Sequence[bytes], sig: bytes) -> None:
        """Verify an aggregate over (key_i, message_i) pairs (``aggregatable``)."""
        raise self._unsupported("aggregate signatures")

    def pop_prove(self, sk: bytes) -> bytes:
        """A proof of possession of ``sk`` (``aggregatable`` schemes)."""
        raise self._unsupported("proofs of possession")

    def pop_verify(self, pk: bytes, proof: bytes) -> None:
        """Raise SignatureError unless ``proof`` proves possession of ``pk`` (``aggregatable``)."""
        raise self._unsupported("proofs of possession")

    def recover(self, message: bytes, sig: bytes) -> str:
        """The identity whose key made ``sig`` on ``message`` (``recoverable`` schemes)."""
        raise self._unsupported("recovering the signer")

    def _unsupported(self, what: str) -> InputError:
        return InputError(f"the {self.name} scheme has no {what}", observed=self.name)

    def __repr__(self) -> str:
        return f"<poe signature scheme {self.name}>"


# -- helpers the backends share, so every backend reports the same errors the same way ----------


def as_bytes(value: object, what: str) -> bytes:
    if isinstance(value, bytes):
        return value
    if isinstance(value, (bytearray, memoryview)):
        return bytes(value)
    raise InputError(f"{what} must be bytes, not {type(value).__name__}")


def seed_bytes(seed: object) -> bytes:
    if seed is None:
        return secrets.token_bytes(32)
    raw = as_bytes(seed, "key seed")
    if len(raw) < 32:
        raise InputError(f"a key seed must have at least 32 bytes of entropy, got {len(raw)} bytes")
    return raw


def secret_scalar(sk: object, scheme: str, order: int, symbol: str) -> int:
    """A 32-byte big-endian secret key as a scalar in [1, order)."""
    raw = as_bytes(sk, f"{scheme} secret key")
    if len(raw) != 32:
        raise KeyFormatError(f"a {scheme} secret key has 32 bytes, got {len(raw)}", reason="length")
    value = int.from_bytes(raw, "big")
    if not 0 < value < order:
        raise KeyFormatError(f"a {scheme} secret key must lie in [1, {symbol})", reason="range")
    return value


def batch_triples(items: Iterable[Any]) -> list[tuple[object, object, object]]:
    # Checked up front: a caller's shape mistake is misuse, not a bad signature to be counted.
    out = []
    for i, item in enumerate(items):
        if not isinstance(item, (tuple, list)) or len(item) != 3:
            raise InputError(f"batch item {i} is not a (public key, message, signature) triple")
        out.append((item[0], item[1], item[2]))
    return out


def failure(exc: PoEError) -> tuple[str, str]:
    return exc.code, exc.message


def raise_batch_failures(n: int, failures: dict[int, tuple[str, str]]) -> None:
    if not failures:
        return
    bad = sorted(failures)
    shown = ", ".join(str(i) for i in bad[:16]) + (", ..." if len(bad) > 16 else "")
    raise BatchVerificationError(
        f"{len(bad)} of {n} signatures in the batch do not verify (indices {shown})",
        bad_indices=bad,
        expected=n,
        observed=n - len(bad),
        failures=[{"index": i, "code": failures[i][0], "reason": failures[i][1]} for i in bad],
    )


@contextmanager
def kept_recursion_limit() -> Iterator[None]:
    """Import py-ecc inside this: its package raises the interpreter's recursion limit to 100000
    on import. Nothing poe calls needs that, and with it a deeply nested JSON document overflows
    the C stack (a crash) instead of raising RecursionError."""
    limit = sys.getrecursionlimit()
    try:
        yield
    finally:
        sys.setrecursionlimit(limit)

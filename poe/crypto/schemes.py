"""Signature schemes by name: the registry of backends behind :class:`~poe.crypto.scheme.Scheme`.

``get_scheme("bls12-381")`` or ``get_scheme("secp256k1")`` returns the scheme, importing its
backend module the first time it is asked for. Importing this module loads no backend: py-ecc's
BLS pairing code takes about half a second to import, and a verifier that only meets secp256k1
(or no signature at all) should not pay for it. Ask a scheme's capabilities (``aggregatable``,
``batchable``, ``recoverable``) rather than comparing its name.

The interface and the errors every backend raises are described in :mod:`poe.crypto.scheme`; each
scheme's encodings and rules in its backend, :mod:`poe.crypto.bls` and :mod:`poe.crypto.secp256k1`.
The names this module exported before the backends were split out (``BLS``, ``SECP256K1``, their
classes, ``checksum_address``, and a few helpers the tests check directly) still resolve here, each
loading its backend when first used.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any

from poe.crypto.scheme import Scheme
from poe.errors import InputError

if TYPE_CHECKING:  # what __getattr__ below resolves, spelled out for type checkers and linters
    from poe.crypto.bls import BLS, BLSScheme
    from poe.crypto.secp256k1 import SECP256K1, Secp256k1Scheme, checksum_address

__all__ = [
    "Scheme",
    "BLSScheme",
    "Secp256k1Scheme",
    "BLS",
    "SECP256K1",
    "SCHEMES",
    "SCHEME_NAMES",
    "get_scheme",
    "checksum_address",
]

_BLS_MODULE = "poe.crypto.bls"
_SECP256K1_MODULE = "poe.crypto.secp256k1"

# Scheme name -> (backend module, name of its Scheme instance there).
_BACKENDS: dict[str, tuple[str, str]] = {
    "bls12-381": (_BLS_MODULE, "BLS"),
    "secp256k1": (_SECP256K1_MODULE, "SECP256K1"),
}

#: Every scheme name get_scheme knows, without loading any backend.
SCHEME_NAMES: tuple[str, ...] = tuple(_BACKENDS)


def get_scheme(name: str) -> Scheme:
    """The scheme called ``name`` ("bls12-381" or "secp256k1"); loads its backend on first use."""
    try:
        module, attribute = _BACKENDS[name]
    except (KeyError, TypeError):  # TypeError: an unhashable name is unknown too, not a crash
        raise InputError(
            f"unknown signature scheme {name!r}; known: {', '.join(sorted(SCHEME_NAMES))}", observed=str(name)
        ) from None
    scheme: Scheme = getattr(importlib.import_module(module), attribute)
    return scheme


class _Schemes(Mapping[str, Scheme]):
    """Read-only name -> scheme mapping; a value's backend loads when that value is read, so
    listing or testing names loads nothing."""

    def __getitem__(self, name: str) -> Scheme:
        if name not in _BACKENDS:
            raise KeyError(name)
        return get_scheme(name)

    def __contains__(self, name: object) -> bool:
        try:
            return name in _BACKENDS
        except TypeError:
            return False

    def __iter__(self) -> Iterator[str]:
        return iter(SCHEME_NAMES)

    def __len__(self) -> int:
        return len(SCHEME_NAMES)

    def __repr__(self) -> str:
        return f"<poe signature schemes {', '.join(SCHEME_NAMES)}>"


SCHEMES: Mapping[str, Scheme] = _Schemes()

# Names that live in a backend, resolved on first access (PEP 562) so that callers written
# before the split keep working without making this module import py-ecc.
_MOVED: dict[str, str] = {
    "BLS": _BLS_MODULE,
    "BLSScheme": _BLS_MODULE,
    "_g1_from_bytes": _BLS_MODULE,
    "_g2_from_bytes": _BLS_MODULE,
    "_hash_to_g2": _BLS_MODULE,
    "SECP256K1": _SECP256K1_MODULE,
    "Secp256k1Scheme": _SECP256K1_MODULE,
    "checksum_address": _SECP256K1_MODULE,
    "_ecdsa_recover": _SECP256K1_MODULE,
    "_ecdsa_sign": _SECP256K1_MODULE,
    "_personal_sign_hash": _SECP256K1_MODULE,
    "_rfc6979_nonces": _SECP256K1_MODULE,
}


def __getattr__(name: str) -> Any:
    module = _MOVED.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later lookups skip this hook
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_MOVED))

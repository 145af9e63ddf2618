"""Signature schemes by name: ``get_scheme("bls12-381")``, ``get_scheme("secp256k1")``.

A scheme (:mod:`poe.crypto.bls`, :mod:`poe.crypto.secp256k1`) holds poe's rules and runs on a
backend library (:mod:`poe.crypto.backends`: a native one when installed, py-ecc as the
reference). ``get_scheme(name)`` returns the scheme on the backend chosen for this process,
``get_scheme(name, backend="py-ecc")`` on a named one; the library loads on first use, so
importing this module loads none, and a verifier that meets no signature pays for none. Ask a
scheme's capabilities (``aggregatable``, ``batchable``, ``recoverable``) rather than comparing its
name; ``scheme.backend.name`` says which library runs it.

The interface and the errors every scheme raises are described in :mod:`poe.crypto.scheme`.
``BLS``, ``SECP256K1`` (the schemes on this process's backends), their classes and
``checksum_address`` resolve here too, each loading what it needs when first used.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterable, Iterator, Mapping
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
    "backend_report",
    "checksum_address",
]

_BLS_MODULE = "poe.crypto.bls"
_SECP256K1_MODULE = "poe.crypto.secp256k1"

# Scheme name -> (module, Scheme subclass there). A scheme instance is bound to one backend.
_CLASSES: dict[str, tuple[str, str]] = {
    "bls12-381": (_BLS_MODULE, "BLSScheme"),
    "secp256k1": (_SECP256K1_MODULE, "Secp256k1Scheme"),
}

#: Every scheme name get_scheme knows, without loading any backend.
SCHEME_NAMES: tuple[str, ...] = tuple(_CLASSES)

_instances: dict[tuple[str, str], Scheme] = {}


def get_scheme(name: str, backend: str | None = None) -> Scheme:
    """The scheme called ``name`` ("bls12-381" or "secp256k1") on ``backend`` (a name from
    :data:`poe.crypto.backends.BACKENDS`; default: the one chosen for this process, see
    :func:`poe.crypto.backends.choose`). Loads the backend's library on first use."""
    try:
        module, attribute = _CLASSES[name]
    except (KeyError, TypeError):  # TypeError: an unhashable name is unknown too, not a crash
        raise InputError(
            f"unknown signature scheme {name!r}; known: {', '.join(sorted(SCHEME_NAMES))}", observed=str(name)
        ) from None
    from poe.crypto import backends

    impl = backends.choose(name) if backend is None else backends.load(name, backend)
    key = (name, impl.name)
    if key not in _instances:
        _instances[key] = getattr(importlib.import_module(module), attribute)(impl)
    return _instances[key]


def backend_report(names: Iterable[str]) -> dict[str, dict[str, str]]:
    """For each scheme name: which backend this process runs it on, and that library's release
    (what ``--json`` outputs and the benchmarks record)."""
    out = {}
    for name in sorted(set(names)):
        backend = get_scheme(name).backend  # type: ignore[attr-defined]
        out[name] = {"backend": backend.name, "library": backend.library, "version": backend.version}
    return out


class _Schemes(Mapping[str, Scheme]):
    """Read-only name -> scheme mapping; a value's backend loads when that value is read, so
    listing or testing names loads nothing."""

    def __getitem__(self, name: str) -> Scheme:
        if name not in _CLASSES:
            raise KeyError(name)
        return get_scheme(name)

    def __contains__(self, name: object) -> bool:
        try:
            return name in _CLASSES
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
    "BLSScheme": _BLS_MODULE,
    "Secp256k1Scheme": _SECP256K1_MODULE,
    "checksum_address": _SECP256K1_MODULE,
}


def __getattr__(name: str) -> Any:
    if name in ("BLS", "SECP256K1"):  # the schemes on this process's backends
        return get_scheme("bls12-381" if name == "BLS" else "secp256k1")
    module = _MOVED.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later lookups skip this hook
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_MOVED) | {"BLS", "SECP256K1"})

"""The libraries under each signature scheme, and which one runs.

A :class:`~poe.crypto.scheme.Scheme` holds poe's rules (encodings, key validation, low-s, batch
soundness) and leaves the arithmetic to a *backend*: one module here per library, each exporting
``BACKEND``, an object with the operations its scheme's protocol below names. A backend module
imports its library at import time and raises :class:`Unavailable` when the library is missing
or outside the release range poe was tested with; nothing else in poe imports a library directly.

==============  ==========================  ===========================================
scheme          backends, preferred first   library
==============  ==========================  ===========================================
``bls12-381``   ``arkworks``, ``py-ecc``    py-arkworks-bls12381 0.5 (Rust), py-ecc 8
``secp256k1``   ``coincurve``, ``py-ecc``   coincurve 21 (libsecp256k1), py-ecc 8
==============  ==========================  ===========================================

py-ecc is the reference: pure Python, always installed, and what every other backend is
cross-checked against in the tests; it is two to three orders of magnitude slower. The choice is
made once per scheme, on first use, from ``POE_CRYPTO_BACKEND``:

* unset or ``auto``: the first backend that loads; falling back to py-ecc says so once, as a
  :class:`SlowBackendWarning`;
* ``py-ecc``: the reference for every scheme (its import is then the ~0.4 s it costs);
* ``native``: the native backend of every scheme, or :class:`~poe.errors.BackendError`;
* a backend's own name (``arkworks``, ``coincurve``): that backend for its scheme, ``auto`` for
  the others.

``get_scheme(name, backend=...)`` in :mod:`poe.crypto.schemes` picks one explicitly, as the
tests and benchmarks do to run every backend side by side.
"""

from __future__ import annotations

import importlib
import os
import warnings
from typing import Any, Protocol, Sequence

from poe.errors import BackendError

__all__ = [
    "ENV",
    "REFERENCE",
    "BACKENDS",
    "Unavailable",
    "SlowBackendWarning",
    "BlsBackend",
    "Secp256k1Backend",
    "load",
    "available",
    "choose",
]

ENV = "POE_CRYPTO_BACKEND"
REFERENCE = "py-ecc"

# scheme -> ((backend name, module), ...), preferred first; the reference is always last.
BACKENDS: dict[str, tuple[tuple[str, str], ...]] = {
    "bls12-381": (("arkworks", "poe.crypto.backends.bls_arkworks"), (REFERENCE, "poe.crypto.backends.bls_pyecc")),
    "secp256k1": (("coincurve", "poe.crypto.backends.k1_coincurve"), (REFERENCE, "poe.crypto.backends.k1_pyecc")),
}


class Unavailable(ImportError):
    """A backend's library is not importable here, or is a release poe was not tested with."""


class SlowBackendWarning(RuntimeWarning):
    """A scheme runs on the pure-Python reference because no native backend could be loaded."""


class BlsBackend(Protocol):
    """Group arithmetic on BLS12-381. Points are the library's own objects; poe never looks
    inside them. ``g1_decode``/``g2_decode`` receive encodings poe has already checked to be
    canonical (flags, coordinates below p, the one encoding of infinity) and must return a point
    on the curve *and in the prime-order subgroup*, or raise ``ValueError``; scalars are ints in
    [0, r)."""

    name: str
    library: str
    version: str

    def g1_decode(self, raw: bytes) -> Any: ...
    def g1_encode(self, point: Any) -> bytes: ...
    def g1_is_identity(self, point: Any) -> bool: ...
    def g1_sum(self, points: Sequence[Any]) -> Any: ...
    def g1_msm(self, points: Sequence[Any], scalars: Sequence[int]) -> Any: ...
    def g1_generator_mul(self, scalar: int) -> Any: ...
    def g2_decode(self, raw: bytes) -> Any: ...
    def g2_encode(self, point: Any) -> bytes: ...
    def g2_is_identity(self, point: Any) -> bool: ...
    def g2_sum(self, points: Sequence[Any]) -> Any: ...
    def g2_msm(self, points: Sequence[Any], scalars: Sequence[int]) -> Any: ...
    def g2_mul(self, point: Any, scalar: int) -> Any: ...
    def hash_to_g2(self, message: bytes, dst: bytes) -> Any: ...
    def pairing_check(self, pairs: Sequence[tuple[Any, Any]]) -> bool:
        """prod e(P_i, Q_i) == 1 for (G1, G2) pairs."""
        ...


class Secp256k1Backend(Protocol):
    """ECDSA on secp256k1 over 32-byte hashes. poe checks r, s, v and key encodings before it
    calls ``recover``; ``sign`` must derive its nonce deterministically (RFC 6979) and return a
    low-s signature."""

    name: str
    library: str
    version: str

    def public_key(self, secret: bytes) -> bytes:
        """The 33-byte compressed public key of a secret in [1, n)."""
        ...

    def uncompressed(self, pk: bytes) -> bytes:
        """The 64 coordinate bytes x || y of a compressed key, or ValueError if it is no point."""
        ...

    def sign(self, secret: bytes, digest: bytes) -> tuple[bytes, int]:
        """(r || s, parity of R's y) for ``digest``."""
        ...

    def recover(self, digest: bytes, rs: bytes, parity: int) -> bytes | None:
        """The 64 coordinate bytes x || y of the key that made ``rs`` with recovery id
        ``parity`` (what an address hashes, so no second decoding is needed), or None."""
        ...


_loaded: dict[tuple[str, str], Any] = {}
_chosen: dict[str, Any] = {}


def _names(scheme: str) -> tuple[str, ...]:
    return tuple(name for name, _ in BACKENDS[scheme])


def load(scheme: str, name: str) -> Any:
    """Backend ``name`` of ``scheme``; BackendError if unknown or not loadable here."""
    modules = dict(BACKENDS[scheme])
    if name not in modules:
        raise BackendError(
            f"{scheme} has no backend {name!r}; known: {', '.join(_names(scheme))}", observed=name
        )
    key = (scheme, name)
    if key not in _loaded:
        try:
            _loaded[key] = importlib.import_module(modules[name]).BACKEND
        except ImportError as exc:  # Unavailable, or the library itself missing
            raise BackendError(f"the {name} backend of {scheme} cannot be loaded: {exc}", observed=name) from None
    return _loaded[key]


def available(scheme: str) -> dict[str, str | None]:
    """Each backend of ``scheme`` and why it cannot be loaded (None: it loads)."""
    out: dict[str, str | None] = {}
    for name in _names(scheme):
        try:
            load(scheme, name)
            out[name] = None
        except BackendError as exc:
            out[name] = exc.message
    return out


def _requested() -> str:
    value = os.environ.get(ENV, "").strip()
    return value or "auto"


def choose(scheme: str) -> Any:
    """The backend ``scheme`` runs on in this process (see the module docstring)."""
    if scheme in _chosen:
        return _chosen[scheme]
    want = _requested()
    names = _names(scheme)
    every = {n for s in BACKENDS for n in _names(s)} | {"auto", "native"}
    if want not in every:
        raise BackendError(
            f"{ENV}={want!r} is not a backend; use auto, native, {REFERENCE} or one of "
            + ", ".join(sorted(every - {"auto", "native", REFERENCE})),
            observed=want,
        )
    if want == REFERENCE:
        backend = load(scheme, REFERENCE)
    elif want == "native":
        backend = load(scheme, names[0])
    elif want in names:
        backend = load(scheme, want)
    else:
        backend = _first_loadable(scheme, names)
    _chosen[scheme] = backend
    return backend


def _first_loadable(scheme: str, names: tuple[str, ...]) -> Any:
    reasons = []
    for name in names[:-1]:
        try:
            return load(scheme, name)
        except BackendError as exc:
            reasons.append(exc.message)
    warnings.warn(
        f"poe: {scheme} signatures run on the pure-Python reference (py-ecc), two to three orders "
        f"of magnitude slower, because {'; '.join(reasons)}. Install poe with its default "
        "dependencies to get the native backend.",
        SlowBackendWarning,
        stacklevel=3,
    )
    return load(scheme, REFERENCE)


def library_version(distribution: str, module: Any, tested: tuple[int, int]) -> str:
    """The release of ``module`` (its ``__version__``, else the installed distribution's) if it
    lies in [tested[0], tested[1]) by major.minor*100, else Unavailable. A backend module calls
    this at import, so an untested release is refused instead of trusted."""
    version = getattr(module, "__version__", None)
    if not isinstance(version, str):
        from importlib import metadata

        version = metadata.version(distribution)
    parts = version.split(".")
    try:
        major, minor = int(parts[0]), int(parts[1]) if len(parts) > 1 else 0
    except ValueError:
        raise Unavailable(f"{distribution} reports an unreadable version {version!r}") from None
    number = major * 100 + minor
    if not tested[0] <= number < tested[1]:
        low, high = divmod(tested[0], 100), divmod(tested[1], 100)
        raise Unavailable(
            f"{distribution} {version} is installed, but poe was tested with releases from "
            f"{low[0]}.{low[1]} up to (not including) {high[0]}.{high[1]}"
        )
    return version

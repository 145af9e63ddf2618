"""Thin binding to the native Merkle sum tree kernel, ``poe._poe_native``.

The kernel (C sources in ``native/``, compiled by cffi when the package is installed) computes
BLAKE3 and the Merkle sum tree of docs/spec.md §10 with SIMD hash-many (16 lanes of AVX-512 or
8 of AVX2, chosen at run time; a portable scalar path everywhere else).

Importing this module never fails: when the extension is missing or was built for another
interface version, :data:`AVAILABLE` is false, :data:`LOAD_ERROR` says why and how to build it,
and every function raises :class:`poe.errors.InternalError` with that message.

Byte layouts: a hash is 32 bytes; sums are 48 bytes, (fuel, mem, io) as three u128
little-endian; levels are hashes and sums concatenated node after node (n * 32 and n * 48
bytes). Functions take bytes-like objects and return ``bytes``; wrong lengths and types raise
:class:`poe.errors.InputError`, a sum reaching 2^128 :class:`poe.errors.SumOverflowError`.
"""

from __future__ import annotations

from array import array
from collections.abc import Iterable, Sequence
from typing import Any, NamedTuple

from .errors import (
    InclusionProofError,
    InputError,
    InternalError,
    PoEError,
    RootMismatchError,
    SumOverflowError,
)

__all__ = [
    "ABI_VERSION",
    "AVAILABLE",
    "LOAD_ERROR",
    "RECORD_SIZE",
    "HASH_SIZE",
    "SUMS_SIZE",
    "PROOF_OK",
    "PROOF_BAD_INDEX",
    "PROOF_BAD_PATH_LENGTH",
    "PROOF_ROOT_HASH_MISMATCH",
    "PROOF_ROOT_SUMS_MISMATCH",
    "PROOF_SUM_OVERFLOW",
    "PROOF_BAD_ARGUMENT",
    "RESULT_NAMES",
    "RESULT_ERRORS",
    "InclusionCase",
    "blake3",
    "leaf_hashes",
    "parent_level",
    "tree_levels",
    "root",
    "verify_inclusion_many",
    "error_for",
    "sums_to_ints",
    "sums_from_ints",
    "simd_path",
    "simd_paths",
]

ABI_VERSION = 1
"""The interface version of native/poe_native.h this binding is written against."""

RECORD_SIZE = 288
HASH_SIZE = 32
SUMS_SIZE = 48
_NODE_SIZE = HASH_SIZE + SUMS_SIZE
_U64_LIMIT = 1 << 64
_U128_LIMIT = 1 << 128

# Result codes of verify_inclusion_many (POE_PROOF_* in native/poe_native.h).
PROOF_OK = 0
PROOF_BAD_INDEX = 1
PROOF_BAD_PATH_LENGTH = 2
PROOF_ROOT_HASH_MISMATCH = 3
PROOF_ROOT_SUMS_MISMATCH = 4
PROOF_SUM_OVERFLOW = 5
PROOF_BAD_ARGUMENT = 6

RESULT_NAMES: dict[int, str] = {
    PROOF_OK: "ok",
    PROOF_BAD_INDEX: "bad-index",
    PROOF_BAD_PATH_LENGTH: "bad-path-length",
    PROOF_ROOT_HASH_MISMATCH: "root-hash-mismatch",
    PROOF_ROOT_SUMS_MISMATCH: "root-sums-mismatch",
    PROOF_SUM_OVERFLOW: "sum-overflow",
    PROOF_BAD_ARGUMENT: "bad-argument",
}

RESULT_ERRORS: dict[int, str | None] = {
    PROOF_OK: None,
    PROOF_BAD_INDEX: "InclusionProofError",
    PROOF_BAD_PATH_LENGTH: "InclusionProofError",
    PROOF_ROOT_HASH_MISMATCH: "RootMismatchError",
    PROOF_ROOT_SUMS_MISMATCH: "RootMismatchError",
    PROOF_SUM_OVERFLOW: "InclusionProofError",  # as the reference: an overflowing proof is an invalid proof
    PROOF_BAD_ARGUMENT: "InputError",
}
"""Result code -> name of the poe.errors class a caller should raise for it (None: accepted)."""

_ERROR_CLASSES: dict[str, type[PoEError]] = {
    "InclusionProofError": InclusionProofError,
    "RootMismatchError": RootMismatchError,
    "SumOverflowError": SumOverflowError,
    "InputError": InputError,
}

_STATUS_OK = 0
_STATUS_OVERFLOW = 1
_STATUS_ARGUMENT = 2
_STATUS_NOMEM = 3

_BUILD_HINT = "build it from the repository root with `python3 -m pip install -e .` (needs a C compiler)"

AVAILABLE = False
LOAD_ERROR: str | None = None
_ffi: Any = None
_lib: Any = None
_alloc: Any = None

try:
    from . import _poe_native  # type: ignore[attr-defined]
except ImportError as _exc:
    LOAD_ERROR = f"The native kernel poe._poe_native is not built ({_exc}); {_BUILD_HINT}."
else:
    try:
        _found = _poe_native.lib.poe_abi_version()
    except Exception:  # not this kernel at all
        _found = "unknown"
    if _found != ABI_VERSION:
        LOAD_ERROR = (
            f"The native kernel poe._poe_native has interface version {_found} but this poe expects "
            f"{ABI_VERSION}; rebuild it: {_BUILD_HINT}."
        )
    else:
        _ffi = _poe_native.ffi
        _lib = _poe_native.lib
        _alloc = _ffi.new_allocator(should_clear_after_alloc=False)
        AVAILABLE = True


def _require() -> None:
    if not AVAILABLE:
        raise InternalError(LOAD_ERROR or "the native kernel is unavailable")


def _uninitialised(n: int) -> Any:
    """An output buffer the kernel fills completely (so not zeroed first)."""
    return _alloc("uint8_t[]", n)


def _bytes_like(data: Any, what: str) -> tuple[Any, int]:
    """A C-contiguous byte view of `data` and its length in bytes."""
    if isinstance(data, (bytes, bytearray)):
        return data, len(data)
    try:
        view = memoryview(data)
    except TypeError:
        raise InputError(f"{what} must be bytes-like, not {type(data).__name__}") from None
    if not view.c_contiguous:
        view = memoryview(view.tobytes())
    if view.ndim != 1 or view.format != "B":
        try:
            view = view.cast("B")
        except (TypeError, ValueError):
            view = memoryview(view.tobytes())
    return view, view.nbytes


def _ptr(data: Any) -> Any:
    return _ffi.from_buffer("uint8_t[]", data)


def _int(value: Any, what: str, limit: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise InputError(f"{what} must be an integer, not {type(value).__name__}")
    if not 0 <= value < limit:
        raise InputError(f"{what} must be in [0, {limit}), got {value}")
    return value


def _fixed(data: Any, size: int, what: str) -> bytes:
    view, n = _bytes_like(data, what)
    if n != size:
        raise InputError(f"{what} must be {size} bytes, got {n}")
    return bytes(view)


# ------------------------------------------------------------------ BLAKE3


def blake3(
    data: Any,
    *,
    key: Any = None,
    derive_key_context: str | bytes | None = None,
    length: int = 32,
) -> bytes:
    """BLAKE3 of `data`: plain, keyed (`key`, 32 bytes) or derive-key (`derive_key_context`, a
    str encoded as UTF-8, or bytes); `length` bytes of (extended) output."""
    _require()
    view, n = _bytes_like(data, "data")
    length = _int(length, "length", 1 << 48)
    if key is not None and derive_key_context is not None:
        raise InputError("give key or derive_key_context, not both")
    key_ptr = _ffi.NULL
    ctx: bytes = b""
    if key is not None:
        mode = _lib.POE_MODE_KEYED
        key_ptr = _ptr(_fixed(key, 32, "key"))
    elif derive_key_context is not None:
        mode = _lib.POE_MODE_DERIVE_KEY
        if isinstance(derive_key_context, str):
            try:
                ctx = derive_key_context.encode("utf-8")
            except UnicodeEncodeError:
                raise InputError("derive_key_context is not encodable as UTF-8") from None
        else:
            ctx = bytes(_bytes_like(derive_key_context, "derive_key_context")[0])
    else:
        mode = _lib.POE_MODE_HASH
    out = _uninitialised(length)
    rc = _lib.poe_blake3(_ptr(view), n, mode, key_ptr, _ptr(ctx), len(ctx), out, length)
    if rc != _STATUS_OK:
        raise InternalError(f"native BLAKE3 refused its arguments (status {rc})")
    return bytes(_ffi.buffer(out, length))


# ------------------------------------------------------------------ tree


def _raise_status(rc: int, what: str) -> None:
    if rc == _STATUS_OK:
        return
    if rc == _STATUS_OVERFLOW:
        raise SumOverflowError(f"{what}: a sum of metered quantities reaches 2^128")
    if rc == _STATUS_NOMEM:
        raise MemoryError(f"{what}: the native kernel could not allocate memory")
    raise InternalError(f"{what}: the native kernel refused its arguments (status {rc})")


def leaf_hashes(records: Any) -> tuple[bytes, bytes]:
    """Leaf hashes (n * 32 bytes) and sums (n * 48 bytes) of n concatenated 288-byte records.

    The records are hashed as they are; decoding them (spec §2) is the caller's business.
    """
    _require()
    view, size = _bytes_like(records, "records")
    if size % RECORD_SIZE:
        raise InputError(f"records must be a multiple of {RECORD_SIZE} bytes, got {size}")
    n = size // RECORD_SIZE
    hashes, sums = _uninitialised(n * HASH_SIZE), _uninitialised(n * SUMS_SIZE)
    _raise_status(_lib.poe_leaf_hashes(_ptr(view), n, hashes, sums), "leaf_hashes")
    return bytes(_ffi.buffer(hashes, n * HASH_SIZE)), bytes(_ffi.buffer(sums, n * SUMS_SIZE))


def _level(hashes: Any, sums: Any) -> tuple[Any, Any, int]:
    hview, hsize = _bytes_like(hashes, "hashes")
    sview, ssize = _bytes_like(sums, "sums")
    if hsize % HASH_SIZE or ssize % SUMS_SIZE:
        raise InputError(f"hashes must be n * {HASH_SIZE} bytes and sums n * {SUMS_SIZE}, got {hsize} and {ssize}")
    if hsize // HASH_SIZE != ssize // SUMS_SIZE:
        raise InputError(f"{hsize // HASH_SIZE} hashes but {ssize // SUMS_SIZE} sums")
    return hview, sview, hsize // HASH_SIZE


def parent_level(hashes: Any, sums: Any) -> tuple[bytes, bytes]:
    """The level above n nodes: ceil(n / 2) parents, an unpaired last node carried up unchanged."""
    _require()
    hview, sview, n = _level(hashes, sums)
    m = (n + 1) // 2
    out_h, out_s = _uninitialised(m * HASH_SIZE), _uninitialised(m * SUMS_SIZE)
    _raise_status(_lib.poe_parent_level(_ptr(hview), _ptr(sview), n, out_h, out_s), "parent_level")
    return bytes(_ffi.buffer(out_h, m * HASH_SIZE)), bytes(_ffi.buffer(out_s, m * SUMS_SIZE))


def tree_levels(records: Any) -> list[tuple[bytes, bytes]]:
    """Every level of the tree as (hashes, sums): the leaves first, the one-node root level last.

    An empty input has no levels (its root is the empty-tree hash, see :func:`root`).
    """
    level = leaf_hashes(records)
    if not level[0]:
        return []
    levels = [level]
    while len(level[0]) > HASH_SIZE:
        level = parent_level(*level)
        levels.append(level)
    return levels


def root(records: Any) -> tuple[bytes, bytes]:
    """Root hash (32 bytes) and sums (48 bytes) of the tree over the concatenated records.

    No records give the empty-tree hash of spec §10 and zero sums.
    """
    _require()
    view, size = _bytes_like(records, "records")
    if size % RECORD_SIZE:
        raise InputError(f"records must be a multiple of {RECORD_SIZE} bytes, got {size}")
    out_h, out_s = _uninitialised(HASH_SIZE), _uninitialised(SUMS_SIZE)
    _raise_status(_lib.poe_merkle_root(_ptr(view), size // RECORD_SIZE, out_h, out_s), "root")
    return bytes(_ffi.buffer(out_h, HASH_SIZE)), bytes(_ffi.buffer(out_s, SUMS_SIZE))


# ------------------------------------------------------------------ inclusion proofs


class InclusionCase(NamedTuple):
    """One inclusion proof to check.

    `path` holds the siblings from the leaf upward, either as (hash, sums) pairs or as bytes of
    k * 80 (hash ‖ sums per entry, as in the binary proof form of spec §10). The root fields are
    left None when :func:`verify_inclusion_many` is given one root for all proofs.
    """

    leaf_hash: bytes
    leaf_sums: bytes
    index: int
    size: int
    path: Any
    root_hash: bytes | None = None
    root_sums: bytes | None = None


def _path_entries(path: Any, what: str) -> tuple[bytes, int]:
    """The path as k concatenated 80-byte entries (hash ‖ sums), and k."""
    if isinstance(path, (bytes, bytearray, memoryview)):
        view, size = _bytes_like(path, what)
        if size % _NODE_SIZE:
            raise InputError(f"{what} must be k * {_NODE_SIZE} bytes, got {size}")
        return bytes(view), size // _NODE_SIZE
    if not isinstance(path, Iterable) or isinstance(path, str):
        raise InputError(f"{what} must be bytes or a sequence of (hash, sums) pairs")
    parts = []
    for j, entry in enumerate(path):
        if not isinstance(entry, Sequence) or isinstance(entry, (str, bytes, bytearray)) or len(entry) != 2:
            raise InputError(f"{what}[{j}] must be a (hash, sums) pair")
        parts.append(_fixed(entry[0], HASH_SIZE, f"{what}[{j}] hash"))
        parts.append(_fixed(entry[1], SUMS_SIZE, f"{what}[{j}] sums"))
    return b"".join(parts), len(parts) // 2


def verify_inclusion_many(proofs: Iterable[Any], root: tuple[Any, Any] | None = None) -> list[int]:
    """Check many inclusion proofs (spec §10) at once; returns one result code per proof.

    Each proof is an :class:`InclusionCase` or a tuple in its field order: (leaf_hash 32,
    leaf_sums 48, index, size, path[, root_hash 32, root_sums 48]). With `root` = (hash, sums)
    every proof is checked against that root and must not carry its own; without it every proof
    must. Codes: :data:`PROOF_OK` and the other ``PROOF_*`` constants; :data:`RESULT_NAMES` names
    them and :func:`error_for` gives the poe.errors class to raise. Malformed arguments (wrong
    lengths, non-integers, integers outside u64) raise :class:`InputError` instead; an index
    outside the tree or a path of the wrong length is a result code, not an exception.
    """
    _require()
    if isinstance(proofs, (str, bytes, bytearray)) or not isinstance(proofs, Iterable):
        raise InputError("proofs must be a sequence of inclusion proofs")
    leaf_h, leaf_s, paths, root_h, root_s = [], [], [], [], []
    indices, sizes, offsets = array("Q"), array("Q"), array("Q", [0])
    n_entries = 0
    shared = root is not None
    if shared:
        if not isinstance(root, Sequence) or isinstance(root, (str, bytes, bytearray)) or len(root) != 2:
            raise InputError("root must be a (hash, sums) pair")
        root_h.append(_fixed(root[0], HASH_SIZE, "root hash"))
        root_s.append(_fixed(root[1], SUMS_SIZE, "root sums"))
    for i, proof in enumerate(proofs):
        if not isinstance(proof, Sequence) or isinstance(proof, (str, bytes, bytearray)):
            raise InputError(f"proof {i} must be an InclusionCase or a tuple")
        if len(proof) not in (5, 7):
            raise InputError(f"proof {i} must have 5 or 7 fields, got {len(proof)}")
        leaf_h.append(_fixed(proof[0], HASH_SIZE, f"proof {i} leaf hash"))
        leaf_s.append(_fixed(proof[1], SUMS_SIZE, f"proof {i} leaf sums"))
        indices.append(_int(proof[2], f"proof {i} index", _U64_LIMIT))
        sizes.append(_int(proof[3], f"proof {i} size", _U64_LIMIT))
        entries, k = _path_entries(proof[4], f"proof {i} path")
        paths.append(entries)
        n_entries += k
        offsets.append(n_entries)
        own = proof[5:] if len(proof) == 7 else (None, None)
        if shared:
            if own[0] is not None or own[1] is not None:
                raise InputError(f"proof {i} carries its own root but a shared root was given")
        else:
            if own[0] is None or own[1] is None:
                raise InputError(f"proof {i} has no root and no shared root was given")
            root_h.append(_fixed(own[0], HASH_SIZE, f"proof {i} root hash"))
            root_s.append(_fixed(own[1], SUMS_SIZE, f"proof {i} root sums"))
    m = len(leaf_h)
    if m == 0:
        return []
    results = _ffi.new("int32_t[]", m)
    rc = _lib.poe_verify_inclusion_many(
        m,
        _ptr(b"".join(leaf_h)),
        _ptr(b"".join(leaf_s)),
        _ffi.from_buffer("uint64_t[]", indices),
        _ffi.from_buffer("uint64_t[]", sizes),
        _ffi.from_buffer("uint64_t[]", offsets),
        _ptr(b"".join(paths)),
        n_entries,
        _ptr(b"".join(root_h)),
        _ptr(b"".join(root_s)),
        len(root_h),
        results,
    )
    _raise_status(rc, "verify_inclusion_many")
    return list(results)


def error_for(code: int) -> type[PoEError] | None:
    """The poe.errors class for a result code of :func:`verify_inclusion_many` (None for ok)."""
    if isinstance(code, bool) or not isinstance(code, int) or code not in RESULT_ERRORS:
        raise InputError(f"unknown inclusion result code {code!r}")
    name = RESULT_ERRORS[code]
    return None if name is None else _ERROR_CLASSES[name]


# ------------------------------------------------------------------ sums and paths


def sums_to_ints(sums: Any) -> tuple[int, int, int]:
    """(fuel, mem, io) of a 48-byte sums encoding."""
    raw = _fixed(sums, SUMS_SIZE, "sums")
    return (
        int.from_bytes(raw[0:16], "little"),
        int.from_bytes(raw[16:32], "little"),
        int.from_bytes(raw[32:48], "little"),
    )


def sums_from_ints(fuel: int, mem: int, io: int) -> bytes:
    """The 48-byte encoding of (fuel, mem, io), each below 2^128."""
    return b"".join(_int(v, name, _U128_LIMIT).to_bytes(16, "little") for v, name in ((fuel, "fuel"), (mem, "mem"), (io, "io")))


def simd_path() -> str:
    """The hash-many path in use: "scalar", "avx2" or "avx512"."""
    _require()
    return _ffi.string(_lib.poe_simd_path()).decode("ascii")


def simd_paths() -> list[str]:
    """The paths that can run on this machine, slowest first."""
    _require()
    return [name for name in ("scalar", "avx2", "avx512") if _lib.poe_simd_supported(name.encode("ascii"))]


def _set_simd_path(name: str) -> None:
    """Test hook: switch the hash-many path ("scalar", "avx2", "avx512" or "auto") for the whole
    process. Not safe while another thread is hashing. (POE_NATIVE_SIMD sets it at load time.)"""
    _require()
    if _lib.poe_set_simd_path(name.encode("ascii")) != _STATUS_OK:
        raise InputError(f"SIMD path {name!r} is unknown or cannot run on this machine")

"""Thin binding to the native Merkle sum tree kernel, ``poe._poe_native``.

The kernel (C sources in ``native/``, compiled by cffi when the package is installed) computes
BLAKE3 and the Merkle sum tree of docs/spec.md §10 with SIMD hash-many (16 lanes of AVX-512 or
8 of AVX2, chosen at run time; a portable scalar path everywhere else).

Importing this module never fails: when the extension is missing or was built for another
interface version, :data:`AVAILABLE` is false, :data:`LOAD_ERROR` says why and how to build it,
and every function that needs the kernel raises :class:`poe.errors.InternalError` with that
message (a tree or tracker, which the others take, cannot be made without it).

It also keeps the memory commitment of stateful segments (``native/memtree.c``): the standard
BLAKE3 hash of a linear memory with its chunk tree kept for incremental updates, and the dirty
trackers that feed it; :mod:`poe.merkle.memory` is the Python face of that part.

Only what poe calls is wrapped here. The kernel's other exports (BLAKE3 in its plain, keyed and
derive-key modes, batched inclusion-proof checks, SIMD path selection) serve the tests alone,
which wrap them in ``tests/native_kernels.py`` over this module's private helpers.

Byte layouts: a hash is 32 bytes; sums are 48 bytes, (fuel, mem, io) as three u128
little-endian; levels are hashes and sums concatenated node after node (n * 32 and n * 48
bytes). Functions take bytes-like objects and return ``bytes``; wrong lengths and types raise
:class:`poe.errors.InputError`, a sum reaching 2^128 :class:`poe.errors.SumOverflowError`.
"""

from __future__ import annotations

import os
from array import array
from typing import Any

from poe.errors import InputError, InternalError, SumOverflowError

__all__ = [
    "AVAILABLE",
    "LOAD_ERROR",
    "tree_levels",
    "root",
    "manifest",
    "DIRTY_UFFD",
    "DIRTY_COMPARE",
    "TrackingUnsupported",
    "chunk_buffer",
    "memory_root",
    "chunk_digests_at",
    "memtree_new",
    "memtree_rebuild",
    "memtree_update",
    "memtree_rehash",
    "memtree_root",
    "dirty_open",
    "dirty_extend",
    "dirty_scan",
    "release",
]

ABI_VERSION = 2
"""The interface version of native/poe_native.h this binding is written against."""

RECORD_SIZE = 288
HASH_SIZE = 32
SUMS_SIZE = 48
_U64_LIMIT = 1 << 64

_STATUS_OK = 0
_STATUS_OVERFLOW = 1
_STATUS_ARGUMENT = 2
_STATUS_NOMEM = 3
_STATUS_UNSUPPORTED = 4
_STATUS_SYSTEM = 5

_BUILD_HINT = "build it from the repository root with `python3 -m pip install -e .` (needs a C compiler)"

AVAILABLE = False
LOAD_ERROR: str | None = None
_ffi: Any = None
_lib: Any = None
_alloc: Any = None

try:
    from poe import _poe_native  # type: ignore[attr-defined]
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


# ------------------------------------------------------------------ memory commitment (memtree.c)

CHUNK_SIZE = 1024
"""Bytes per memory chunk: BLAKE3's chunk."""

DIRTY_UFFD = 1
DIRTY_COMPARE = 2
_MAX_CHUNKS = 1 << 32


class TrackingUnsupported(InputError):
    """A dirty-tracking kind that cannot work here (old kernel, no userfaultfd, unsuitable memory)."""

    code = "input.tracking-unsupported"


def _memory(address: Any, length: Any) -> tuple[Any, int]:
    """A uint8_t pointer for a raw memory address and its checked length (a multiple of 1 KiB)."""
    address = _int(address, "address", _U64_LIMIT)
    length = _int(length, "length", _MAX_CHUNKS * CHUNK_SIZE)
    if length % CHUNK_SIZE:
        raise InputError(f"memory length must be a multiple of {CHUNK_SIZE}, got {length}")
    if length and not address:
        raise InputError("a memory of nonzero length at address 0")
    return _ffi.cast("uint8_t *", address), length


def _status(rc: int, what: str) -> None:
    if rc == _STATUS_NOMEM:
        raise MemoryError(f"{what}: the native kernel could not allocate memory")
    if rc != _STATUS_OK:
        raise InternalError(f"{what}: the native kernel refused its arguments (status {rc})")


def chunk_buffer(n: int) -> Any:
    """An uninitialised uint32_t[n] (at least 1) for chunk index lists."""
    _require()
    return _alloc("uint32_t[]", max(1, n))


def _chunk_list(chunks: Any, n: int | None, limit: int) -> tuple[Any, int]:
    """(uint32_t pointer, count) for a chunk_buffer with count n (trusted: the kernel checks the
    bounds), or any sequence of indices, each checked to be below `limit`."""
    if isinstance(chunks, _ffi.CData):
        if n is None or not 0 <= n <= _ffi.sizeof(chunks) // 4:
            raise InputError("a chunk buffer needs a count within its size")
        return chunks, n
    if not isinstance(chunks, array) or chunks.typecode != "I" or chunks.itemsize != 4:
        try:
            chunks = array("I", chunks)
        except (TypeError, OverflowError) as exc:
            raise InputError(f"chunk indices must be integers in [0, 2^32): {exc}") from None
    count = len(chunks) if n is None else min(n, len(chunks))
    if count and max(chunks[:count]) >= limit:
        raise InputError(f"a chunk index is outside the memory's {limit} chunks")
    return (_ffi.from_buffer("uint32_t[]", chunks) if count else _ffi.NULL), count


def memory_root(data: Any) -> bytes:
    """Standard BLAKE3 of a memory image (bytes-like, length a multiple of 1 KiB)."""
    _require()
    view, n = _bytes_like(data, "image")
    if n % CHUNK_SIZE:
        raise InputError(f"image length must be a multiple of {CHUNK_SIZE}, got {n}")
    out = _uninitialised(HASH_SIZE)
    _status(_lib.poe_memory_root(_ptr(view) if n else _ffi.NULL, n, out), "memory_root")
    return bytes(_ffi.buffer(out, HASH_SIZE))


def manifest(data: Any) -> bytes:
    """Plain BLAKE3 of every 1 KiB chunk of an image (bytes-like, a multiple of 1 KiB), in order."""
    _require()
    view, n = _bytes_like(data, "image")
    if n % CHUNK_SIZE:
        raise InputError(f"image length must be a multiple of {CHUNK_SIZE}, got {n}")
    count = n // CHUNK_SIZE
    if count == 0:
        return b""
    idx = _ffi.from_buffer("uint32_t[]", array("I", range(count)))
    out = _uninitialised(count * HASH_SIZE)
    _status(_lib.poe_chunk_digests(_ffi.cast("uint8_t *", _ptr(view)), idx, count, out), "chunk_digests")
    return bytes(_ffi.buffer(out, count * HASH_SIZE))


def chunk_digests_at(address: int, indices: Any) -> list[bytes]:
    """Plain BLAKE3 of each listed 1 KiB chunk of the memory at a raw address (the caller
    guarantees the chunks are inside it)."""
    _require()
    idx, n = _chunk_list(indices, None, _MAX_CHUNKS)
    if n == 0:
        return []
    mem = _ffi.cast("uint8_t *", _int(address, "address", _U64_LIMIT))
    if mem == _ffi.NULL:
        raise InputError("chunks of a memory at address 0")
    out = _uninitialised(n * HASH_SIZE)
    _status(_lib.poe_chunk_digests(mem, idx, n, out), "chunk_digests")
    raw = bytes(_ffi.buffer(out, n * HASH_SIZE))
    return [raw[i : i + HASH_SIZE] for i in range(0, n * HASH_SIZE, HASH_SIZE)]


def memtree_new() -> Any:
    """A native memory tree over the empty memory, freed when garbage (or by :func:`release`)."""
    _require()
    tree = _lib.poe_memtree_new()
    if tree == _ffi.NULL:
        raise MemoryError("memtree_new: the native kernel could not allocate memory")
    return _ffi.gc(tree, _lib.poe_memtree_free)


def memtree_rebuild(tree: Any, address: int, length: int) -> None:
    mem, length = _memory(address, length)
    _status(_lib.poe_memtree_rebuild(tree, mem, length), "memtree_rebuild")


def _changed(tree: Any, address: int, length: int, out: Any) -> tuple[Any, int, Any]:
    mem, length = _memory(address, length)
    if length < _lib.poe_memtree_length(tree):
        raise InputError(f"memory shrank from {_lib.poe_memtree_length(tree)} to {length} bytes")
    if out is None:
        out = chunk_buffer(length // CHUNK_SIZE)
    elif _ffi.sizeof(out) < 4 * (length // CHUNK_SIZE):
        raise InputError("the changed-chunk buffer is smaller than the memory's chunk count")
    return mem, length, out


def memtree_update(
    tree: Any, address: int, length: int, chunks: Any, n: int | None = None, out: Any = None
) -> list[int]:
    """Rehash the listed chunks (a :func:`chunk_buffer` with count n, or a sequence) and the grown
    ones; returns the changed chunks as poe_native.h defines them. `out`: a reusable
    chunk_buffer of at least length / 1024 entries."""
    mem, length, out = _changed(tree, address, length, out)
    idx, count = _chunk_list(chunks, n, length // CHUNK_SIZE)
    k = _ffi.new("size_t *")
    _status(_lib.poe_memtree_update(tree, mem, length, idx, count, out, k), "memtree_update")
    return _ffi.unpack(out, k[0])


def memtree_rehash(tree: Any, address: int, length: int, out: Any = None) -> list[int]:
    """:func:`memtree_update` with every chunk listed."""
    mem, length, out = _changed(tree, address, length, out)
    k = _ffi.new("size_t *")
    _status(_lib.poe_memtree_rehash(tree, mem, length, out, k), "memtree_rehash")
    return _ffi.unpack(out, k[0])


def memtree_root(tree: Any) -> bytes:
    out = _uninitialised(HASH_SIZE)
    _status(_lib.poe_memtree_root(tree, out), "memtree_root")
    return bytes(_ffi.buffer(out, HASH_SIZE))


def dirty_open(kind: int, address: int, length: int) -> Any:
    """A dirty tracker (DIRTY_UFFD or DIRTY_COMPARE) over memory at a raw address, closed when
    garbage (or by :func:`release`). Raises :class:`TrackingUnsupported` when the kind cannot
    work here."""
    _require()
    if kind not in (DIRTY_UFFD, DIRTY_COMPARE):
        raise InputError(f"unknown dirty-tracking kind {kind!r}")
    mem, length = _memory(address, length)
    handle = _ffi.new("poe_dirty **")
    err = _ffi.new("int *")
    rc = _lib.poe_dirty_open(kind, mem, length, handle, err)
    if rc in (_STATUS_UNSUPPORTED, _STATUS_ARGUMENT) and kind == DIRTY_UFFD:
        reason = os.strerror(err[0]) if err[0] else "kernel, platform or memory unsuitable"
        raise TrackingUnsupported(f"userfaultfd dirty tracking is unavailable: {reason}", errno=err[0])
    _status(rc, "dirty_open")
    return _ffi.gc(handle[0], _lib.poe_dirty_close)


def _system(tracker: Any, rc: int, what: str) -> None:
    if rc == _STATUS_SYSTEM:
        err = _lib.poe_dirty_os_error(tracker)
        raise TrackingUnsupported(f"{what}: {os.strerror(err)}", errno=err)
    if rc == _STATUS_UNSUPPORTED:
        raise TrackingUnsupported(f"{what}: the tracker cannot follow this memory (not whole pages)")
    _status(rc, what)


def dirty_extend(tracker: Any, length: int) -> None:
    """The tracked memory grew in place to `length` bytes."""
    _int(length, "length", _MAX_CHUNKS * CHUNK_SIZE)
    _system(tracker, _lib.poe_dirty_extend(tracker, length), "dirty_extend")


def dirty_scan(tracker: Any, out: Any) -> int:
    """Chunks written since the last scan, ascending, into `out` (a chunk_buffer of at least the
    tracked length / 1024 entries); returns their count."""
    n = _ffi.new("size_t *")
    _system(tracker, _lib.poe_dirty_scan(tracker, out, _ffi.sizeof(out) // 4, n), "dirty_scan")
    return int(n[0])


def release(handle: Any) -> None:
    """Free a tree or close a tracker now rather than when it is garbage."""
    if AVAILABLE and handle is not None:
        _ffi.release(handle)

"""The commitment to a wasm instance's linear memory, kept up to date segment after segment.

The memory commitment is the standard BLAKE3 hash (plain mode, 32 bytes) of the memory image,
``blake3.blake3(image).digest()``: anyone can check it with an ordinary BLAKE3 library. BLAKE3
hashes 1 KiB chunks into a binary tree; :class:`MemoryTree` keeps that tree's chaining values
(in the native kernel, ``native/memtree.c``) so that after a segment only the chunks written
during it are rehashed and only their ancestors recomputed.

Which chunks were written comes from a dirty tracker (``tracking``):

``uffd``
    Linux >= 6.7: userfaultfd write protection in async mode, read and re-armed by the
    PAGEMAP_SCAN ioctl. The kernel records written pages (4 chunks each) at no cost to the
    guest beyond one minor fault per first write to a page in a segment.
``compare``
    A shadow copy of the memory, compared chunk by chunk at every commit.
``rehash``
    No tracking: every chunk is rehashed at every commit.
``auto``
    ``uffd`` where it works, else ``compare``. The environment variable ``POE_DIRTY_TRACKING``
    (one of the above) overrides ``auto``.

Without the native kernel (:data:`poe._native.AVAILABLE` false) the tree is not kept: every
commit hashes the whole image with blake3-py and compares it chunk by chunk with a copy of the
previous one; ``tracking`` is then ``compare`` (or ``rehash`` if asked; the work is the same)
and ``uffd`` is refused. Roots are the same bytes whatever the mode or path.

``commit`` also returns the chunks whose content changed since the previous attach/commit, for
a chunk store that keeps only what changed: every chunk below the previous length whose bytes
differ, then every chunk beyond it (growth) whose bytes are not all zero — a grown chunk of
zeros is implicitly zero. Ascending, no duplicates.
"""

from __future__ import annotations

import ctypes
import os
from collections.abc import Iterable
from typing import Any

import blake3 as _blake3

from poe import _native
from poe.errors import InputError

__all__ = ["CHUNK_SIZE", "TRACKING_MODES", "MemoryTree", "memory_root", "chunk_digests", "uffd_unavailable"]

CHUNK_SIZE = 1024
TRACKING_MODES = ("auto", "uffd", "compare", "rehash")
ENV_TRACKING = "POE_DIRTY_TRACKING"
_PROBE = 64 * CHUNK_SIZE  # the pure-Python comparison skips equal 64 KiB runs first
_ZERO_CHUNK = bytes(CHUNK_SIZE)


def _view(address: int, length: int) -> memoryview:
    """The memory at a raw address, without copying (valid while the memory is)."""
    if length == 0:
        return memoryview(b"")
    return memoryview((ctypes.c_ubyte * length).from_address(address)).cast("B")


def _check(address: Any, length: Any) -> tuple[int, int]:
    for value, what in ((address, "address"), (length, "length")):
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise InputError(f"{what} must be a non-negative integer, not {value!r}")
    if length % CHUNK_SIZE:
        raise InputError(f"memory length must be a multiple of {CHUNK_SIZE}, got {length}")
    if length and not address:
        raise InputError("a memory of nonzero length at address 0")
    return address, length


def memory_root(image: bytes | bytearray | memoryview) -> bytes:
    """The standard BLAKE3 hash of a memory image (the memory commitment)."""
    view = memoryview(image).cast("B") if not isinstance(image, (bytes, bytearray)) else image
    if _native.AVAILABLE and len(view) % CHUNK_SIZE == 0:
        return _native.memory_root(view)
    return _blake3.blake3(view).digest()


def chunk_digests(address: int, indices: Iterable[int]) -> list[bytes]:
    """Plain BLAKE3 of each listed 1 KiB chunk of the memory at `address` (a content address for
    a chunk store). The caller guarantees the chunks are inside the memory."""
    idx = list(indices)
    if not idx:
        return []
    if not isinstance(address, int) or isinstance(address, bool) or address <= 0:
        raise InputError(f"address must be a positive integer, not {address!r}")
    for i in idx:
        if isinstance(i, bool) or not isinstance(i, int) or not 0 <= i < 1 << 32:
            raise InputError(f"chunk indices must be integers in [0, 2^32), got {i!r}")
    if _native.AVAILABLE:
        return _native.chunk_digests_at(address, idx)
    return [_blake3.blake3(ctypes.string_at(address + i * CHUNK_SIZE, CHUNK_SIZE)).digest() for i in idx]


def _python_changed(old: bytes, new: memoryview) -> list[int]:
    """Chunks of `new` that differ from `old` (not longer than it), then grown nonzero chunks."""
    out: list[int] = []
    n_old = len(old)
    zeros = bytes(_PROBE)
    for base in range(0, len(new), _PROBE):
        end = min(base + _PROBE, len(new))
        if end <= n_old:
            if new[base:end] == old[base:end]:
                continue
        elif base >= n_old and new[base:end] == zeros[: end - base]:
            continue
        for off in range(base, end, CHUNK_SIZE):
            chunk = new[off : off + CHUNK_SIZE]
            if chunk != (old[off : off + CHUNK_SIZE] if off < n_old else _ZERO_CHUNK):
                out.append(off // CHUNK_SIZE)
    return out


_UFFD_PROBE: list[str | None] = []


def uffd_unavailable() -> str | None:
    """None if userfaultfd dirty tracking works in this process, else why not (probed once on
    a scratch page)."""
    if not _native.AVAILABLE:
        return f"the native kernel is unavailable: {_native.LOAD_ERROR}"
    if not _UFFD_PROBE:
        import mmap

        page = mmap.mmap(-1, mmap.PAGESIZE)
        anchor = ctypes.c_char.from_buffer(page)
        try:
            tracker = _native.dirty_open(_native.DIRTY_UFFD, ctypes.addressof(anchor), mmap.PAGESIZE)
        except _native.TrackingUnsupported as exc:
            _UFFD_PROBE.append(str(exc))
        else:
            _native.release(tracker)
            _UFFD_PROBE.append(None)
        finally:
            del anchor
            page.close()
    return _UFFD_PROBE[0]


class MemoryTree:
    """BLAKE3 hash of a live linear memory, kept up to date incrementally.

    ``attach(address, length)`` hashes the memory and starts tracking it; after every segment
    ``commit(address, length)`` returns the new root and the chunks that changed. The memory
    may grow between commits (never shrink); if it moved (another address), the commit rehashes
    every chunk, compares with the tree it had, and re-arms tracking at the new place. Not
    thread-safe, and the memory must not change during a call.
    """

    def __init__(self, tracking: str = "auto") -> None:
        if tracking not in TRACKING_MODES:
            raise InputError(f"tracking must be one of {', '.join(TRACKING_MODES)}, not {tracking!r}")
        if tracking == "auto":
            env = os.environ.get(ENV_TRACKING, "").strip()
            if env:
                if env not in TRACKING_MODES:
                    raise InputError(f"{ENV_TRACKING}={env!r} is not one of {', '.join(TRACKING_MODES)}")
                tracking = env
        self._requested = tracking
        self.native: bool = _native.AVAILABLE
        """Whether the native kernel keeps the tree (else blake3-py rehashes every commit)."""
        if not self.native:
            if tracking == "uffd":
                raise InputError(f"tracking 'uffd' needs the native kernel: {_native.LOAD_ERROR}")
            self.tracking = "rehash" if tracking == "rehash" else "compare"
        else:
            self.tracking = tracking  # "auto" resolved by attach
        self.fallback_reason: str | None = None
        """Why "auto" did not get "uffd" (None when it did, or was not tried)."""
        self.last_rehashed = 0
        """Chunks the last attach/commit hashed (tracked or all, plus grown ones): the work done."""
        self._tree: Any = None
        self._tracker: Any = None
        self._scan: Any = None  # chunk_buffer for scans
        self._out: Any = None  # chunk_buffer for changed lists
        self._cap = 0
        self._shadow: bytes | None = None  # pure-Python path: the image at the last commit
        self._address: int | None = None
        self._length = 0
        self._root = memory_root(b"")
        self._closed = False

    # ---------------------------------------------------------------- properties

    @property
    def root(self) -> bytes:
        """The memory root at the last attach/commit."""
        return self._root

    @property
    def length(self) -> int:
        """The memory length at the last attach/commit."""
        return self._length

    # ---------------------------------------------------------------- life cycle

    def attach(self, address: int, length: int) -> bytes:
        """Hash the memory at `address` (e.g. a wasm memory's ``data_ptr``), start tracking it,
        and return its root. A tree already attached forgets its previous memory."""
        self._check_open()
        address, length = _check(address, length)
        self._drop_tracker()
        self._address = None  # until this attach succeeds
        if not self.native:
            image = _view(address, length)
            self._shadow = bytes(image)
            self._root = _blake3.blake3(self._shadow).digest()
            self.last_rehashed = length // CHUNK_SIZE
        else:
            if self._tree is None:
                self._tree = _native.memtree_new()
            self._buffers(length)
            self._arm(address, length)  # before hashing: no write can fall between the two
            _native.memtree_rebuild(self._tree, address, length)
            self._root = _native.memtree_root(self._tree)
            self.last_rehashed = length // CHUNK_SIZE
        self._address, self._length = address, length
        return self._root

    def commit(self, address: int, length: int) -> tuple[bytes, list[int]]:
        """After a segment: (root, ascending chunks whose content changed since the last
        attach/commit, grown nonzero chunks included). `address` and `length` are the memory's
        now; it may have grown or moved, not shrunk."""
        self._check_open()
        if self._address is None:
            raise InputError("commit before attach")
        address, length = _check(address, length)
        if length < self._length:
            raise InputError(f"memory shrank from {self._length} to {length} bytes; wasm memory only grows")
        if not self.native:
            image = _view(address, length)
            changed = _python_changed(self._shadow or b"", image)
            self._shadow = bytes(image)
            self._root = _blake3.blake3(self._shadow).digest()
            self.last_rehashed = length // CHUNK_SIZE
        else:
            self._buffers(length)
            changed = None
            if self._tracker is not None and address == self._address:
                try:
                    n = _native.dirty_scan(self._tracker, self._scan)
                except _native.TrackingUnsupported as exc:
                    self._drop_tracker()  # the tree is untouched: rehashed below (or next time)
                    self._note_fallback(str(exc))
                else:
                    if length > self._length:
                        try:
                            _native.dirty_extend(self._tracker, length)
                        except _native.TrackingUnsupported as exc:
                            self._drop_tracker()  # the grown part is rehashed anyway
                            self._note_fallback(str(exc))
                    changed = _native.memtree_update(self._tree, address, length, self._scan, n, self._out)
                    self.last_rehashed = n + (length - self._length) // CHUNK_SIZE
            if changed is None:
                # No tracking (rehash mode, a memory that moved, tracking not yet armed): every
                # chunk is rehashed and compared with the tree's chaining values. Armed first,
                # as in attach: if that fails ("uffd" asked for), nothing has changed yet.
                self._drop_tracker()
                self._arm(address, length)
                changed = _native.memtree_rehash(self._tree, address, length, self._out)
                self.last_rehashed = length // CHUNK_SIZE
            elif self._tracker is None:
                self._arm(address, length)  # "auto" after a failed extend: now "compare"
            self._root = _native.memtree_root(self._tree)
        self._address, self._length = address, length
        return self._root, changed

    def close(self) -> None:
        """Stop tracking and free the tree. Idempotent."""
        if getattr(self, "_closed", True):
            return
        self._closed = True
        try:
            self._drop_tracker()
            if self._tree is not None:
                _native.release(self._tree)
        except Exception:  # interpreter shutdown: the handles are freed with the process
            pass
        self._tree = None
        self._shadow = None

    def __enter__(self) -> MemoryTree:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"MemoryTree(tracking={self.tracking!r}, length={self._length}, root={self._root.hex()[:16]}...)"

    # ---------------------------------------------------------------- internals

    def _check_open(self) -> None:
        if self._closed:
            raise InputError("this MemoryTree is closed")

    def _buffers(self, length: int) -> None:
        need = max(1, length // CHUNK_SIZE)
        if need > self._cap:
            cap = max(need, 2 * self._cap)
            self._scan = _native.chunk_buffer(cap)
            self._out = _native.chunk_buffer(cap)
            self._cap = cap

    def _note_fallback(self, reason: str) -> None:
        if self._requested == "uffd":
            raise _native.TrackingUnsupported(reason)
        self.fallback_reason = reason
        self.tracking = "compare"

    def _arm(self, address: int, length: int) -> None:
        """Open the tracker the mode asks for over the memory as it is now."""
        mode = self.tracking
        if mode == "rehash":
            return
        if mode in ("auto", "uffd"):
            if length == 0:
                # Nothing to track yet (and a zero-length memory's pointer need not be page
                # aligned): armed by the first commit that sees memory. Decide the mode now.
                reason = uffd_unavailable()
                if reason is None:
                    self.tracking = "uffd"
                    return
                self._note_fallback(reason)
            else:
                try:
                    self._tracker = _native.dirty_open(_native.DIRTY_UFFD, address, length)
                    self.tracking = "uffd"
                    return
                except _native.TrackingUnsupported as exc:
                    self._note_fallback(str(exc))
        self._tracker = _native.dirty_open(_native.DIRTY_COMPARE, address, length)
        self.tracking = "compare"

    def _drop_tracker(self) -> None:
        tracker, self._tracker = self._tracker, None
        if tracker is not None:
            _native.release(tracker)

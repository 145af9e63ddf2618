"""Memory commitment of a 64 MiB linear memory (poe.merkle.memory, native/memtree.c).

Group "memroot-64M": the full BLAKE3 hash of 64 MiB, blake3-py on one thread (the baseline,
`max_threads=1`) against poe's native chunk tree on every SIMD path this machine can run, over
the same page-aligned bytes (an mmap, as a wasm memory is). `vs_blake3_py` in extra_info is
blake3-py's median over poe's (> 1: poe is faster), measured inside the test.

Group "memcommit-64M": a commit after a segment that changed 1% of the chunks (655 of 65536),
scattered at random or clustered in one run, for each tracking mode; the baseline is the full
native rehash of the same memory. The writes happen in the untimed setup of every round.
`speedup_vs_full` is the full rehash's median over the commit's; `rehashed` is how many chunks
the commit hashed (uffd tracks 4 KiB pages, so scattered 1 KiB writes cost 4 chunks each).

    python3 -m pytest benches/bench_state.py --benchmark-enable
"""

from __future__ import annotations

import ctypes
import mmap
import os
import random
import statistics
import time

import blake3
import pytest

from poe import _native
from poe.merkle import memory as _memtree
from poe.merkle.memory import CHUNK_SIZE, MemoryTree
from tests import native_kernels as kernels

if not _native.AVAILABLE:
    pytest.skip(f"native kernel not available: {_native.LOAD_ERROR}", allow_module_level=True)

SIZE = 64 << 20
CHUNKS = SIZE // CHUNK_SIZE
DIRTY = CHUNKS // 100  # 1%


class Memory:
    def __init__(self, size: int) -> None:
        self.map = mmap.mmap(-1, size)
        self.map.write(os.urandom(size))
        self.array = (ctypes.c_ubyte * size).from_buffer(self.map)
        self.address = ctypes.addressof(self.array)

    def close(self) -> None:
        del self.array
        self.map.close()


@pytest.fixture(scope="module")
def memory():
    mem = Memory(SIZE)
    yield mem
    mem.close()


def _median(fn, rounds: int = 9) -> float:
    fn()
    times = []
    for _ in range(rounds):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def _blake3_py(memory: Memory) -> bytes:
    return blake3.blake3(memory.map, max_threads=1).digest()


def _full_native(memory: Memory) -> bytes:
    return kernels.memory_root_at(memory.address, SIZE)


@pytest.mark.benchmark(group="memroot-64M")
def test_memroot_baseline(measured, memory):
    """blake3-py, one thread, over the same 64 MiB."""
    measured.pedantic(_blake3_py, args=(memory,), rounds=9, iterations=1, warmup_rounds=1)
    measured.extra_info["GB_per_s"] = _gbps(measured)


@pytest.mark.benchmark(group="memroot-64M")
@pytest.mark.parametrize("path", ["scalar", "avx2", "avx512"])
def test_memroot_poe_native(measured, memory, path):
    if path not in kernels.simd_paths():
        pytest.skip(f"SIMD path {path} cannot run on this machine")
    before = kernels.simd_path()
    kernels.set_simd_path(path)
    try:
        assert _full_native(memory) == _blake3_py(memory)
        rounds = 3 if path == "scalar" else 9
        measured.pedantic(_full_native, args=(memory,), rounds=rounds, iterations=1, warmup_rounds=1)
        ours = _median(lambda: _full_native(memory), 3 if path == "scalar" else 9)
    finally:
        kernels.set_simd_path(before)
    theirs = _median(lambda: _blake3_py(memory))
    measured.extra_info["path"] = path
    measured.extra_info["GB_per_s"] = _gbps(measured)
    measured.extra_info["vs_blake3_py"] = round(theirs / ours, 3)


def _gbps(measured) -> float | None:
    stats = getattr(measured, "stats", None)
    if stats is None or getattr(stats, "stats", None) is None:
        return None
    return round(SIZE / stats.stats.median / 1e9, 2)


# ---------------------------------------------------------------- incremental commits


def _dirty_offsets(pattern: str, rng: random.Random) -> list[int]:
    """One byte offset in each of DIRTY chunks."""
    if pattern == "random":
        chunks = rng.sample(range(CHUNKS), DIRTY)
    else:
        first = rng.randrange(CHUNKS - DIRTY)
        chunks = list(range(first, first + DIRTY))
    return [c * CHUNK_SIZE + rng.randrange(CHUNK_SIZE) for c in chunks]


def _dirty(memory: Memory, offsets: list[int]) -> None:
    m = memory.map
    for off in offsets:
        m[off] = m[off] ^ 0x5A


@pytest.mark.benchmark(group="memcommit-64M")
def test_memcommit_baseline(measured, memory):
    """The full native rehash of the 64 MiB (what a commit costs without tracking)."""
    measured.pedantic(_full_native, args=(memory,), rounds=9, iterations=1, warmup_rounds=1)


@pytest.mark.benchmark(group="memcommit-64M")
@pytest.mark.parametrize("pattern", ["random", "clustered"])
@pytest.mark.parametrize("mode", ["uffd", "compare", "rehash", "python"])
def test_memcommit_poe(measured, memory, monkeypatch, mode, pattern):
    if mode == "uffd" and _memtree.uffd_unavailable() is not None:
        pytest.skip(f"userfaultfd tracking unsupported here: {_memtree.uffd_unavailable()}")
    with monkeypatch.context() as patch:
        if mode == "python":
            patch.setattr(_native, "AVAILABLE", False)
            tree = MemoryTree("compare")
        else:
            tree = MemoryTree(mode)
    rng = random.Random(f"{mode}-{pattern}")
    with tree:
        tree.attach(memory.address, SIZE)
        assert tree.tracking == ("compare" if mode == "python" else mode)
        seen: list[tuple[int, int]] = []

        def setup():
            _dirty(memory, _dirty_offsets(pattern, rng))
            return (), {}

        def commit():
            root, changed = tree.commit(memory.address, SIZE)
            seen.append((len(changed), tree.last_rehashed))

        rounds = 5 if mode in ("rehash", "python") else 30
        measured.pedantic(commit, setup=setup, rounds=rounds, iterations=1, warmup_rounds=1)
        assert tree.root == _blake3_py(memory)
        assert all(n == DIRTY for n, _ in seen)

        def timed_commit() -> float:
            setup()
            t = time.perf_counter()
            tree.commit(memory.address, SIZE)
            return time.perf_counter() - t

        ours = statistics.median(timed_commit() for _ in range(rounds))
    full = _median(lambda: _full_native(memory))
    measured.extra_info["dirty_chunks"] = DIRTY
    measured.extra_info["rehashed"] = seen[-1][1]
    measured.extra_info["speedup_vs_full"] = round(full / ours, 1)

"""Merkle sum tree build: the native kernel against raw BLAKE3 throughput.

Group "merkle-build": the baseline is blake3-py hashing the same 1,000,000 x 288 bytes as one
stream on one thread (the floor for any tree over those bytes: a tree costs 5 compressions per
record for the leaves plus 3 per node, about 8 million in all, against 4.8 million for the
stream); poe's native root() over the 1,000,000 records is measured on every SIMD path this
machine can run. Group "merkle-build-100k": a pure-Python build (blake3-py once per leaf and
node) over 100,000 records, with its own stream baseline; `scaled_1M_ms` extrapolates it.

    python3 -m pytest benches/bench_native.py --benchmark-enable
"""

from __future__ import annotations

import os

import blake3
import pytest

from poe import _native as native
from tests import native_kernels as kernels

if not native.AVAILABLE:
    pytest.skip(f"native kernel not available: {native.LOAD_ERROR}", allow_module_level=True)

N = 1_000_000
N_PY = 100_000
LEAF_CTX = "poe 2026-11 merkle leaf v1"
NODE_CTX = "poe 2026-11 merkle node v1"


@pytest.fixture(scope="module")
def records() -> bytes:
    return os.urandom(288 * N)


@pytest.mark.benchmark(group="merkle-build")
def test_merkle_build_baseline(measured, records):
    """blake3-py over the same bytes as one stream, one thread."""
    measured.pedantic(lambda: blake3.blake3(records, max_threads=1).digest(), rounds=7, iterations=1, warmup_rounds=1)


@pytest.mark.benchmark(group="merkle-build")
@pytest.mark.parametrize("path", ["scalar", "avx2", "avx512"])
def test_merkle_build_poe_native(measured, records, path):
    if path not in kernels.simd_paths():
        pytest.skip(f"SIMD path {path} cannot run on this machine")
    before = kernels.simd_path()
    kernels.set_simd_path(path)
    try:
        rounds = 3 if path == "scalar" else 7
        measured.pedantic(native.root, args=(records,), rounds=rounds, iterations=1, warmup_rounds=1)
    finally:
        kernels.set_simd_path(before)
    measured.extra_info["path"] = path
    measured.extra_info["records"] = N


def _python_root(blob: bytes) -> tuple[bytes, bytes]:
    level = []
    for off in range(0, len(blob), 288):
        rec = blob[off : off + 288]
        u64 = lambda o: int.from_bytes(rec[o : o + 8], "little")  # noqa: E731
        sums = (u64(16), u64(32), u64(40) + u64(48))
        level.append((blake3.blake3(rec, derive_key_context=LEAF_CTX).digest(), sums))
    while len(level) > 1:
        nxt = []
        for i in range(0, len(level) - 1, 2):
            (lh, ls), (rh, rs) = level[i], level[i + 1]
            msg = lh + b"".join(v.to_bytes(16, "little") for v in ls) + rh + b"".join(v.to_bytes(16, "little") for v in rs)
            nxt.append((blake3.blake3(msg, derive_key_context=NODE_CTX).digest(), tuple(a + b for a, b in zip(ls, rs))))
        if len(level) % 2:
            nxt.append(level[-1])
        level = nxt
    h, s = level[0]
    return h, b"".join(v.to_bytes(16, "little") for v in s)


@pytest.mark.benchmark(group="merkle-build-100k")
def test_merkle_build_100k_baseline(measured, records):
    blob = records[: 288 * N_PY]
    measured.pedantic(lambda: blake3.blake3(blob, max_threads=1).digest(), rounds=7, iterations=1, warmup_rounds=1)


@pytest.mark.benchmark(group="merkle-build-100k")
def test_merkle_build_100k_poe_pure_python(measured, records):
    blob = records[: 288 * N_PY]
    result = measured.pedantic(_python_root, args=(blob,), rounds=3, iterations=1)
    assert result == native.root(blob)
    if measured.stats is not None and measured.stats.stats is not None:
        measured.extra_info["scaled_1M_ms"] = round(measured.stats.stats.median * (N / N_PY) * 1e3)

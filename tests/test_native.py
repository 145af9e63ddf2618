"""The native kernel (poe._poe_native via poe._native) against BLAKE3's official vectors,
blake3-py, and a straightforward pure-Python Merkle sum tree written here from spec §10.

Skipped as a whole when the extension is not built, unless POE_REQUIRE_NATIVE=1.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from array import array
from pathlib import Path

import pytest

from poe import _native as native

from . import native_kernels as kernels

if not native.AVAILABLE:
    if os.environ.get("POE_REQUIRE_NATIVE") == "1":
        pytest.fail(f"POE_REQUIRE_NATIVE=1 but the native kernel cannot be loaded: {native.LOAD_ERROR}", pytrace=False)
    pytest.skip(f"native kernel not available: {native.LOAD_ERROR}", allow_module_level=True)

blake3 = pytest.importorskip("blake3")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from poe.errors import (  # noqa: E402
    InclusionProofError,
    InputError,
    InternalError,
    PoEError,
    RootMismatchError,
    SumOverflowError,
)

BLAKE3_VECTORS = Path(__file__).resolve().parents[2] / "shared" / "vectors" / "blake3"
PATHS = ("scalar", "avx2", "avx512")

LEAF_CTX = "poe 2026-11 merkle leaf v1"
NODE_CTX = "poe 2026-11 merkle node v1"
EMPTY_CTX = "poe 2026-11 merkle empty v1"
U128 = 1 << 128

SETTINGS = settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)


# ---------------------------------------------------------------- reference implementation


def enc_sums(s: tuple[int, int, int]) -> bytes:
    return b"".join(v.to_bytes(16, "little") for v in s)


def dec_sums(b: bytes) -> tuple[int, int, int]:
    return tuple(int.from_bytes(b[i : i + 16], "little") for i in (0, 16, 32))  # type: ignore[return-value]


def ref_leaf(record: bytes) -> tuple[bytes, tuple[int, int, int]]:
    u64 = lambda off: int.from_bytes(record[off : off + 8], "little")  # noqa: E731
    h = blake3.blake3(record, derive_key_context=LEAF_CTX).digest()
    return h, (u64(16), u64(32), u64(40) + u64(48))


def ref_node(left, right):
    h = blake3.blake3(left[0] + enc_sums(left[1]) + right[0] + enc_sums(right[1]), derive_key_context=NODE_CTX).digest()
    s = tuple(a + b for a, b in zip(left[1], right[1]))
    if any(v >= U128 for v in s):
        raise OverflowError
    return h, s


def largest_pow2_below(n: int) -> int:
    k = 1
    while k * 2 < n:
        k *= 2
    return k


def ref_tree(nodes):
    """RFC 9162 §2.1.1 recursive shape (deliberately not the level-by-level formulation)."""
    if len(nodes) == 1:
        return nodes[0]
    k = largest_pow2_below(len(nodes))
    return ref_node(ref_tree(nodes[:k]), ref_tree(nodes[k:]))


def ref_root(records: list[bytes]):
    if not records:
        return blake3.blake3(b"", derive_key_context=EMPTY_CTX).digest(), (0, 0, 0)
    return ref_tree([ref_leaf(r) for r in records])


def ref_path(m: int, nodes):
    """RFC 9162 §2.1.3.1 PATH(m, D[n]) carrying sums: siblings from the leaf upward."""
    if len(nodes) == 1:
        return []
    k = largest_pow2_below(len(nodes))
    if m < k:
        return ref_path(m, nodes[:k]) + [ref_tree(nodes[k:])]
    return ref_path(m - k, nodes[k:]) + [ref_tree(nodes[:k])]


def ref_verify(leaf, index: int, size: int, path, root) -> int:
    """Spec §10 verification, returning the result code the native kernel must give."""
    if index >= size:
        return kernels.PROOF_BAD_INDEX
    fn, sn, k = index, size - 1, 0
    while sn:  # the path length the index and size call for
        if fn % 2 == 0 and fn == sn:
            while fn % 2 == 0 and fn:
                fn, sn = fn >> 1, sn >> 1
        fn, sn, k = fn >> 1, sn >> 1, k + 1
    if k != len(path):
        return kernels.PROOF_BAD_PATH_LENGTH
    fn, sn, r = index, size - 1, leaf
    try:
        for p in path:
            if fn % 2 == 1 or fn == sn:
                r = ref_node(p, r)
                while fn % 2 == 0 and fn:
                    fn, sn = fn >> 1, sn >> 1
            else:
                r = ref_node(r, p)
            fn, sn = fn >> 1, sn >> 1
    except OverflowError:
        return kernels.PROOF_SUM_OVERFLOW
    assert sn == 0
    if r[0] != root[0]:
        return kernels.PROOF_ROOT_HASH_MISMATCH
    if r[1] != root[1]:
        return kernels.PROOF_ROOT_SUMS_MISMATCH
    return kernels.PROOF_OK


def records_of(rng: random.Random, n: int) -> list[bytes]:
    return [rng.randbytes(288) for _ in range(n)]


def as_level(nodes):
    return b"".join(h for h, _ in nodes), b"".join(enc_sums(s) for _, s in nodes)


def case(leaf, index, size, path, root=None):
    """An InclusionCase from reference nodes (hash, int sums)."""
    return kernels.InclusionCase(
        leaf[0],
        enc_sums(leaf[1]),
        index,
        size,
        [(h, enc_sums(s)) for h, s in path],
        None if root is None else root[0],
        None if root is None else enc_sums(root[1]),
    )


@pytest.fixture(params=PATHS)
def simd(request):
    """Run the test on one hash-many path (skipped where the CPU lacks it)."""
    if request.param not in kernels.simd_paths():
        pytest.skip(f"SIMD path {request.param} cannot run on this machine")
    before = kernels.simd_path()
    kernels.set_simd_path(request.param)
    yield request.param
    kernels.set_simd_path(before)


# ---------------------------------------------------------------- loading


def test_module_reports_its_interface_and_path():
    assert native._lib.poe_abi_version() == native.ABI_VERSION == 2
    assert kernels.simd_path() in kernels.simd_paths()
    assert kernels.simd_paths()[0] == "scalar"


def _python(code: str, **env: str) -> subprocess.CompletedProcess:
    """Run code in a fresh interpreter that imports the same poe package as this one."""
    package_parent = str(Path(native.__file__).resolve().parents[1])
    pythonpath = os.pathsep.join(p for p in (package_parent, os.environ.get("PYTHONPATH")) if p)
    return subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        cwd=package_parent,
        env={**os.environ, "PYTHONPATH": pythonpath, **env},
        timeout=120,
        check=False,
    )


def test_missing_extension_is_reported_not_raised():
    out = _python(
        "import sys; sys.modules['poe._poe_native'] = None\n"
        "import poe._native as n\n"
        "print(n.AVAILABLE); print(n.LOAD_ERROR)\n"
        "try:\n    n.root(b'')\nexcept Exception as e:\n    print(type(e).__name__)\n"
    )
    assert out.returncode == 0, out.stderr
    available, message, raised = out.stdout.strip().splitlines()
    assert available == "False"
    assert "poe._poe_native" in message and "pip install -e ." in message
    assert raised == "InternalError"


def test_interface_version_mismatch_is_refused():
    out = _python(
        "import sys, types\n"
        "fake = types.ModuleType('poe._poe_native')\n"
        "fake.lib = types.SimpleNamespace(poe_abi_version=lambda: 999); fake.ffi = None\n"
        "sys.modules['poe._poe_native'] = fake\n"
        "import poe._native as n\n"
        "print(n.AVAILABLE); print(n.LOAD_ERROR)\n"
    )
    assert out.returncode == 0, out.stderr
    available, message = out.stdout.strip().splitlines()
    assert available == "False"
    assert "999" in message and "pip install -e ." in message


# ---------------------------------------------------------------- BLAKE3


def _official_cases():
    path = BLAKE3_VECTORS / "test_vectors.json"
    if not path.exists():
        return [pytest.param(None, marks=pytest.mark.skip(reason=f"BLAKE3 test vectors not found at {path}"))]
    doc = json.loads(path.read_text())
    return [pytest.param((doc["key"], doc["context_string"], c), id=f"len{c['input_len']}") for c in doc["cases"]]


@pytest.mark.parametrize("vector", _official_cases())
def test_blake3_official_vectors(vector):
    key, context, c = vector
    data = bytes(i % 251 for i in range(c["input_len"]))
    expect = {
        "hash": kernels.blake3(data, length=len(c["hash"]) // 2),
        "keyed_hash": kernels.blake3(data, key=key.encode(), length=len(c["keyed_hash"]) // 2),
        "derive_key": kernels.blake3(data, derive_key_context=context, length=len(c["derive_key"]) // 2),
    }
    for mode, got in expect.items():
        assert got.hex() == c[mode], mode
    assert kernels.blake3(data).hex() == c["hash"][:64]
    assert kernels.blake3(data, key=key.encode()).hex() == c["keyed_hash"][:64]
    assert kernels.blake3(data, derive_key_context=context).hex() == c["derive_key"][:64]
    # Every shorter extended output is a prefix of the longer one.
    for n in (0, 1, 31, 33, 63, 64, 65, 130):
        assert kernels.blake3(data, length=n).hex() == c["hash"][: 2 * n]


lengths_then_bytes = st.integers(0, 10 * 1024).flatmap(lambda n: st.binary(min_size=n, max_size=n))


@SETTINGS
@given(
    data=lengths_then_bytes,
    mode=st.sampled_from(["hash", "keyed", "derive"]),
    key=st.binary(min_size=32, max_size=32),
    context=st.text(max_size=80),
    length=st.integers(0, 300),
)
def test_blake3_matches_blake3_py(data, mode, key, context, length):
    if mode == "hash":
        ours, theirs = kernels.blake3(data, length=length), blake3.blake3(data).digest(length)
    elif mode == "keyed":
        ours, theirs = kernels.blake3(data, key=key, length=length), blake3.blake3(data, key=key).digest(length)
    else:
        ours = kernels.blake3(data, derive_key_context=context, length=length)
        theirs = blake3.blake3(data, derive_key_context=context).digest(length)
    assert ours == theirs


@pytest.mark.parametrize("n", [0, 1, 1023, 1024, 1025, 2048, 2049, 3072, 4096, 4097, 8193, 16 * 1024 + 5, 100_000])
def test_blake3_chunk_and_tree_boundaries(n):
    data = random.Random(n).randbytes(n)
    assert kernels.blake3(data, length=100) == blake3.blake3(data).digest(100)
    assert kernels.blake3(data, derive_key_context="x") == blake3.blake3(data, derive_key_context="x").digest()


def test_blake3_accepts_buffers_of_any_shape():
    raw = bytes(range(256)) * 9
    assert kernels.blake3(bytearray(raw)) == blake3.blake3(raw).digest()
    assert kernels.blake3(memoryview(raw)[::3]) == blake3.blake3(raw[::3]).digest()
    words = array("I", range(100))
    assert kernels.blake3(words) == blake3.blake3(words.tobytes()).digest()
    assert kernels.blake3(b"abc", derive_key_context=b"ctx") == blake3.blake3(b"abc", derive_key_context="ctx").digest()


def test_tree_functions_accept_unaligned_views(simd):
    blob = random.Random(9).randbytes(288 * 37 + 3)
    for start in (1, 3):
        view = memoryview(blob)[start : start + 288 * 37]
        assert native.root(view) == native.root(bytes(view))
        assert native.leaf_hashes(view) == native.leaf_hashes(bytes(view))
        hs, ss = native.leaf_hashes(view)
        assert native.parent_level(memoryview(b"x" + hs)[1:], ss) == native.parent_level(hs, ss)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"key": b"short"},
        {"key": "a" * 32},
        {"key": b"k" * 32, "derive_key_context": "both"},
        {"length": -1},
        {"length": 1.5},
        {"length": True},
        {"derive_key_context": 5},
        {"derive_key_context": "\udc80"},
    ],
)
def test_blake3_rejects_bad_arguments(kwargs):
    with pytest.raises(InputError):
        kernels.blake3(b"data", **kwargs)


def test_blake3_rejects_non_bytes_data():
    for bad in ("text", 5, None, [1, 2]):
        with pytest.raises(InputError):
            kernels.blake3(bad)


# ---------------------------------------------------------------- leaves, levels, root


def test_empty_tree():
    h, s = native.root(b"")
    assert h == blake3.blake3(b"", derive_key_context=EMPTY_CTX).digest()
    assert s == bytes(48)
    assert native.tree_levels(b"") == []
    assert native.leaf_hashes(b"") == (b"", b"")
    assert native.parent_level(b"", b"") == (b"", b"")


def test_leaf_sums_read_the_metered_fields():
    rec = bytearray(288)
    rec[16:24] = (2**64 - 1).to_bytes(8, "little")  # fuel
    rec[32:40] = (12345).to_bytes(8, "little")  # mem
    rec[40:48] = (2**64 - 1).to_bytes(8, "little")  # input bytes
    rec[48:56] = (2**64 - 3).to_bytes(8, "little")  # output bytes: io crosses 2^64
    _, sums = native.leaf_hashes(bytes(rec))
    assert kernels.sums_to_ints(sums) == (2**64 - 1, 12345, 2**65 - 4)


@SETTINGS
@given(n=st.integers(0, 70), seed=st.integers(0, 2**32))
def test_tree_matches_reference_small(simd, n, seed):
    _check_tree(records_of(random.Random(seed), n))


@settings(SETTINGS, max_examples=6)
@given(n=st.integers(71, 5000), seed=st.integers(0, 2**32))
def test_tree_matches_reference_large(simd, n, seed):
    _check_tree(records_of(random.Random(seed), n))


@pytest.mark.parametrize("n", [2047, 2048, 2049, 4096 + 17])
def test_tree_matches_reference_at_block_boundaries(simd, n):
    _check_tree(records_of(random.Random(n), n))


def _check_tree(records: list[bytes]):
    blob = b"".join(records)
    leaves = [ref_leaf(r) for r in records]
    h, s = native.root(blob)
    want = ref_root(records)
    assert (h, dec_sums(s)) == want
    levels = native.tree_levels(blob)
    level = leaves
    for got in levels:
        assert got == as_level(level)
        level = [ref_node(level[i], level[i + 1]) if i + 1 < len(level) else level[i] for i in range(0, len(level), 2)]
    if records:
        assert levels[-1] == (h, s)
        assert len(levels[0][0]) == 32 * len(records)


@pytest.mark.parametrize("n", [0, 1, 2, 3, 7, 16, 33, 2049])
def test_root_matches_the_projects_python_tree(n):
    """The package's own pure-Python tree hashing (poe.merkle.hasher), where present, agrees too."""
    treehash = pytest.importorskip("poe.merkle.hasher")
    if not all(hasattr(treehash, name) for name in ("leaf", "node", "EMPTY")):
        pytest.skip("poe.merkle.hasher has no leaf/node/EMPTY")
    records = records_of(random.Random(n + 77), n)
    level = [treehash.leaf(r) for r in records]
    while len(level) > 1:
        level = [treehash.node(level[i], level[i + 1]) if i + 1 < len(level) else level[i] for i in range(0, len(level), 2)]
    top = level[0] if level else treehash.EMPTY
    h, s = native.root(b"".join(records))
    assert (h, kernels.sums_to_ints(s)) == (top.hash, (top.sums.fuel, top.sums.mem, top.sums.io))


def test_simd_paths_agree_with_scalar():
    rng = random.Random(7)
    inputs = [b"".join(records_of(rng, n)) for n in [*range(0, 40), 63, 64, 65, 255, 257, 2049, 4097]]
    results = {}
    before = kernels.simd_path()
    for path in kernels.simd_paths():
        kernels.set_simd_path(path)
        try:
            out = []
            for blob in inputs:
                levels = native.tree_levels(blob)
                out.append((native.root(blob), levels))
                if levels:
                    hs = levels[0][0]
                    ss = levels[0][1]
                    # Odd-length and unaligned slices of a level exercise partial lanes.
                    out.append(native.parent_level(hs[32:], ss[48:]))
            results[path] = out
        finally:
            kernels.set_simd_path(before)
    for path, out in results.items():
        assert out == results["scalar"], path


@pytest.mark.parametrize("path", PATHS)
def test_env_var_forces_the_path(path):
    if path not in kernels.simd_paths():
        pytest.skip(f"SIMD path {path} cannot run on this machine")
    code = (
        "import poe._native as n, random, tests.native_kernels as k\n"
        "blob = random.Random(3).randbytes(288 * 1001)\n"
        "print(k.simd_path()); print(n.root(blob)[0].hex()); print(n.leaf_hashes(blob)[0][-32:].hex())\n"
    )
    out = _python(code, POE_NATIVE_SIMD=path)
    assert out.returncode == 0, out.stderr
    got_path, root_hex, leaf_hex = out.stdout.split()
    assert got_path == path
    blob = random.Random(3).randbytes(288 * 1001)
    assert root_hex == ref_root([blob[i : i + 288] for i in range(0, len(blob), 288)])[0].hex()
    assert leaf_hex == ref_leaf(blob[-288:])[0].hex()


def test_env_var_with_an_unknown_path_falls_back_to_the_best():
    out = _python("import tests.native_kernels as k; print(k.simd_path())", POE_NATIVE_SIMD="sse9")
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == kernels.simd_paths()[-1]


def test_unknown_path_is_refused():
    with pytest.raises(InputError):
        kernels.set_simd_path("sse9")
    assert kernels.simd_path() in kernels.simd_paths()


@pytest.mark.parametrize("bad", [b"x" * 287, b"x" * 289, "text", None, 12])
def test_records_must_be_whole(bad):
    for fn in (native.leaf_hashes, native.root, native.tree_levels):
        with pytest.raises(InputError):
            fn(bad)


def test_parent_level_validates_lengths():
    with pytest.raises(InputError):
        native.parent_level(b"h" * 64, b"s" * 48)  # 2 hashes, 1 sums
    with pytest.raises(InputError):
        native.parent_level(b"h" * 33, b"s" * 48)
    with pytest.raises(InputError):
        native.parent_level(b"h" * 32, b"s" * 47)


# ---------------------------------------------------------------- sum overflow


@pytest.mark.parametrize("component", [0, 1, 2])
def test_sum_overflow_is_an_error(simd, component):
    top = [0, 0, 0]
    top[component] = U128 - 1
    one = [0, 0, 0]
    one[component] = 1
    hashes = bytes(64)
    with pytest.raises(SumOverflowError):
        native.parent_level(hashes, enc_sums(tuple(top)) + enc_sums(tuple(one)))
    # One below the limit is fine, and the carry between the u64 halves propagates.
    below = list(top)
    below[component] = U128 - 2
    _, s = native.parent_level(hashes, enc_sums(tuple(below)) + enc_sums(tuple(one)))
    assert dec_sums(s)[component] == U128 - 1
    _, s = native.parent_level(hashes, enc_sums((2**64 - 1, 2**64 - 1, 2**64 - 1)) + enc_sums((1, 1, 1)))
    assert dec_sums(s) == (2**64, 2**64, 2**64)


@SETTINGS
@given(
    a=st.tuples(*[st.integers(0, U128 - 1)] * 3),
    b=st.tuples(*[st.integers(0, U128 - 1)] * 3),
    n=st.integers(2, 40),
)
def test_checked_addition_matches_python(a, b, n):
    # n nodes whose last pair carries a and b; all other sums are zero.
    sums = [(0, 0, 0)] * n
    last = n - 1 if n % 2 == 0 else n - 2
    sums[last - 1], sums[last] = a, b
    hashes = bytes(32 * n)
    total = tuple(x + y for x, y in zip(a, b))
    if any(v >= U128 for v in total):
        with pytest.raises(SumOverflowError):
            native.parent_level(hashes, b"".join(map(enc_sums, sums)))
    else:
        _, out = native.parent_level(hashes, b"".join(map(enc_sums, sums)))
        assert dec_sums(out[(last // 2) * 48 : (last // 2) * 48 + 48]) == total


# ---------------------------------------------------------------- inclusion proofs


def _tree(n: int, seed: int):
    leaves = [ref_leaf(r) for r in records_of(random.Random(seed), n)]
    return leaves, ref_tree(leaves)


@pytest.mark.parametrize("n", [*range(1, 34), 64, 65, 100])
def test_every_correct_proof_verifies(simd, n):
    leaves, root = _tree(n, n)
    cases = [case(leaves[m], m, n, ref_path(m, leaves)) for m in range(n)]
    shared = (root[0], enc_sums(root[1]))
    assert kernels.verify_inclusion_many(cases, root=shared) == [kernels.PROOF_OK] * n
    own = [case(leaves[m], m, n, ref_path(m, leaves), root) for m in range(n)]
    assert kernels.verify_inclusion_many(own) == [kernels.PROOF_OK] * n


def test_proofs_in_binary_path_form_and_large_batches():
    leaves, root = _tree(1000, 5)
    cases = []
    for m in range(1000):
        path = b"".join(h + enc_sums(s) for h, s in ref_path(m, leaves))
        cases.append(kernels.InclusionCase(leaves[m][0], enc_sums(leaves[m][1]), m, 1000, path))
    assert kernels.verify_inclusion_many(cases, root=(root[0], enc_sums(root[1]))) == [0] * 1000


def _flip(b: bytes, bit: int) -> bytes:
    out = bytearray(b)
    out[bit // 8] ^= 1 << (bit % 8)
    return bytes(out)


def _mutations(leaves, root, m, n, rng):
    """(name, case, expected code) for mutations of the proof of leaf m in a tree of n."""
    path = ref_path(m, leaves)
    leaf = leaves[m]
    out = []
    for j, (h, s) in enumerate(path):
        out.append((f"flip hash {j}", case(leaf, m, n, path[:j] + [(_flip(h, rng.randrange(256)), s)] + path[j + 1 :], root), 3))
        for c in range(3):
            bumped = list(s)
            bumped[c] = s[c] + 1 if s[c] < U128 - 1 else s[c] - 1
            mutated = path[:j] + [(h, tuple(bumped))] + path[j + 1 :]
            out.append((f"sum {c} of entry {j} off by one", case(leaf, m, n, mutated, root), 3))
    out.append(("flip leaf hash", case((_flip(leaf[0], 7), leaf[1]), m, n, path, root), 3))
    bumped_leaf = (leaf[0], (leaf[1][0] + 1, leaf[1][1], leaf[1][2]))
    out.append(("leaf sum off by one", case(bumped_leaf, m, n, path, root), 3 if n > 1 else 4))
    out.append(("flip root hash", case(leaf, m, n, path, (_flip(root[0], 100), root[1])), 3))
    out.append(("root sum off by one", case(leaf, m, n, path, (root[0], (root[1][0], root[1][1] + 1, root[1][2]))), 4))
    out.append(("index = size", case(leaf, n, n, path, root), 1))
    out.append(("index past size", case(leaf, n + rng.randrange(1, 1000), n, path, root), 1))
    out.append(("size 0", case(leaf, m, 0, path, root), 1))
    out.append(("index 2^64-1", case(leaf, 2**64 - 1, n, path, root), 1))
    for other in {rng.randrange(n) for _ in range(4)} - {m}:
        out.append((f"wrong index {other}", case(leaf, other, n, path, root), None))
    for size in ({rng.randrange(m + 1, 2 * n + 2) for _ in range(4)} | {n + 1, 2 * n, 2**64 - 1}) - {n}:
        out.append((f"wrong size {size}", case(leaf, m, size, path, root), None))
    if path:
        out.append(("truncated path", case(leaf, m, n, path[:-1], root), 2))
        out.append(("first entry dropped", case(leaf, m, n, path[1:], root), 2))
    out.append(("extra entry", case(leaf, m, n, [*path, leaves[0]], root), 2))
    out.append(("extra entry first", case(leaf, m, n, [leaves[0], *path], root), 2))
    out.append(("sibling overflows", case((leaf[0], (max(leaf[1][0], 1), 0, 0)), m, n, [(p[0], (U128 - 1, 0, 0)) for p in path], root), 5 if path else 4))
    return out


@pytest.mark.parametrize("n", [1, 2, 3, 5, 8, 13, 31, 33, 70])
def test_every_mutation_is_rejected_with_its_code(simd, n):
    rng = random.Random(n)
    leaves, root = _tree(n, n + 1000)
    named = []
    for m in sorted({0, n - 1, rng.randrange(n), n // 2}):
        named.extend(_mutations(leaves, root, m, n, rng))
    got = kernels.verify_inclusion_many([c for _, c, _ in named])
    for (name, c, expected), code in zip(named, got):
        want = ref_verify((c.leaf_hash, dec_sums(c.leaf_sums)), c.index, c.size, [(h, dec_sums(s)) for h, s in c.path], (c.root_hash, dec_sums(c.root_sums)))
        assert code == want, f"{name}: native {kernels.RESULT_NAMES[code]}, reference {kernels.RESULT_NAMES[want]}"
        if expected is not None:
            assert code == expected, f"{name}: got {kernels.RESULT_NAMES[code]}"
        elif not name.startswith("wrong size"):
            assert code != kernels.PROOF_OK, name
    # A wrong size is rejected unless that size gives the leaf the same position on the same
    # path (e.g. leaf 0 of 3 and of 4): the size comes with the trusted root, not the proof.
    sized = [(name, code) for (name, _, _), code in zip(named, got) if name.startswith("wrong size")]
    assert any(code != kernels.PROOF_OK for _, code in sized) or n == 1


def test_result_codes_map_to_error_classes():
    assert kernels.error_for(kernels.PROOF_OK) is None
    assert kernels.error_for(kernels.PROOF_BAD_INDEX) is InclusionProofError
    assert kernels.error_for(kernels.PROOF_BAD_PATH_LENGTH) is InclusionProofError
    assert kernels.error_for(kernels.PROOF_ROOT_HASH_MISMATCH) is RootMismatchError
    assert kernels.error_for(kernels.PROOF_ROOT_SUMS_MISMATCH) is RootMismatchError
    assert kernels.error_for(kernels.PROOF_SUM_OVERFLOW) is InclusionProofError  # as the reference verifier
    assert set(kernels.RESULT_NAMES) == set(kernels.RESULT_ERRORS)
    with pytest.raises(InputError):
        kernels.error_for(99)


def test_c_checks_path_offsets_itself():
    """The binding always passes consistent offsets; the C side must still refuse bad ones."""
    ffi, lib = native._ffi, native._lib
    leaves, root = _tree(4, 1)
    path = ref_path(1, leaves)
    entries = b"".join(h + enc_sums(s) for h, s in path)
    results = ffi.new("int32_t[]", 3)
    offsets = array("Q", [0, 2, 1, 99])  # good; decreasing; beyond the entries
    rc = lib.poe_verify_inclusion_many(
        3,
        ffi.from_buffer("uint8_t[]", leaves[1][0] * 3),
        ffi.from_buffer("uint8_t[]", enc_sums(leaves[1][1]) * 3),
        ffi.from_buffer("uint64_t[]", array("Q", [1, 1, 1])),
        ffi.from_buffer("uint64_t[]", array("Q", [4, 4, 4])),
        ffi.from_buffer("uint64_t[]", offsets),
        ffi.from_buffer("uint8_t[]", entries),
        2,
        ffi.from_buffer("uint8_t[]", root[0]),
        ffi.from_buffer("uint8_t[]", enc_sums(root[1])),
        1,
        results,
    )
    assert rc == 0
    assert list(results) == [kernels.PROOF_OK, kernels.PROOF_BAD_ARGUMENT, kernels.PROOF_BAD_ARGUMENT]
    rc = lib.poe_verify_inclusion_many(
        3, ffi.NULL, ffi.NULL, ffi.NULL, ffi.NULL, ffi.NULL, ffi.NULL, 0, ffi.NULL, ffi.NULL, 2, results
    )
    assert rc == 2  # n_roots neither 1 nor m


# ---------------------------------------------------------------- garbage never crashes


garbage = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**70), 2**70),
    st.floats(allow_nan=True),
    st.text(max_size=10),
    st.binary(max_size=200),
    st.sampled_from([b"\0" * 32, b"\0" * 48, b"\0" * 80, b"\0" * 288]),
    st.lists(st.binary(max_size=50), max_size=3),
    st.tuples(st.binary(max_size=40), st.binary(max_size=50)),
)


def _ok_or_poe_error(fn, *args, **kwargs):
    try:
        return fn(*args, **kwargs)
    except PoEError:
        return None


@SETTINGS
@given(a=garbage, b=garbage, kw=st.dictionaries(st.sampled_from(["key", "derive_key_context", "length"]), garbage, max_size=2))
def test_garbage_arguments_never_crash(a, b, kw):
    length = kw.get("length")
    if isinstance(length, int) and 300 < length < 2**48:
        del kw["length"]  # a valid but huge output length only costs time and memory
    _ok_or_poe_error(kernels.blake3, a, **kw)
    _ok_or_poe_error(native.leaf_hashes, a)
    _ok_or_poe_error(native.root, a)
    _ok_or_poe_error(native.tree_levels, a)
    _ok_or_poe_error(native.parent_level, a, b)
    _ok_or_poe_error(kernels.verify_inclusion_many, a)
    _ok_or_poe_error(kernels.verify_inclusion_many, [a], root=b)
    _ok_or_poe_error(kernels.sums_to_ints, a)
    _ok_or_poe_error(kernels.error_for, a)


proof_fields = st.tuples(
    st.one_of(st.binary(min_size=32, max_size=32), garbage),
    st.one_of(st.binary(min_size=48, max_size=48), garbage),
    st.one_of(st.integers(0, 70), st.integers(0, 2**64 - 1), garbage),
    st.one_of(st.integers(0, 70), st.integers(0, 2**64 - 1), garbage),
    st.one_of(
        st.lists(st.tuples(st.binary(min_size=32, max_size=32), st.binary(min_size=48, max_size=48)), max_size=70),
        st.binary(max_size=800),
        garbage,
    ),
    st.one_of(st.binary(min_size=32, max_size=32), st.none(), garbage),
    st.one_of(st.binary(min_size=48, max_size=48), st.none(), garbage),
)


@SETTINGS
@given(proofs=st.lists(proof_fields.map(lambda t: t[: 5 if t[5] is None and t[6] is None else 7]), max_size=8))
def test_garbage_proofs_never_crash(proofs):
    codes = _ok_or_poe_error(kernels.verify_inclusion_many, proofs)
    if codes is not None:
        assert len(codes) == len(proofs)
        assert set(codes) <= set(kernels.RESULT_NAMES) - {kernels.PROOF_BAD_ARGUMENT}


@SETTINGS
@given(
    n=st.integers(1, 40),
    index=st.integers(0, 2**64 - 1) | st.integers(0, 45),
    size=st.integers(0, 2**64 - 1) | st.integers(0, 45),
    k=st.integers(0, 66),
    seed=st.integers(0, 2**32),
)
def test_random_wellformed_proofs_match_reference(n, index, size, k, seed):
    rng = random.Random(seed)
    leaves, root = _tree(n, seed)
    path = [leaves[rng.randrange(n)] for _ in range(k)]
    leaf = leaves[rng.randrange(n)]
    want = ref_verify(leaf, index, size, path, root)
    assert kernels.verify_inclusion_many([case(leaf, index, size, path, root)]) == [want]


def test_internal_error_when_unavailable(monkeypatch):
    monkeypatch.setattr(native, "AVAILABLE", False)
    with pytest.raises(InternalError):
        native.root(b"")

"""The memory commitment (poe.merkle.memory, native/memtree.c): the root is the standard BLAKE3 hash
of the memory image (checked against blake3-py and BLAKE3's official vectors), and a commit's
`changed` list is exactly the chunks whose bytes differ from the previous image, plus grown
chunks that are not all zero — for every tracking mode, every SIMD path, and the pure-Python
path, on ctypes/mmap buffers and on a real wasmtime memory.
"""

from __future__ import annotations

import ctypes
import json
import mmap
import random

import pytest

blake3 = pytest.importorskip("blake3")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from poe import _native  # noqa: E402
from poe.merkle import memory as _memtree  # noqa: E402
from poe.merkle.memory import CHUNK_SIZE, MemoryTree, chunk_digests, memory_root  # noqa: E402
from poe.errors import InputError, InternalError  # noqa: E402

from . import native_kernels as kernels  # noqa: E402
from .conftest import SHARED_VECTORS  # noqa: E402

BLAKE3_VECTORS = SHARED_VECTORS / "blake3" / "test_vectors.json"
WASM_PAGE = 65536
OS_PAGE = mmap.PAGESIZE
PATHS = ("scalar", "avx2", "avx512")

needs_native = pytest.mark.skipif(not _native.AVAILABLE, reason=f"native kernel not available: {_native.LOAD_ERROR}")
UFFD_REASON = _memtree.uffd_unavailable()
needs_uffd = pytest.mark.skipif(UFFD_REASON is not None, reason=f"userfaultfd tracking unsupported here: {UFFD_REASON}")

SETTINGS = settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture, HealthCheck.data_too_large],
)


# ---------------------------------------------------------------- helpers


@pytest.fixture(autouse=True)
def _no_tracking_override(monkeypatch):
    """The tests choose their modes; a POE_DIRTY_TRACKING in the environment must not."""
    monkeypatch.delenv("POE_DIRTY_TRACKING", raising=False)


class Buffer:
    """A page-aligned anonymous mapping standing in for a linear memory."""

    def __init__(self, capacity: int) -> None:
        self.map = mmap.mmap(-1, capacity)
        self.array = (ctypes.c_ubyte * capacity).from_buffer(self.map)
        self.address = ctypes.addressof(self.array)

    def write(self, offset: int, data: bytes) -> None:
        ctypes.memmove(self.address + offset, data, len(data))

    def image(self, length: int) -> bytes:
        return ctypes.string_at(self.address, length)

    def close(self) -> None:
        del self.array
        self.map.close()


@pytest.fixture
def buffer():
    made: list[Buffer] = []

    def make(capacity: int = 1 << 20) -> Buffer:
        made.append(Buffer(capacity))
        return made[-1]

    yield make
    for b in made:
        b.close()


@pytest.fixture(params=PATHS)
def simd_path(request):
    if not _native.AVAILABLE:
        pytest.skip(f"native kernel not available: {_native.LOAD_ERROR}")
    if request.param not in kernels.simd_paths():
        pytest.skip(f"SIMD path {request.param} cannot run on this machine")
    kernels.set_simd_path(request.param)
    yield request.param
    kernels.set_simd_path("auto")


@pytest.fixture
def python_only(monkeypatch):
    """Force the pure-Python path, as without the native kernel."""
    monkeypatch.setattr(_native, "AVAILABLE", False)
    monkeypatch.setattr(_native, "LOAD_ERROR", "disabled by the test")


def tree_for(mode: str, request) -> MemoryTree:
    """A MemoryTree in one of the modes the tests cover ("python": the pure-Python path)."""
    if mode == "python":
        request.getfixturevalue("python_only")
        return MemoryTree("compare")
    if not _native.AVAILABLE:
        pytest.skip(f"native kernel not available: {_native.LOAD_ERROR}")
    if mode == "uffd" and UFFD_REASON is not None:
        pytest.skip(f"userfaultfd tracking unsupported here: {UFFD_REASON}")
    return MemoryTree(mode)


def expected_changed(old: bytes, new: bytes) -> list[int]:
    out = []
    for i in range(len(new) // CHUNK_SIZE):
        chunk = new[i * CHUNK_SIZE : (i + 1) * CHUNK_SIZE]
        before = old[i * CHUNK_SIZE : (i + 1) * CHUNK_SIZE] if i * CHUNK_SIZE < len(old) else bytes(CHUNK_SIZE)
        if chunk != before:
            out.append(i)
    return out


def pattern(n: int, seed: int) -> bytes:
    return random.Random(seed).randbytes(n)


MODES = ("uffd", "compare", "rehash", "python")


# ---------------------------------------------------------------- roots


ROOT_LENGTHS = [0, 1024, 2048, 3072, 5 * 1024, 7 * 1024, 64 * 1024, 3 * 64 * 1024, 5 * 64 * 1024, 1000 * 1024, 1025 * 1024, 16 << 20]


@pytest.mark.parametrize("length", ROOT_LENGTHS)
def test_memory_root_is_standard_blake3(simd_path, length):
    data = pattern(length, length)
    assert memory_root(data) == blake3.blake3(data).digest()
    assert _native.memory_root(data) == blake3.blake3(data).digest()


@pytest.mark.parametrize("length", ROOT_LENGTHS)
def test_attach_root_is_standard_blake3(simd_path, buffer, length):
    buf = buffer(max(length, OS_PAGE))
    data = pattern(length, length + 1)
    buf.write(0, data)
    with MemoryTree("rehash") as tree:
        assert tree.attach(buf.address, length) == blake3.blake3(data).digest() == tree.root


def test_root_every_chunk_count_up_to_70(simd_path):
    """Every tree shape from 0 to 70 chunks (odd levels, carried nodes, 2^k and 2^k + 1)."""
    data = pattern(70 * CHUNK_SIZE, 7)
    for n in range(71):
        image = data[: n * CHUNK_SIZE]
        assert memory_root(image) == blake3.blake3(image).digest(), n


def test_python_root_is_standard_blake3(python_only):
    for length in (0, 1024, 3 * 64 * 1024):
        data = pattern(length, 3)
        assert memory_root(data) == blake3.blake3(data).digest()


def _official_cases():
    if not BLAKE3_VECTORS.exists():
        return [pytest.param(None, marks=pytest.mark.skip(reason=f"BLAKE3 test vectors not found at {BLAKE3_VECTORS}"))]
    doc = json.loads(BLAKE3_VECTORS.read_text())
    cases = [c for c in doc["cases"] if c["input_len"] % CHUNK_SIZE == 0]
    return [pytest.param(c, id=f"len{c['input_len']}") for c in cases]


@pytest.mark.parametrize("case", _official_cases())
def test_official_vectors_chunk_tree_lengths(simd_path, buffer, case):
    data = bytes(i % 251 for i in range(case["input_len"]))
    expect = case["hash"][:64]
    assert memory_root(data).hex() == expect
    buf = buffer(max(len(data), OS_PAGE) + OS_PAGE)
    buf.write(0, data)
    with MemoryTree("rehash") as tree:
        assert tree.attach(buf.address, len(data)).hex() == expect


@pytest.mark.parametrize("case", _official_cases())
def test_official_vectors_python_path(python_only, case):
    data = bytes(i % 251 for i in range(case["input_len"]))
    assert memory_root(data).hex() == case["hash"][:64]


def test_simd_paths_agree(buffer):
    if not _native.AVAILABLE:
        pytest.skip(f"native kernel not available: {_native.LOAD_ERROR}")
    data = pattern(777 * CHUNK_SIZE, 11)
    buf = buffer(len(data) + OS_PAGE)
    buf.write(0, data)
    picks = [0, 5, 5, 776, 100, 3, 17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30]
    results = set()
    try:
        for path in kernels.simd_paths():
            kernels.set_simd_path(path)
            results.add((memory_root(data), tuple(chunk_digests(buf.address, picks))))
    finally:
        kernels.set_simd_path("auto")
    assert len(results) == 1


# ---------------------------------------------------------------- chunk digests


def test_chunk_digests_are_plain_blake3(simd_path, buffer):
    data = pattern(40 * CHUNK_SIZE, 5)
    buf = buffer(len(data))
    buf.write(0, data)
    picks = [39, 0, 7, 7, 12] + list(range(16, 36))
    got = chunk_digests(buf.address, picks)
    assert got == [blake3.blake3(data[i * CHUNK_SIZE : (i + 1) * CHUNK_SIZE]).digest() for i in picks]
    assert chunk_digests(buf.address, []) == []


def test_chunk_digests_python_path(python_only, buffer):
    data = pattern(4 * CHUNK_SIZE, 6)
    buf = buffer(OS_PAGE)
    buf.write(0, data)
    assert chunk_digests(buf.address, [3, 1]) == [blake3.blake3(data[i * 1024 : (i + 1) * 1024]).digest() for i in (3, 1)]


# ---------------------------------------------------------------- commits


@st.composite
def segments(draw, unit: int):
    """An initial length and a list of segments; a segment is a list of ("write", offset,
    bytes) / ("same", offset, n) / ("grow", units) steps, applied before a commit."""
    start = draw(st.integers(0, 24)) * unit
    length = start
    out = []
    for _ in range(draw(st.integers(1, 6))):
        steps = []
        for _ in range(draw(st.integers(0, 8))):
            kind = draw(st.sampled_from(["write", "write", "write", "same", "grow", "zero"]))
            if kind == "grow":
                units = draw(st.integers(1, 6))
                if length + units * unit <= 64 * unit:
                    length += units * unit
                    steps.append(("grow", units))
                continue
            if length == 0:
                continue
            offset = draw(st.integers(0, length - 1))
            n = draw(st.integers(1, min(3000, length - offset)))
            if kind == "write":
                steps.append(("write", offset, draw(st.binary(min_size=1, max_size=16)) * (n // 16 + 1)))
            elif kind == "zero":
                steps.append(("write", offset, bytes(n)))
            else:
                steps.append(("same", offset, n))
        out.append(steps)
    return start, out


def run_segments(tree: MemoryTree, buf: Buffer, start: int, segs, unit: int) -> None:
    length = start
    assert tree.attach(buf.address, length) == blake3.blake3(buf.image(length)).digest()
    previous = buf.image(length)
    for steps in segs:
        for step in steps:
            if step[0] == "grow":
                length += step[1] * unit
            elif step[0] == "write":
                _, offset, data = step
                buf.write(offset, data[: length - offset])
            else:
                _, offset, n = step
                buf.write(offset, buf.image(offset + n)[offset:])  # rewrite the same bytes
        root, changed = tree.commit(buf.address, length)
        image = buf.image(length)
        assert root == blake3.blake3(image).digest() == tree.root
        assert changed == expected_changed(previous, image)
        previous = image


@pytest.mark.parametrize("mode", MODES)
@SETTINGS
@given(data=st.data())
def test_commits_track_every_change(request, buffer, mode, data):
    # uffd needs whole OS pages; the other modes also get odd chunk counts.
    unit = OS_PAGE if mode == "uffd" else CHUNK_SIZE
    start, segs = data.draw(segments(unit))
    tree = tree_for(mode, request)
    buf = buffer(64 * unit + OS_PAGE)
    if data.draw(st.booleans()):
        # Bytes beyond the start length: growth then reveals nonzero chunks (wasm's grow gives
        # zeros, but the rule is about content, not about how it got there).
        buf.write(0, pattern(64 * unit, start))
    with tree:
        run_segments(tree, buf, start, segs, unit)
        if mode == "uffd":
            assert tree.tracking == "uffd"


@pytest.mark.parametrize("mode", ["uffd", "compare", "rehash"])
def test_commits_on_every_simd_path(simd_path, request, buffer, mode):
    rng = random.Random(42)
    unit = OS_PAGE
    buf = buffer(80 * unit)
    buf.write(0, pattern(9 * unit, 1))
    segs = []
    length = 9 * unit
    for _ in range(12):
        steps = []
        for _ in range(rng.randrange(0, 30)):
            off = rng.randrange(length)
            steps.append(("write", off, rng.randbytes(min(rng.randrange(1, 5000), length - off))))
        if rng.random() < 0.3:
            grow = rng.randrange(1, 5)
            length += grow * unit
            steps.append(("grow", grow))
        segs.append(steps)
    with tree_for(mode, request) as tree:
        run_segments(tree, buf, 9 * unit, segs, unit)


@pytest.mark.parametrize("mode", MODES)
def test_unchanged_rewrites_and_zero_growth_are_not_changes(request, buffer, mode):
    buf = buffer(1 << 20)
    buf.write(0, pattern(4 * OS_PAGE, 2))
    with tree_for(mode, request) as tree:
        tree.attach(buf.address, 4 * OS_PAGE)
        buf.write(100, buf.image(4 * OS_PAGE)[100:5000])  # same bytes back
        root, changed = tree.commit(buf.address, 4 * OS_PAGE)
        assert changed == [] and root == blake3.blake3(buf.image(4 * OS_PAGE)).digest()
        # Grow by 3 pages; one grown chunk gets a byte, the rest stays zero.
        buf.write(5 * OS_PAGE + 2 * CHUNK_SIZE + 9, b"\x01")
        first = buf.image(1)
        buf.write(0, bytes([first[0] ^ 0xFF]))
        root, changed = tree.commit(buf.address, 7 * OS_PAGE)
        assert changed == [0, (5 * OS_PAGE + 2 * CHUNK_SIZE) // CHUNK_SIZE]
        assert root == blake3.blake3(buf.image(7 * OS_PAGE)).digest()
        # A chunk written back to zero is a change.
        buf.write(5 * OS_PAGE + 2 * CHUNK_SIZE + 9, b"\x00")
        root, changed = tree.commit(buf.address, 7 * OS_PAGE)
        assert changed == [(5 * OS_PAGE + 2 * CHUNK_SIZE) // CHUNK_SIZE]


@pytest.mark.parametrize("mode", MODES)
def test_memory_that_moves(request, buffer, mode):
    a, b = buffer(1 << 20), buffer(1 << 20)
    a.write(0, pattern(6 * OS_PAGE, 4))
    with tree_for(mode, request) as tree:
        tree.attach(a.address, 6 * OS_PAGE)
        image = a.image(6 * OS_PAGE)
        moved = bytearray(image) + bytearray(2 * OS_PAGE)
        moved[3 * CHUNK_SIZE + 5] ^= 1
        moved[7 * OS_PAGE + 1] = 7
        b.write(0, bytes(moved))
        root, changed = tree.commit(b.address, 8 * OS_PAGE)
        assert root == blake3.blake3(bytes(moved)).digest()
        assert changed == [3, 7 * OS_PAGE // CHUNK_SIZE]
        # Tracking follows the memory to its new place.
        b.write(2 * OS_PAGE, b"moved on")
        root, changed = tree.commit(b.address, 8 * OS_PAGE)
        assert root == blake3.blake3(b.image(8 * OS_PAGE)).digest()
        assert changed == [2 * OS_PAGE // CHUNK_SIZE]
        if mode == "uffd":
            assert tree.tracking == "uffd"


@pytest.mark.parametrize("mode", MODES)
def test_empty_memory_then_growth(request, buffer, mode):
    buf = buffer(1 << 20)
    with tree_for(mode, request) as tree:
        assert tree.attach(buf.address, 0) == blake3.blake3(b"").digest()
        assert tree.commit(buf.address, 0) == (blake3.blake3(b"").digest(), [])
        buf.write(OS_PAGE + 3, b"hi")
        root, changed = tree.commit(buf.address, 2 * OS_PAGE)
        assert root == blake3.blake3(buf.image(2 * OS_PAGE)).digest()
        assert changed == [OS_PAGE // CHUNK_SIZE]
        buf.write(10, b"again")
        root, changed = tree.commit(buf.address, 2 * OS_PAGE)
        assert root == blake3.blake3(buf.image(2 * OS_PAGE)).digest() and changed == [0]
        if mode == "uffd":
            assert tree.tracking == "uffd"


def test_attach_at_address_zero_with_no_memory(buffer):
    with MemoryTree() as tree:
        assert tree.attach(0, 0) == blake3.blake3(b"").digest()
        buf = buffer(OS_PAGE * 4)
        buf.write(5, b"x")
        root, changed = tree.commit(buf.address, OS_PAGE)
        assert root == blake3.blake3(buf.image(OS_PAGE)).digest() and changed == [0]


# ---------------------------------------------------------------- modes and errors


@needs_native
def test_auto_picks_uffd_where_it_works_else_compare(buffer):
    buf = buffer(OS_PAGE * 4)
    with MemoryTree() as tree:
        tree.attach(buf.address, OS_PAGE * 4)
        assert tree.tracking == ("uffd" if UFFD_REASON is None else "compare")
        assert (tree.fallback_reason is None) == (UFFD_REASON is None)


@needs_native
def test_auto_falls_back_for_memory_uffd_cannot_track(buffer):
    """Not page aligned: uffd refuses, auto takes compare and still commits correctly."""
    buf = buffer(OS_PAGE * 4)
    with MemoryTree() as tree:
        tree.attach(buf.address + CHUNK_SIZE, 2 * OS_PAGE)
        assert tree.tracking == "compare" and tree.fallback_reason
        buf.write(CHUNK_SIZE + 5000, b"z")
        root, changed = tree.commit(buf.address + CHUNK_SIZE, 2 * OS_PAGE)
        assert root == blake3.blake3(buf.image(CHUNK_SIZE + 2 * OS_PAGE)[CHUNK_SIZE:]).digest() == tree.root
        assert changed == [4]


@needs_uffd
def test_explicit_uffd_refuses_unsuitable_memory(buffer):
    buf = buffer(OS_PAGE * 4)
    with MemoryTree("uffd") as tree:
        with pytest.raises(InputError, match="userfaultfd"):
            tree.attach(buf.address + CHUNK_SIZE, OS_PAGE)


def test_env_overrides_auto(monkeypatch, buffer):
    monkeypatch.setenv("POE_DIRTY_TRACKING", "rehash")
    buf = buffer(OS_PAGE)
    with MemoryTree() as tree:
        tree.attach(buf.address, OS_PAGE)
        assert tree.tracking == "rehash"
    with MemoryTree("compare") as tree:  # only "auto" is overridden
        tree.attach(buf.address, OS_PAGE)
        assert tree.tracking == "compare"
    monkeypatch.setenv("POE_DIRTY_TRACKING", "bogus")
    with pytest.raises(InputError, match="POE_DIRTY_TRACKING"):
        MemoryTree()


def test_python_path_modes(python_only, buffer):
    assert MemoryTree().tracking == "compare"
    assert MemoryTree("rehash").tracking == "rehash"
    assert not MemoryTree().native
    with pytest.raises(InputError, match="native"):
        MemoryTree("uffd")


@pytest.mark.parametrize("mode", MODES)
def test_misuse_is_refused(request, buffer, mode):
    buf = buffer(OS_PAGE * 4)
    tree = tree_for(mode, request)
    with pytest.raises(InputError, match="attach"):
        tree.commit(buf.address, OS_PAGE)
    tree.attach(buf.address, 2 * OS_PAGE)
    with pytest.raises(InputError, match="shr"):
        tree.commit(buf.address, OS_PAGE)
    with pytest.raises(InputError, match="multiple"):
        tree.commit(buf.address, 2 * OS_PAGE + 100)
    with pytest.raises(InputError):
        tree.commit(-1, 2 * OS_PAGE)
    with pytest.raises(InputError, match="address 0"):
        tree.commit(0, 2 * OS_PAGE)
    # Still usable after refusals.
    buf.write(1, b"q")
    root, changed = tree.commit(buf.address, 2 * OS_PAGE)
    assert changed == [0] and root == blake3.blake3(buf.image(2 * OS_PAGE)).digest()
    tree.close()
    tree.close()
    with pytest.raises(InputError, match="closed"):
        tree.commit(buf.address, 2 * OS_PAGE)
    with pytest.raises(InputError, match="tracking"):
        MemoryTree("sometimes")


@needs_uffd
def test_close_releases_the_memory(buffer):
    """A closed (or collected) tree unregisters its userfaultfd: the memory can be tracked again."""
    buf = buffer(4 * OS_PAGE)
    for _ in range(3):
        tree = MemoryTree("uffd")
        tree.attach(buf.address, 4 * OS_PAGE)
        tree.close()
    tree = MemoryTree("uffd")
    tree.attach(buf.address, 4 * OS_PAGE)
    del tree
    with MemoryTree("uffd") as tree:
        tree.attach(buf.address, 4 * OS_PAGE)
        buf.write(OS_PAGE, b"seen")
        assert tree.commit(buf.address, 4 * OS_PAGE)[1] == [OS_PAGE // CHUNK_SIZE]
    # Two live trees cannot both track one memory with userfaultfd; auto falls back.
    with MemoryTree("uffd") as first, MemoryTree() as second:
        first.attach(buf.address, 4 * OS_PAGE)
        second.attach(buf.address, 4 * OS_PAGE)
        assert second.tracking == "compare" and "userfaultfd" in second.fallback_reason


@needs_uffd
def test_growth_uffd_cannot_protect_falls_back(buffer):
    """auto: a growth to a length that is not whole pages drops uffd for compare, correctly."""
    buf = buffer(8 * OS_PAGE)
    with MemoryTree() as tree:
        tree.attach(buf.address, 2 * OS_PAGE)
        assert tree.tracking == "uffd"
        buf.write(10, b"a")
        buf.write(2 * OS_PAGE + 10, b"b")
        root, changed = tree.commit(buf.address, 2 * OS_PAGE + CHUNK_SIZE)
        assert tree.tracking == "compare" and tree.fallback_reason
        assert changed == [0, 2 * OS_PAGE // CHUNK_SIZE]
        assert root == blake3.blake3(buf.image(2 * OS_PAGE + CHUNK_SIZE)).digest()
        buf.write(OS_PAGE, b"c")
        assert tree.commit(buf.address, 2 * OS_PAGE + CHUNK_SIZE)[1] == [OS_PAGE // CHUNK_SIZE]
    with MemoryTree("uffd") as tree:
        tree.attach(buf.address, 2 * OS_PAGE)
        with pytest.raises(InputError, match="pages"):
            tree.commit(buf.address, 2 * OS_PAGE + CHUNK_SIZE)
        # The refused commit left no trace: the next one rehashes and is right.
        buf.write(5, b"d")
        root, changed = tree.commit(buf.address, 3 * OS_PAGE)
        assert root == blake3.blake3(buf.image(3 * OS_PAGE)).digest()


def test_del_without_close_is_safe(buffer):
    buf = buffer(OS_PAGE)
    tree = MemoryTree()
    tree.attach(buf.address, OS_PAGE)
    del tree  # frees the tree and drops the write protection
    buf.write(0, b"still writable")
    assert buf.image(4) == b"stil"


# ---------------------------------------------------------------- the native interface


@needs_native
def test_native_update_accepts_unsorted_duplicates_and_clean_chunks(buffer):
    buf = buffer(16 * CHUNK_SIZE)
    buf.write(0, pattern(16 * CHUNK_SIZE, 9))
    tree = _native.memtree_new()
    _native.memtree_rebuild(tree, buf.address, 16 * CHUNK_SIZE)
    buf.write(5 * CHUNK_SIZE, b"a")
    buf.write(2 * CHUNK_SIZE, b"b" * 2000)  # chunks 2 and 3
    changed = _native.memtree_update(tree, buf.address, 16 * CHUNK_SIZE, [9, 5, 3, 5, 2, 0, 15])
    assert changed == [2, 3, 5]
    assert _native.memtree_root(tree) == blake3.blake3(buf.image(16 * CHUNK_SIZE)).digest()
    # A write the list does not mention is trusted not to exist (that is the tracker's job).
    buf.write(7 * CHUNK_SIZE, b"unseen")
    assert _native.memtree_update(tree, buf.address, 16 * CHUNK_SIZE, []) == []
    assert _native.memtree_rehash(tree, buf.address, 16 * CHUNK_SIZE) == [7]
    with pytest.raises(InputError, match="outside"):
        _native.memtree_update(tree, buf.address, 16 * CHUNK_SIZE, [16])
    with pytest.raises(InputError, match="shrank"):
        _native.memtree_update(tree, buf.address, 15 * CHUNK_SIZE, [])
    _native.release(tree)


@needs_native
def test_native_compare_tracker(buffer):
    buf = buffer(8 * CHUNK_SIZE)
    tracker = _native.dirty_open(_native.DIRTY_COMPARE, buf.address, 4 * CHUNK_SIZE)
    out = _native.chunk_buffer(8)
    assert _native.dirty_scan(tracker, out) == 0
    buf.write(CHUNK_SIZE * 3 + 1023, b"x")
    buf.write(CHUNK_SIZE * 5, b"beyond")  # not tracked yet
    assert _native.dirty_scan(tracker, out) == 1 and out[0] == 3
    assert _native.dirty_scan(tracker, out) == 0
    _native.dirty_extend(tracker, 8 * CHUNK_SIZE)
    buf.write(CHUNK_SIZE * 5, b"BEYOND")
    assert _native.dirty_scan(tracker, out) == 1 and out[0] == 5
    with pytest.raises(InternalError):
        _native.dirty_scan(tracker, _native.chunk_buffer(2))  # too small for 8 chunks
    _native.release(tracker)


@needs_uffd
def test_native_uffd_tracker_reports_written_pages(buffer):
    buf = buffer(16 * OS_PAGE)
    per_page = OS_PAGE // CHUNK_SIZE
    tracker = _native.dirty_open(_native.DIRTY_UFFD, buf.address, 8 * OS_PAGE)
    out = _native.chunk_buffer(16 * per_page)
    assert _native.dirty_scan(tracker, out) == 0
    buf.write(OS_PAGE * 2 + 7, b"x")
    buf.write(OS_PAGE * 5 - 1, b"yz")  # straddles pages 4 and 5
    buf.write(OS_PAGE * 9, b"untracked")
    n = _native.dirty_scan(tracker, out)
    pages = sorted({c // per_page for c in out[0:n]})
    assert pages == [2, 4, 5] and n == 3 * per_page
    assert _native.dirty_scan(tracker, out) == 0  # re-protected by the scan
    buf.write(OS_PAGE * 2, b"again")
    n = _native.dirty_scan(tracker, out)
    assert list(out[0:n]) == list(range(2 * per_page, 3 * per_page))
    _native.dirty_extend(tracker, 16 * OS_PAGE)
    buf.write(OS_PAGE * 9, b"tracked now")
    n = _native.dirty_scan(tracker, out)
    assert list(out[0:n]) == list(range(9 * per_page, 10 * per_page))
    _native.release(tracker)


# ---------------------------------------------------------------- a real wasmtime memory


WAT = """
(module
  (memory (export "memory") 2 64)
  (data (i32.const 70000) "initial data")
  (func (export "store") (param $addr i32) (param $val i32)
    (i32.store8 (local.get $addr) (local.get $val)))
  (func (export "fill") (param $addr i32) (param $val i32) (param $n i32)
    (memory.fill (local.get $addr) (local.get $val) (local.get $n)))
  (func (export "grow") (param $pages i32) (result i32)
    (memory.grow (local.get $pages))))
"""


@pytest.mark.parametrize("mode", ["uffd", "compare", "rehash"])
def test_wasmtime_memory(request, mode):
    wasmtime = pytest.importorskip("wasmtime")
    tree = tree_for(mode, request)
    config = wasmtime.Config()
    config.memory_init_cow = True  # the data segment comes from a copy-on-write image
    engine = wasmtime.Engine(config)
    store = wasmtime.Store(engine)
    instance = wasmtime.Instance(store, wasmtime.Module(engine, wasmtime.wat2wasm(WAT)), [])
    exports = instance.exports(store)
    memory = exports["memory"]

    def where() -> tuple[int, int]:
        return ctypes.cast(memory.data_ptr(store), ctypes.c_void_p).value or 0, memory.data_len(store)

    def image() -> bytes:
        return bytes(memory.read(store, 0, memory.data_len(store)))

    with tree:
        address, length = where()
        assert tree.attach(address, length) == blake3.blake3(image()).digest()
        previous = image()

        def check(expect: list[int]) -> None:
            nonlocal previous
            root, changed = tree.commit(*where())
            now = image()
            assert root == blake3.blake3(now).digest()
            assert changed == expected_changed(previous, now) == expect
            previous = now

        exports["store"](store, 5, 1)  # through wasm
        exports["store"](store, 70000, ord("I"))  # a copy-on-write page of the data image
        check([0, 70000 // CHUNK_SIZE])
        memory.write(store, b"from python", 3 * CHUNK_SIZE + 1000)  # through the host
        exports["store"](store, 6, 0)  # the byte already there: chunk 0 is unchanged
        check([3])
        exports["store"](store, 9, 0)  # a write of the byte already there
        check([])
        assert exports["grow"](store, 3) == 2  # memory.grow from wasm
        exports["store"](store, 4 * WASM_PAGE + 17, 99)
        exports["fill"](store, WASM_PAGE - 10, 7, 20)  # across a wasm page boundary
        check([(WASM_PAGE - 10) // CHUNK_SIZE, WASM_PAGE // CHUNK_SIZE, (4 * WASM_PAGE + 17) // CHUNK_SIZE])
        memory.grow(store, 1)  # grown by the host, left zero
        check([])
        exports["fill"](store, 0, 0xAB, 5 * WASM_PAGE)  # every chunk of the first 5 pages
        check(list(range(5 * WASM_PAGE // CHUNK_SIZE)))
        if mode == "uffd":
            assert tree.tracking == "uffd"

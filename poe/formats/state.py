"""Instance state of stateful segments: what a pre- or post-state root commits to (spec §13).

A state is the part of a live instance that the next segment can observe: linear memory 0,
every mutable global the module defines, and the lineage's virtual clock. Its root is

    BLAKE3-derive-key("poe 2026-11 state v1", header)

over a fixed little-endian header (below) whose memory field is the *standard* BLAKE3 hash of
the memory image, so anyone holding an image can check it with an ordinary blake3 library.

    off  size  field
      0     2  version          u16 = STATE_VERSION
      2     2  reserved         u16 = 0
      4     4  pages            u32 memory 0 size in 64 KiB pages (0: no memory)
      8     8  clock            u64 virtual nanoseconds the lineage has run before this state
     16    32  memory           BLAKE3(image), image = pages x 65536 bytes
     48     4  global count     u32
     52  13 n  globals          per global: u32 global index, u8 type (0 i32, 1 i64, 2 f32,
                                3 f64), u64 value bits (zero-extended for 32-bit types);
                                ascending by index, every mutable global the module defines

States also move between provider and auditor as *bundles*: a sequence of states, each a delta
against the previous one (or against the module's genesis image), over a pool of 1 KiB chunks
addressed by their plain BLAKE3 hash. :func:`bundle_states` builds one, :func:`open_bundle`
rebuilds and checks every image in it.
"""

from __future__ import annotations

import base64
import struct
import zlib
from dataclasses import dataclass
from functools import cached_property
from typing import Any, Iterable, Iterator

import blake3

from poe.formats import hashing as h
from poe import _native
from poe.formats.costmodel import WASM_PAGE
from poe.merkle.memory import CHUNK_SIZE, memory_root
from poe.errors import EncodingError, StateMismatchError

__all__ = ["State", "STATE_VERSION", "CHUNK_SIZE", "ZERO_CHUNK_DIGEST", "memory_root", "bundle_states", "open_bundle", "delta_between"]

STATE_VERSION = 1
CHUNKS_PER_PAGE = WASM_PAGE // CHUNK_SIZE
MAX_PAGES = 65536
GLOBAL_TYPES = ("i32", "i64", "f32", "f64")
ZERO_CHUNK_DIGEST = blake3.blake3(bytes(CHUNK_SIZE)).digest()

_HEAD = struct.Struct("<HHIQ32sI")
_GLOBAL = struct.Struct("<IBQ")
_DELTA = struct.Struct("<I32s")


@dataclass(frozen=True)
class State:
    pages: int
    clock: int
    memory: bytes
    globals: tuple[tuple[int, str, int], ...] = ()

    def __post_init__(self) -> None:
        if not 0 <= self.pages <= MAX_PAGES:
            raise EncodingError(f"a state has 0 to {MAX_PAGES} pages, got {self.pages}")
        if not 0 <= self.clock < 1 << 64:
            raise EncodingError("a state's clock is a 64-bit unsigned integer")
        if len(self.memory) != 32:
            raise EncodingError("a state's memory hash is 32 bytes")
        last = -1
        for index, vtype, bits in self.globals:
            if vtype not in GLOBAL_TYPES:
                raise EncodingError(f"global {index} has type {vtype}; states hold i32, i64, f32 and f64 globals")
            if not 0 <= bits < (1 << (32 if vtype in ("i32", "f32") else 64)):
                raise EncodingError(f"global {index} ({vtype}) holds bits out of range")
            if not last < index < 1 << 32:
                raise EncodingError("a state's globals are listed once each, ascending by index")
            last = index

    @property
    def memory_bytes(self) -> int:
        return self.pages * WASM_PAGE

    @property
    def chunks(self) -> int:
        return self.pages * CHUNKS_PER_PAGE

    @cached_property
    def encoded(self) -> bytes:
        out = [_HEAD.pack(STATE_VERSION, 0, self.pages, self.clock, self.memory, len(self.globals))]
        out += [_GLOBAL.pack(i, GLOBAL_TYPES.index(t), bits) for i, t, bits in self.globals]
        return b"".join(out)

    @cached_property
    def root(self) -> bytes:
        return h.digest(h.CTX_STATE, self.encoded)

    @classmethod
    def decode(cls, data: bytes) -> State:
        if len(data) < _HEAD.size:
            raise EncodingError(f"a state header is at least {_HEAD.size} bytes, got {len(data)}")
        version, reserved, pages, clock, memory, n = _HEAD.unpack_from(data)
        if version != STATE_VERSION:
            raise EncodingError(f"state version {version} is not supported (this poe reads {STATE_VERSION})", expected=STATE_VERSION, observed=version)
        if reserved:
            raise EncodingError("state header has non-zero reserved bytes")
        if len(data) != _HEAD.size + n * _GLOBAL.size:
            raise EncodingError(f"state header with {n} globals must be {_HEAD.size + n * _GLOBAL.size} bytes, got {len(data)}")
        globals_ = []
        for k in range(n):
            i, t, bits = _GLOBAL.unpack_from(data, _HEAD.size + k * _GLOBAL.size)
            if t >= len(GLOBAL_TYPES):
                raise EncodingError(f"state global {i} has unknown type code {t}")
            globals_.append((i, GLOBAL_TYPES[t], bits))
        state = cls(pages, clock, memory, tuple(globals_))
        if state.encoded != data:
            raise EncodingError("state header is not canonical")
        return state

    def to_json(self) -> dict[str, Any]:
        return {
            "root": self.root.hex(),
            "pages": self.pages,
            "clock_ns": self.clock,
            "memory": self.memory.hex(),
            "globals": [{"index": i, "type": t, "bits": bits} for i, t, bits in self.globals],
        }

    def check_image(self, image: bytes | bytearray | memoryview) -> None:
        """Raise StateMismatchError unless `image` is this state's memory."""
        if len(image) != self.memory_bytes:
            raise StateMismatchError(
                f"state {self.root.hex()[:16]}... has {self.pages} pages but its image is {len(image)} bytes",
                expected=self.memory_bytes, observed=len(image),
            )
        got = memory_root(image)
        if got != self.memory:
            raise StateMismatchError(
                f"the memory image does not hash to state {self.root.hex()[:16]}...'s memory root",
                expected=self.memory.hex(), observed=got.hex(),
            )

    def check_shape(self, globals_: Iterable[tuple[int, str]], min_pages: int) -> None:
        """Raise StateMismatchError unless this state fits a module with these mutable globals
        (index, type) whose memory starts at `min_pages` (a state for another module does not)."""
        want = [(i, t) for i, t in globals_]
        have = [(i, t) for i, t, _ in self.globals]
        if want != have:
            raise StateMismatchError("the state's globals are not the module's mutable globals: a state for another module",
                                     expected=want, observed=have)
        if self.pages < min_pages:
            raise StateMismatchError(f"the state has {self.pages} pages, fewer than the module starts with ({min_pages}): a state for another module",
                                     expected=min_pages, observed=self.pages)


# -- manifests and bundles ------------------------------------------------------------------------
#
# A manifest lists the plain BLAKE3 digest of every chunk of an image, in order (32 bytes each).
# A delta lists (u32 chunk index, digest) for the chunks that differ from a base image; chunks
# beyond the base's length that a delta does not list are zero.


def manifest_of(image: bytes | bytearray | memoryview) -> bytearray:
    """Every chunk's plain BLAKE3, in order: natively when the kernel is there."""
    if _native.AVAILABLE and len(image) % CHUNK_SIZE == 0:
        return bytearray(_native.manifest(image))
    view = memoryview(image)
    out = bytearray()
    zero = bytes(CHUNK_SIZE)
    for off in range(0, len(view), CHUNK_SIZE):
        c = view[off : off + CHUNK_SIZE]
        out += ZERO_CHUNK_DIGEST if c == zero else blake3.blake3(c).digest()
    return out


def delta_between(base: bytes | bytearray, target: bytes | bytearray) -> bytes:
    """The delta taking manifest `base` to manifest `target` (target never shorter)."""
    if len(target) < len(base):
        raise EncodingError("a state's memory never shrinks")
    out = []
    nb = len(base)
    b, t = memoryview(base), memoryview(target)
    step = 32 * 64  # compare 64 digests at a time; most runs of a sampled state are unchanged
    for blk in range(0, len(target), step):
        if blk + step <= nb and b[blk : blk + step] == t[blk : blk + step]:
            continue
        for k in range(blk, min(blk + step, len(target)), 32):
            d = t[k : k + 32]
            if k < nb:
                if b[k : k + 32] != d:
                    out.append(_DELTA.pack(k // 32, bytes(d)))
            elif d != ZERO_CHUNK_DIGEST:
                out.append(_DELTA.pack(k // 32, bytes(d)))
    return b"".join(out)


def iter_delta(delta: bytes) -> Iterator[tuple[int, bytes]]:
    if len(delta) % _DELTA.size:
        raise EncodingError(f"a state delta is a list of {_DELTA.size}-byte entries")
    last = -1
    for idx, d in _DELTA.iter_unpack(delta):
        if idx <= last:
            raise EncodingError("a state delta lists chunks once each, ascending")
        last = idx
        yield idx, d


def apply_delta(manifest: bytearray, delta: bytes, chunks: int, *, in_place: bool = False) -> bytearray:
    """Manifest of `chunks` chunks: `manifest` grown with zero chunks, then `delta` applied."""
    if chunks * 32 < len(manifest):
        raise EncodingError("a state's memory never shrinks")
    out = manifest if in_place else bytearray(manifest)
    out += ZERO_CHUNK_DIGEST * (chunks - len(manifest) // 32)
    for idx, d in iter_delta(delta):
        if idx >= chunks:
            raise EncodingError(f"a state delta names chunk {idx} beyond the state's {chunks} chunks")
        out[idx * 32 : idx * 32 + 32] = d
    return out


def _level(blob: bytes) -> int:
    """zlib level for a bundle's chunks: 1 if a sample compresses, else 0 (stored blocks, still a
    zlib stream): all-zero chunks never travel, and the rest is often random-looking data that
    costs seconds to compress for nothing."""
    sample = blob[: 1 << 20]
    return 1 if sample and len(zlib.compress(sample, 1)) < 0.9 * len(sample) else 0


def bundle_states(genesis: bytes, states: Iterable[tuple[State, bytes]], chunk: Any) -> dict[str, Any]:
    """A bundle of states for an auditor: each (state, manifest) as a delta against the previous
    one (the first against the `genesis` manifest), with every chunk the deltas name, fetched by
    `chunk(digest) -> bytes`. `states` may be an iterator: only two manifests are held at once."""
    entries, pool, order = [], {}, []
    base = genesis
    for state, manifest in states:
        # Against the previous state where it can be (sampled states of one lineage share most
        # chunks); a state with a smaller memory starts another lineage: against genesis.
        from_genesis = base is genesis or len(manifest) < len(base)
        delta = delta_between(genesis if from_genesis else base, manifest)
        for _, d in iter_delta(delta):
            if d not in pool and d != ZERO_CHUNK_DIGEST:
                pool[d] = chunk(d)
                order.append(d)
        entries.append({"state": state.encoded.hex(), "base": "genesis" if from_genesis else "previous", "delta": delta.hex()})
        base = manifest
    blob = b"".join(pool[d] for d in order)
    return {
        "format": "poe state bundle v1",
        "states": entries,
        "chunk_digests": b"".join(order).hex(),
        "chunks": base64.b64encode(zlib.compress(blob, _level(blob))).decode(),
    }


def bundle_roots(bundle: Any) -> set[bytes]:
    """The roots of a bundle's states, from their headers alone (no image is rebuilt)."""
    try:
        if not isinstance(bundle, dict) or bundle.get("format") != "poe state bundle v1" or not isinstance(bundle.get("states"), list):
            raise EncodingError("not a poe state bundle v1")
        return {State.decode(bytes.fromhex(e["state"])).root for e in bundle["states"]}
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise EncodingError(f"malformed state bundle: {type(exc).__name__}: {exc}") from None


def open_bundle(bundle: Any, genesis_image: bytes, *, max_pages: int = MAX_PAGES, max_states: int | None = None,
                wanted: set[bytes] | None = None, check_images: bool = True) -> Iterator[tuple[State, bytes]]:
    """Every (state, memory image) of a bundle, in order, each image checked against its state's
    memory root; lazily, so a caller holds one image at a time. With `wanted`, only those states
    are hashed and yielded (the others are only applied on the way). A verifier bounds the work a
    hostile bundle can cause: `max_pages` (its cost model's memory limit) and `max_states` (how
    many states it needs). Raises EncodingError for a malformed or oversized bundle and
    StateMismatchError for a chunk or an image that does not hash to what it claims, or a chunk
    the bundle does not carry. `check_images=False` leaves the image check to a caller that
    hashes every image anyway (restoring one into an instance does)."""
    try:
        if not isinstance(bundle, dict) or bundle.get("format") != "poe state bundle v1":
            raise EncodingError("not a poe state bundle v1")
        digests = bytes.fromhex(bundle["chunk_digests"])
        if len(digests) % 32:
            raise EncodingError("a bundle's chunk digests are 32 bytes each")
        d = zlib.decompressobj()
        blob = d.decompress(base64.b64decode(bundle["chunks"], validate=True), len(digests) // 32 * CHUNK_SIZE + 1)
        if len(blob) != len(digests) // 32 * CHUNK_SIZE or d.unconsumed_tail:
            raise EncodingError("a bundle's chunk data does not match its digest list")
        pool = {ZERO_CHUNK_DIGEST: bytes(CHUNK_SIZE)}
        for k in range(len(digests) // 32):
            c = blob[k * CHUNK_SIZE : (k + 1) * CHUNK_SIZE]
            dg = digests[k * 32 : k * 32 + 32]
            got = blake3.blake3(c).digest()
            if got != dg:
                raise StateMismatchError(f"bundle chunk {k} does not hash to its digest", expected=dg.hex(), observed=got.hex())
            pool[dg] = c
        del blob
        entries = bundle["states"]
        if not isinstance(entries, list):
            raise EncodingError("a bundle's states are a list")
        if max_states is not None and len(entries) > max_states:
            raise EncodingError(f"the bundle carries {len(entries)} states; at most {max_states} were asked for")
    except (KeyError, TypeError, ValueError, AttributeError, zlib.error) as exc:
        raise EncodingError(f"malformed state bundle: {type(exc).__name__}: {exc}") from None
    return _images(entries, pool, genesis_image, max_pages * WASM_PAGE, wanted, check_images)


def _images(entries: list, pool: dict[bytes, bytes], genesis_image: bytes, max_bytes: int,
            wanted: set[bytes] | None, check_images: bool) -> Iterator[tuple[State, bytes]]:
    image = bytearray(genesis_image)
    for n, e in enumerate(entries):
        try:
            state = State.decode(bytes.fromhex(e["state"]))
            base, delta = e["base"], bytes.fromhex(e["delta"])
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise EncodingError(f"malformed state bundle: state {n}: {type(exc).__name__}: {exc}") from None
        if state.memory_bytes > max_bytes:
            raise EncodingError(f"bundle state {n} has {state.pages} pages, beyond the memory limit of {max_bytes // WASM_PAGE}")
        if base == "genesis":
            image = bytearray(genesis_image)
        elif base != "previous" or n == 0:
            raise EncodingError(f"bundle state {n} has an unknown base {base!r}")
        if state.memory_bytes < len(image):
            raise EncodingError(f"bundle state {n} has a smaller memory than its base: memory never shrinks")
        image += bytes(state.memory_bytes - len(image))
        for idx, dg in iter_delta(delta):
            if idx >= state.chunks:
                raise EncodingError(f"bundle state {n} names chunk {idx} beyond its {state.chunks} chunks")
            c = pool.get(dg)
            if c is None:
                raise StateMismatchError(f"bundle state {n} needs chunk {dg.hex()[:16]}..., which the bundle does not carry",
                                         expected=dg.hex(), observed=None)
            image[idx * CHUNK_SIZE : (idx + 1) * CHUNK_SIZE] = c
        if wanted is None or state.root in wanted:
            if check_images:
                state.check_image(image)
            elif len(image) != state.memory_bytes:
                raise EncodingError(f"bundle state {n}'s image is {len(image)} bytes, not {state.memory_bytes}")
            yield state, bytes(image)

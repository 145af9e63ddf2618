"""The trace store: one SQLite file per provider (WAL), the embedded default.

What it keeps: every segment's record with its canonical invocation and output, payload
blobs addressed by BLAKE3 (what an auditor will ask for), the modules of each service, and
epochs. Segments are written in batches, each batch one transaction, so a crash (even
``kill -9``) loses at most the batch in flight and never leaves a half-written segment: a
reopen sees whole batches only. ``synchronous=FULL`` makes a committed batch survive power
loss too. One process writes at a time: the writer holds an exclusive lock on a sidecar
``<store>.lock`` file, which the kernel releases if the process dies.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator

from poe.formats import hashing as h
from poe.formats.costmodel import CostModel
from poe.formats.execution import Execution
from poe.formats.moduleset import Service
from poe.formats.invocation import Invocation, Output
from poe.formats.record import Record
from poe.formats.state import CHUNK_SIZE, ZERO_CHUNK_DIGEST, State, apply_delta, iter_delta, manifest_of
from poe.merkle.build import CompactRange, Tree, perfect_root, tree_of_records
from poe.merkle.hasher import Root, Sums
from poe.merkle.verify import ConsistencyProof, InclusionProof
from poe.errors import (
    CostModelMismatchError,
    EncodingError,
    LimitError,
    StoreError,
    StoreLockedError,
    StoreVersionError,
    StateUnavailableError,
    VerificationError,
)

__all__ = ["TraceStore", "STORE_FORMAT", "Totals", "Epoch", "SealResult"]

STORE_FORMAT = 2  # 2: stateful segments (chunks, states, snapshots); a format-1 store is upgraded on open for writing
_APPLICATION_ID = 0x706F6531  # "poe1": marks a SQLite file as a poe store

_SCHEMA = """
CREATE TABLE meta(key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE modules(digest BLOB PRIMARY KEY, wasm BLOB NOT NULL);
CREATE TABLE services(
    digest BLOB PRIMARY KEY,
    main BLOB NOT NULL REFERENCES modules(digest),
    links TEXT NOT NULL,
    name TEXT NOT NULL
);
CREATE TABLE blobs(digest BLOB PRIMARY KEY, data BLOB NOT NULL);
CREATE TABLE epochs(
    epoch INTEGER PRIMARY KEY,
    first_index INTEGER NOT NULL,
    end_index INTEGER,
    status TEXT NOT NULL CHECK (status IN ('open', 'closed', 'sealed')),
    root BLOB,
    frontier BLOB,
    sealed_at TEXT
);
CREATE TABLE segments(
    idx INTEGER PRIMARY KEY,
    epoch INTEGER NOT NULL REFERENCES epochs(epoch),
    record BLOB NOT NULL,
    invocation BLOB NOT NULL,
    output BLOB NOT NULL
);
CREATE INDEX segments_by_epoch ON segments(epoch, idx);
"""

# Stateful segments (spec §13). A state's memory is kept as 1 KiB chunks addressed by their
# plain BLAKE3 hash and shared by every state that holds them; each stateful segment stores
# its post-state header and the chunks it changed (a delta against its pre-state); full
# manifests (every chunk's digest in order) are kept for genesis states and as checkpoints,
# so rebuilding any state reads at most about one manifest's worth of deltas.
_STATE_SCHEMA = """
CREATE TABLE IF NOT EXISTS chunks(digest BLOB PRIMARY KEY, data BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS states(idx INTEGER PRIMARY KEY, header BLOB NOT NULL, delta BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS snapshots(
    root BLOB PRIMARY KEY, header BLOB NOT NULL, manifest BLOB NOT NULL,
    start INTEGER NOT NULL DEFAULT 0  -- 1: a lineage may start here (genesis), 0: a checkpoint
)
"""


@dataclass(frozen=True)
class Epoch:
    epoch: int
    first_index: int
    end_index: int | None
    status: str
    root: Root | None
    frontier: CompactRange | None


@dataclass(frozen=True)
class SealResult:
    epoch: int
    first_index: int
    end_index: int
    root: Root
    previous_root: Root | None
    already: bool

    @property
    def totals(self) -> Sums:
        """The epoch's own totals: this head's sums minus the previous head's."""
        return self.root.sums - self.previous_root.sums if self.previous_root else self.root.sums

    def to_json(self) -> dict[str, object]:
        return {
            "epoch": self.epoch,
            "leaf_range": [self.first_index, self.end_index],
            "segments": self.end_index - self.first_index,
            "root": self.root.to_json(),
            "previous_root": self.previous_root.to_json() if self.previous_root else None,
            "epoch_totals": self.totals.to_json(),
            "already_sealed": self.already,
        }


@dataclass
class Totals:
    segments: int = 0
    fuel: int = 0
    mem: int = 0
    io: int = 0

    def add(self, r: Record) -> None:
        self.segments += 1
        self.fuel += r.fuel
        self.mem += r.mem
        self.io += r.io

    def to_json(self) -> dict[str, int]:
        return {"segments": self.segments, "fuel": self.fuel, "mem": self.mem, "io": self.io}


class TraceStore:
    """Open with :meth:`create_or_open` to write or :meth:`open` to read."""

    def __init__(self, path: str, conn: sqlite3.Connection, lock_fd: int | None, cost_model: CostModel) -> None:
        self.path = path
        self._db = conn
        self._lock_fd = lock_fd
        self.cost_model = cost_model
        self._pending: list[tuple] = []
        self._pending_blobs: dict[bytes, bytes] = {}
        self._known_blobs: set[bytes] = set()
        self._known_services: set[bytes] = set()
        self._last_invocation: Invocation | None = None
        self._last_flush = time.monotonic()
        self.batch_size = 1024
        self.batch_seconds = 0.25
        self._next_index = int(_Rows(conn, "SELECT COALESCE(MAX(idx) + 1, 0) FROM segments", (), path).fetchone()[0])
        self._has_state = _Rows(conn, "SELECT COUNT(*) FROM sqlite_master WHERE name = 'states'", (), path).fetchone()[0] == 1
        self._pending_states: list[tuple[int, bytes, bytes]] = []
        self._pending_chunks: dict[bytes, bytes] = {}
        self._pending_snapshots: dict[bytes, tuple[bytes, bytes, int]] = {}
        self._known_chunks: set[bytes] = set()
        # The lineage being appended to: its latest post-state root, that state's manifest,
        # and how many delta entries were written since the last full manifest.
        self._lineage: tuple[bytes, bytearray] | None = None
        self._since_checkpoint = 0

    # -- opening ---------------------------------------------------------------------------

    @classmethod
    def open(cls, path: str, *, seal: bool = False) -> TraceStore:
        """Open an existing store to read it, or with `seal=True` also to seal epochs.

        Neither takes the writer lock: a run may keep appending meanwhile. SQLite serialises
        the sealer's short transactions with the writer's batches.
        """
        _check_path(path, must_exist=True)
        conn = _connect(path, readonly=not seal)
        return cls(path, conn, None, _read_cost_model(conn, path))

    @classmethod
    def create_or_open(cls, path: str, cost_model: CostModel) -> TraceStore:
        """Open for writing, creating the store if needed. Refuses another cost model."""
        _check_path(path, must_exist=False)
        lock_fd = _take_lock(path)
        try:
            conn = _connect(path, readonly=False)
            try:
                _init_schema(conn, path, cost_model)
                stored = _read_cost_model(conn, path)
            except BaseException:
                conn.close()
                raise
            if stored.digest != cost_model.digest:
                conn.close()
                raise CostModelMismatchError(
                    f"store {path} was made under cost model {stored.name}, this run uses {cost_model.name}; "
                    "use another store or the same limits and engine",
                    expected=stored.digest.hex(),
                    observed=cost_model.digest.hex(),
                )
            return cls(path, conn, lock_fd, stored)
        except BaseException:
            os.close(lock_fd)
            raise

    def close(self) -> None:
        try:
            if self._lock_fd is not None:
                self.flush()
        finally:
            self._db.close()
            if self._lock_fd is not None:
                os.close(self._lock_fd)
                self._lock_fd = None

    def __enter__(self) -> TraceStore:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        # On an exception the batch in flight is still written: those segments did run.
        self.close()

    # -- writing -----------------------------------------------------------------------------

    @property
    def next_index(self) -> int:
        return self._next_index

    def current_epoch(self) -> int:
        row = self._read("SELECT MAX(epoch) FROM epochs WHERE status = 'open'").fetchone()
        if row[0] is None:
            raise StoreError(f"store {self.path} has no open epoch")
        return int(row[0])

    def register_service(self, service: Service) -> None:
        if service.digest in self._known_services:
            return
        self._require_writer()
        with self._transaction():
            for wasm in (service.main, *service.links.values()):
                self._db.execute("INSERT OR IGNORE INTO modules VALUES (?, ?)", (h.blob_digest(wasm), wasm))
            links = json.dumps({n: h.blob_digest(w).hex() for n, w in service.links.items()}, sort_keys=True)
            self._db.execute(
                "INSERT OR IGNORE INTO services VALUES (?, ?, ?, ?)",
                (service.digest, h.blob_digest(service.main), links, service.name),
            )
        self._known_services.add(service.digest)

    def append(self, execution: Execution) -> int:
        """Queue a segment; it is durable once the batch holding it is flushed."""
        self._require_writer()
        r = execution.record
        if r.index != self._next_index:
            raise StoreError(f"segment index {r.index} does not follow the store's log (next is {self._next_index})")
        if r.cost_model_digest != self.cost_model.digest:
            raise CostModelMismatchError(
                "segment was executed under another cost model than the store's",
                expected=self.cost_model.digest.hex(),
                observed=r.cost_model_digest.hex(),
            )
        if r.module_digest not in self._known_services:
            raise StoreError("register the service before appending its segments")
        # A batch usually repeats one invocation: its payloads need queueing only once.
        payloads = execution.output.blobs()
        if execution.invocation is not self._last_invocation:
            payloads += execution.invocation.blobs()
            self._last_invocation = execution.invocation
        for payload in payloads:
            d = payload.digest
            if d not in self._known_blobs and d not in self._pending_blobs:
                self._pending_blobs[d] = payload.data
        if execution.state is not None:
            self._append_state(execution)
        elif r.pre_state != h.ZERO_DIGEST or r.post_state != h.ZERO_DIGEST:
            raise StoreError(f"segment {r.index} has state roots but no state to store")
        else:
            # A stateless segment ends the lineage in the log: a stateful segment after it must
            # start from a kept snapshot (genesis), or its chain could not be shown to an auditor.
            self._lineage = None
        self._pending.append((r.index, r.encode(), execution.invocation.encoded, execution.output.encoded))
        self._next_index += 1
        if len(self._pending) >= self.batch_size or time.monotonic() - self._last_flush >= self.batch_seconds:
            self.flush()
        return r.index

    def flush(self) -> None:
        if not self._pending and not self._pending_snapshots:
            return
        with self._transaction():
            # Chosen inside the transaction: a concurrent `poe seal` closes the open epoch in a
            # transaction of its own, so a batch lands wholly before or wholly after the boundary.
            epoch = self.current_epoch()
            self._db.executemany("INSERT OR IGNORE INTO blobs VALUES (?, ?)", self._pending_blobs.items())
            self._db.executemany(
                "INSERT INTO segments(idx, epoch, record, invocation, output) VALUES (?, ?, ?, ?, ?)",
                [(i, epoch, rec, inv, out) for i, rec, inv, out in self._pending],
            )
            if self._pending_chunks or self._pending_states or self._pending_snapshots:
                self._db.executemany("INSERT OR IGNORE INTO chunks VALUES (?, ?)", self._pending_chunks.items())
                # A start mark is never lost: a checkpoint of a state later put as a start becomes one.
                self._db.executemany("INSERT INTO snapshots VALUES (?, ?, ?, ?) ON CONFLICT(root) DO UPDATE SET start = MAX(start, excluded.start)",
                                     [(root, hd, mf, st) for root, (hd, mf, st) in self._pending_snapshots.items()])
                self._db.executemany("INSERT INTO states VALUES (?, ?, ?)", self._pending_states)
        if len(self._known_blobs) > 100_000:
            self._known_blobs.clear()
        self._known_blobs.update(self._pending_blobs)
        if len(self._known_chunks) > 1_000_000:
            self._known_chunks.clear()
        self._known_chunks.update(self._pending_chunks)
        self._pending.clear()
        self._pending_blobs.clear()
        self._pending_states.clear()
        self._pending_chunks.clear()
        self._pending_snapshots.clear()
        self._last_flush = time.monotonic()

    # -- stateful segments (spec §13) ------------------------------------------------------------

    def _require_state_tables(self) -> None:
        if not self._has_state:
            raise StateUnavailableError(f"store {self.path} predates stateful segments (format 1) and holds no states")

    def put_snapshot(self, state: State, image: bytes | memoryview) -> None:
        """Keep a full state a lineage starts from (its genesis): its manifest and every chunk of
        its image. Only such states may begin a lineage in the log; checkpoints may not."""
        self._require_writer()
        if self._snapshot_manifest(state.root, starts_only=True) is not None:
            return
        view = memoryview(image)
        manifest = manifest_of(view)
        for k in range(state.chunks):
            d = bytes(manifest[k * 32 : k * 32 + 32])
            if d not in self._known_chunks and d not in self._pending_chunks:
                self._pending_chunks[d] = bytes(view[k * CHUNK_SIZE : (k + 1) * CHUNK_SIZE])
        self._pending_snapshots[state.root] = (state.encoded, bytes(manifest), 1)

    def _has_snapshot(self, root: bytes) -> bool:
        if root in self._pending_snapshots:
            return True
        return self._read("SELECT 1 FROM snapshots WHERE root = ?", (root,)).fetchone() is not None

    def _append_state(self, execution: Execution) -> None:
        r, post = execution.record, execution.state
        assert post is not None
        if self._lineage is not None and self._lineage[0] == r.pre_state:
            manifest = self._lineage[1]
        else:
            # A new lineage starts from a state put as a start (its genesis, put first), or the
            # log's last segment is continued (a resume). A checkpoint is neither: continuing
            # from one across a stateless segment would commit a chain no auditor accepts.
            manifest = self._snapshot_manifest(r.pre_state, starts_only=True)
            self._since_checkpoint = 0
            if manifest is None:
                manifest, self._since_checkpoint = self._rebuild(self._next_index - 1, want_root=r.pre_state)
        if post.chunks * 32 < len(manifest):
            raise EncodingError(f"segment {r.index}: a state's memory never shrinks ({len(manifest) // 32} chunks before, {post.chunks} after)")
        manifest += ZERO_CHUNK_DIGEST * (post.chunks - len(manifest) // 32)
        entries = []
        for i, data in execution.changed:
            d = h.blob_digest(data)
            manifest[i * 32 : i * 32 + 32] = d
            entries.append(i.to_bytes(4, "little") + d)
            if d not in self._known_chunks and d not in self._pending_chunks:
                self._pending_chunks[d] = data
        self._pending_states.append((r.index, post.encoded, b"".join(entries)))
        self._lineage = (r.post_state, manifest)
        self._since_checkpoint += len(entries)
        # Checkpoint once the deltas since the last full manifest outweigh one: rebuilding any
        # state then reads at most about two manifests' worth, and storage stays ~ dirty bytes.
        if self._since_checkpoint > max(post.chunks, 64):
            if r.post_state not in self._pending_snapshots:
                self._pending_snapshots[r.post_state] = (post.encoded, bytes(manifest), 0)
            self._since_checkpoint = 0

    def _snapshot_manifest(self, root: bytes, *, starts_only: bool = False) -> bytearray | None:
        pending = self._pending_snapshots.get(root)
        if pending is not None and (pending[2] or not starts_only):
            return bytearray(pending[1])
        if not self._has_state:
            return None
        sql = "SELECT manifest FROM snapshots WHERE root = ?" + (" AND start = 1" if starts_only else "")
        row = self._read(sql, (root,)).fetchone()
        return bytearray(_blob(row[0])) if row else None

    def _snapshot(self, root: bytes) -> tuple[State, bytearray] | None:
        """A kept full state by its root: (header, manifest)."""
        row = self._read("SELECT header, manifest FROM snapshots WHERE root = ?", (root,)).fetchone() if self._has_state else None
        return (State.decode(_blob(row[0])), bytearray(_blob(row[1]))) if row else None

    def _state_row(self, index: int) -> tuple[State, bytes] | None:
        """Segment `index`'s stored post-state header and delta, if it has them."""
        row = self._read("SELECT header, delta FROM states WHERE idx = ?", (index,)).fetchone() if self._has_state else None
        return (State.decode(_blob(row[0])), _blob(row[1])) if row else None

    def _manifest_after(self, index: int) -> bytearray:
        """The manifest of segment `index`'s post-state, rebuilt from the nearest full one."""
        return self._rebuild(index)[0]

    def _rebuild(self, index: int, *, want_root: bytes | None = None) -> tuple[bytearray, int]:
        """(manifest of segment `index`'s post-state, delta entries applied since the nearest
        full manifest: what a writer continuing the lineage counts towards its next checkpoint)."""
        self._require_state_tables()
        deltas: list[tuple[int, bytes]] = []
        k = index
        while True:
            row = self._state_row(k)
            if row is None:
                if want_root is not None and k == index == -1:
                    raise StateUnavailableError("the first stateful segment of a store starts a lineage: put its genesis snapshot first")
                if want_root is not None and k == index:
                    raise StateUnavailableError(
                        f"segment {index + 1} starts from a state that is neither a kept snapshot nor the post-state of segment {index}, "
                        "the log's last: a stateful segment continues its predecessor or starts a lineage from genesis"
                    )
                raise StateUnavailableError(
                    f"the store has no state for segment {k}" + (" (it is not a stateful segment, or its state was collected)" if k >= 0 else "")
                    + "; cannot rebuild the state a stateful segment starts from"
                )
            header, delta = row
            if want_root is not None and k == index and header.root != want_root:
                raise StateUnavailableError(
                    f"segment {index + 1}'s pre-state is neither a kept snapshot nor segment {index}'s post-state; "
                    "a stateful run resumes only from the store's last segment"
                )
            base = self._snapshot_manifest(header.root)
            if base is not None:
                break
            deltas.append((header.chunks, delta))
            pre = self.record(k).pre_state
            base = self._snapshot_manifest(pre)
            if base is not None:
                break
            k -= 1
        walked = 0
        for chunks, delta in reversed(deltas):
            base = apply_delta(base, delta, chunks, in_place=True)  # base is this call's own copy
            walked += len(delta) // 36
        return base, walked

    def state_after(self, index: int) -> State:
        """The post-state header of stateful segment `index`."""
        self._require_state_tables()
        row = self._read("SELECT header FROM states WHERE idx = ?", (index,)).fetchone()
        if row is None:
            raise StateUnavailableError(f"the store has no state for segment {index}")
        return State.decode(_blob(row[0]))

    def post_state_image(self, index: int) -> tuple[State, bytes]:
        """Stateful segment `index`'s post-state and its memory image (checked against its root)."""
        state = self.state_after(index)
        return state, self.image(state, self._manifest_after(index))

    def pre_state(self, index: int) -> tuple[State, bytearray]:
        """Stateful segment `index`'s pre-state and its manifest."""
        r = self.record(index)
        if r.pre_state == h.ZERO_DIGEST:
            raise StateUnavailableError(f"segment {index} is stateless")
        snap = self._snapshot(r.pre_state)
        if snap is not None:
            return snap
        state = self.state_after(index - 1) if index > 0 else None
        if state is None or state.root != r.pre_state:
            raise StateUnavailableError(f"the store cannot rebuild segment {index}'s pre-state (no snapshot of it and segment {index - 1} did not leave it)")
        return state, self._manifest_after(index - 1)

    def pre_states(self, indices: Iterable[int]) -> Iterator[tuple[int, State, bytes]]:
        """(index, pre-state, manifest) of stateful segments, ascending, rebuilt by one forward
        walk over the deltas between them (a lineage's states are rebuilt from its nearest full
        manifest only where the walk cannot continue)."""
        cur: tuple[int, State, bytearray] | None = None  # a post-state: after segment cur[0]
        for i in sorted(set(indices)):
            r = self.record(i)
            if r.pre_state == h.ZERO_DIGEST:
                raise StateUnavailableError(f"segment {i} is stateless")
            if cur is not None and cur[0] < i:
                cur = self._walk(cur, i - 1)
            if cur is None or cur[0] != i - 1 or cur[1].root != r.pre_state:
                state, manifest = self.pre_state(i)
                cur = (i - 1, state, manifest)
            yield i, cur[1], bytes(cur[2])

    def _walk(self, cur: tuple[int, State, bytearray], to: int) -> tuple[int, State, bytearray] | None:
        index, state, manifest = cur
        for k in range(index + 1, to + 1):
            pre = self.record(k).pre_state
            if pre != state.root:  # another lineage starts here: from its snapshot
                snap = self._snapshot_manifest(pre)
                if snap is None:
                    return None
                manifest = snap
            row = self._state_row(k)
            if row is None:
                return None
            state, delta = row
            manifest = apply_delta(manifest, delta, state.chunks, in_place=True)
        return to, state, manifest

    def chunk(self, digest: bytes) -> bytes:
        if digest == ZERO_CHUNK_DIGEST:
            return bytes(CHUNK_SIZE)
        row = self._read("SELECT data FROM chunks WHERE digest = ?", (digest,)).fetchone() if self._has_state else None
        if row is None:
            raise StateUnavailableError(f"the store is missing state chunk {digest.hex()}")
        data = _blob(row[0])
        if len(data) != CHUNK_SIZE or h.blob_digest(data) != digest:
            raise StateUnavailableError(f"state chunk {digest.hex()} in the store is damaged (its bytes do not hash to its address)")
        return data

    def image(self, state: State, manifest: bytes | bytearray) -> bytes:
        """The memory image of a state from its manifest, checked against the state's root."""
        if len(manifest) != state.chunks * 32:
            raise StateUnavailableError(f"a manifest of {len(manifest) // 32} chunks does not fit a state of {state.chunks}")
        cache: dict[bytes, bytes] = {}
        parts = []
        for k in range(state.chunks):
            d = bytes(manifest[k * 32 : k * 32 + 32])
            c = cache.get(d)
            if c is None:
                c = cache[d] = self.chunk(d)
            parts.append(c)
        image = b"".join(parts)
        state.check_image(image)
        return image

    def last_state(self) -> tuple[State, bytes] | None:
        """The post-state and image of the log's last segment if it is stateful (to resume)."""
        if self._next_index == 0 or not self._has_state:
            return None
        last = self._next_index - 1
        post = self.record(last).post_state
        if post == h.ZERO_DIGEST:
            return None
        self.flush()
        walked = 0
        snap = self._snapshot(post)
        if snap is not None:
            state, manifest = snap
        else:
            state = self.state_after(last)
            manifest, walked = self._rebuild(last)
        image = self.image(state, manifest)
        self._lineage = (state.root, manifest)
        self._since_checkpoint = walked  # so resuming step by step still writes checkpoints
        return state, image

    def collect(self, through_epoch: int) -> dict[str, int]:
        """Garbage-collect the states of segments in epochs up to `through_epoch` (sealed and
        settled): their deltas, snapshots and every chunk nothing else holds. The state a later
        segment starts from is first kept as a snapshot, so later epochs can still be opened."""
        self._require_writer()
        self.flush()
        info = self.epoch_info(through_epoch)
        if info.status != "sealed" or info.end_index is None:
            raise StoreError(f"epoch {through_epoch} is not sealed; collect only epochs that are sealed and settled")
        if not self._has_state:
            return {"states": 0, "snapshots": 0, "chunks": 0, "bytes": 0}
        end = info.end_index
        with self._transaction():
            keep_roots = {r.pre_state for r in self._records_from(end)} - {h.ZERO_DIGEST}
            keep_roots.add(self.record(self._next_index - 1).post_state)  # the log's last state: for --resume
            # The state the last collected segment left lives in the deltas about to go: keep it
            # whole, for the segment after it or for a later `run --resume`.
            if end > 0:
                last = self.record(end - 1).post_state
                collected = self._read("SELECT 1 FROM states WHERE idx = ?", (end - 1,)).fetchone() is None
                if last != h.ZERO_DIGEST:
                    keep_roots.add(last)
                    if not self._has_snapshot(last) and not collected:  # (collected: an earlier gc went further)
                        state = self.state_after(end - 1)
                        self._db.execute("INSERT OR IGNORE INTO snapshots VALUES (?, ?, ?, 0)", (last, state.encoded, bytes(self._manifest_after(end - 1))))
            keep_roots |= {State.decode(_blob(hd)).root for (hd,) in self._read("SELECT header FROM states WHERE idx >= ?", (end,))}
            states = self._db.execute("DELETE FROM states WHERE idx < ?", (end,)).rowcount
            snaps = 0
            for (root,) in list(self._read("SELECT root FROM snapshots")):
                if _blob(root) not in keep_roots:
                    snaps += self._db.execute("DELETE FROM snapshots WHERE root = ?", (root,)).rowcount
            self._db.execute("CREATE TEMP TABLE IF NOT EXISTS live(digest BLOB PRIMARY KEY)")
            self._db.execute("DELETE FROM live")
            for (delta,) in self._read("SELECT delta FROM states"):
                self._db.executemany("INSERT OR IGNORE INTO live VALUES (?)", ((d,) for _, d in iter_delta(_blob(delta))))
            for (manifest,) in self._read("SELECT manifest FROM snapshots"):
                m = _blob(manifest)
                self._db.executemany("INSERT OR IGNORE INTO live VALUES (?)", ((m[k : k + 32],) for k in range(0, len(m), 32)))
            freed = self._db.execute("SELECT COUNT(*), COALESCE(SUM(LENGTH(data)), 0) FROM chunks WHERE digest NOT IN (SELECT digest FROM live)").fetchone()
            self._db.execute("DELETE FROM chunks WHERE digest NOT IN (SELECT digest FROM live)")
            self._db.execute("DELETE FROM live")
        self._known_chunks.clear()
        self._lineage = None
        return {"states": states, "snapshots": snaps, "chunks": int(freed[0]), "bytes": int(freed[1])}

    def _records_from(self, first: int) -> Iterator[Record]:
        for (raw,) in self._read("SELECT record FROM segments WHERE idx >= ? ORDER BY idx", (first,)):
            yield Record.decode(_blob(raw))

    def state_usage(self) -> dict[str, int]:
        """What the state tables hold: rows and bytes (chunks, deltas, manifests), and all bytes."""
        if not self._has_state:
            return {"chunks": 0, "chunk_bytes": 0, "states": 0, "delta_bytes": 0, "snapshots": 0, "manifest_bytes": 0, "bytes": 0}
        c = self._read("SELECT COUNT(*), COALESCE(SUM(LENGTH(data)), 0) FROM chunks").fetchone()
        st = self._read("SELECT COUNT(*), COALESCE(SUM(LENGTH(delta) + LENGTH(header)), 0) FROM states").fetchone()
        sn = self._read("SELECT COUNT(*), COALESCE(SUM(LENGTH(manifest) + LENGTH(header)), 0) FROM snapshots").fetchone()
        return {"chunks": int(c[0]), "chunk_bytes": int(c[1]), "states": int(st[0]), "delta_bytes": int(st[1]),
                "snapshots": int(sn[0]), "manifest_bytes": int(sn[1]), "bytes": int(c[1]) + int(st[1]) + int(sn[1])}

    # -- reading -------------------------------------------------------------------------------

    def count(self) -> int:
        return int(self._read("SELECT COUNT(*) FROM segments").fetchone()[0])

    def record(self, index: int) -> Record:
        row = self._read("SELECT record FROM segments WHERE idx = ?", (index,)).fetchone()
        if row is None:
            raise StoreError(f"store has no segment {index} (it holds {self.count()})")
        return Record.decode(_blob(row[0]))

    def segment(self, index: int) -> tuple[Record, Invocation, Output]:
        row = self._read("SELECT record, invocation, output FROM segments WHERE idx = ?", (index,)).fetchone()
        if row is None:
            raise StoreError(f"store has no segment {index} (it holds {self.count()})")
        rec, inv, out = (_blob(v) for v in row)
        return Record.decode(rec), Invocation.decode(inv, self.blob), Output.decode(out, self.blob)

    def records(self, epoch: int | None = None) -> Iterator[Record]:
        if epoch is None:
            cur = self._read("SELECT record FROM segments ORDER BY idx")
        else:
            cur = self._read("SELECT record FROM segments WHERE epoch = ? ORDER BY idx", (epoch,))
        for (raw,) in cur:
            yield Record.decode(_blob(raw))

    def blob(self, digest: bytes) -> bytes:
        row = self._read("SELECT data FROM blobs WHERE digest = ?", (digest,)).fetchone()
        if row is None:
            raise KeyError(digest)
        return _blob(row[0])

    def service(self, digest: bytes) -> Service:
        row = self._read("SELECT main, links, name FROM services WHERE digest = ?", (digest,)).fetchone()
        if row is None:
            raise StoreError(f"store has no service {digest.hex()}")
        main = self._module(_blob(row[0]))
        try:
            links = {n: self._module(bytes.fromhex(d)) for n, d in json.loads(row[1]).items()}
        except (ValueError, TypeError, AttributeError):
            raise StoreError(f"store has a malformed link table for service {digest.hex()}") from None
        return Service(main, links, name=str(row[2]))

    def _module(self, digest: bytes) -> bytes:
        row = self._read("SELECT wasm FROM modules WHERE digest = ?", (digest,)).fetchone()
        if row is None:
            raise StoreError(f"store is missing module {digest.hex()}")
        return _blob(row[0])

    def module_digests(self, first: int, end: int) -> set[bytes]:
        """The module digests named by the records of segments first..end-1."""
        return {Record.decode(_blob(raw)).module_digest for (raw,) in self._read(
            "SELECT record FROM segments WHERE idx >= ? AND idx < ?", (first, end))}

    def services(self) -> list[tuple[bytes, str]]:
        return [(bytes(d), n) for d, n in self._read("SELECT digest, name FROM services ORDER BY name")]

    def epochs(self) -> list[dict[str, object]]:
        rows = self._read(
            "SELECT e.epoch, e.first_index, e.status, COUNT(s.idx), e.root FROM epochs e "
            "LEFT JOIN segments s ON s.epoch = e.epoch GROUP BY e.epoch ORDER BY e.epoch"
        )
        out = []
        for e, f, st, n, root in rows:
            entry: dict[str, object] = {"epoch": e, "first_index": f, "status": st, "segments": n}
            if root is not None:
                entry["root"] = Root.decode(_blob(root)).to_json()
            out.append(entry)
        return out

    # -- epochs and commitments ------------------------------------------------------------------

    def epoch_info(self, epoch: int) -> Epoch:
        row = self._read(
            "SELECT epoch, first_index, end_index, status, root, frontier FROM epochs WHERE epoch = ?", (epoch,)
        ).fetchone()
        if row is None:
            raise StoreError(f"store has no epoch {epoch}")
        e, first, end, status, root, frontier = row
        return Epoch(
            e, first, end, status,
            Root.decode(_blob(root)) if root is not None else None,
            CompactRange.decode(_blob(frontier)) if frontier is not None else None,
        )

    def seal(self, epoch: int | None = None) -> SealResult:
        """Close `epoch` (default: the open one), commit its segments and record the tree head.

        The tree covers the whole log; the epoch is the leaf range [first, end). Sealing extends
        the previous epoch's compact range by this epoch's leaves only. Sealing a sealed epoch
        recomputes it: the same root is reported as such, a different one refuses.
        """
        target = self.current_epoch() if epoch is None else epoch
        info = self.epoch_info(target)
        if info.status == "open":
            self._close(target)
            info = self.epoch_info(target)
        previous = None
        if target > 0:
            previous = self.epoch_info(target - 1)
            if previous.status != "sealed":
                self.seal(target - 1)
                previous = self.epoch_info(target - 1)
        frontier = CompactRange.decode(previous.frontier.encode()) if previous and previous.frontier else CompactRange()
        assert info.end_index is not None
        if frontier.size != info.first_index:
            raise StoreError(f"epoch {target} starts at {info.first_index} but the log before it has {frontier.size} segments")
        records = self._record_bytes(info.first_index, info.end_index)
        frontier.extend_records(records, perfect_root)
        root = frontier.root
        if info.status == "sealed":
            if info.root != root:
                raise VerificationError(
                    f"epoch {target} was sealed with another root: the store's segments changed after sealing",
                    expected=info.root.to_json() if info.root else None, observed=root.to_json(),
                )
            return SealResult(target, info.first_index, info.end_index, root, previous.root if previous else None, already=True)
        with self._transaction():
            self._db.execute(
                "UPDATE epochs SET status = 'sealed', root = ?, frontier = ?, sealed_at = ? WHERE epoch = ? AND status = 'closed'",
                (root.encode(), frontier.encode(), time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), target),
            )
        return SealResult(target, info.first_index, info.end_index, root, previous.root if previous else None, already=False)

    def _close(self, epoch: int) -> None:
        with self._transaction():
            row = self._db.execute("SELECT status, first_index FROM epochs WHERE epoch = ?", (epoch,)).fetchone()
            if row[0] != "open":
                return
            (end,) = self._db.execute(
                "SELECT COALESCE(MAX(idx) + 1, ?) FROM segments WHERE epoch = ?", (row[1], epoch)
            ).fetchone()
            self._db.execute("UPDATE epochs SET status = 'closed', end_index = ? WHERE epoch = ?", (end, epoch))
            self._db.execute("INSERT INTO epochs(epoch, first_index, status) VALUES (?, ?, 'open')", (epoch + 1, end))

    def _record_bytes(self, first: int, end: int) -> bytes:
        """The records of segments first..end-1, concatenated; every one must be there."""
        parts = []
        for idx, raw in self._read("SELECT idx, record FROM segments WHERE idx >= ? AND idx < ? ORDER BY idx", (first, end)):
            if idx != first + len(parts):
                raise StoreError(f"the log is missing segment {first + len(parts)}")
            parts.append(_blob(raw))
        if len(parts) != end - first:
            raise StoreError(f"the log should hold segments {first}..{end - 1}, found {len(parts)}")
        return b"".join(parts)

    def tree(self, size: int) -> Tree:
        """The full tree over the first `size` segments of the log (for proofs)."""
        return tree_of_records(self._record_bytes(0, size))

    def sealed_epoch_for(self, index: int) -> Epoch:
        row = self._read(
            "SELECT epoch FROM epochs WHERE status = 'sealed' AND end_index > ? ORDER BY epoch LIMIT 1", (index,)
        ).fetchone()
        if row is None:
            raise StoreError(f"segment {index} is in no sealed epoch yet; run `poe seal` first")
        return self.epoch_info(row[0])

    def inclusion_proof(self, index: int, epoch: int | None = None) -> tuple[bytes, InclusionProof, Root]:
        """Record bytes, inclusion proof and the root it verifies against (a sealed epoch's head)."""
        info = self.sealed_epoch_for(index) if epoch is None else self.epoch_info(epoch)
        ((raw, proof),) = self.inclusion_proofs([index], info.epoch)
        assert info.root is not None
        return raw, proof, info.root

    def inclusion_proofs(self, indices: list[int], epoch: int) -> list[tuple[bytes, InclusionProof]]:
        """Proofs for many segments against one sealed epoch's head, building the tree once."""
        info = self.epoch_info(epoch)
        if info.root is None:
            raise StoreError(f"epoch {info.epoch} is not sealed; run `poe seal` first")
        late = [i for i in indices if i >= info.root.size]
        if late:
            raise StoreError(f"segment {late[0]} comes after epoch {info.epoch}, which ends at {info.root.size}")
        tree = self.tree(info.root.size)
        out = []
        for index in indices:
            raw = _blob(self._read("SELECT record FROM segments WHERE idx = ?", (index,)).fetchone()[0])
            out.append((raw, InclusionProof(index, tree.size, tuple(tree.inclusion_path(index)))))
        return out

    def consistency_proof(self, old_epoch: int, new_epoch: int) -> tuple[Root, Root, ConsistencyProof]:
        old, new = self.epoch_info(old_epoch), self.epoch_info(new_epoch)
        if old.root is None or new.root is None:
            raise StoreError("both epochs must be sealed; run `poe seal` first")
        if old.root.size > new.root.size:
            raise StoreError(f"epoch {old_epoch} is not older than epoch {new_epoch}")
        if old.root.size == 0 or old.root.size == new.root.size:
            path: tuple = ()
        else:
            path = tuple(self.tree(new.root.size).consistency_path(old.root.size))
        return old.root, new.root, ConsistencyProof(old.root.size, new.root.size, path)

    def summary(self, epoch: int | None = None) -> tuple[Totals, dict[str, int]]:
        totals, outcomes = Totals(), {}
        for r in self.records(epoch):
            totals.add(r)
            key = r.describe_outcome()
            outcomes[key] = outcomes.get(key, 0) + 1
        return totals, outcomes

    def check_integrity(self) -> list[str]:
        """Problems found, as sentences; an empty list means the store is whole."""
        problems = []
        (result,) = self._read("PRAGMA quick_check").fetchone()
        if result != "ok":
            problems.append(f"SQLite quick_check: {result}")
        n, hi = self._read("SELECT COUNT(*), COALESCE(MAX(idx) + 1, 0) FROM segments").fetchone()
        if n != hi:
            problems.append(f"segment log has gaps: {n} segments but indices reach {hi - 1}")
        for idx, *row in self._read("SELECT idx, record, invocation, output FROM segments"):
            raw, inv, out = (_blob(v) for v in row)
            try:
                r = Record.decode(raw)
                if r.index != idx:
                    problems.append(f"segment {idx} holds a record for index {r.index}")
                if Invocation.decode(inv, self.blob).digest != r.input_digest:
                    problems.append(f"segment {idx}: invocation does not match the record's input digest")
                if Output.decode(out, self.blob).digest != r.output_digest:
                    problems.append(f"segment {idx}: output does not match the record's output digest")
            except EncodingError as exc:
                problems.append(f"segment {idx}: {exc.message}")
            if len(problems) > 20:
                break
        if self._has_state:
            for idx, header in self._read("SELECT s.idx, s.header FROM states s"):
                row = self._read("SELECT record FROM segments WHERE idx = ?", (idx,)).fetchone()
                try:
                    if row is None:
                        problems.append(f"state row {idx} has no segment")
                    elif State.decode(_blob(header)).root != Record.decode(_blob(row[0])).post_state:
                        problems.append(f"segment {idx}: the stored state is not the record's post-state")
                except EncodingError as exc:
                    problems.append(f"state row {idx}: {exc.message}")
                if len(problems) > 20:
                    break
        return problems

    # -- internals -------------------------------------------------------------------------------

    def _read(self, sql: str, args: tuple = ()) -> _Rows:
        return _Rows(self._db, sql, args, self.path)

    def _require_writer(self) -> None:
        if self._lock_fd is None:
            raise StoreError("store was opened read-only")

    def _transaction(self):
        return _Transaction(self._db, self.path)


class _Rows:
    """Query results whose fetching, too, turns SQLite errors (a corrupt file) into StoreError."""

    def __init__(self, db: sqlite3.Connection, sql: str, args: tuple, path: str) -> None:
        self.path = path
        try:
            self.cursor = db.execute(sql, args)
        except sqlite3.Error as exc:
            raise StoreError(f"cannot read store {path}: {exc}") from None

    def fetchone(self):
        try:
            return self.cursor.fetchone()
        except sqlite3.Error as exc:
            raise StoreError(f"cannot read store {self.path}: {exc}") from None

    def __iter__(self):
        while True:
            try:
                rows = self.cursor.fetchmany(256)
            except sqlite3.Error as exc:
                raise StoreError(f"cannot read store {self.path}: {exc}") from None
            if not rows:
                return
            yield from rows


class _Transaction:
    def __init__(self, db: sqlite3.Connection, path: str) -> None:
        self.db, self.path = db, path

    def __enter__(self) -> None:
        try:
            self.db.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as exc:
            raise StoreError(f"cannot write store {self.path}: {exc}") from None

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            try:
                self.db.execute("COMMIT")
                return
            except sqlite3.Error as err:
                self._rollback()
                raise StoreError(f"cannot write store {self.path}: {err}") from None
        self._rollback()
        if isinstance(exc, sqlite3.Error):
            raise StoreError(f"cannot write store {self.path}: {exc}") from None

    def _rollback(self) -> None:
        # SQLite may already have rolled back (a full disk does): only roll back what is open.
        if self.db.in_transaction:
            try:
                self.db.execute("ROLLBACK")
            except sqlite3.Error:
                pass


def _text(raw: bytes) -> str | bytes:
    """SQLite TEXT as str, or as bytes when it is not UTF-8 (a tampered blob column can be)."""
    try:
        return raw.decode()
    except UnicodeDecodeError:
        return raw


def _blob(value: object) -> bytes:
    """A BLOB column's value as bytes, even if someone stored it as TEXT."""
    if isinstance(value, str):
        return value.encode("utf-8", "surrogateescape")
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value)
    return repr(value).encode()


def _check_path(path: str, *, must_exist: bool) -> None:
    if not path or path.startswith(":") or path.startswith("file:"):
        raise StoreError(f"{path!r} is not a store file name (SQLite would keep it in memory or read it as a URI)")
    if os.path.isdir(path):
        raise StoreError(f"store path {path} is a directory; give a file name such as {os.path.join(path, 'trace.poe')}")
    if must_exist and not os.path.exists(path):
        raise StoreError(f"no store at {path}")
    parent = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(parent):
        raise StoreError(f"cannot create store {path}: directory {parent} does not exist")


def _take_lock(path: str) -> int:
    # Named from the resolved path, so two names of one store (a symlink) share one lock.
    lock_path = os.path.realpath(path) + ".lock"
    try:
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as exc:
        raise StoreError(f"cannot open store {path} for writing: {exc.strerror} ({lock_path})") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        os.close(fd)
        if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
            raise StoreLockedError(f"store {path} is being written by another process; wait for it or use another store") from None
        raise StoreError(f"cannot lock store {path}: {exc.strerror}") from None
    return fd


def _connect(path: str, *, readonly: bool) -> sqlite3.Connection:
    try:
        real = Path(os.path.realpath(path))
        if readonly:  # as a URI, so '#', '?' and '%' in names are escaped, not parsed
            conn = sqlite3.connect(real.as_uri() + "?mode=ro", uri=True, isolation_level=None, check_same_thread=False)
        else:
            conn = sqlite3.connect(str(real), isolation_level=None, check_same_thread=False)
        conn.text_factory = _text
        (app_id,) = conn.execute("PRAGMA application_id").fetchone()
        if not readonly:
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=FULL")
        conn.execute("PRAGMA busy_timeout=5000")
    except sqlite3.DatabaseError as exc:
        raise StoreError(f"{path} is not a poe store ({exc})") from None
    if app_id not in (0, _APPLICATION_ID):
        conn.close()
        raise StoreError(f"{path} is a SQLite database, but not a poe store")
    return conn


def _init_schema(conn: sqlite3.Connection, path: str, cost_model: CostModel) -> None:
    try:
        (version,) = conn.execute("PRAGMA user_version").fetchone()
        (app_id,) = conn.execute("PRAGMA application_id").fetchone()
        if app_id == 0:
            tables = conn.execute("SELECT COUNT(*) FROM sqlite_master").fetchone()[0]
            if tables:
                raise StoreError(f"{path} is a SQLite database, but not a poe store")
            conn.execute("BEGIN IMMEDIATE")
            for stmt in filter(None, (s.strip() for s in (_SCHEMA + ";" + _STATE_SCHEMA).split(";"))):
                conn.execute(stmt)
            conn.execute("INSERT INTO meta VALUES ('format', ?)", (str(STORE_FORMAT),))
            conn.execute("INSERT INTO meta VALUES ('cost_model', ?)", (cost_model.canonical_bytes.decode(),))
            conn.execute("INSERT INTO meta VALUES ('created', ?)", (time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),))
            conn.execute("INSERT INTO epochs(epoch, first_index, status) VALUES (0, 0, 'open')")
            conn.execute(f"PRAGMA user_version = {STORE_FORMAT}")
            conn.execute(f"PRAGMA application_id = {_APPLICATION_ID}")
            conn.execute("COMMIT")
            return
        _check_version(version, path)
        if version < STORE_FORMAT:  # format 1 -> 2: add the state tables
            conn.execute("BEGIN IMMEDIATE")
            for stmt in filter(None, (s.strip() for s in _STATE_SCHEMA.split(";"))):
                conn.execute(stmt)
            conn.execute(f"PRAGMA user_version = {STORE_FORMAT}")
            conn.execute("UPDATE meta SET value = ? WHERE key = 'format'", (str(STORE_FORMAT),))
            conn.execute("COMMIT")
    except sqlite3.OperationalError as exc:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        if "readonly" in str(exc) or "read-only" in str(exc):
            raise StoreError(f"store {path} is read-only") from None
        raise StoreError(f"cannot initialise store {path}: {exc}") from None


def _check_version(version: int, path: str) -> None:
    if version > STORE_FORMAT:
        raise StoreVersionError(f"store {path} has format {version}, newer than this poe reads ({STORE_FORMAT}); upgrade poe")
    if version < 1:
        raise StoreError(f"store {path} is not initialised")


def _read_cost_model(conn: sqlite3.Connection, path: str) -> CostModel:
    try:
        (version,) = conn.execute("PRAGMA user_version").fetchone()
        _check_version(version, path)
        row = conn.execute("SELECT value FROM meta WHERE key = 'cost_model'").fetchone()
    except sqlite3.DatabaseError as exc:
        raise StoreError(f"{path} is not a readable poe store ({exc})") from None
    if row is None:
        raise StoreError(f"store {path} has no cost model")
    try:
        return CostModel.from_json(json.loads(row[0]))
    except (ValueError, TypeError, AttributeError, LimitError) as exc:
        raise StoreError(f"store {path} has a malformed cost model: {exc}") from None


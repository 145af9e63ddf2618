"""States of stateful segments (spec §13.5): snapshots, deltas, rebuilding pre-states, and gc.

A state's memory is kept as 1 KiB chunks addressed by their BLAKE3 hash. Each stateful segment
stores its post-state header and the chunks it changed; full manifests are kept for lineage
starts (genesis) and as checkpoints, so any state is rebuilt from a nearby full manifest.
"""

from __future__ import annotations

from typing import Iterable, Iterator

from poe.errors import EncodingError, StateUnavailableError, StoreError
from poe.formats import hashing as h
from poe.formats.execution import Execution
from poe.formats.record import Record
from poe.formats.state import CHUNK_SIZE, ZERO_CHUNK_DIGEST, State, apply_delta, iter_delta, manifest_of

from ._connection import Connection, as_bytes, check_number

_EMPTY_USAGE = {"chunks": 0, "chunk_bytes": 0, "states": 0, "delta_bytes": 0, "snapshots": 0, "manifest_bytes": 0, "bytes": 0}


class States(Connection):
    def _init_states(self) -> None:
        self._has_state = self._read("SELECT COUNT(*) FROM sqlite_master WHERE name = 'states'").fetchone()[0] == 1
        self._pending_states: list[tuple[int, bytes, bytes]] = []
        self._pending_chunks: dict[bytes, bytes] = {}
        self._pending_snapshots: dict[bytes, tuple[bytes, bytes, int]] = {}
        self._known_chunks: set[bytes] = set()
        # The lineage being appended to: its latest post-state root, that state's manifest,
        # and how many delta entries were written since the last full manifest.
        self._lineage: tuple[bytes, bytearray] | None = None
        self._since_checkpoint = 0

    def _require_state_tables(self) -> None:
        if not self._has_state:
            raise StateUnavailableError(f"store {self.path} predates stateful segments (format 1) and holds no states")

    # -- writing (with the segment log's batches) ------------------------------------------------

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

    def _end_lineage(self) -> None:
        # A stateless segment ends the lineage in the log: a stateful segment after it must
        # start from a kept snapshot (genesis), or its chain could not be shown to an auditor.
        self._lineage = None

    def _append_state(self, execution: Execution) -> None:
        r, post = execution.record, execution.state
        assert post is not None
        manifest = self._manifest_before(r)
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

    def _manifest_before(self, r: Record) -> bytearray:
        if self._lineage is not None and self._lineage[0] == r.pre_state:
            return self._lineage[1]
        # A new lineage starts from a state put as a start (its genesis, put first), or the
        # log's last segment is continued (a resume). A checkpoint is neither: continuing
        # from one across a stateless segment would commit a chain no auditor accepts.
        manifest = self._snapshot_manifest(r.pre_state, starts_only=True)
        self._since_checkpoint = 0
        if manifest is None:
            manifest, self._since_checkpoint = self._rebuild(self._next_index - 1, want_root=r.pre_state)
        return manifest

    def _has_pending_snapshots(self) -> bool:
        return bool(self._pending_snapshots)

    def _write_pending_states(self) -> None:
        """Inside the segment log's batch transaction: a segment and its state land together."""
        if self._pending_chunks or self._pending_states or self._pending_snapshots:
            self._db.executemany("INSERT OR IGNORE INTO chunks VALUES (?, ?)", self._pending_chunks.items())
            # A start mark is never lost: a checkpoint of a state later put as a start becomes one.
            self._db.executemany("INSERT INTO snapshots VALUES (?, ?, ?, ?) ON CONFLICT(root) DO UPDATE SET start = MAX(start, excluded.start)",
                                 [(root, hd, mf, st) for root, (hd, mf, st) in self._pending_snapshots.items()])
            self._db.executemany("INSERT INTO states VALUES (?, ?, ?)", self._pending_states)

    def _pending_states_written(self) -> None:
        if len(self._known_chunks) > 1_000_000:
            self._known_chunks.clear()
        self._known_chunks.update(self._pending_chunks)
        self._pending_states.clear()
        self._pending_chunks.clear()
        self._pending_snapshots.clear()

    # -- kept states ------------------------------------------------------------------------------

    def _has_snapshot(self, root: bytes) -> bool:
        if root in self._pending_snapshots:
            return True
        return self._read("SELECT 1 FROM snapshots WHERE root = ?", (root,)).fetchone() is not None

    def _snapshot_manifest(self, root: bytes, *, starts_only: bool = False) -> bytearray | None:
        pending = self._pending_snapshots.get(root)
        if pending is not None and (pending[2] or not starts_only):
            return bytearray(pending[1])
        if not self._has_state:
            return None
        sql = "SELECT manifest FROM snapshots WHERE root = ?" + (" AND start = 1" if starts_only else "")
        row = self._read(sql, (root,)).fetchone()
        return bytearray(as_bytes(row[0])) if row else None

    def _snapshot(self, root: bytes) -> tuple[State, bytearray] | None:
        """A kept full state by its root: (header, manifest)."""
        row = self._read("SELECT header, manifest FROM snapshots WHERE root = ?", (root,)).fetchone() if self._has_state else None
        return (State.decode(as_bytes(row[0])), bytearray(as_bytes(row[1]))) if row else None

    def _state_row(self, index: int) -> tuple[State, bytes] | None:
        """Segment `index`'s stored post-state header and delta, if it has them."""
        row = self._read("SELECT header, delta FROM states WHERE idx = ?", (index,)).fetchone() if self._has_state else None
        return (State.decode(as_bytes(row[0])), as_bytes(row[1])) if row else None

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
                raise _no_state_to_rebuild(index, k, want_root)
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

    # -- reading states ---------------------------------------------------------------------------

    def state_after(self, index: int) -> State:
        """The post-state header of stateful segment `index`."""
        self._require_state_tables()
        check_number(index, "segment", self.path)
        row = self._read("SELECT header FROM states WHERE idx = ?", (index,)).fetchone()
        if row is None:
            raise StateUnavailableError(f"the store has no state for segment {index}")
        return State.decode(as_bytes(row[0]))

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
        data = as_bytes(row[0])
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

    def _check_states(self, problems: list[str], limit: int) -> None:
        """The segment log's integrity check, for the state rows: each is its record's post-state."""
        for idx, header in self._read("SELECT s.idx, s.header FROM states s"):
            row = self._read("SELECT record FROM segments WHERE idx = ?", (idx,)).fetchone()
            try:
                if row is None:
                    problems.append(f"state row {idx} has no segment")
                elif State.decode(as_bytes(header)).root != Record.decode(as_bytes(row[0])).post_state:
                    problems.append(f"segment {idx}: the stored state is not the record's post-state")
            except EncodingError as exc:
                problems.append(f"state row {idx}: {exc.message}")
            if len(problems) > limit:
                break

    # -- garbage collection -----------------------------------------------------------------------

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
            keep_roots = self._roots_to_keep(end)
            states = self._db.execute("DELETE FROM states WHERE idx < ?", (end,)).rowcount
            snaps = 0
            for (root,) in list(self._read("SELECT root FROM snapshots")):
                if as_bytes(root) not in keep_roots:
                    snaps += self._db.execute("DELETE FROM snapshots WHERE root = ?", (root,)).rowcount
            freed = self._delete_dead_chunks()
        self._known_chunks.clear()
        self._lineage = None
        return {"states": states, "snapshots": snaps, "chunks": int(freed[0]), "bytes": int(freed[1])}

    def _roots_to_keep(self, end: int) -> set[bytes]:
        """The states gc must keep whole when collecting below segment `end` (in its transaction)."""
        keep_roots = {r.pre_state for r in self._records_from(end)} - {h.ZERO_DIGEST}
        if self._next_index > 0:
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
        keep_roots |= {State.decode(as_bytes(hd)).root for (hd,) in self._read("SELECT header FROM states WHERE idx >= ?", (end,))}
        return keep_roots

    def _delete_dead_chunks(self) -> tuple[int, int]:
        """Delete every chunk no delta and no manifest names; (chunks, bytes) freed."""
        self._db.execute("CREATE TEMP TABLE IF NOT EXISTS live(digest BLOB PRIMARY KEY)")
        self._db.execute("DELETE FROM live")
        for (delta,) in self._read("SELECT delta FROM states"):
            self._db.executemany("INSERT OR IGNORE INTO live VALUES (?)", ((d,) for _, d in iter_delta(as_bytes(delta))))
        for (manifest,) in self._read("SELECT manifest FROM snapshots"):
            m = as_bytes(manifest)
            self._db.executemany("INSERT OR IGNORE INTO live VALUES (?)", ((m[k : k + 32],) for k in range(0, len(m), 32)))
        freed = self._db.execute("SELECT COUNT(*), COALESCE(SUM(LENGTH(data)), 0) FROM chunks WHERE digest NOT IN (SELECT digest FROM live)").fetchone()
        self._db.execute("DELETE FROM chunks WHERE digest NOT IN (SELECT digest FROM live)")
        self._db.execute("DELETE FROM live")
        return int(freed[0]), int(freed[1])

    def state_usage(self) -> dict[str, int]:
        """What the state tables hold: rows and bytes (chunks, deltas, manifests), and all bytes."""
        if not self._has_state:
            return dict(_EMPTY_USAGE)
        c = self._read("SELECT COUNT(*), COALESCE(SUM(LENGTH(data)), 0) FROM chunks").fetchone()
        st = self._read("SELECT COUNT(*), COALESCE(SUM(LENGTH(delta) + LENGTH(header)), 0) FROM states").fetchone()
        sn = self._read("SELECT COUNT(*), COALESCE(SUM(LENGTH(manifest) + LENGTH(header)), 0) FROM snapshots").fetchone()
        return {"chunks": int(c[0]), "chunk_bytes": int(c[1]), "states": int(st[0]), "delta_bytes": int(st[1]),
                "snapshots": int(sn[0]), "manifest_bytes": int(sn[1]), "bytes": int(c[1]) + int(st[1]) + int(sn[1])}


def _no_state_to_rebuild(index: int, k: int, want_root: bytes | None) -> StateUnavailableError:
    """Why a walk back from segment `index` found no state row at segment `k`."""
    if want_root is not None and k == index == -1:
        return StateUnavailableError("the first stateful segment of a store starts a lineage: put its genesis snapshot first")
    if want_root is not None and k == index:
        return StateUnavailableError(
            f"segment {index + 1} starts from a state that is neither a kept snapshot nor the post-state of segment {index}, "
            "the log's last: a stateful segment continues its predecessor or starts a lineage from genesis"
        )
    return StateUnavailableError(
        f"the store has no state for segment {k}" + (" (it is not a stateful segment, or its state was collected)" if k >= 0 else "")
        + "; cannot rebuild the state a stateful segment starts from"
    )

"""The segment log: records with their invocations and outputs, payload blobs, services.

Segments are queued and written in batches, each batch one transaction, so a crash loses at
most the batch in flight and a reopen sees whole batches only.
"""

from __future__ import annotations

import json
import time
from typing import Iterator

from poe.errors import CostModelMismatchError, EncodingError, InputError, StoreError
from poe.formats import hashing as h
from poe.formats.execution import Execution
from poe.formats.invocation import Invocation, Output, block_terms
from poe.formats.moduleset import Service
from poe.formats.record import Record

from ._connection import Connection, as_bytes, check_number

_MAX_PROBLEMS = 20  # an integrity report names the first problems, not every damaged row


class SegmentLog(Connection):
    def _init_log(self) -> None:
        self._pending: list[tuple] = []
        self._pending_requests: dict[tuple[bytes, bytes], int] = {}
        self._pending_windows: dict[int, tuple[int, int]] = {}  # segment index -> its request's epochs
        self._unanswered: set[tuple[bytes, bytes]] = set()  # looked up and found absent, under this writer's lock
        self._pending_blobs: dict[bytes, bytes] = {}
        self._known_blobs: set[bytes] = set()
        self._known_services: set[bytes] = set()
        self._last_invocation: Invocation | None = None
        self._last_flush = time.monotonic()
        self.batch_size = 1024
        self.batch_seconds = 0.25
        self._next_index = int(self._read("SELECT COALESCE(MAX(idx) + 1, 0) FROM segments").fetchone()[0])

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
        request_key = self._request_key(execution.invocation)
        if request_key is not None:
            known_absent = request_key in self._unanswered
            if request_key in self._pending_requests or (not known_absent and self._answered(*request_key) is not None):
                raise InputError(f"customer 0x{request_key[0].hex()}'s request {int.from_bytes(request_key[1], 'big')} was already run; "
                                 "a request is billed once")
            self._pending_requests[request_key] = r.index
            self._pending_windows[r.index] = block_terms(execution.invocation.request)[2:4]
            self._unanswered.discard(request_key)
        self._queue_payloads(execution)
        if execution.state is not None:
            self._append_state(execution)
        elif r.pre_state != h.ZERO_DIGEST or r.post_state != h.ZERO_DIGEST:
            raise StoreError(f"segment {r.index} has state roots but no state to store")
        else:
            self._end_lineage()
        self._pending.append((r.index, r.encode(), execution.invocation.encoded, execution.output.encoded))
        self._next_index += 1
        if len(self._pending) >= self.batch_size or time.monotonic() - self._last_flush >= self.batch_seconds:
            self.flush()
        return r.index

    def _queue_payloads(self, execution: Execution) -> None:
        # A batch usually repeats one invocation: its payloads need queueing only once.
        payloads = execution.output.blobs()
        if execution.invocation is not self._last_invocation:
            payloads += execution.invocation.blobs()
            self._last_invocation = execution.invocation
        for payload in payloads:
            d = payload.digest
            if d not in self._known_blobs and d not in self._pending_blobs:
                self._pending_blobs[d] = payload.data

    def flush(self) -> None:
        if not self._pending and not self._has_pending_snapshots():
            return
        with self._transaction():
            # Chosen inside the transaction: a concurrent `poe seal` closes the open epoch in a
            # transaction of its own, so a batch lands wholly before or wholly after the boundary.
            epoch = self.current_epoch()
            late = [i for i, (first, last) in self._pending_windows.items() if not first <= epoch <= last]
            if late:
                self._drop_batch()
                raise StoreError(f"segment {late[0]}'s request is not billable in epoch {epoch}, the open one (a seal may have closed "
                                 "the epoch it was checked against); the batch was not recorded, so nothing of it is billed")
            self._db.executemany("INSERT OR IGNORE INTO blobs VALUES (?, ?)", self._pending_blobs.items())
            self._db.executemany(
                "INSERT INTO segments(idx, epoch, record, invocation, output) VALUES (?, ?, ?, ?, ?)",
                [(i, epoch, rec, inv, out) for i, rec, inv, out in self._pending],
            )
            if self._pending_requests:
                self._db.executemany("INSERT INTO requests(customer, sequence, idx) VALUES (?, ?, ?)",
                                     [(c, s, i) for (c, s), i in self._pending_requests.items()])
            self._write_pending_states()
        if len(self._known_blobs) > 100_000:
            self._known_blobs.clear()
        self._known_blobs.update(self._pending_blobs)
        self._pending.clear()
        self._pending_requests.clear()
        self._pending_windows.clear()
        self._pending_blobs.clear()
        self._pending_states_written()
        self._last_flush = time.monotonic()

    def _drop_batch(self) -> None:
        """Forget the queued batch (its log positions are given out again). Only a batch without
        stateful segments can be dropped: their lineage lives in the session too."""
        if self._has_pending_snapshots():
            raise StoreError("a queued batch with stateful segments cannot be dropped")
        self._next_index -= len(self._pending)
        self._pending.clear()
        self._pending_requests.clear()
        self._pending_windows.clear()
        self._pending_blobs.clear()
        self._last_invocation = None

    @staticmethod
    def _request_key(invocation: Invocation) -> tuple[bytes, bytes] | None:
        if not invocation.request:
            return None
        customer, sequence, _, _ = block_terms(invocation.request)
        return customer, sequence.to_bytes(8, "big")

    def _answered(self, customer: bytes, sequence: bytes) -> int | None:
        row = self._read("SELECT idx FROM requests WHERE customer = ? AND sequence = ?", (customer, sequence)).fetchone()
        return None if row is None else int(row[0])

    def request_answered_by(self, customer: bytes, sequence: int) -> int | None:
        """The index of the segment that answered customer's request `sequence`, if one did
        (queued ones included)."""
        key = (bytes(customer), sequence.to_bytes(8, "big"))
        if key in self._pending_requests:
            return self._pending_requests[key]
        index = self._answered(*key)
        if index is None and self._lock_fd is not None:
            # Only this writer adds requests while it holds the lock: the answer stays true.
            if len(self._unanswered) > 100_000:
                self._unanswered.clear()
            self._unanswered.add(key)
        return index

    def requests_answered(self, keys: list[tuple[bytes, int]]) -> dict[tuple[bytes, int], int]:
        """Of (customer, sequence) keys, those a segment already answered (queued ones
        included), with its index: one query per few hundred keys rather than one per key."""
        found: dict[tuple[bytes, int], int] = {}
        wanted = []
        for customer, sequence in keys:
            key = (bytes(customer), sequence.to_bytes(8, "big"))
            if key in self._pending_requests:
                found[(customer, sequence)] = self._pending_requests[key]
            elif key not in self._unanswered:
                wanted.append(key)
        for at in range(0, len(wanted), 400):
            part = wanted[at : at + 400]
            rows = self._read("SELECT customer, sequence, idx FROM requests WHERE (customer, sequence) IN (VALUES "
                              + ",".join("(?, ?)" for _ in part) + ")", tuple(v for key in part for v in key))
            for customer, sequence, idx in rows:
                found[(as_bytes(customer), int.from_bytes(as_bytes(sequence), "big"))] = int(idx)
        if self._lock_fd is not None:  # as in request_answered_by: only this writer adds requests
            if len(self._unanswered) + len(wanted) > 100_000:
                self._unanswered.clear()
            self._unanswered.update(key for key in wanted if (key[0], int.from_bytes(key[1], "big")) not in found)
        return found

    # -- reading -----------------------------------------------------------------------------

    def count(self) -> int:
        return int(self._read("SELECT COUNT(*) FROM segments").fetchone()[0])

    def record(self, index: int) -> Record:
        check_number(index, "segment", self.path)
        row = self._read("SELECT record FROM segments WHERE idx = ?", (index,)).fetchone()
        if row is None:
            raise InputError(f"store has no segment {index} (it holds {self.count()})")
        return Record.decode(as_bytes(row[0]))

    def segment_epoch(self, index: int) -> int:
        """The epoch segment `index` was recorded in (fixed once its batch is flushed)."""
        check_number(index, "segment", self.path)
        row = self._read("SELECT epoch FROM segments WHERE idx = ?", (index,)).fetchone()
        if row is None:
            raise InputError(f"store has no segment {index} (it holds {self.count()})")
        return int(row[0])

    def segment(self, index: int) -> tuple[Record, Invocation, Output]:
        check_number(index, "segment", self.path)
        row = self._read("SELECT record, invocation, output FROM segments WHERE idx = ?", (index,)).fetchone()
        if row is None:
            raise InputError(f"store has no segment {index} (it holds {self.count()})")
        rec, inv, out = (as_bytes(v) for v in row)
        return Record.decode(rec), Invocation.decode(inv, self._fetch_blob), Output.decode(out, self._fetch_blob)

    def segment_bytes(self, index: int) -> tuple[bytes, bytes]:
        """Segment `index`'s record and canonical invocation bytes, as stored."""
        check_number(index, "segment", self.path)
        row = self._read("SELECT record, invocation FROM segments WHERE idx = ?", (index,)).fetchone()
        if row is None:
            raise InputError(f"store has no segment {index} (it holds {self.count()})")
        return as_bytes(row[0]), as_bytes(row[1])

    def records(self, epoch: int | None = None) -> Iterator[Record]:
        if epoch is None:
            cur = self._read("SELECT record FROM segments ORDER BY idx")
        else:
            cur = self._read("SELECT record FROM segments WHERE epoch = ? ORDER BY idx", (epoch,))
        for (raw,) in cur:
            yield Record.decode(as_bytes(raw))

    def _records_from(self, first: int) -> Iterator[Record]:
        for (raw,) in self._read("SELECT record FROM segments WHERE idx >= ? ORDER BY idx", (first,)):
            yield Record.decode(as_bytes(raw))

    def blob(self, digest: bytes) -> bytes:
        """A payload by its BLAKE3 digest."""
        row = self._read("SELECT data FROM blobs WHERE digest = ?", (digest,)).fetchone()
        if row is None:
            raise StoreError(f"store is missing payload {bytes(digest).hex()}")
        return as_bytes(row[0])

    def _fetch_blob(self, digest: bytes) -> bytes:
        # The decoders' fetch: KeyError for a missing payload, which they report as such.
        row = self._read("SELECT data FROM blobs WHERE digest = ?", (digest,)).fetchone()
        if row is None:
            raise KeyError(digest)
        return as_bytes(row[0])

    def service(self, digest: bytes) -> Service:
        row = self._read("SELECT main, links, name FROM services WHERE digest = ?", (digest,)).fetchone()
        if row is None:
            raise StoreError(f"store has no service {digest.hex()}")
        main = self._module(as_bytes(row[0]))
        try:
            links = {n: self._module(bytes.fromhex(d)) for n, d in json.loads(row[1]).items()}
        except (ValueError, TypeError, AttributeError):
            raise StoreError(f"store has a malformed link table for service {digest.hex()}") from None
        return Service(main, links, name=str(row[2]))

    def _module(self, digest: bytes) -> bytes:
        row = self._read("SELECT wasm FROM modules WHERE digest = ?", (digest,)).fetchone()
        if row is None:
            raise StoreError(f"store is missing module {digest.hex()}")
        return as_bytes(row[0])

    def module_digests(self, first: int, end: int) -> set[bytes]:
        """The module digests named by the records of segments first..end-1."""
        check_number(first, "segment", self.path)
        check_number(end, "segment", self.path)
        return {Record.decode(as_bytes(raw)).module_digest for (raw,) in self._read(
            "SELECT record FROM segments WHERE idx >= ? AND idx < ?", (first, end))}

    def services(self) -> list[tuple[bytes, str]]:
        return [(as_bytes(d), str(n)) for d, n in self._read("SELECT digest, name FROM services ORDER BY name")]

    # -- integrity ---------------------------------------------------------------------------

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
            problems += self._segment_problems(idx, *(as_bytes(v) for v in row))
            if len(problems) > _MAX_PROBLEMS:
                break
        if self._has_state:
            self._check_states(problems, _MAX_PROBLEMS)
        return problems

    def _segment_problems(self, idx: int, raw: bytes, inv: bytes, out: bytes) -> list[str]:
        problems = []
        try:
            r = Record.decode(raw)
            if r.index != idx:
                problems.append(f"segment {idx} holds a record for index {r.index}")
            if Invocation.decode(inv, self._fetch_blob).digest != r.input_digest:
                problems.append(f"segment {idx}: invocation does not match the record's input digest")
            if Output.decode(out, self._fetch_blob).digest != r.output_digest:
                problems.append(f"segment {idx}: output does not match the record's output digest")
        except EncodingError as exc:
            problems.append(f"segment {idx}: {exc.message}")
        return problems

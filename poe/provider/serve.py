"""The provider's gateway (`poe serve`): customers' signed requests in over HTTP, receipts out.

Three parts, each on its own thread of control:

- the HTTP front (aiohttp, on the event loop): parses a request, hands it to a worker thread, and
  answers with the guest's stdout, usage headers and the signed receipt;
- worker threads: check the request (terms, the call it names, the signature; refused before it
  runs), execute it (wasmtime runs guests outside the GIL), then queue the execution for the
  writer and wait until it is durable;
- one writer thread, the only one that touches the store: it takes whatever executions are queued,
  refuses a (customer, sequence) already answered, appends the rest and flushes them in one
  transaction (group commit: one fsync for many requests), and only then releases the waiting
  workers, which sign the receipts. It also seals and attests epochs on the schedule given.

A receipt therefore never names a segment that a crash could lose. The wire format
(docs/http.md): the body is the guest's stdin; the `Poe-Invocation` header carries the call's
canonical bytes (spec §3, version 1, base64), whose stdin digest must be the body's; the
`Poe-Request` header carries the customer's signed request (`poe request v1` JSON).
"""

from __future__ import annotations

import base64
import dataclasses
import json
import os
import queue
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from poe.errors import InputError, InternalError, PoEError, SignatureError, StoreError
from poe.formats import hashing as h
from poe.formats.invocation import Invocation
from poe.merkle.hasher import Sums, leaf

__all__ = ["Gateway", "Served", "make_app", "MAX_BODY", "encode_call", "decode_call"]

MAX_BODY = 1 << 20  # a request's body (the guest's stdin)


def encode_call(call: Invocation) -> str:
    """The `Poe-Invocation` header of a call: its canonical bytes, base64."""
    return base64.b64encode(call.call_encoded).decode()


def decode_call(header: str, body: bytes) -> Invocation:
    """The call a `Poe-Invocation` header names, with `body` as its stdin (InputError when the
    header is not a call, the stdin digest is not the body's, or it needs other payloads)."""
    try:
        raw = base64.b64decode(header.encode(), validate=True)
    except (ValueError, UnicodeEncodeError):
        raise InputError("the Poe-Invocation header is not base64") from None
    digest = h.blob_digest(body)

    def fetch(d: bytes) -> bytes:
        if d != digest:
            raise KeyError(d)
        return body

    try:
        call = Invocation.decode(raw, fetch)
    except KeyError:
        raise InputError("the invocation names payloads other than the request's body (its stdin digest must be the body's)") from None
    if call.request:
        raise InputError("the Poe-Invocation header carries a plain call; the request goes in Poe-Request")
    if call.stdin.digest != digest:  # an empty stdin is never fetched: the body must still be it
        raise InputError("the body is not the stdin the invocation names (its digest differs)")
    return call


@dataclass(frozen=True)
class Served:
    """One answered request: its execution, where it is recorded, and the customer's receipt."""

    execution: Any
    index: int
    epoch: int
    receipt: Any
    replayed: bool = False  # the same signed request again: its recorded answer, nothing run or billed again


class _Pending:
    __slots__ = ("execution", "key", "window", "future")

    def __init__(self, execution: Any, key: tuple[bytes, int], window: tuple[int, int]) -> None:
        self.execution, self.key, self.window = execution, key, window
        self.future: Future = Future()


class Gateway:
    """A store behind a request queue (see the module's docstring). Thread-safe: `invoke` may be
    called from many threads at once. Use as a context manager, or `start()` and `close()`."""

    def __init__(self, executor: Any, deal: Any, store_path: str, scheme: Any, secret_key: bytes, *,
                 epoch_segments: int | None = None, epoch_seconds: float | None = None, workers: int = 2,
                 max_batch: int = 512) -> None:
        if (deal.module_digest, deal.cost_model_digest) != (executor.service.digest, executor.cost_model.digest):
            raise InputError("the deal names another module or cost model than this gateway's")
        if scheme.name != deal.scheme or scheme.public_key(secret_key) != deal.provider_key:
            raise InputError("the key is not the deal's provider key: customers check receipts and attestations against the deal")
        if epoch_segments is not None and epoch_segments < 1 or epoch_seconds is not None and epoch_seconds <= 0:
            raise InputError("an epoch lasts at least one segment and a positive number of seconds")
        self.executor, self.deal, self.store_path, self.scheme = executor, deal, store_path, scheme
        self._sk = secret_key
        self.epoch_segments, self.epoch_seconds, self.max_batch = epoch_segments, epoch_seconds, max_batch
        self.pool = ThreadPoolExecutor(workers, thread_name_prefix="poe-worker")
        self._queue: queue.Queue = queue.Queue()
        self._readers = threading.local()
        self._reserved: set[tuple[bytes, int]] = set()  # keys running or queued: a second copy is refused before it runs
        self._lock = threading.Lock()
        self._epoch = 0  # the open epoch, as the writer last saw it
        self._sealed: list[dict[str, Any]] = []
        self._writer: threading.Thread | None = None
        self._ready = threading.Event()
        self._failed: BaseException | None = None
        self._closing = False
        self.counters = {"requests": 0, "replayed": 0, "refused": 0, "failed": 0, "fuel": 0, "segments": 0}

    # -- life cycle ------------------------------------------------------------------------------

    def start(self) -> Gateway:
        self._writer = threading.Thread(target=self._write_loop, name="poe-writer", daemon=True)
        self._writer.start()
        self._ready.wait()
        if self._failed is not None:
            raise self._failed
        return self

    def close(self) -> None:
        """Finish what is queued, seal the open epoch if it holds segments, and stop."""
        self._closing = True
        self.pool.shutdown(wait=True)
        if self._writer is not None:
            self._queue.put(None)
            self._writer.join()
            self._writer = None

    def __enter__(self) -> Gateway:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # -- what the front calls --------------------------------------------------------------------

    def invoke(self, signed: Any, call: Invocation) -> Served:
        """Check, run and durably record `call` as the answer to `signed`; return it with the
        customer's receipt. InputError (nothing runs) for a request that does not fit the deal,
        the open epoch, the call, or whose (customer, sequence) was answered before."""
        from poe.protocol.receipt import sign_receipt
        from poe.protocol.request import answer

        if self._failed is not None:
            raise StoreError(f"the gateway's store writer stopped: {self._failed}")
        if self._writer is None or self._closing:
            raise StoreError("the gateway is not running (not started, or closing)")
        request = signed.request
        if signed.is_job:
            raise InputError("the gateway answers one-call requests; a job's steps run with `poe run --stateful`")
        cm = self.executor.cost_model
        try:
            request.check_terms(self.deal.digest, self._epoch, cm.limits.fuel, self.deal.window)
            inv = answer(call, signed)
            try:
                signed.verify()
            except SignatureError as exc:
                raise InputError(f"the request's signature does not verify: {exc.message}", **exc.details) from None
            key = (request.customer, request.sequence)
            with self._lock:
                if key in self._reserved:
                    raise InputError(f"request {request.sequence} of this customer is already being answered: a request is billed once")
                self._reserved.add(key)
        except InputError:
            self._count(refused=1)
            raise
        replayed = False
        try:
            earlier = self._answered(key, inv)  # refused (409) before it runs, unless it is the very same signed request
            if earlier is not None:
                execution, index, epoch = earlier
                replayed = True
            else:
                self.executor.check(inv)
                execution = self.executor.run(inv, 0)  # the writer renumbers it to its place in the log
                item = _Pending(execution, key, (request.not_before, request.not_after))
                self._queue.put(item)
                index, epoch, record = self._wait(item)
                execution = dataclasses.replace(execution, record=record)
        except InputError:
            self._count(refused=1)
            raise
        except BaseException:
            self._count(failed=1)
            raise
        finally:
            with self._lock:
                self._reserved.discard(key)
        record = execution.record
        receipt = sign_receipt(self.scheme, self._sk, deal=self.deal.digest, request=signed.digest, customer=request.customer,
                               sequence=request.sequence, epoch=epoch, index=index, record_leaf=leaf(record.encode()).hash)
        self._count(**({"replayed": 1} if replayed else {"requests": 1, "fuel": record.fuel}))
        return Served(execution, index, epoch, receipt, replayed)

    def _answered(self, key: tuple[bytes, int], inv: Invocation) -> tuple[Any, int, int] | None:
        """A request whose (customer, sequence) a durable segment answers: the same signed request
        again (its answer was lost on the way: a timeout, a dropped connection) gets that segment
        back, as recorded, with nothing run or billed again; any other is refused."""
        from poe.formats.execution import Execution
        from poe.store.tracestore import TraceStore

        reader = getattr(self._readers, "store", None)
        if reader is None:  # one read-only connection per worker thread: SQLite's WAL lets it read beside the writer
            reader = self._readers.store = TraceStore.open(self.store_path)
        done = reader.requests_answered([key])
        if not done:
            return None
        index = done[key]
        record, stored, output = reader.segment(index)
        if stored.request != inv.request or stored.call_digest != inv.call_digest:
            raise InputError(f"request {key[1]} of this customer was already run, as segment {index}: a request is billed once")
        return Execution(record, stored, output), index, reader.segment_epoch(index)

    def _wait(self, item: _Pending) -> tuple[int, int, Any]:
        # A writer that stops after this request was queued never answers it: look again each second.
        while True:
            try:
                return item.future.result(timeout=1.0)
            except TimeoutError:
                writer = self._writer
                if self._failed is not None or writer is None or not writer.is_alive():
                    raise StoreError(f"the gateway's store writer stopped: {self._failed}") from None

    def _count(self, **by: int) -> None:
        with self._lock:
            for k, n in by.items():
                self.counters[k] += n

    def epochs(self) -> list[dict[str, Any]]:
        with self._lock:
            return [dict(e) for e in self._sealed]

    def epoch(self, n: int) -> dict[str, Any]:
        with self._lock:
            for e in self._sealed:
                if e["epoch"] == n:
                    return e
        raise KeyError(n)

    @property
    def waiting(self) -> int:
        """Executions waiting for durability."""
        return self._queue.qsize()

    # -- the writer ------------------------------------------------------------------------------

    def _write_loop(self) -> None:
        from poe.store.tracestore import TraceStore

        try:
            store = TraceStore.create_or_open(self.store_path, self.executor.cost_model)
        except BaseException as exc:  # noqa: BLE001 - reported to start()
            self._failed = exc
            self._ready.set()
            return
        # Only the writer's own flush commits: a batch is answered as a whole once it is durable.
        store.batch_size, store.batch_seconds = 1 << 62, float("inf")
        try:
            store.register_service(self.executor.service)
            self._epoch = store.current_epoch()
            self._sync_sealed(store)
            opened = time.monotonic()
            self._ready.set()
            stop = False
            while not stop:
                timeout = None if self.epoch_seconds is None else max(0.0, opened + self.epoch_seconds - time.monotonic())
                try:
                    first = self._queue.get(timeout=timeout)
                except queue.Empty:
                    first = ()
                batch = [] if not first else [first]
                stop = first is None
                room = self.max_batch if self.epoch_segments is None else max(1, self._first_open + self.epoch_segments - store.next_index)
                while not stop and len(batch) < min(self.max_batch, room):
                    try:
                        more = self._queue.get_nowait()
                    except queue.Empty:
                        break
                    if more is None:
                        stop = True
                    else:
                        batch.append(more)
                if batch:
                    self._record(store, batch)
                due = (self.epoch_segments is not None and store.next_index - self._first_open >= self.epoch_segments
                       or self.epoch_seconds is not None and time.monotonic() - opened >= self.epoch_seconds)
                if (due or stop) and store.next_index > self._first_open:
                    self._seal(store)
                    opened = time.monotonic()
                elif due:
                    opened = time.monotonic()
        except BaseException as exc:  # noqa: BLE001 - every waiting worker learns of it
            self._failed = exc
            self._ready.set()
            while True:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item:
                    item.future.set_exception(StoreError(f"the gateway's store writer stopped: {exc}"))
        finally:
            store.close()

    def _record(self, store: Any, batch: list[_Pending]) -> None:
        # The open epoch is read from the store, not remembered: `poe seal` may close it from
        # another process, and the store's flush refuses a batch whose windows the seal left behind.
        epoch = store.current_epoch()
        answered = store.requests_answered([p.key for p in batch])
        placed = []
        for p in batch:
            lo, hi = p.window
            if p.key in answered:
                p.future.set_exception(InputError(f"request {p.key[1]} of this customer was already run, as segment {answered[p.key]}: "
                                                  "a request is billed once"))
            elif not lo <= epoch <= hi:  # an epoch sealed between its check and now
                p.future.set_exception(InputError(f"the request is not billable in epoch {epoch}, the open one",
                                                  expected=[lo, hi], observed=epoch))
            else:
                # The worker ran it at index 0: a segment's index is its record's only field that
                # depends on where it lands, so the writer sets it (nothing the guest saw changes).
                execution = dataclasses.replace(p.execution, record=dataclasses.replace(p.execution.record, index=store.next_index))
                placed.append((p, store.append(execution), execution.record))
        if not placed:
            return
        try:
            store.flush()  # one transaction, one fsync, for the whole batch
        except PoEError as exc:
            # Nothing of the batch is recorded (a refused flush drops it; anything else is dropped
            # here, or closing the store would write it): none of these requests is billed, and
            # their customers may send them again.
            try:
                store._drop_batch()
            except PoEError:
                raise exc from None
            for p, _, _ in placed:
                p.future.set_exception(StoreError(f"the segment was not recorded: {exc.message}"))
            return
        landed = store.segment_epoch(placed[0][1])  # a flush lands wholly in one epoch
        self._count(segments=len(placed))
        for p, index, record in placed:
            p.future.set_result((index, landed, record))

    @property
    def _first_open(self) -> int:
        return self._sealed[-1]["end_index"] if self._sealed else 0

    def _seal(self, store: Any) -> None:
        store.seal()
        self._sync_sealed(store)

    def _sync_sealed(self, store: Any) -> None:
        """Attest every sealed epoch this gateway has not listed yet: the one it just sealed, and
        at start-up, or after a `poe seal` from outside, the others. An epoch a crash left closed
        but not sealed is sealed first. Each epoch's attestation and claim are kept beside the
        store (STORE.epochs/N.json, written whole); a file there that does not match the store's
        epoch (a store replaced under it) stops the gateway rather than being served."""
        from poe.protocol.attestation import Envelope
        from poe.provider.attest import make_claim, sign_epoch

        known = {e["epoch"] for e in self._sealed}
        rows = store.epochs()
        closed = [row["epoch"] for row in rows if row["status"] == "closed"]
        for epoch in closed:
            store.seal(epoch)
        for row in store.epochs() if closed else rows:
            if row["status"] != "sealed" or row["epoch"] in known:
                continue
            path = os.path.join(self._dir(), f"{row['epoch']}.json")
            try:
                with open(path, "rb") as f:
                    entry = json.loads(f.read())
                st = Envelope.from_json(entry["attestation"]).statement
            except FileNotFoundError:
                envelope = sign_epoch(store, self.scheme, self._sk, self.deal.deal_id, epoch=row["epoch"])
                st = envelope.statement
                entry = {"epoch": st.epoch, "first_index": st.first_index, "end_index": st.end_index,
                         "attestation": envelope.to_json(), "claim": make_claim(envelope, self.deal).to_json()}
                self._save(entry)
            except (OSError, ValueError, KeyError, PoEError) as exc:
                raise StoreError(f"{path} cannot be read ({exc}); move it away to have epoch {row['epoch']} attested again") from None
            if st.epoch != row["epoch"] or st.root.to_json() != row.get("root"):
                raise StoreError(f"{path} attests another epoch {row['epoch']} than the store holds (a store replaced under its "
                                 "files?); move it away to have the epoch attested again")
            with self._lock:
                self._sealed.append(entry)
        with self._lock:
            self._sealed.sort(key=lambda e: e["epoch"])
            self._epoch = store.current_epoch()

    # Attestations and claims are kept beside the store, one file per epoch, written whole.
    def _dir(self) -> str:
        return self.store_path + ".epochs"

    def _save(self, entry: dict[str, Any]) -> None:
        from poe._io import write_new

        os.makedirs(self._dir(), exist_ok=True)
        write_new(os.path.join(self._dir(), f"{entry['epoch']}.json"), (json.dumps(entry) + "\n").encode(), "epoch attestation")


def make_app(gateway: Gateway) -> Any:
    """The aiohttp application in front of `gateway` (endpoints: docs/http.md)."""
    import asyncio

    from aiohttp import web

    from poe.formats.record import Outcome
    from poe.protocol.request import SignedRequest

    def error(status: int, exc: PoEError) -> web.Response:
        return web.json_response({"error": exc.to_json()}, status=status)

    async def invoke(req: web.Request) -> web.Response:
        try:
            body = await req.read()
            call_header, request_header = req.headers.get("Poe-Invocation"), req.headers.get("Poe-Request")
            if call_header is None or request_header is None:
                raise InputError("a request carries the Poe-Invocation and Poe-Request headers")
            try:
                signed = SignedRequest.from_json(json.loads(request_header))
            except (ValueError, RecursionError):
                raise InputError("the Poe-Request header is not JSON") from None
            call = decode_call(call_header, body)
        except PoEError as exc:
            gateway._count(refused=1)
            return error(400, exc)
        loop = asyncio.get_running_loop()
        try:
            served = await loop.run_in_executor(gateway.pool, gateway.invoke, signed, call)
        except InputError as exc:
            return error(409 if "billed once" in exc.message else 400, exc)
        except PoEError as exc:
            return error(503, exc)
        except Exception as exc:  # noqa: BLE001 - a bug answers 500 with a code, never a traceback
            return error(500, InternalError(f"internal error: {type(exc).__name__}: {exc}"))
        record, output = served.execution.record, served.execution.output
        cm = gateway.executor.cost_model
        headers = {
            "Poe-Index": str(served.index), "Poe-Epoch": str(served.epoch), "Poe-Outcome": record.describe_outcome(),
            "Poe-Fuel": str(record.fuel), "Poe-Mem": str(record.mem), "Poe-Io": str(record.io),
            "Poe-Amount": str(gateway.deal.weight(Sums(*record.quantities()))),
            "Poe-Receipt": json.dumps(served.receipt.to_json(), separators=(",", ":")),
            "Poe-Cost-Model": cm.name,
        }
        if served.replayed:
            headers["Poe-Replayed"] = "1"
        if record.outcome in (Outcome.OK, Outcome.EXIT):
            headers["Poe-Exit-Status"] = str(record.outcome_code if record.outcome is Outcome.EXIT else 0)
        return web.Response(body=output.stdout.data, headers=headers, content_type="application/octet-stream")

    async def healthz(req: web.Request) -> web.Response:
        ok = gateway._failed is None
        return web.json_response({"ok": ok, "epoch": gateway._epoch, "waiting": gateway.waiting}, status=200 if ok else 503)

    async def epochs(req: web.Request) -> web.Response:
        return web.json_response([{k: e[k] for k in ("epoch", "first_index", "end_index")} for e in gateway.epochs()])

    def sealed(req: web.Request) -> dict[str, Any]:
        try:
            return gateway.epoch(int(req.match_info["n"]))
        except (KeyError, ValueError):
            raise web.HTTPNotFound(text=json.dumps({"error": {"code": "input.invalid", "message": "no such sealed epoch"}}),
                                   content_type="application/json") from None

    async def attestation(req: web.Request) -> web.Response:
        return web.json_response(sealed(req)["attestation"])

    async def claim(req: web.Request) -> web.Response:
        return web.json_response(sealed(req)["claim"])

    app = web.Application(client_max_size=MAX_BODY)
    app.add_routes([web.post("/v1/invoke", invoke), web.get("/healthz", healthz), web.get("/v1/epochs", epochs),
                    web.get(r"/v1/epochs/{n:\d+}/attestation", attestation), web.get(r"/v1/epochs/{n:\d+}/claim", claim)])
    return app

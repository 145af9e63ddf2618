"""The provider's run loop: execute invocations as metered segments and append them to a store.

`poe run` and the benchmark both call these functions, so the figure the benchmark reports is
the loop users run.
"""

from __future__ import annotations

import os
import struct
import time
from typing import Any, Callable

from poe._workers import SignatureChecks
from poe.errors import ArgumentError, InputError, SignatureError
from poe.formats import hashing as h
from poe.formats.costmodel import CostModel, Limits
from poe.formats.execution import Execution
from poe.formats.invocation import Invocation, Payload, Value
from poe.store.tracestore import Totals, TraceStore

__all__ = ["run_batch", "run_request", "run_requests", "run_steps", "store_cost_model", "segment_seed", "parse_seed", "invocation_for"]

Tick = Callable[[int], None]


def _no_tick(n: int) -> None:
    pass


def segment_seed(base_seed: bytes, i: int) -> bytes:
    """Segment i of a batch gets its own random_get seed, derived from the batch's."""
    return h.digest(h.CTX_SEED, base_seed + struct.pack("<Q", i))


def store_cost_model(store_path: str, limits: Limits | None) -> CostModel:
    """The store's own cost model when it exists and no limit was given; else this machine's."""
    if limits is None and os.path.isfile(store_path):
        with TraceStore.open(store_path) as existing:
            return existing.cost_model
    return CostModel.current(limits)


class _Tally:
    def __init__(self) -> None:
        self.totals, self.outcomes, self.peak = Totals(), {}, 0
        self.started = time.perf_counter()

    def add(self, r: Any) -> None:
        self.totals.add(r)
        key = r.describe_outcome()
        self.outcomes[key] = self.outcomes.get(key, 0) + 1
        self.peak = max(self.peak, r.peak_pages)

    def summary(self, store_path: str, executor: Any, first: int) -> dict[str, Any]:
        elapsed = time.perf_counter() - self.started
        n = self.totals.segments
        return {
            "store": store_path,
            "module_digest": executor.service.digest.hex(),
            "cost_model": executor.cost_model.name,
            "cost_model_digest": executor.cost_model.digest.hex(),
            "first_index": first,
            "last_index": first + n - 1,
            "totals": self.totals.to_json(),
            "peak_pages": self.peak,
            "outcomes": self.outcomes,
            "seconds": round(elapsed, 6),
            "segments_per_second": round(n / elapsed, 1) if elapsed > 0 else None,
        }


def run_batch(executor: Any, base: Invocation, store_path: str, repeat: int, *, tick: Tick = _no_tick) -> tuple[dict[str, Any], Execution]:
    """Run `base` `repeat` times (segment i with seed segment_seed(base.seed, i) when repeat > 1)
    and append every segment to the store; returns the summary and the last execution."""
    tally, last = _Tally(), None
    with TraceStore.create_or_open(store_path, executor.cost_model) as store:
        store.register_service(executor.service)
        first = store.next_index
        run, append, add = executor.run, store.append, tally.add
        for i in range(repeat):
            inv = base if repeat == 1 else base.with_seed(segment_seed(base.seed, i))
            last = run(inv, store.next_index)
            append(last)
            add(last.record)
            tick(1)
    assert last is not None
    summary = tally.summary(store_path, executor, first)
    if repeat == 1:
        summary["record"] = last.record.to_json()
        summary["output"] = last.output.to_json()
    return summary, last


def run_request(executor: Any, call: Invocation, signed: Any, deal: Any, store_path: str) -> tuple[dict[str, Any], Execution]:
    """Run `call` as the answer to a customer's signed request (a :class:`SignedRequest`) under
    `deal`, and append the segment, whose invocation (version 2) commits the request."""
    summary, last = run_requests(executor, [(call, signed)], deal, store_path)
    summary.update({"record": last.record.to_json(), "output": last.output.to_json(), "request": signed.digest.hex()})
    return summary, last


def run_requests(executor: Any, items: list[tuple[Invocation, Any]], deal: Any, store_path: str, *,
                 tick: Tick = _no_tick) -> tuple[dict[str, Any], Execution]:
    """Run each (call, signed request) as the request's answer and append the segments. Every
    request is checked before its call runs (deal, module, cost model, the open epoch in its
    window, the deal's window cap, its budget, a sequence not run before nor twice in `items`,
    the call it names, and its signature), and nothing is appended until every request in
    `items` has passed, so a bad one refuses the whole batch and leaves no record."""
    from poe.protocol.request import answer

    cm = executor.cost_model
    if (deal.module_digest, deal.cost_model_digest) != (executor.service.digest, cm.digest):
        raise InputError("the deal names another module or cost model than this run's")
    if not items:
        raise InputError("no requests to run")
    tally = _Tally()
    with TraceStore.create_or_open(store_path, cm) as store:
        epoch, keys = store.current_epoch(), []
        for _, signed in items:
            request = signed.request
            request.check_terms(deal.digest, epoch, cm.limits.fuel, deal.window)
            keys.append((request.customer, request.sequence))
        if len(set(keys)) != len(keys):
            seen: set = set()
            twice = next(k for k in keys if k in seen or seen.add(k))  # type: ignore[func-returns-value]
            raise InputError(f"request {twice[1]} of this customer was already run in this batch: a request is billed once")
        done = store.requests_answered(keys)
        if done:
            (customer, sequence), index = next(iter(done.items()))
            raise InputError(f"request {sequence} of this customer was already run, as segment {index}: a request is billed once")
        invocations = [answer(call, signed) for call, signed in items]
        store.register_service(executor.service)
        first = store.next_index
        runs = _run_verified(executor, invocations, first, tick)
        for run in runs:  # every request verified: only now does anything reach the store
            store.append(run)
            tally.add(run.record)
    return tally.summary(store_path, executor, first), runs[-1]


def _run_verified(executor: Any, invocations: list[Invocation], first: int, tick: Tick) -> list[Execution]:
    """Execute each invocation once its request's signature has verified. Large batches recover
    the signatures on a second core (SignatureChecks), chunk by chunk ahead of execution: the
    recovery costs about as much as a small segment. Threads were measured slower, 0.37-0.42x of
    anonymous recording against 0.50-0.54x inline: wasmtime-py's many short ctypes calls hand
    the GIL back and forth with the recovering thread. docs/benchmarks.md has the figures."""
    runs: list[Execution] = []
    with SignatureChecks([(inv.request, inv.call_digest) for inv in invocations]) as checks:
        for at, end in checks.chunks():
            checks.wait(at)  # raises InputError for the first request that does not verify
            for i in range(at, end):
                runs.append(executor.run(invocations[i], first + i))
                tick(1)
    return runs


def run_steps(executor: Any, inv: Invocation, store_path: str, steps: int, *, stop_at_zero: bool = True, resume: bool = False,
              tick: Tick = _no_tick, job: tuple[Any, Any] | None = None) -> tuple[dict[str, Any], Execution]:
    """Stateful mode: call the export up to `steps` times on one instance, each call a segment
    whose record commits the state before and after it; stop early when it returns the i32 0
    (with `stop_at_zero`) or a segment does not end ok. `resume` continues the store's last lineage.
    With `job` = (signed job, deal), every step answers the customer's job (spec §14.7): checked
    before the first step runs, at most its steps in all, step k billed under its sequence + k."""
    stop_at_zero = stop_at_zero and executor.exports[inv.export][1] == ("i32",)
    tally, done, last = _Tally(), False, None
    with TraceStore.create_or_open(store_path, executor.cost_model) as store:
        start = _resume_point(store, executor, store_path) if resume else None
        first_step = _job_start(store, executor, inv, job, resume, steps) if job is not None else 0
        if job is not None:
            steps = min(steps, job[0].request.steps - first_step)
        store.register_service(executor.service)  # only once the lineage is known to continue
        usage_before, first = store.state_usage(), store.next_index
        with executor.session(start) as session:
            if start is None:
                store.put_snapshot(session.state, session.image())
            genesis_root = session.state.root
            for k in range(steps):
                step_inv = inv if job is None else _answer_step(inv, job[0], first_step + k)
                last = session.run(step_inv, store.next_index)
                store.append(last)
                tally.add(last.record)
                tick(1)
                if last.record.outcome.name != "OK" or (stop_at_zero and last.output.results[0].bits == 0):
                    done = last.record.outcome.name == "OK"
                    break
            tracking = session.tracking
        store.flush()
        usage = store.state_usage()
    assert last is not None
    n, stored = tally.totals.segments, usage["bytes"] - usage_before["bytes"]
    summary = tally.summary(store_path, executor, first)
    summary.update({
        "stateful": True, "steps": n, "done": done, "resumed": resume, "start_state": genesis_root.hex(),
        "final_state": last.state.to_json() if last.state else None, "dirty_tracking": tracking,
        "state_bytes_stored": stored, "state_bytes_per_step": round(stored / n, 1),
    })
    if job is not None:
        summary["job"] = {"request": job[0].digest.hex(), "first_step": first_step, "last_step": first_step + n - 1, "steps": job[0].request.steps}
    return summary, last


def _answer_step(call: Invocation, signed: Any, step: int) -> Invocation:
    from poe.protocol.request import answer

    return answer(call, signed, step)


def _job_start(store: TraceStore, executor: Any, call: Invocation, job: tuple[Any, Any], resume: bool, steps: int) -> int:
    """Check a signed job before any of its steps runs, and return the step to run next: 0 for a
    new lineage, or one past the step the store's last segment ran when resuming the same job."""
    from poe.formats.invocation import split_requested
    from poe.protocol.request import step_of

    signed, deal = job
    if not signed.is_job:
        raise InputError("a stateful lineage answers a job (`poe request --job-steps N`), not a one-call request")
    cm = executor.cost_model
    if (deal.module_digest, deal.cost_model_digest) != (executor.service.digest, cm.digest):
        raise InputError("the deal names another module or cost model than this run's")
    signed.request.check_terms(deal.digest, store.current_epoch(), cm.limits.fuel, deal.window)
    _answer_step(call, signed, 0)  # the job names this call
    try:
        signed.verify()
    except SignatureError as exc:
        raise InputError(f"the job's signature does not verify: {exc.message}", **exc.details) from None
    first = 0
    if resume:
        parts = split_requested(store.segment_bytes(store.next_index - 1)[1])
        if parts is None or parts[1][:-8] != signed.block(0)[:-8]:
            raise ArgumentError("--resume: the store's last lineage answered another job (or none)")
        first = step_of(parts[1]) + 1  # type: ignore[operator]
    if first >= signed.request.steps:
        raise InputError(f"the job's {signed.request.steps} steps have all been run; the customer signed for no more")
    request = signed.request
    # Every sequence this run bills must be free, or the lineage would stop part-way at one another
    # request already took (the job reserves its sequences, but a customer may have reused one).
    keys = [(request.customer, request.sequence + k) for k in range(first, min(request.steps, first + steps))]
    done = store.requests_answered(keys)
    if done:
        (_, sequence), index = min(done.items(), key=lambda kv: kv[0][1])
        raise InputError(f"step {sequence - request.sequence} of this job (sequence {sequence}) was already billed, as segment {index}: "
                         "a sequence is billed once", observed=sequence)
    return first


def _resume_point(store: TraceStore, executor: Any, store_path: str) -> Any:
    start = store.last_state()
    if start is None:
        raise ArgumentError(f"--resume: the last segment of {store_path} is not stateful; there is no lineage to continue")
    if store.record(store.next_index - 1).module_digest != executor.service.digest:
        raise ArgumentError("--resume: the store's last lineage ran another module")
    return start


def parse_seed(seed: str | None) -> bytes:
    if seed is None:
        return h.ZERO_DIGEST
    try:
        raw = bytes.fromhex(seed)
    except ValueError:
        raise ArgumentError("--seed must be hex") from None
    if len(raw) != 32:
        raise ArgumentError(f"--seed must be 32 bytes (64 hex digits), got {len(raw)}")
    return raw


def invocation_for(executor: Any, export: str | None, args: tuple[str, ...], *, argv0: str, env: list[str], stdin: Payload,
                   files: dict[str, Payload], seed: bytes, stateful: bool) -> Invocation:
    """What `poe run` means by its flags: the export (default _start, or step when stateful),
    whose parameters the args fill when it takes any, else the args are the guest's argv."""
    if stateful:
        executor.check_stateful()
    export = export or ("step" if stateful else "_start")
    if export == "_start" and export not in executor.exports:
        names = ", ".join(sorted(executor.exports)) or "none"
        raise ArgumentError(f"the module has no _start; choose a function with --invoke (exported functions: {names})")
    params_t = executor.exports.get(export, ((), ()))[0]
    if params_t and len(args) != len(params_t):
        raise ArgumentError(f"export {export!r} takes {len(params_t)} argument(s) ({', '.join(params_t)}), got {len(args)}")
    params = [Value.parse(ty, a) for ty, a in zip(params_t, args)]
    inv = Invocation.build(export, params=params, argv=[argv0, *args], env=env, stdin=stdin, files=files, seed=seed)
    executor.check(inv)
    return inv

"""`poe run`: execute a module's function as metered segments and record them in a store."""

from __future__ import annotations

import os
import struct
import sys
import time

import click

from poe.formats import hashing as h
from poe.formats.costmodel import CostModel
from poe.wasm.executor import Execution, Executor, Service
from poe.formats.invocation import Invocation, Payload, Value
from poe.store.tracestore import Totals, TraceStore
from poe.errors import ArgumentError, InputError
from ._options import emit_json, human, info, json_option, limit_options, limits_from, read_file


def _pairs(values: tuple[str, ...], what: str, *, name_optional: bool = False) -> list[tuple[str, str]]:
    out = []
    for v in values:
        if "=" in v:
            name, _, rest = v.partition("=")
            if not name:
                raise ArgumentError(f"{what} {v!r}: the name before '=' is empty")
            out.append((name, rest))
        elif name_optional:
            out.append((os.path.basename(v), v))
        else:
            raise ArgumentError(f"{what} {v!r} must look like NAME=VALUE")
    return out


@click.command("run")
@click.argument("module", type=click.Path(dir_okay=False))
@click.option("--store", "store_path", required=True, type=click.Path(), help="Trace store (SQLite file) to append segments to; created if missing.")
@click.option("--invoke", "export", default=None, help="Export to call (default: _start, the WASI command entry point).")
@click.option("--arg", "args", multiple=True, help="Argument: a wasm value if the export takes parameters (i32/i64/f32/f64), else an argv entry. Repeatable.")
@click.option("--env", "env", multiple=True, help="Environment entry KEY=VALUE for the guest. Repeatable.")
@click.option("--stdin", "stdin_path", default=None, help="File whose bytes are the guest's stdin ('-' reads poe's own stdin).")
@click.option("--file", "files", multiple=True, help="NAME=PATH (or just PATH): a file the guest can read in its directory '.'. Repeatable.")
@click.option("--link", "links", multiple=True, help="NAME=OTHER.wasm: satisfy imports from module NAME with OTHER's exports. Repeatable.")
@click.option("--repeat", type=click.IntRange(min=1), default=1, show_default=True, help="Run the invocation N times, one segment each.")
@click.option("--seed", default=None, help="32-byte hex seed for random_get (default all zero); with --repeat, segment i uses a seed derived from it and i.")
@click.option("--stateful", is_flag=True, help="Keep one instance across segments; each record commits the state (memory, globals, clock) before and after it. See --steps.")
@click.option("--steps", type=click.IntRange(min=1), default=None, help="With --stateful: call the export (default: step) up to N times, stopping early when it returns the i32 0 (done) or a segment does not end ok.")
@click.option("--all-steps", is_flag=True, help="With --steps: run all N steps even when the export returns 0 (a trap or exit still stops).")
@click.option("--resume", is_flag=True, help="With --stateful: continue the lineage the store's last segment left, instead of starting from the module's genesis state.")
@click.option("--quiet", "-q", is_flag=True, help="No progress bar or guest output; only the summary.")
@limit_options
@json_option
def run(module, store_path, export, args, env, stdin_path, files, links, repeat, seed, stateful, steps, all_steps, resume, quiet, fuel, max_memory_pages, max_output, as_json):
    """Run MODULE's function as metered segments and append them to a store.

    Each invocation is one segment: fuel is measured around the call only, the outcome
    (ok, exit, trap, out-of-fuel, memory-limit, output-limit) is recorded, never raised.
    With a single run the guest's stdout and stderr are shown; a summary follows on stderr.

    \b
    Examples:
      poe run csv_agg.wasm --stdin sales.csv --store trace.poe
      poe run funcs.wasm --invoke add --arg 2 --arg 40 --store trace.poe
      poe run wordfreq.wasm --arg words.txt --file words.txt --repeat 1000 --store trace.poe
      poe run step_sort.wasm --stateful --steps 5000 --store trace.poe

    \b
    Stateful mode (--stateful): one instance lives across segments, as a long computation cut
    into steps needs. The guest keeps its progress in memory and exports `step() -> i32`,
    returning nonzero while work remains and 0 when done; --steps N drives it. Every record's
    pre- and post-state roots chain (post of one = pre of the next), and the store keeps each
    state as the 1 KiB chunks it changed. An interrupted run continues with --resume.
    """
    main_wasm = read_file(module, "module")
    link_wasm = {name: read_file(path, f"linked module {name!r}") for name, path in _pairs(links, "--link")}
    service = Service(main_wasm, link_wasm, name=os.path.basename(module))
    limits = limits_from(fuel, max_memory_pages, max_output)
    cost_model = _choose_cost_model(store_path, limits)
    executor = Executor(service, cost_model)

    if not stateful and (steps is not None or resume or all_steps):
        raise ArgumentError("--steps, --all-steps and --resume need --stateful")
    if stateful and repeat != 1:
        raise ArgumentError("with --stateful, use --steps N rather than --repeat (each step continues the last one's state)")
    if stateful:
        executor.check_stateful()
        if export is None:
            export = "step"
    if export is None:
        export = "_start"
        if export not in executor.exports:
            names = ", ".join(sorted(executor.exports)) or "none"
            raise ArgumentError(f"the module has no _start; choose a function with --invoke (exported functions: {names})")
    params_t = executor.exports.get(export, ((), ()))[0]
    if params_t:
        if len(args) != len(params_t):
            raise ArgumentError(f"export {export!r} takes {len(params_t)} argument(s) ({', '.join(params_t)}), got {len(args)}")
        params, argv = [Value.parse(t, a) for t, a in zip(params_t, args)], [os.path.basename(module), *args]
    else:
        params, argv = [], [os.path.basename(module), *args]
    env_pairs = _pairs(env, "--env")
    stdin = Payload(read_file(stdin_path, "stdin file")) if stdin_path else Payload(b"")
    file_map = {}
    for name, path in _pairs(files, "--file", name_optional=True):
        if name in file_map:
            raise ArgumentError(f"--file {name!r} given twice")
        file_map[name] = Payload(read_file(path, "input file"))
    base_seed = _parse_seed(seed)
    base = Invocation.build(export, params=params, argv=argv, env=[f"{k}={v}" for k, v in env_pairs], stdin=stdin, files=file_map, seed=base_seed)
    executor.check(base)
    if stateful:
        return _run_stateful(executor, base, store_path, steps or 1, not all_steps, resume, quiet, as_json)

    totals, outcomes = Totals(), {}
    peak = 0
    started = time.perf_counter()
    with TraceStore.create_or_open(store_path, executor.cost_model) as store:
        store.register_service(service)
        first = store.next_index
        show_bar = repeat > 1 and not quiet and sys.stderr.isatty()
        with click.progressbar(length=repeat, label="segments", file=sys.stderr, show_pos=True, show_eta=True) if show_bar else _NoBar() as bar:
            last = None
            for i in range(repeat):
                inv = base if repeat == 1 else base.with_seed(h.digest(h.CTX_SEED, base_seed + struct.pack("<Q", i)))
                last = executor.run(inv, store.next_index)
                store.append(last)
                peak = _tally(last.record, totals, outcomes, peak)
                bar.update(1)
    elapsed = time.perf_counter() - started

    assert last is not None
    if repeat == 1 and not as_json and not quiet:
        _echo_guest(last)
    summary = {
        "store": store_path,
        "module_digest": service.digest.hex(),
        "cost_model": executor.cost_model.name,
        "cost_model_digest": executor.cost_model.digest.hex(),
        "first_index": first,
        "last_index": first + repeat - 1,
        "totals": totals.to_json(),
        "peak_pages": peak,
        "outcomes": outcomes,
        "seconds": round(elapsed, 6),
        "segments_per_second": round(repeat / elapsed, 1) if elapsed > 0 else None,
    }
    if repeat == 1:
        summary["record"] = last.record.to_json()
        summary["output"] = last.output.to_json()
    if as_json:
        emit_json(summary)
    else:
        info(f"poe: recorded segment{'s' if repeat > 1 else ''} {first}..{first + repeat - 1} in {store_path}")
        info(f"  outcomes : {', '.join(f'{k} x{v}' for k, v in sorted(outcomes.items()))}")
        info(f"  fuel     : {totals.fuel:,} (avg {totals.fuel // repeat:,}/segment)")
        info(f"  memory   : peak {peak} pages ({peak * 64} KiB); mem {human(totals.mem)} page-fuel")
        info(f"  io       : {totals.io:,} payload bytes")
        info(f"  time     : {elapsed:.3f} s ({repeat / elapsed:,.0f} segments/s)" if elapsed > 0 else "")


def _run_stateful(executor: Executor, inv: Invocation, store_path: str, steps: int, stop_at_zero: bool, resume: bool, quiet: bool, as_json: bool) -> None:
    service = executor.service
    stop_at_zero = stop_at_zero and executor.exports[inv.export][1] == ("i32",)
    totals, outcomes = Totals(), {}
    peak, done, last = 0, False, None
    started = time.perf_counter()
    with TraceStore.create_or_open(store_path, executor.cost_model) as store:
        store.register_service(service)
        usage_before = store.state_usage()
        first = store.next_index
        start = None
        if resume:
            start = store.last_state()
            if start is None:
                raise ArgumentError(f"--resume: the last segment of {store_path} is not stateful; there is no lineage to continue")
            if store.record(first - 1).module_digest != service.digest:
                raise ArgumentError("--resume: the store's last lineage ran another module")
        with executor.session(start) as session:
            if start is None:
                store.put_snapshot(session.state, session.image())
            genesis_root = session.state.root
            show_bar = steps > 1 and not quiet and sys.stderr.isatty()
            with click.progressbar(length=steps, label="steps", file=sys.stderr, show_pos=True, show_eta=True) if show_bar else _NoBar() as bar:
                for _ in range(steps):
                    last = session.run(inv, store.next_index)
                    store.append(last)
                    r = last.record
                    peak = _tally(r, totals, outcomes, peak)
                    bar.update(1)
                    if r.outcome.name != "OK" or (stop_at_zero and last.output.results[0].bits == 0):
                        done = r.outcome.name == "OK"
                        break
            tracking = session.tracking
        store.flush()
        usage = store.state_usage()
    elapsed = time.perf_counter() - started
    assert last is not None
    n = totals.segments
    grown = {k: usage[k] - usage_before[k] for k in usage}
    stored = grown["bytes"]
    if not as_json and not quiet:
        _echo_guest(last)
    summary = {
        "store": store_path,
        "stateful": True,
        "module_digest": service.digest.hex(),
        "cost_model": executor.cost_model.name,
        "cost_model_digest": executor.cost_model.digest.hex(),
        "first_index": first,
        "last_index": first + n - 1,
        "steps": n,
        "done": done,
        "resumed": resume,
        "start_state": genesis_root.hex(),
        "final_state": last.state.to_json() if last.state else None,
        "dirty_tracking": tracking,
        "state_bytes_stored": stored,
        "state_bytes_per_step": round(stored / n, 1),
        "totals": totals.to_json(),
        "peak_pages": peak,
        "outcomes": outcomes,
        "seconds": round(elapsed, 6),
        "segments_per_second": round(n / elapsed, 1) if elapsed > 0 else None,
    }
    if as_json:
        emit_json(summary)
        return
    info(f"poe: recorded stateful segments {first}..{first + n - 1} in {store_path}" + (" (resumed)" if resume else ""))
    info(f"  steps    : {n}" + (", done (the export returned 0)" if done else (" (stopped: " + last.record.describe_outcome() + ")" if last.record.outcome.name != "OK" else ", not done; continue with --resume")))
    info(f"  outcomes : {', '.join(f'{k} x{v}' for k, v in sorted(outcomes.items()))}")
    info(f"  fuel     : {totals.fuel:,} (avg {totals.fuel // n:,}/step)")
    info(f"  memory   : {peak} pages ({peak * 64} KiB); mem {human(totals.mem)} page-fuel")
    info(f"  state    : {last.record.post_state.hex()[:16]}... after the last step; dirty chunks found by {tracking}")
    info(f"  stored   : {human(stored)}B of state ({stored / n:,.0f} B/step: changed chunks, deltas, checkpoints)")
    info(f"  time     : {elapsed:.3f} s ({n / elapsed:,.0f} steps/s)" if elapsed > 0 else "")


def _echo_guest(last: Execution) -> None:
    """The guest's captured stdout and stderr, on ours."""
    sys.stdout.buffer.write(last.output.stdout.data)
    sys.stdout.flush()
    sys.stderr.buffer.write(last.output.stderr.data)
    sys.stderr.flush()


def _tally(r, totals: Totals, outcomes: dict[str, int], peak: int) -> int:
    """Count one record into the run's summary; returns the new peak pages."""
    totals.add(r)
    key = r.describe_outcome()
    outcomes[key] = outcomes.get(key, 0) + 1
    return max(peak, r.peak_pages)


class _NoBar:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def update(self, n: int) -> None:
        pass


def _parse_seed(seed: str | None) -> bytes:
    if seed is None:
        return h.ZERO_DIGEST
    try:
        raw = bytes.fromhex(seed)
    except ValueError:
        raise ArgumentError("--seed must be hex") from None
    if len(raw) != 32:
        raise ArgumentError(f"--seed must be 32 bytes (64 hex digits), got {len(raw)}")
    return raw


def _choose_cost_model(store_path: str, limits) -> CostModel:
    """The store's own cost model when it exists and no limit was given; else this machine's."""
    if limits is None and os.path.isfile(store_path):
        try:
            existing = TraceStore.open(store_path)
        except InputError:
            raise
        try:
            return existing.cost_model
        finally:
            existing.close()
    return CostModel.current(limits)

"""Stateful segments end to end: the bundled step example (step_sort.wasm, 2,689 steps).

Group "stateful-steps": 256 merge steps of the sort (steps 128..383, after the input is
generated) on one live instance. The baseline is bare wasmtime-py under the same engine
configuration calling `step` 256 times on one instance, fuel-metered, with no state committed.
poe runs the same steps as stateful segments (pre/post state roots, dirty chunks found by each
tracking mode) and, in the `_store` variant, also appends them to a trace store (chunks,
deltas, checkpoints; synchronous=FULL).

Group "stateful-growth" (one untimed run of the whole example): bytes the snapshot store grew by
per step against the bytes the steps dirtied, in extra_info.

    python3 -m pytest benches/bench_stateful.py --benchmark-enable
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest
import wasmtime

from poe import CostModel, Executor, Invocation, Service, TraceStore
from poe.wasm.executor import _engine
from poe.merkle.memory import uffd_unavailable

SORT = (Path(__file__).resolve().parent.parent / "vectors" / "modules" / "step_sort.wasm").read_bytes()
CM = CostModel.current()
SERVICE = Service(SORT, name="step_sort.wasm")
STEP = Invocation.build("step")
FIRST, STEPS = 128, 256


def _bare_instance():
    """step_sort on plain wasmtime-py with its own WASI, advanced past input generation."""
    engine = _engine(CM)
    linker = wasmtime.Linker(engine)
    linker.define_wasi()
    store = wasmtime.Store(engine)
    store.set_wasi(wasmtime.WasiConfig())
    store.set_fuel(CM.limits.fuel)
    instance = linker.instantiate(store, wasmtime.Module(engine, SORT))
    exports = instance.exports(store)
    exports["_initialize"](store)
    step = exports["step"]
    for _ in range(FIRST):
        step(store)
    return (store, step), {}


def _bare_steps(store, step):
    for _ in range(STEPS):
        store.set_fuel(CM.limits.fuel)
        step(store)


@pytest.mark.benchmark(group="stateful-steps")
def test_steps_baseline(measured):
    measured.pedantic(_bare_steps, setup=_bare_instance, rounds=5)


def _session(tracking: str, with_store: bool):
    ex = Executor(SERVICE, CM)
    session = ex.session(tracking=tracking)
    store = None
    if with_store:
        path = os.path.join(tempfile.mkdtemp(prefix="poe-bench-"), "s.poe")
        store = TraceStore.create_or_open(path, CM)
        store.register_service(SERVICE)
        store.put_snapshot(session.state, session.image())
    for k in range(FIRST):
        e = session.run(STEP, k)
        if store is not None:
            store.append(e)
    if store is not None:
        store.flush()
    return (session, store), {}


def _poe_steps(session, store):
    for k in range(FIRST, FIRST + STEPS):
        e = session.run(STEP, k)
        if store is not None:
            store.append(e)
    if store is not None:
        store.flush()
        store.close()
    session.close()


@pytest.mark.benchmark(group="stateful-steps")
@pytest.mark.parametrize("tracking", ["uffd", "compare", "rehash"])
@pytest.mark.parametrize("with_store", [False, True], ids=["session", "store"])
def test_steps_poe(measured, tracking, with_store):
    if tracking == "uffd" and uffd_unavailable():
        pytest.skip(f"uffd tracking unavailable here: {uffd_unavailable()}")
    measured.pedantic(_poe_steps, setup=lambda: _session(tracking, with_store), rounds=5)
    measured.extra_info["tracking"] = tracking
    measured.extra_info["steps"] = STEPS


@pytest.mark.benchmark(group="stateful-growth")
def test_store_growth_per_step_poe(measured, tmp_path):
    """The whole example once: what the store keeps per step against what the steps dirtied."""
    def whole_run():
        path = str(tmp_path / f"g{len(os.listdir(tmp_path))}.poe")
        ex = Executor(SERVICE, CM)
        dirty = steps = 0
        with TraceStore.create_or_open(path, CM) as store, ex.session() as s:
            store.register_service(SERVICE)
            store.put_snapshot(s.state, s.image())
            genesis = store.state_usage()
            while True:
                e = s.run(STEP, steps)
                store.append(e)
                dirty += len(e.changed) * 1024
                steps += 1
                if e.output.results[0].bits == 0:
                    break
            store.flush()
            usage = store.state_usage()
        grown = sum(usage[k] - genesis[k] for k in ("chunk_bytes", "delta_bytes", "manifest_bytes"))
        return steps, dirty, grown, usage

    steps, dirty, grown, usage = measured.pedantic(whole_run, rounds=1)
    measured.extra_info.update({
        "steps": steps, "dirty_bytes_per_step": round(dirty / steps), "stored_bytes_per_step": round(grown / steps),
        "stored_over_dirty": round(grown / dirty, 3), "checkpoints": usage["snapshots"] - 1,
        "chunk_bytes": usage["chunk_bytes"], "delta_bytes": usage["delta_bytes"], "manifest_bytes": usage["manifest_bytes"],
    })

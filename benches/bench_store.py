"""Trace-store throughput: trivial segments executed and recorded end to end."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest

from poe import CostModel, Executor, Invocation, Service, TraceStore, Value

FUNCS = (Path(__file__).resolve().parent.parent / "vectors" / "modules" / "funcs.wasm").read_bytes()
BATCH = 5000


@pytest.fixture
def setup(tmp_path):
    cm = CostModel.current()
    service = Service(FUNCS)
    store = TraceStore.create_or_open(str(tmp_path / "bench.poe"), cm)
    store.register_service(service)
    yield Executor(service, cm), store
    store.close()


@pytest.mark.benchmark(group="store-append")
def test_append_baseline(measured, setup):
    """Executing the segments without recording them: the floor for the store's cost."""
    ex, _ = setup
    inv = Invocation.build("add", params=[Value.of("i32", 1), Value.of("i32", 2)])

    def batch():
        for i in range(BATCH):
            ex.run(inv, i)

    measured.pedantic(batch, rounds=5, iterations=1)


@pytest.mark.benchmark(group="store-append")
def test_append_poe_end_to_end(measured, setup):
    ex, store = setup
    inv = Invocation.build("add", params=[Value.of("i32", 1), Value.of("i32", 2)])
    counter = itertools.count()

    def batch():
        for _ in range(BATCH):
            store.append(ex.run(inv, store.next_index))
            next(counter)
        store.flush()

    measured.pedantic(batch, rounds=5, iterations=1)
    if measured.stats is not None and measured.stats.stats is not None:
        measured.extra_info["segments_per_s"] = round(BATCH / measured.stats.stats.median)
    assert store.count() == next(counter)


@pytest.mark.benchmark(group="run-loop")
def test_run_loop_baseline(measured, setup):
    """Executing what `poe run --repeat` executes (a fresh seed per segment), without recording."""
    from poe.provider.run import segment_seed

    ex, _ = setup
    inv = Invocation.build("add", params=[Value.of("i32", 1), Value.of("i32", 2)], argv=["funcs.wasm", "1", "2"])

    def batch():
        for i in range(BATCH):
            ex.run(inv.with_seed(segment_seed(inv.seed, i)), i)

    measured.pedantic(batch, rounds=5, iterations=1)


@pytest.mark.benchmark(group="run-loop")
def test_run_loop_poe(measured, setup, tmp_path):
    """The loop `poe run funcs.wasm --invoke add --arg 1 --arg 2 --repeat N` runs, store and all."""
    from poe.provider.run import run_batch

    ex, _ = setup
    inv = Invocation.build("add", params=[Value.of("i32", 1), Value.of("i32", 2)], argv=["funcs.wasm", "1", "2"])
    rounds = itertools.count()

    def batch():
        summary, _ = run_batch(ex, inv, str(tmp_path / f"loop{next(rounds)}.poe"), BATCH)
        assert summary["totals"]["segments"] == BATCH

    measured.pedantic(batch, rounds=5, iterations=1)
    if measured.stats is not None and measured.stats.stats is not None:
        measured.extra_info["segments_per_s"] = round(BATCH / measured.stats.stats.median)

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

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


# -- recording customer requests (spec §14): signed requests against the same calls unsigned ------

REQUESTS = 2000
CALLS = {"trivial": ("add", [Value.of("i32", 1), Value.of("i32", 2)]), "work": ("work", [Value.of("i32", 20_000)])}


@pytest.fixture(scope="module")
def requested():
    """For each workload: the executor, its deal, and REQUESTS (call, signed request) pairs, one
    customer's sequences 0..REQUESTS-1, each call with its own seed."""
    from poe.crypto.schemes import get_scheme
    from poe.protocol.deal import Deal
    from poe.protocol.request import sign_request
    from poe.provider.run import segment_seed

    cm, service = CostModel.current(), Service(FUNCS)
    k1 = get_scheme("secp256k1")
    provider, customer = k1.generate_key(b"bench provider key seed, 32 bytes+"), k1.generate_key(b"bench customer key seed, 32 bytes+")
    deal = Deal("bench", "secp256k1", k1.public_key(provider), service.digest, cm.digest, (1, 0, 0), 0, {"kind": "forfeit"})
    out = {}
    for name, (export, params) in CALLS.items():
        base = Invocation.build(export, params=params)
        calls = [base.with_seed(segment_seed(base.seed, i)) for i in range(REQUESTS)]
        items = [(c, sign_request(customer, chain_id=1, deal=deal.digest, sequence=i, invocation=c.call_digest, fuel_budget=10**9,
                                  not_before=0, not_after=9)) for i, c in enumerate(calls)]
        out[name] = (Executor(service, cm), deal, base, items)
    return out


@pytest.mark.parametrize("workload", list(CALLS))
@pytest.mark.benchmark(group="requests")
def test_requests_baseline(measured, requested, workload, tmp_path):
    """`run_batch` of the same calls, anonymous (what `poe run --repeat` records)."""
    from poe.provider.run import run_batch

    ex, _, base, _ = requested[workload]
    rounds = itertools.count()
    measured.group = f"requests-{workload}"
    measured.pedantic(lambda: run_batch(ex, base, str(tmp_path / f"b{next(rounds)}.poe"), REQUESTS), rounds=5, iterations=1,
                       warmup_rounds=1)


@pytest.mark.parametrize("workload", list(CALLS))
@pytest.mark.benchmark(group="requests")
def test_requests_poe(measured, requested, workload, tmp_path):
    """`run_requests`: every request's signature recovered and its terms checked, each call run as
    its answer (invocation version 2) and recorded with its (customer, sequence)."""
    from poe.provider.run import run_requests

    ex, deal, _, items = requested[workload]
    rounds = itertools.count()
    measured.group = f"requests-{workload}"
    measured.pedantic(lambda: run_requests(ex, items, deal, str(tmp_path / f"r{next(rounds)}.poe")), rounds=5, iterations=1,
                       warmup_rounds=1)  # the warm-up starts the signature worker, once per process
    if measured.stats is not None and measured.stats.stats is not None:
        measured.extra_info["segments_per_s"] = round(REQUESTS / measured.stats.stats.median)

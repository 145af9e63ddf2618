"""The auditor's cost against the provider's, as the epoch grows (10^3, 10^4, 10^5 segments).

Provider: execute every segment of the epoch and record it (the baseline). Auditor: draw the
challenge (epsilon 0.01, delta 0.001: 688 weighted + 16 uniform samples), verify every opening
and re-execute the sampled segments. The openings are prepared by the provider outside the
timing. The bundled Rust workload aggregates a small CSV per segment.
"""

from __future__ import annotations

import os
import time
from fractions import Fraction

import pytest

from poe import CostModel, Executor, Invocation, Service, TraceStore
from poe.protocol.attestation import EMPTY_ROOT, Envelope, Statement, consistency_digest
from poe.audit.verifier import audit
from poe.provider.respond import open_targets
from poe.protocol.challenge import Challenge
from poe.protocol.claim import Claim
from poe.protocol.deal import Deal
from poe.demo import demo_csv, demo_module
from poe.crypto.schemes import get_scheme

SIZES = [int(s) for s in os.environ.get("POE_BENCH_AUDIT_SIZES", "1000,10000,100000").split(",")]
SERVICE = Service(demo_module(), name="csv_agg.wasm")
CM = CostModel.current()
SCHEME = get_scheme("secp256k1")
SK = SCHEME.generate_key(b"poe audit benchmark provider key v1")
PK = SCHEME.public_key(SK)
BEACON = bytes(range(100, 132))
_PREPARED: dict[int, tuple] = {}


def _prepare(n: int, tmp_path_factory) -> tuple:
    if n in _PREPARED:
        return _PREPARED[n]
    path = str(tmp_path_factory.mktemp(f"epoch{n}") / "p.poe")
    ex = Executor(SERVICE, CM)
    inputs = [demo_csv(i % 997, 4 + i % 13) for i in range(997)]
    started = time.perf_counter()
    with TraceStore.create_or_open(path, CM) as store:
        store.register_service(SERVICE)
        for i in range(n):
            store.append(ex.run(Invocation.build(argv=["csv_agg"], stdin=inputs[i % 997], seed=i.to_bytes(32, "little")), store.next_index))
    provider_seconds = time.perf_counter() - started
    store = TraceStore.open(path, seal=True)
    sealed = store.seal()
    st = Statement(SCHEME.name, CM.digest, SERVICE.digest, PK, "bench", 0, 0, n, sealed.root, EMPTY_ROOT, consistency_digest(None), 0)
    env = Envelope(st.encode(), SCHEME.sign(SK, st.digest), SCHEME.identity(PK), CM.to_json(), None)
    deal = Deal.from_json({"format": "poe deal v1", "deal_id": "bench", "provider": {"scheme": SCHEME.name, "public_key": PK.hex()},
                           "module_digest": SERVICE.digest.hex(), "cost_model_digest": CM.digest.hex(), "prices": {"fuel": 1, "mem": 0, "io": 10},
                           "subscription": 0, "penalty": {"kind": "forfeit"}})
    claim = Claim(deal, env, deal.amount(st.totals))
    challenge = Challenge.draw(claim, BEACON, Fraction(1, 100), Fraction(1, 1000), 16)
    openings = open_targets(store, claim, challenge)
    store.close()
    _PREPARED[n] = (provider_seconds, claim, openings)
    return _PREPARED[n]


@pytest.mark.parametrize("n", SIZES)
@pytest.mark.benchmark(group="audit-vs-provider")
def test_audit_poe(measured, n, tmp_path_factory):
    provider_seconds, claim, openings = _prepare(n, tmp_path_factory)

    def auditor():
        challenge = Challenge.draw(claim, BEACON, Fraction(1, 100), Fraction(1, 1000), 16)
        verdict = audit(claim, challenge, openings, SERVICE, deal=claim.deal, jobs=1)
        assert verdict.verdict == "ACCEPT"
        return verdict

    verdict = measured.pedantic(auditor, rounds=3, iterations=1)
    measured.extra_info["segments"] = n
    measured.extra_info["provider_s"] = round(provider_seconds, 2)
    measured.extra_info["re_executed"] = verdict.checked["re_executed"]
    if measured.stats is not None and measured.stats.stats is not None:
        measured.extra_info["auditor_over_provider"] = round(measured.stats.stats.median / provider_seconds, 4)


# -- customers (spec §14.3): every segment answers a signed request; weighted targets land in the
# bill tree, each opening its leaf, neighbours and range proof, and each request's signature and
# terms are checked. Provider: check every request and record it (run_requests), then sign the
# version-2 statement; auditor: as above, plus the bill checks.

CUSTOMERS = [get_scheme("secp256k1").generate_key(f"poe audit benchmark customer {i:02d} key".encode()) for i in range(8)]
_PREPARED_REQUESTED: dict[int, tuple] = {}


def _prepare_requested(n: int, tmp_path_factory) -> tuple:
    if n in _PREPARED_REQUESTED:
        return _PREPARED_REQUESTED[n]
    from poe.protocol.request import sign_request
    from poe.provider.attest import make_claim, sign_epoch
    from poe.provider.run import run_requests

    path = str(tmp_path_factory.mktemp(f"requested{n}") / "p.poe")
    ex = Executor(SERVICE, CM)
    deal = Deal.from_json({"format": "poe deal v2", "deal_id": "bench", "provider": {"scheme": SCHEME.name, "public_key": PK.hex()},
                           "module_digest": SERVICE.digest.hex(), "cost_model_digest": CM.digest.hex(), "prices": {"fuel": 1, "mem": 0, "io": 10},
                           "subscription": 0, "penalty": {"kind": "forfeit"}, "customers": {"anonymous": False, "window": 1}})
    inputs = [demo_csv(i % 997, 4 + i % 13) for i in range(997)]
    calls = [Invocation.build(argv=["csv_agg"], stdin=inputs[i % 997], seed=i.to_bytes(32, "little")) for i in range(n)]
    items = [(c, sign_request(CUSTOMERS[i % 8], chain_id=1, deal=deal.digest, sequence=i // 8, invocation=c.call_digest,
                              fuel_budget=CM.limits.fuel, not_before=0, not_after=0)) for i, c in enumerate(calls)]
    started = time.perf_counter()
    for at in range(0, n, 10_000):  # as a provider takes them: batches of requests
        run_requests(ex, items[at : at + 10_000], deal, path)
    provider_seconds = time.perf_counter() - started
    with TraceStore.open(path, seal=True) as store:
        claim = make_claim(sign_epoch(store, SCHEME, SK, deal.deal_id, issued_at=0), deal)
        challenge = Challenge.draw(claim, BEACON, Fraction(1, 100), Fraction(1, 1000), 16)
        openings = open_targets(store, claim, challenge)
    _PREPARED_REQUESTED[n] = (provider_seconds, claim, openings)
    return _PREPARED_REQUESTED[n]


@pytest.mark.parametrize("n", SIZES)
@pytest.mark.benchmark(group="audit-vs-provider-requested")
def test_audit_requested_poe(measured, n, tmp_path_factory):
    provider_seconds, claim, openings = _prepare_requested(n, tmp_path_factory)
    assert claim.statement.bill_root is not None and all(o.bill is not None for o in openings if o.target[0] == "w")

    def auditor():
        challenge = Challenge.draw(claim, BEACON, Fraction(1, 100), Fraction(1, 1000), 16)
        verdict = audit(claim, challenge, openings, SERVICE, deal=claim.deal, jobs=1)
        assert verdict.verdict == "ACCEPT", verdict.problems
        return verdict

    verdict = measured.pedantic(auditor, rounds=3, iterations=1)
    measured.extra_info["segments"] = n
    measured.extra_info["provider_s"] = round(provider_seconds, 2)
    measured.extra_info["re_executed"] = verdict.checked["re_executed"]
    if measured.stats is not None and measured.stats.stats is not None:
        measured.extra_info["auditor_over_provider"] = round(measured.stats.stats.median / provider_seconds, 4)

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

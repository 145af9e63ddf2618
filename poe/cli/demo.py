"""`poe demo`: the whole loop for an honest and a cheating provider, side by side."""

from __future__ import annotations

import dataclasses
import os
import random
import secrets
import shutil
import sys
import tempfile
import time
from fractions import Fraction

import click

from poe.audit.fraud import check_fraud_proof
from poe.audit.settle import settle
from poe.audit.verifier import audit
from poe.provider.attest import make_claim, sign_epoch
from poe.provider.respond import open_states, open_targets
from poe.protocol.challenge import Challenge
from poe.protocol.deal import Deal
from poe.formats.costmodel import CostModel
from poe.demo import demo_csv, demo_module, step_module
from poe.wasm.executor import Execution, Executor, Service
from poe.formats.invocation import Invocation
from poe.crypto.schemes import get_scheme
from poe.store.tracestore import TraceStore
from poe.errors import InputError
from ._options import emit_json, info, json_option

DEAL_ID = "demo-deal"


@click.command("demo")
@click.option("--segments", type=click.IntRange(10, 1_000_000), default=1000, show_default=True, help="Segments each provider runs.")
@click.option("--epsilon", default="0.01", show_default=True, help="Overbilling fraction the audit must detect.")
@click.option("--delta", default="0.001", show_default=True, help="Allowed probability of missing it.")
@click.option("--cheat-rate", type=click.FloatRange(0.0, 1.0), default=0.10, show_default=True, help="Fraction of segments whose fuel the cheat triples.")
@click.option("--seed", type=int, default=None, help="Beacon seed for the auditor (default: fresh randomness each run).")
@click.option("--keep", type=click.Path(file_okay=False), default=None, help="Keep stores, claims, verdicts and payouts in this directory.")
@click.option("--stateful/--no-stateful", default=True, show_default=True, help="Also run the stateful part: a long computation cut into steps, with a provider that bills steps twice.")
@json_option
def demo(segments, epsilon, delta, cheat_rate, seed, keep, stateful, as_json):
    """Run → seal → attest → claim → challenge → respond → audit → settle, twice.

    Two providers run the same invocations of csv_agg.wasm (a CSV aggregator compiled from
    Rust) into their own SQLite stores. The cheating one triples the fuel of some of its
    records before committing them. Each seals its epoch, signs it (secp256k1) and claims
    payment under the same deal; the auditor challenges each claim with an unpredictable
    beacon, checks the openings and re-executes them, and settles.

    The stateful part (--no-stateful skips it) runs step_sort.wasm, which sorts 1,048,576
    numbers in 2,689 steps on one instance, every step a segment whose record commits the state
    before and after it. The cheating provider re-runs some steps from their old state and bills
    them twice; the auditor's state-chain check catches it and proves it.
    """
    workdir = keep or tempfile.mkdtemp(prefix="poe-demo-")
    os.makedirs(workdir, exist_ok=True)
    if keep and any(name.endswith(".poe") for name in os.listdir(workdir)):
        raise InputError(f"--keep {keep} already holds a demo's stores; give an empty or new directory")
    try:
        result = _demo(workdir, segments, Fraction(epsilon), Fraction(delta), cheat_rate, seed, as_json, keep is not None)
        if stateful:
            result["stateful"] = _stateful_demo(workdir, bytes.fromhex(result["beacon"]), as_json, keep is not None)
    finally:
        if keep is None:
            shutil.rmtree(workdir, ignore_errors=True)
    if as_json:
        emit_json(result)


def _demo(workdir, segments, epsilon, delta, cheat_rate, seed, quiet, keep) -> dict:
    say = (lambda *_: None) if quiet else info
    cm = CostModel.current()
    service = Service(demo_module(), name="csv_agg.wasm")
    executor = Executor(service, cm)
    scheme = get_scheme("secp256k1")
    say(f"poe demo: {segments} segments of csv_agg.wasm (Rust, wasm32-wasi) per provider")
    say(f"          cost model {cm.name}")

    started = time.perf_counter()
    inputs = [Invocation.build(argv=["csv_agg"], stdin=demo_csv(i, 20 + (i * 37) % 480), seed=i.to_bytes(32, "little")) for i in range(segments)]
    with _progress(segments, "executing", quiet) as bar:
        honest_runs = []
        for i, inv in enumerate(inputs):
            honest_runs.append(executor.run(inv, i))
            bar.update(1)
    execute_seconds = time.perf_counter() - started

    rng = random.Random(f"cheat-{segments}")
    cheated = set()
    providers = {}
    for role in ("honest", "cheating"):
        sk, pk, deal = _provider(scheme, service, cm, f"{DEAL_ID}-{role}", {"fuel": 1, "mem": 0, "io": 10}, 100_000)
        path = os.path.join(workdir, f"{role}.poe")
        with TraceStore.create_or_open(path, cm) as store:
            store.register_service(service)
            for e in honest_runs:
                if role == "cheating" and rng.random() < cheat_rate:
                    cheated.add(e.record.index)
                    e = Execution(dataclasses.replace(e.record, fuel=e.record.fuel * 3), e.invocation, e.output)
                store.append(e)
        store, sealed, claim = _seal_and_claim(path, scheme, sk, deal)
        providers[role] = (store, claim)
        say(f"  {role:>8} provider {scheme.identity(pk)}: sealed {sealed.root.size} segments, "
            f"root {sealed.root.hash.hex()[:16]}..., claims {claim.amount:,} units")

    beacon = (random.Random(seed).randbytes(32) if seed is not None else secrets.token_bytes(32))
    auditor = _auditor_key(scheme)
    say(f"auditor: beacon {beacon.hex()[:16]}... (unpredictable to the providers when they signed)")
    verdicts, summary = [], {}
    for role, (store, claim) in providers.items():
        t0 = time.perf_counter()
        challenge = Challenge.draw(claim, beacon, epsilon, delta, 16)
        openings = open_targets(store, claim, challenge)
        respond_seconds = time.perf_counter() - t0
        t1 = time.perf_counter()
        verdict = audit(claim, challenge, openings, service, deal=claim.deal)  # small segments: one process is fastest
        audit_seconds = time.perf_counter() - t1
        store.close()
        v = verdict.sign(*auditor, int(time.time()))
        verdicts.append(v)
        summary[role] = {
            "verdict": verdict.verdict, "reason": verdict.reason, "claimed": claim.amount,
            "samples": len(challenge.weighted) + len(challenge.uniform), "re_executed": verdict.checked.get("re_executed", 0),
            "audit_seconds": round(audit_seconds, 3), "respond_seconds": round(respond_seconds, 3),
        }
        say(f"  {role:>8}: {verdict.verdict} after {summary[role]['samples']} samples "
            f"({summary[role]['re_executed']} segments re-executed in {audit_seconds:.2f} s)")
        if verdict.fraud_proof:
            proven = check_fraud_proof(verdict.fraud_proof, service)
            diffs = ", ".join(f"{k} {a:,} vs {b:,}" for k, (a, b) in proven["differences"].items() if isinstance(a, int))
            say(f"            fraud proof re-checked independently: segment {proven['segment']} ({diffs})")
            summary[role]["fraud_proof_segment"] = proven["segment"]
        if keep:
            _keep(workdir, f"{role}-verdict.json", v)
            _keep(workdir, f"{role}-claim.json", claim.to_json())
    rows = _settle(verdicts, providers, auditor)
    payouts = {"format": "poe payouts v1", "payouts": rows, "total": sum(r["payout"] for r in rows)}
    if keep:
        _keep(workdir, "payouts.json", payouts)
    say(f"guarantee: {challenge.guarantee()}")
    say("settlement:")
    for row, role in zip(payouts["payouts"], providers):
        say(f"  {role:>8}: claimed {row['claimed']:,} -> payout {row['payout']:,} ({row['status']})")
    say(f"the cheat tripled the fuel of {len(cheated)} of {segments} segments; executing everything took "
        f"{execute_seconds:.2f} s, each audit {summary['honest']['audit_seconds']:.2f} s")
    return {"segments": segments, "epsilon": str(epsilon), "delta": str(delta), "beacon": beacon.hex(), "cheated_segments": len(cheated),
            "guarantee": challenge.guarantee(), "providers": summary, "payouts": payouts, "execute_seconds": round(execute_seconds, 3)}


STEP_EPSILON, STEP_DELTA, STEP_UNIFORM = Fraction(1, 20), Fraction(1, 100), 8
REPEAT_EVERY = 25  # the cheat re-runs and re-bills one step in this many


def _stateful_demo(workdir: str, beacon: bytes, quiet: bool, keep: bool) -> dict:
    say = (lambda *_: None) if quiet else info
    cm = CostModel.current()
    service = Service(step_module(), name="step_sort.wasm")
    executor = Executor(service, cm)
    scheme = get_scheme("secp256k1")
    say("")
    say("stateful: step_sort.wasm (C) sorts 1,048,576 numbers in steps on one instance per provider;")
    say("          every step is a segment whose record commits the state (memory, globals, clock) before and after it")
    providers, summary = {}, {}
    for role in ("honest", "cheating"):
        sk, pk, deal = _provider(scheme, service, cm, f"{DEAL_ID}-steps-{role}", {"fuel": 1, "mem": 0, "io": 0}, 0)
        path = os.path.join(workdir, f"{role}-steps.poe")
        started = time.perf_counter()
        repeated = 0
        with TraceStore.create_or_open(path, cm) as store, executor.session() as session, _progress(2689, f"{role} steps", quiet) as bar:
            store.register_service(service)
            store.put_snapshot(session.state, session.image())
            while True:
                before = (session.state, session.image()) if role == "cheating" and store.next_index % REPEAT_EVERY == REPEAT_EVERY - 1 else None
                e = session.run(Invocation.build("step"), store.next_index)
                store.append(e)
                bar.update(1)
                if before is not None:  # bill the step again: re-run it from the state it started from
                    with executor.session(before) as again:
                        store.put_snapshot(*before)
                        store.append(again.run(Invocation.build("step"), store.next_index))
                    repeated += 1
                if e.output.results[0].bits == 0:
                    break
            stdout = e.output.stdout.data.decode(errors="replace").strip()
            store.flush()
            usage = store.state_usage()
        run_seconds = time.perf_counter() - started
        store, sealed, claim = _seal_and_claim(path, scheme, sk, deal)
        providers[role] = (store, claim)
        stored = usage["bytes"]
        summary[role] = {"steps": sealed.end_index, "repeated_steps": repeated, "run_seconds": round(run_seconds, 3),
                         "state_bytes_per_step": round(stored / sealed.end_index), "guest_output": stdout, "claimed": claim.amount}
        say(f"  {role:>8} provider: {sealed.end_index:,} steps in {run_seconds:.2f} s ({stdout!r}); "
            f"state kept {stored / sealed.end_index / 1024:,.1f} KiB/step; claims {claim.amount:,} units"
            + (f" ({repeated} steps billed twice)" if repeated else ""))
    genesis = executor.genesis()
    auditor = _auditor_key(scheme)
    verdicts = []
    for role, (store, claim) in providers.items():
        t0 = time.perf_counter()
        challenge = Challenge.draw(claim, beacon, STEP_EPSILON, STEP_DELTA, STEP_UNIFORM)
        openings = open_targets(store, claim, challenge)
        states = open_states(store, openings, genesis)
        store.close()
        verdict = audit(claim, challenge, openings, service, deal=claim.deal, states=states)
        seconds = time.perf_counter() - t0
        summary[role].update({"verdict": verdict.verdict, "reason": verdict.reason, "samples": len(challenge.weighted) + len(challenge.uniform),
                              "re_executed": verdict.checked.get("re_executed", 0), "respond_and_audit_seconds": round(seconds, 3)})
        say(f"  {role:>8}: {verdict.verdict} after {summary[role]['samples']} samples ({summary[role]['re_executed']} steps restored "
            f"from their pre-states and re-executed; respond + audit {seconds:.2f} s)")
        if verdict.fraud_proof:
            proven = check_fraud_proof(verdict.fraud_proof, service)
            say(f"            fraud proof ({proven['kind']}) re-checked independently: segment {proven['segment']}: "
                + proven.get("reason", ", ".join(proven.get("differences", {}))))
            summary[role]["fraud_proof_segment"] = proven["segment"]
        verdicts.append(verdict.sign(*auditor, int(time.time())))
        if keep:
            _keep(workdir, f"{role}-steps-verdict.json", verdicts[-1])
            _keep(workdir, f"{role}-steps-claim.json", claim.to_json())
    rows = _settle(verdicts, providers, auditor)
    say(f"guarantee: {Challenge.draw(providers['honest'][1], beacon, STEP_EPSILON, STEP_DELTA, STEP_UNIFORM).guarantee()}")
    say("settlement: " + "; ".join(f"{role} {row['payout']:,} ({row['status']})" for role, row in zip(providers, rows)))
    payouts = {"format": "poe payouts v1", "payouts": rows, "total": sum(r["payout"] for r in rows)}
    if keep:
        _keep(workdir, "steps-payouts.json", payouts)
    return {"epsilon": str(STEP_EPSILON), "delta": str(STEP_DELTA), "providers": summary, "payouts": payouts}


def _provider(scheme, service: Service, cm: CostModel, deal_id: str, prices: dict[str, int], subscription: int) -> tuple[bytes, bytes, Deal]:
    """A fresh provider key and the deal it works under (penalty: a slash of 5,000,000)."""
    sk = scheme.generate_key()
    pk = scheme.public_key(sk)
    deal = Deal.from_json({
        "format": "poe deal v1", "deal_id": deal_id, "provider": {"scheme": scheme.name, "public_key": pk.hex()},
        "module_digest": service.digest.hex(), "cost_model_digest": cm.digest.hex(),
        "prices": prices, "subscription": subscription, "penalty": {"kind": "slash", "amount": 5_000_000},
    })
    return sk, pk, deal


def _seal_and_claim(path: str, scheme, sk: bytes, deal: Deal):
    """Seal the store's open epoch, sign its head and claim it: (store open for reading, seal, claim)."""
    store = TraceStore.open(path, seal=True)
    envelope = sign_epoch(store, scheme, sk, deal.deal_id)
    return store, store.seal(envelope.statement.epoch), make_claim(envelope, deal)


def _settle(verdicts: list, providers: dict, auditor: tuple) -> list:
    """Each provider's signed verdict settled under its own deal, trusting the demo's auditor."""
    trusted = [(auditor[0].name, auditor[0].public_key(auditor[1]))]
    return [settle([v], claim.deal, trusted)["payouts"][0] for v, (_, claim) in zip(verdicts, providers.values())]


def _auditor_key(scheme) -> tuple:
    """The auditor's own key: its verdicts are what settlement trusts."""
    return scheme, scheme.generate_key()


def _keep(workdir: str, name: str, doc: object) -> None:
    import json

    with open(os.path.join(workdir, name), "w") as f:
        json.dump(doc, f, indent=2)


class _progress:
    def __init__(self, n: int, label: str, quiet: bool) -> None:
        self.bar = None if quiet or not sys.stderr.isatty() else click.progressbar(length=n, label=label, file=sys.stderr)

    def __enter__(self):
        if self.bar is not None:
            self.bar.__enter__()
        return self

    def __exit__(self, *exc):
        if self.bar is not None:
            self.bar.__exit__(*exc)
        return False

    def update(self, n: int) -> None:
        if self.bar is not None:
            self.bar.update(n)

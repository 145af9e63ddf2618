"""`poe demo`: the whole loop for an honest and a cheating provider, side by side, and the bundled
workloads it runs: a Rust CSV aggregator with a deterministic input generator, and a stateful C
program that sorts a million numbers in steps.

The loop is library code (the CLI command only parses options and prints): run, seal, attest,
claim, challenge, respond, audit (re-checking any fraud proof independently) and settle the
auditor-signed verdicts. A third part shows customers (docs/spec.md §14): they sign the requests
a provider may bill, and check their own bills.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import os
import random
import secrets
import time
from fractions import Fraction
from importlib import resources
from typing import Any, Callable, ContextManager

__all__ = ["demo_module", "step_module", "demo_csv", "run_demo", "run_customer_demo", "run_stateful_demo"]

Say = Callable[[str], None]
# progress(n, label) -> a context whose value is tick(k): the CLI shows a bar, tests nothing.
Progress = Callable[[int, str], ContextManager[Callable[[int], None]]]

DEAL_ID = "demo-deal"
STEP_EPSILON, STEP_DELTA, STEP_UNIFORM = Fraction(1, 20), Fraction(1, 100), 8
REPEAT_EVERY = 25  # the stateful cheat re-runs and re-bills one step in this many
SORT_STEPS = 2689
CUSTOMERS, CUSTOMER_REQUESTS = 4, 48  # the customers part: 4 customers sign 12 requests each


@contextlib.contextmanager
def no_progress(n: int, label: str):
    yield lambda k: None


_REGIONS = ("north", "south", "east", "west", "central")
_PRODUCTS = ("anvil", "chisel", "dowel", "easel", "file", "gimlet", "hammer")


def demo_module() -> bytes:
    """csv_agg.wasm: built from vectors/modules/csv_agg.rs (a test checks the copies agree)."""
    return resources.files("poe").joinpath("_data/csv_agg.wasm").read_bytes()


def step_module() -> bytes:
    """step_sort.wasm: built from vectors/modules/step_sort.c (a test checks the copies agree)."""
    return resources.files("poe").joinpath("_data/step_sort.wasm").read_bytes()


def demo_csv(seed: int, rows: int) -> bytes:
    """A sales CSV of `rows` rows, the same bytes for the same seed on every machine."""
    state = (seed * 0x9E3779B97F4A7C15 + 0x2545F4914F6CDD1D) & 0xFFFFFFFFFFFFFFFF or 1
    lines = ["region,product,units,price_cents"]
    for _ in range(rows):
        values = []
        for _ in range(4):
            state ^= (state << 13) & 0xFFFFFFFFFFFFFFFF
            state ^= state >> 7
            state ^= (state << 17) & 0xFFFFFFFFFFFFFFFF
            values.append(state)
        lines.append(f"{_REGIONS[values[0] % 5]},{_PRODUCTS[values[1] % 7]},{1 + values[2] % 40},{100 + values[3] % 9900}")
    return ("\n".join(lines) + "\n").encode()


class _Demo:
    """What both parts share: the scheme, the auditor's key, the work directory."""

    def __init__(self, workdir: str, say: Say, progress: Progress, keep: bool) -> None:
        from poe.crypto.schemes import get_scheme
        from poe.formats.costmodel import CostModel

        self.workdir, self.say, self.progress, self.keep = workdir, say, progress, keep
        self.cm = CostModel.current()
        self.scheme = get_scheme("secp256k1")
        self.auditor_sk = self.scheme.generate_key()  # the auditor's own key: settlement trusts its verdicts

    def provider(self, service: Any, deal_id: str, prices: dict[str, int], subscription: int,
                 customers: dict[str, Any] | None = None) -> tuple[bytes, Any]:
        """A fresh provider key and the deal it works under (penalty: a slash of 5,000,000); with
        `customers`, a version-2 deal under that billing policy (spec §14)."""
        from poe.protocol.deal import Deal

        sk = self.scheme.generate_key()
        policy = {"format": "poe deal v2", "customers": customers} if customers is not None else {"format": "poe deal v1"}
        deal = Deal.from_json({
            **policy, "deal_id": deal_id,
            "provider": {"scheme": self.scheme.name, "public_key": self.scheme.public_key(sk).hex()},
            "module_digest": service.digest.hex(), "cost_model_digest": self.cm.digest.hex(),
            "prices": {"fuel": 0, "mem": 0, "io": 0, **prices}, "subscription": subscription,
            "penalty": {"kind": "slash", "amount": 5_000_000},
        })
        return sk, deal

    def seal_and_claim(self, path: str, sk: bytes, deal: Any, wrap: Callable[[Any], Any] | None = None) -> tuple[Any, Any, Any]:
        """Seal the store's open epoch, sign its head and claim it: (store open for reading, seal,
        claim). `wrap` puts the provider's own view around its store (a bill tree it built)."""
        from poe.provider.attest import make_claim, sign_epoch
        from poe.store.tracestore import TraceStore

        store = TraceStore.open(path, seal=True)
        if wrap is not None:
            store = wrap(store)
        envelope = sign_epoch(store, self.scheme, sk, deal.deal_id)
        return store, store.seal(envelope.statement.epoch), make_claim(envelope, deal)

    def audit(self, role: str, store: Any, claim: Any, challenge: Any, service: Any, genesis: Any = None) -> tuple[Any, dict, dict[str, float]]:
        """Respond from the provider's store, audit, sign the verdict: (verdict, signed doc, seconds)."""
        from poe.audit.verifier import audit
        from poe.provider.respond import respond

        t0 = time.perf_counter()
        answer = respond(store, claim, challenge, genesis)
        store.close()
        t1 = time.perf_counter()
        verdict = audit(claim, challenge, list(answer.openings), service, deal=claim.deal, states=answer.states)
        t2 = time.perf_counter()
        return verdict, verdict.sign(self.scheme, self.auditor_sk, int(time.time())), {"respond": t1 - t0, "audit": t2 - t1}

    def recheck(self, verdict: Any, service: Any) -> dict | None:
        """A fraud proof, re-checked as anyone would: from the proof file and the module alone."""
        from poe.audit.fraud import check_fraud_proof

        return check_fraud_proof(verdict.fraud_proof, service, verdict.claim.deal) if verdict.fraud_proof else None

    def settle(self, verdicts: list[dict], claims: list[Any]) -> dict:
        from poe.audit.settle import settle

        trusted = [(self.scheme.name, self.scheme.public_key(self.auditor_sk))]
        rows = [settle([v], claim.deal, trusted)["payouts"][0] for v, claim in zip(verdicts, claims)]
        return {"format": "poe payouts v1", "payouts": rows, "total": sum(r["payout"] for r in rows)}

    def keep_file(self, name: str, doc: object) -> None:
        if self.keep:
            from poe._io import write_new

            write_new(os.path.join(self.workdir, name), (json.dumps(doc, indent=2) + "\n").encode(), name)


def run_demo(workdir: str, segments: int, epsilon: Fraction, delta: Fraction, cheat_rate: float, seed: int | None, *,
             say: Say, progress: Progress = no_progress, keep: bool = False) -> dict:
    """The stateless part: csv_agg.wasm, an honest provider and one that triples some fuel."""
    from poe.formats.moduleset import Service
    from poe.wasm.executor import Executor

    d = _Demo(workdir, say, progress, keep)
    service = Service(demo_module(), name="csv_agg.wasm")
    say(f"poe demo: {segments} segments of csv_agg.wasm (Rust, wasm32-wasi) per provider")
    say(f"          cost model {d.cm.name}")
    started = time.perf_counter()
    runs = _execute_csv(Executor(service, d.cm), segments, progress)
    execute_seconds = time.perf_counter() - started
    providers, cheated = _csv_providers(d, service, runs, cheat_rate)
    beacon = random.Random(seed).randbytes(32) if seed is not None else secrets.token_bytes(32)
    say(f"auditor: beacon {beacon.hex()[:16]}... (unpredictable to the providers when they signed)")
    from poe.protocol.challenge import Challenge

    verdicts, summary = [], {}
    for role, (store, claim) in providers.items():
        challenge = Challenge.draw(claim, beacon, epsilon, delta, 16)
        verdict, signed, seconds = d.audit(role, store, claim, challenge, service)  # small segments: one process is fastest
        verdicts.append(signed)
        summary[role] = {"verdict": verdict.verdict, "reason": verdict.reason, "claimed": claim.amount,
                         "samples": len(challenge.weighted) + len(challenge.uniform), "re_executed": verdict.checked.get("re_executed", 0),
                         "audit_seconds": round(seconds["audit"], 3), "respond_seconds": round(seconds["respond"], 3)}
        say(f"  {role:>8}: {verdict.verdict} after {summary[role]['samples']} samples "
            f"({summary[role]['re_executed']} segments re-executed in {seconds['audit']:.2f} s)")
        proven = d.recheck(verdict, service)
        if proven:
            diffs = ", ".join(f"{k} {a:,} vs {b:,}" for k, (a, b) in proven["differences"].items() if isinstance(a, int))
            say(f"            fraud proof re-checked independently: segment {proven['segment']} ({diffs})")
            summary[role]["fraud_proof_segment"] = proven["segment"]
        d.keep_file(f"{role}-verdict.json", signed)
        d.keep_file(f"{role}-claim.json", claim.to_json())
    payouts = d.settle(verdicts, [claim for _, claim in providers.values()])
    d.keep_file("payouts.json", payouts)
    say(f"guarantee: {challenge.guarantee()}")
    say("settlement:")
    for row, role in zip(payouts["payouts"], providers):
        say(f"  {role:>8}: claimed {row['claimed']:,} -> payout {row['payout']:,} ({row['status']})")
    say(f"the cheat tripled the fuel of {len(cheated)} of {segments} segments; executing everything took "
        f"{execute_seconds:.2f} s, each audit {summary['honest']['audit_seconds']:.2f} s")
    return {"segments": segments, "epsilon": str(epsilon), "delta": str(delta), "beacon": beacon.hex(), "cheated_segments": len(cheated),
            "guarantee": challenge.guarantee(), "providers": summary, "payouts": payouts, "execute_seconds": round(execute_seconds, 3)}


def _execute_csv(executor: Any, segments: int, progress: Progress) -> list:
    from poe.formats.invocation import Invocation

    inputs = [Invocation.build(argv=["csv_agg"], stdin=demo_csv(i, 20 + (i * 37) % 480), seed=i.to_bytes(32, "little")) for i in range(segments)]
    with progress(segments, "executing") as tick:
        runs = []
        for i, inv in enumerate(inputs):
            runs.append(executor.run(inv, i))
            tick(1)
    return runs


def _csv_providers(d: _Demo, service: Any, runs: list, cheat_rate: float) -> tuple[dict, set[int]]:
    """Both providers commit the same executions; the cheat triples some records' fuel first."""
    from poe.formats.execution import Execution
    from poe.store.tracestore import TraceStore

    rng = random.Random(f"cheat-{len(runs)}")
    cheated: set[int] = set()
    providers = {}
    for role in ("honest", "cheating"):
        sk, deal = d.provider(service, f"{DEAL_ID}-{role}", {"fuel": 1, "mem": 0, "io": 10}, 100_000)
        path = os.path.join(d.workdir, f"{role}.poe")
        with TraceStore.create_or_open(path, d.cm) as store:
            store.register_service(service)
            for e in runs:
                if role == "cheating" and rng.random() < cheat_rate:
                    cheated.add(e.record.index)
                    e = Execution(dataclasses.replace(e.record, fuel=e.record.fuel * 3), e.invocation, e.output)
                store.append(e)
        store, sealed, claim = d.seal_and_claim(path, sk, deal)
        providers[role] = (store, claim)
        d.say(f"  {role:>8} provider {d.scheme.identity(d.scheme.public_key(sk))}: sealed {sealed.root.size} segments, "
              f"root {sealed.root.hash.hex()[:16]}..., claims {claim.amount:,} units")
    return providers, cheated


def run_customer_demo(workdir: str, beacon: bytes, epsilon: Fraction, delta: Fraction, cheat_rate: float, seed: int | None, *,
                      say: Say, progress: Progress = no_progress, keep: bool = False, requests: int = CUSTOMER_REQUESTS) -> dict:
    """The customers part (spec §14): customers sign the requests a provider may bill, under a
    version-2 deal that bills signed requests only. The honest provider runs each once; the cheat
    runs them too, then runs a `cheat_rate` share of them again and bills them a second time. The
    audit catches the copies in the bill tree the cheat signed; a customer checks its own bill."""
    from poe.formats.moduleset import Service
    from poe.protocol.challenge import Challenge
    from poe.wasm.executor import Executor

    d = _Demo(workdir, say, progress, keep)
    service = Service(demo_module(), name="csv_agg.wasm")
    executor = Executor(service, d.cm)
    keys = [d.scheme.generate_key(hashlib.sha256(f"poe demo customer {i} of seed {seed}".encode()).digest()) for i in range(CUSTOMERS)]
    addresses = [_address(d.scheme, k) for k in keys]
    calls = _customer_calls(requests)
    rng = random.Random(f"customers-cheat-{requests}")
    twice = sorted(rng.sample(range(requests), max(1, round(cheat_rate * requests)))) if cheat_rate > 0 else []
    say("")
    say(f"customers: {CUSTOMERS} customers each sign {requests // CUSTOMERS} requests (EIP-712, secp256k1) for csv_agg.wasm runs, per provider;")
    say("           the deal (poe deal v2) bills signed requests only, and the attestation signs a bill tree sorted by (customer, sequence)")
    providers, summary = {}, {}
    for role in ("honest", "cheating"):
        providers[role], summary[role] = _customer_provider(d, executor, role, keys, calls, twice if role == "cheating" else [])
    customer = {"honest": _customer_bill(d, "honest", providers["honest"], addresses[0])}
    victim = _address(d.scheme, keys[twice[0] % CUSTOMERS]) if twice else None
    if victim is not None:
        customer["cheating"] = _customer_bill(d, "cheating", providers["cheating"], victim)
    verdicts, challenge, guarantee = [], None, None
    for role, (store, claim) in providers.items():
        challenge = Challenge.draw(claim, beacon, epsilon, delta, 16)
        verdict, signed, seconds = d.audit(role, store, claim, challenge, service)
        verdicts.append(signed)
        summary[role].update({"verdict": verdict.verdict, "reason": verdict.reason, "problems": verdict.problems[:3],
                              "problem_count": len(verdict.problems), "samples": len(challenge.weighted) + len(challenge.uniform),
                              "re_executed": verdict.checked.get("re_executed", 0), "audit_seconds": round(seconds["audit"], 3)})
        line = f"  {role:>8}: {verdict.verdict} after {summary[role]['samples']} samples ({summary[role]['re_executed']} segments re-executed"
        if verdict.verdict == "ACCEPT":
            guarantee = verdict.statement
            say(line + f" in {seconds['audit']:.2f} s)")
        else:
            say(line + f"): {verdict.reason}")
            if verdict.problems:
                say(f"            e.g. {verdict.problems[0]}")
        proven = d.recheck(verdict, service)
        if proven:
            say(f"            fraud proof re-checked independently: segment {proven['segment']}")
            summary[role]["fraud_proof_segment"] = proven["segment"]
        d.keep_file(f"customers-{role}-verdict.json", signed)
        d.keep_file(f"customers-{role}-claim.json", claim.to_json())
    assert challenge is not None
    payouts = d.settle(verdicts, [claim for _, claim in providers.values()])
    d.keep_file("customers-payouts.json", payouts)
    say(f"guarantee: {guarantee or challenge.guarantee()}")
    say("settlement: " + "; ".join(f"{role} {row['payout']:,} ({row['status']})" for role, row in zip(providers, payouts["payouts"])))
    return {"customers": addresses, "requests": requests, "epsilon": str(epsilon), "delta": str(delta), "billed_twice": len(twice),
            "guarantee": guarantee, "providers": summary, "bills": customer, "payouts": payouts}


def _address(scheme: Any, sk: bytes) -> str:
    return scheme.identity(scheme.public_key(sk))


def _customer_calls(n: int) -> list:
    from poe.formats.invocation import Invocation

    return [Invocation.build(argv=["csv_agg"], stdin=demo_csv(1_000_000 + i, 20 + (i * 53) % 200), seed=(1_000_000 + i).to_bytes(32, "little"))
            for i in range(n)]


class _OwnBill:
    """A provider's store as a cheat shows it: `bill` answers with the bill tree it built and
    signed itself, and everything else is the store's."""

    def __init__(self, store: Any, entries: list) -> None:
        from poe.merkle.build import ordered_tree

        self._store, self._entries, self._tree = store, entries, ordered_tree([e.leaf for e in entries])

    def bill(self, epoch: int) -> tuple[list, Any]:
        return self._entries, self._tree

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)


def _customer_provider(d: _Demo, executor: Any, role: str, keys: list[bytes], calls: list, twice: list[int]) -> tuple[tuple[Any, Any], dict]:
    """The role's customers sign their requests under the role's deal (call i from customer i mod
    the customers, with its own sequence); the provider runs them, the cheat runs those in
    `twice` again and bills them twice, in a bill tree it builds itself; then seal and claim."""
    from poe.customer import request_for
    from poe.provider.run import run_requests
    from poe.store.tracestore import TraceStore

    sk, deal = d.provider(executor.service, f"{DEAL_ID}-customers-{role}", {"fuel": 1, "mem": 0, "io": 10}, 0,
                          customers={"anonymous": False, "window": 1})
    path = os.path.join(d.workdir, f"customers-{role}.poe")
    with TraceStore.create_or_open(path, d.cm) as store:
        store.register_service(executor.service)
        epoch = store.current_epoch()  # the requests are billable in this epoch only (the deal's window is 1)
    signed = [request_for(deal, call, key=keys[i % len(keys)], sequence=1 + i // len(keys), fuel_budget=d.cm.limits.fuel, epochs=(epoch, epoch))
              for i, call in enumerate(calls)]
    with d.progress(len(calls), f"{role} requests") as tick:
        run_requests(executor, list(zip(calls, signed)), deal, path, tick=tick)
    wrap = None
    if twice:
        wrap = _bill_twice(d, executor, path, [(calls[i], signed[i]) for i in twice])
    store, sealed, claim = d.seal_and_claim(path, sk, deal, wrap)
    extra = f", then {len(twice)} of them again, billed twice" if twice else ""
    d.say(f"  {role:>8} provider {_address(d.scheme, sk)}: ran {len(calls)} requests{extra}; sealed {sealed.root.size} segments, "
          f"bill root {claim.statement.bill_root.hash.hex()[:16]}..., claims {claim.amount:,} units")
    return (store, claim), {"segments": sealed.root.size, "claimed": claim.amount, "billed_twice": len(twice),
                            "bill_root": claim.statement.bill_root.hash.hex()}


def _bill_twice(d: _Demo, executor: Any, path: str, again: list) -> Callable[[Any], Any]:
    """The cheat: run each (call, signed request) in `again` a second time at the end of its log
    (a real execution at that index, so the copy re-executes to its record), and return how it
    shows its store once sealed: with the bill tree it signs, where each copy is billed under
    its request's (customer, sequence), next to the original."""
    from poe.merkle.build import BillEntry
    from poe.merkle.hasher import leaf
    from poe.protocol.request import answer, request_of
    from poe.store.tracestore import TraceStore

    with TraceStore.create_or_open(path, d.cm) as store:
        store.register_service(executor.service)
        store._request_key = lambda inv: None  # its own store, its own rules: the ledger no longer refuses a request run twice
        for call, signed in again:
            store.append(executor.run(answer(call, signed), store.next_index))

    def wrap(store: Any) -> Any:
        sealed = store.seal()
        entries = []
        for index in range(sealed.first_index, sealed.end_index):
            record, invocation, _ = store.segment(index)
            request = request_of(invocation).request  # type: ignore[union-attr]
            entries.append(BillEntry(request.customer, request.sequence, index, leaf(record.encode())))
        return _OwnBill(store, sorted(entries, key=lambda e: (e.customer, e.sequence, e.index)))

    return wrap


def _customer_bill(d: _Demo, role: str, provider: tuple[Any, Any], address: str) -> dict:
    """One customer asks the provider for its bill (`poe bill prove`) and checks it against the
    bill root the provider signed: what it is billed, or why the bill does not check."""
    from poe.errors import PoEError
    from poe.protocol.bill import check_bill
    from poe.provider.bill import make_bill

    store, claim = provider
    st, deal = claim.statement, claim.deal
    doc = make_bill(store, st.epoch, bytes.fromhex(address[2:]))
    d.keep_file(f"customers-{role}-bill.json", doc)
    try:
        bill = check_bill(doc, st, deal.digest, deal.window)
    except PoEError as exc:
        d.say(f"customer {address}: its bill from the {role} provider does not check: {exc.message}")
        return {"customer": address, "epoch": st.epoch, "checks": False, "error": exc.message}
    amount = deal.weight(bill.sums)
    d.say(f"customer {address}: its bill from the {role} provider checks against the signed bill root: {len(bill.segments)} segments "
          f"(sequences {bill.segments[0]['sequence']}..{bill.segments[-1]['sequence']}), fuel {bill.sums.fuel:,}, io {bill.sums.io:,}: "
          f"{amount:,} units of the claim's {claim.amount:,}")
    return {"customer": address, "epoch": st.epoch, "checks": True, "segments": len(bill.segments), "fuel": bill.sums.fuel,
            "io": bill.sums.io, "amount": amount}


def run_stateful_demo(workdir: str, beacon: bytes, *, say: Say, progress: Progress = no_progress, keep: bool = False) -> dict:
    """The stateful part: step_sort.wasm in 2,689 steps; the cheat re-runs some steps and bills them twice."""
    from poe.formats.moduleset import Service
    from poe.protocol.challenge import Challenge
    from poe.wasm.executor import Executor

    d = _Demo(workdir, say, progress, keep)
    service = Service(step_module(), name="step_sort.wasm")
    executor = Executor(service, d.cm)
    say("")
    say("stateful: step_sort.wasm (C) sorts 1,048,576 numbers in steps on one instance per provider;")
    say("          every step is a segment whose record commits the state (memory, globals, clock) before and after it")
    providers, summary = {}, {}
    for role in ("honest", "cheating"):
        providers[role], summary[role] = _step_provider(d, executor, role)
    genesis = executor.genesis()
    verdicts = []
    for role, (store, claim) in providers.items():
        challenge = Challenge.draw(claim, beacon, STEP_EPSILON, STEP_DELTA, STEP_UNIFORM)
        verdict, signed, seconds = d.audit(role, store, claim, challenge, service, genesis)
        total = seconds["respond"] + seconds["audit"]
        summary[role].update({"verdict": verdict.verdict, "reason": verdict.reason, "samples": len(challenge.weighted) + len(challenge.uniform),
                              "re_executed": verdict.checked.get("re_executed", 0), "respond_and_audit_seconds": round(total, 3)})
        say(f"  {role:>8}: {verdict.verdict} after {summary[role]['samples']} samples ({summary[role]['re_executed']} steps restored "
            f"from their pre-states and re-executed; respond + audit {total:.2f} s)")
        proven = d.recheck(verdict, service)
        if proven:
            say(f"            fraud proof ({proven['kind']}) re-checked independently: segment {proven['segment']}: "
                + proven.get("reason", ", ".join(proven.get("differences", {}))))
            summary[role]["fraud_proof_segment"] = proven["segment"]
        verdicts.append(signed)
        d.keep_file(f"{role}-steps-verdict.json", signed)
        d.keep_file(f"{role}-steps-claim.json", claim.to_json())
    payouts = d.settle(verdicts, [claim for _, claim in providers.values()])
    say(f"guarantee: {challenge.guarantee()}")
    say("settlement: " + "; ".join(f"{role} {row['payout']:,} ({row['status']})" for role, row in zip(providers, payouts["payouts"])))
    d.keep_file("steps-payouts.json", payouts)
    return {"epsilon": str(STEP_EPSILON), "delta": str(STEP_DELTA), "providers": summary, "payouts": payouts}


def _step_provider(d: _Demo, executor: Any, role: str) -> tuple[tuple[Any, Any], dict]:
    """Run the whole sort as steps into the role's store; the cheat bills one step in 25 twice."""
    from poe.formats.invocation import Invocation
    from poe.store.tracestore import TraceStore

    sk, deal = d.provider(executor.service, f"{DEAL_ID}-steps-{role}", {"fuel": 1}, 0)
    path = os.path.join(d.workdir, f"{role}-steps.poe")
    started, repeated = time.perf_counter(), 0
    step = Invocation.build("step")
    with TraceStore.create_or_open(path, d.cm) as store, executor.session() as session, d.progress(SORT_STEPS, f"{role} steps") as tick:
        store.register_service(executor.service)
        store.put_snapshot(session.state, session.image())
        while True:
            again_from = (session.state, session.image()) if role == "cheating" and store.next_index % REPEAT_EVERY == REPEAT_EVERY - 1 else None
            e = session.run(step, store.next_index)
            store.append(e)
            tick(1)
            if again_from is not None:  # bill the step again: re-run it from the state it started from
                with executor.session(again_from) as again:
                    store.put_snapshot(*again_from)
                    store.append(again.run(step, store.next_index))
                repeated += 1
            if e.output.results[0].bits == 0:
                break
        stdout = e.output.stdout.data.decode(errors="replace").strip()
        store.flush()
        stored = store.state_usage()["bytes"]
    run_seconds = time.perf_counter() - started
    store, sealed, claim = d.seal_and_claim(path, sk, deal)
    summary = {"steps": sealed.end_index, "repeated_steps": repeated, "run_seconds": round(run_seconds, 3),
               "state_bytes_per_step": round(stored / sealed.end_index), "guest_output": stdout, "claimed": claim.amount}
    d.say(f"  {role:>8} provider: {sealed.end_index:,} steps in {run_seconds:.2f} s ({stdout!r}); "
          f"state kept {stored / sealed.end_index / 1024:,.1f} KiB/step; claims {claim.amount:,} units"
          + (f" ({repeated} steps billed twice)" if repeated else ""))
    return (store, claim), summary

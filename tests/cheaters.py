"""Cheating providers for tests/test_cheating.py (a plain helper module: no tests in here).

A provider here is what an auditor sees of it: a signed claim, a trace store on disk, and a way
of answering challenges. Honest providers answer with `open_targets`; each lie changes what is
committed (records rewritten before sealing, rows rewritten in the SQLite file, a tree built by
hand) and/or how the provider answers (another leaf, a withheld opening).

Every lying provider also carries its *footprint*, worked out here from what it committed, not
from what the auditor does: the weighted intervals (in the epoch's priced weight) and the leaf
indices on which a sample must expose it. A trial then knows whether its challenge touched the
lie, so the tests can check each trial exactly (touched <=> not accepted) as well as the overall
catch rate against the sampling bound.

Trials run in worker processes (`run_trial` takes and returns plain picklable values); each
worker keeps its store handles open across trials.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import random
import sqlite3
from collections import Counter
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any, Sequence

from poe import CostModel, Execution, Executor, Invocation, Limits, Output, Payload, Service, TraceStore
from poe.protocol.attestation import EMPTY_ROOT, Envelope, Statement, consistency_digest, verify_chain
from poe.audit.verifier import audit
from poe.protocol.openings import Opening
from poe.provider.respond import open_states, open_targets
from poe.protocol.challenge import Challenge
from poe.protocol.claim import Claim
from poe.protocol.deal import Deal
from poe.formats.invocation import Value
from poe.formats.state import State
from poe.crypto.schemes import get_scheme
from poe.merkle.build import ANONYMOUS, BillEntry, Tree, ordered_tree
from poe.merkle.hasher import Node, Root, Sums, leaf, node
from poe.formats.invocation import block_terms
from poe.protocol.request import Request, SignedRequest, answer, request_of  # noqa: F401 - tests reach it as c.request_of
from poe.merkle.verify import InclusionProof
from poe.errors import ChainError

MODULES = Path(__file__).resolve().parent.parent / "vectors" / "modules"
CM = CostModel.current(Limits(fuel=50_000_000, memory_pages=64))
OTHER_CM = CostModel.current(Limits(fuel=50_000_001, memory_pages=64))  # differs only in its digest
SERVICE = Service((MODULES / "csv_agg.wasm").read_bytes(), name="csv_agg.wasm")
STUB = Service((MODULES / "exit_code.wasm").read_bytes(), name="exit_code.wasm")  # prints a line, exits 3
COUNTER = Service((MODULES / "counter.wasm").read_bytes(), name="counter.wasm")  # stateful: a running total
SCHEME = get_scheme("secp256k1")
SK = SCHEME.generate_key(b"poe cheating tests: provider key 01")
PK = SCHEME.public_key(SK)
ISSUED_AT = 1_764_000_000


# -- an honest history ---------------------------------------------------------------------------

def invocations(n: int) -> list[Invocation]:
    rows = (MODULES / "data" / "sales_small.csv").read_bytes().splitlines(keepends=True)
    return [Invocation.build(argv=["csv_agg"], stdin=b"".join(rows[: 2 + (i * 7) % 21]), seed=i.to_bytes(32, "little"))
            for i in range(n)]


def execute(invs: Sequence[Invocation], *, service: Service = SERVICE, cost_model: CostModel = CM, first: int = 0) -> list[Execution]:
    """Really run the invocations, segment `first + i` for the i-th."""
    ex = Executor(service, cost_model)
    return [ex.run(inv, first + i) for i, inv in enumerate(invs)]


def deal(deal_id: str, prices: dict[str, int] | None = None, subscription: int = 700, service: Service = SERVICE) -> Deal:
    return Deal.from_json({
        "format": "poe deal v1", "deal_id": deal_id, "provider": {"scheme": SCHEME.name, "public_key": PK.hex()},
        "module_digest": service.digest.hex(), "cost_model_digest": CM.digest.hex(),
        "prices": prices or {"fuel": 2, "mem": 1, "io": 5}, "subscription": subscription,
        "penalty": {"kind": "slash", "amount": 9000},
    })


def weight_of(d: Deal, records: Sequence[bytes]) -> int:
    return sum(d.weight(leaf(r).sums) for r in records)


# -- committing -----------------------------------------------------------------------------------

def commit(path: str, entries: Sequence[Execution], *, epochs: Sequence[int] = (), ledger: bool = True) -> tuple[list[Any], list[bytes]]:
    """Put `entries` in a new store at `path`, in that order, and seal them.

    The store only appends records whose index is the next position and whose cost model is
    its own, so each entry goes in as such a placeholder (same invocation and output) and the
    rows whose committed record must differ are then rewritten straight in the SQLite file,
    before their epoch is sealed: the provider owns its store, and only what the seal commits
    to matters. `epochs` lists the sizes of the epochs before the last one.
    Returns the seal results (one per epoch) and the committed record bytes, in log order.
    Without `ledger` the store keeps no table of answered requests, so it records a request
    twice or out of its window (the provider signs a bill tree it builds itself).
    """
    bounds = [0]
    for size in epochs:
        bounds.append(bounds[-1] + size)
    bounds.append(len(entries))
    seals, committed = [], []
    for lo, hi in zip(bounds, bounds[1:]):
        rewrites = []
        with TraceStore.create_or_open(path, CM) as store:
            store.register_service(SERVICE)
            if not ledger:
                store._request_key = lambda inv: None  # the provider's own store, its own rules
            if any(e.record.module_digest == STUB.digest for e in entries[lo:hi]):
                store.register_service(STUB)
            for pos in range(lo, hi):
                e = entries[pos]
                placeholder = dataclasses.replace(e.record, index=pos, cost_model_digest=CM.digest)
                store.append(Execution(placeholder, e.invocation, e.output))
                if placeholder != e.record:
                    rewrites.append((e.record.encode(), pos))
                committed.append(e.record.encode())
        if rewrites:
            db = sqlite3.connect(path)
            with db:
                db.executemany("UPDATE segments SET record = ? WHERE idx = ?", rewrites)
            db.close()
        sealer = TraceStore.open(path, seal=True)
        seals.append(sealer.seal())
        sealer.close()
    return seals, committed


def sign(st: Statement, proof: bytes | None = None) -> Envelope:
    return Envelope(st.encode(), SCHEME.sign(SK, st.digest), SCHEME.identity(PK), CM.to_json(), proof)


def attest(path: str, seals: Sequence[Any], d: Deal, bills: Sequence[Sequence[BillEntry]] = ()) -> list[Claim]:
    """One signed claim per sealed epoch, each continuing the previous head; with `bills` (one
    per epoch), version-2 statements that sign those bill trees."""
    claims = []
    store = TraceStore.open(path)
    for s in seals:
        previous = s.previous_root or EMPTY_ROOT
        proof = store.consistency_proof(s.epoch - 1, s.epoch)[2].encode() if previous.size else None
        st = Statement(SCHEME.name, CM.digest, d.module_digest, PK, d.deal_id, s.epoch, s.first_index, s.end_index,
                       s.root, previous, consistency_digest(proof), ISSUED_AT + s.epoch)
        if bills:
            st = dataclasses.replace(st, bill_root=ordered_tree([e.leaf for e in bills[s.epoch]]).root)
        claims.append(claim_of(st, d, proof))
    store.close()
    return claims


def claim_of(st: Statement, d: Deal, proof: bytes | None = None) -> Claim:
    return Claim(d, sign(st, proof), d.amount(st.totals))


# -- what a lie looks like to the sampler --------------------------------------------------------

@dataclass(frozen=True)
class Provider:
    name: str
    path: str
    claim: Claim
    honest_weight: int  # the priced weight of what was really done in the epoch
    respond: str = "honest"  # honest | substitute | withhold | levels
    bad_leaves: frozenset[int] = frozenset()  # leaves whose opening exposes the lie
    bad_intervals: tuple[tuple[int, int], ...] = ()  # [lo, hi) in the epoch's weight space, same
    cheap_leaf: int = -1  # what `substitute` opens instead of a bad leaf
    levels: tuple[tuple[Node, ...], ...] = ()  # the tree `levels` answers from (built by hand)
    scale: tuple[int, int] = (1, 1)  # `levels` maps weighted target r to r * num // den
    previous: Statement | None = None  # the last statement the auditor accepted before this claim
    service: Service = SERVICE  # the module the deal names (COUNTER for stateful lineages)
    bill: tuple[BillEntry, ...] = ()  # the bill tree this provider signed, when it built it itself (spec §14.2)

    @property
    def claimed_weight(self) -> int:
        return self.claim.deal.weight(self.claim.statement.totals)

    @property
    def epsilon(self) -> Fraction:
        """Overbilled fraction of the claimed priced weight (negative: it underbills)."""
        w = self.claimed_weight
        return Fraction(w - self.honest_weight, w) if w else Fraction(0)

    @property
    def span(self) -> int:
        st = self.claim.statement
        return st.end_index - st.first_index

    @property
    def q(self) -> Fraction:
        """Probability that one weighted target lands on the lie."""
        return Fraction(sum(hi - lo for lo, hi in self.bad_intervals), self.claimed_weight) if self.claimed_weight else Fraction(0)

    @property
    def f(self) -> Fraction:
        """Probability that one uniform target lands on the lie."""
        return Fraction(len(self.bad_leaves), self.span) if self.span else Fraction(0)


def intervals(d: Deal, records: Sequence[bytes], first: int, bad: set[int]) -> tuple[tuple[int, int], ...]:
    """Weighted intervals of the bad leaves of an epoch whose committed records (log order,
    starting at leaf `first`) are `records`."""
    out, at = [], 0
    for i, r in enumerate(records):
        w = d.weight(leaf(r).sums)
        if first + i in bad and w:
            out.append((at, at + w))
        at += w
    return tuple(out)


def make_provider(name: str, path: str, d: Deal, entries: Sequence[Execution], *, honest_weight: int | None = None,
                  bad: set[int] = frozenset(), epochs: Sequence[int] = (), **kw: Any) -> Provider:
    """Commit `entries` (honest, or the lie), claim the last epoch, and note where the lie sits.

    `honest_weight` is what the epoch's real work is worth; by default, what it claims."""
    seals, committed = commit(path, entries, epochs=epochs)
    claims = attest(path, seals, d)
    st = claims[-1].statement
    epoch_records = committed[st.first_index:st.end_index]
    return Provider(name, path, claims[-1], weight_of(d, epoch_records) if honest_weight is None else honest_weight,
                    bad_leaves=frozenset(bad), bad_intervals=intervals(d, epoch_records, st.first_index, set(bad)),
                    previous=claims[-2].statement if len(claims) > 1 else None, **kw)


def pick(rng_label: str, candidates: Sequence[int], enough) -> set[int]:
    """Seeded choice: add candidates in a shuffled order until `enough(chosen)` holds."""
    order = list(candidates)
    random.Random(rng_label).shuffle(order)
    chosen: set[int] = set()
    for c in order:
        if enough(chosen):
            break
        chosen.add(c)
    assert enough(chosen), f"{rng_label}: not enough candidates"
    return chosen


def inflate(e: Execution, factor: int) -> Execution:
    return Execution(dataclasses.replace(e.record, fuel=e.record.fuel * factor), e.invocation, e.output)


def fake_output(e: Execution) -> Execution:
    """What a provider that skipped the run commits: a made-up output and io log, honest-looking
    quantities (it bills what the segment would have cost)."""
    made_up = Output((), Payload(b'{"rows":0}\n'))
    r = dataclasses.replace(e.record, output_digest=made_up.digest,
                            io_digest=hashlib.blake2s(e.record.input_digest, person=b"skipped").digest())
    return Execution(r, e.invocation, made_up)


# -- customers (spec §14): signed requests and the bill tree -------------------------------------

K1 = get_scheme("secp256k1")
CUSTOMERS = [K1.generate_key(f"poe cheating tests: customer key {i:02d}".encode()) for i in range(5)]


def address(sk: bytes) -> bytes:
    return bytes.fromhex(K1.identity(K1.public_key(sk))[2:])


def customer_deal(deal_id: str, *, anonymous: bool = False, window: int = 1, service: Service = SERVICE) -> Deal:
    return Deal.from_json({**deal(deal_id, service=service).to_json(), "format": "poe deal v2",
                           "customers": {"anonymous": anonymous, "window": window}})


def signed_request(d: Deal, call: Invocation, sk: bytes, sequence: int, epochs: tuple[int, int], *, budget: int = CM.limits.fuel,
                   customer: bytes | None = None, deal_digest: bytes | None = None) -> SignedRequest:
    """`sk`'s signature over a request for `call`; `customer` and `deal_digest` name someone or
    something else than the signer and the deal (lies)."""
    r = Request(1, deal_digest or d.digest, customer or address(sk), sequence, call.call_digest, budget, *epochs)
    return SignedRequest(r, K1.sign_hash(sk, r.digest))


def requested(d: Deal, calls: Sequence[Invocation], epochs: tuple[int, int], *, first_sequence: int = 1) -> list[Invocation]:
    """The calls as the customers' requests ask for them: call i from customer i mod 5."""
    n = len(CUSTOMERS)
    return [answer(call, signed_request(d, call, CUSTOMERS[i % n], first_sequence + i // n, epochs)) for i, call in enumerate(calls)]


def bill_entries(records: Sequence[bytes], invs: Sequence[Invocation], first: int, relabel: dict[int, tuple[bytes, int]] | None = None) -> list[BillEntry]:
    """An epoch's bill tree as a provider builds it from what it recorded (spec §14.2): keyed by
    each segment's request (or anonymous by index), sorted; `relabel` bills segments under
    another (customer, sequence) than their request's."""
    out = []
    for i, (r, inv) in enumerate(zip(records, invs)):
        key = block_terms(inv.request)[:2] if inv.request else (ANONYMOUS, first + i)  # a job's step k: sequence + k
        out.append(BillEntry(*(relabel or {}).get(first + i, key), first + i, leaf(r)))
    return sorted(out, key=lambda e: (e.customer, e.sequence, e.index))


def disorder_footprint(entries: Sequence[BillEntry]) -> set[int]:
    """Segments whose opening's proof (its leaf and neighbours, spec §14.3) climbs through a part
    of the committed bill tree that is out of key order (spec §14.2): each leaf's window proof,
    built from the tree the provider signed, checked for order alone."""
    from poe.errors import BillOrderError
    from poe.merkle.verify import encode_bill_range, verify_bill_range

    tree = ordered_tree([e.leaf for e in entries])
    bad, n = set(), len(entries)
    for p in range(n):
        lo, hi = max(0, p - 1), min(n, p + 2)
        try:
            verify_bill_range([e.leaf for e in entries[lo:hi]], encode_bill_range(lo, hi, tree.range_path(lo, hi)), tree.root)
        except BillOrderError:
            bad.add(entries[p].index)
    return bad


def bill_intervals(d: Deal, entries: Sequence[BillEntry], bad: set[int]) -> tuple[tuple[int, int], ...]:
    """Weighted intervals of the bill leaves that name a segment in `bad` (log indices)."""
    out, at = [], 0
    for e in entries:
        w = d.weight(e.record.sums)
        if e.index in bad and w:
            out.append((at, at + w))
        at += w
    return tuple(out)


def make_billing_provider(name: str, path: str, d: Deal, entries: Sequence[Execution], *, honest_weight: int | None = None,
                          bad: set[int] = frozenset(), epochs: Sequence[int] = (), relabel: dict[int, tuple[bytes, int]] | None = None,
                          ledger: bool = False, layout: Any = None) -> Provider:
    """Commit `entries`, sign version-2 statements over bill trees built by `bill_entries`, and
    note where the lie sits in the last epoch's bill tree. With `ledger`, the store keeps its own
    request table (an honest provider) and its bill tree must be the one signed."""
    seals, committed = commit(path, entries, epochs=epochs, ledger=ledger)
    bills = [bill_entries(committed[s.first_index:s.end_index], [e.invocation for e in entries[s.first_index:s.end_index]], s.first_index, relabel)
             for s in seals]
    if layout is not None:  # the provider lays out (and signs) its bill tree its own way
        bills = [layout(b) for b in bills]
    claims = attest(path, seals, d, bills)
    if ledger:
        with TraceStore.open(path) as store:
            assert all(store.bill(c.statement.epoch)[1].root == c.statement.bill_root for c in claims)
    st = claims[-1].statement
    epoch_records = committed[st.first_index:st.end_index]
    return Provider(name, path, claims[-1], weight_of(d, epoch_records) if honest_weight is None else honest_weight,
                    bad_intervals=bill_intervals(d, bills[-1], set(bad) | disorder_footprint(bills[-1])), previous=claims[-2].statement if len(claims) > 1 else None,
                    bill=() if ledger else tuple(bills[-1]))


# -- stateful lineages (spec §13) -------------------------------------------------------------------

def add(k: int) -> Invocation:
    return Invocation.build("add", params=[Value.parse("i64", str(k))])


def stateful_history(n: int, *, repeat: set[int] = frozenset(), skip: set[int] = frozenset(),
                     forge: set[int] = frozenset()) -> tuple[list[Execution], list[tuple[State, bytes]]]:
    """A counter lineage of n segments, segment i calling add(i + 1), and the states a store
    must hold whole for it (genesis, and any state a lie jumps to). Every record is a real
    execution of its own pre-state; the lies are in how the states chain:

    * `repeat`: segment i re-runs segment i - 1 from the state i - 1 started from, and bills it
      again (a step billed twice; the lineage then goes on from the same post-state);
    * `skip`: before segment i the provider jumps ahead through work it does not record (the
      customer's computation is no longer the one billed);
    * `forge`: segment i's record claims a post-state it did not produce (one byte of memory
      changed), and the lineage goes on from that forged state: the chain stays intact, the lie
      sits in one record (what steering a lineage into states no honest run reaches costs).
    """
    from poe.formats.state import memory_root

    ex = Executor(COUNTER, CM)
    out: list[Execution] = []
    s = ex.session()
    try:
        snaps = [(s.state, s.image())]
        before_prev = snaps[0]
        for i in range(n):
            if i in forge:
                e = s.run(add(i + 1), i)
                image = bytearray(s.image())
                image[4000] ^= 0xFF
                forged = dataclasses.replace(e.state, memory=memory_root(bytes(image)))
                changed = dict(e.changed)
                changed[3] = bytes(image[3072:4096])
                s.close()
                s = ex.session((forged, bytes(image)))
                out.append(dataclasses.replace(e, record=dataclasses.replace(e.record, post_state=forged.root), state=forged,
                                               changed=tuple(sorted(changed.items()))))
                before_prev = None
                continue
            if i in repeat and out:
                with ex.session(before_prev) as again:
                    out.append(again.run(out[-1].invocation, i))
                snaps.append(before_prev)
                continue
            if i in skip:
                s.run(add(1000), 0)  # work nobody sees
                snaps.append((s.state, s.image()))
            before_prev = (s.state, s.image())
            out.append(s.run(add(i + 1), i))
    finally:
        s.close()
    return out, snaps


def commit_stateful(path: str, entries: Sequence[Execution], snaps: Sequence[tuple[State, bytes]], *, ledger: bool = True) -> list[Any]:
    """Store a stateful history through the store's own path (it keeps each state as the chunks
    it changed) and seal it; without `ledger`, as commit() says."""
    with TraceStore.create_or_open(path, CM) as store:
        store.register_service(COUNTER)
        if not ledger:
            store._request_key = lambda inv: None
        for snap in snaps:
            store.put_snapshot(*snap)
        for e in entries:
            store.append(e)
    sealer = TraceStore.open(path, seal=True)
    sealed = sealer.seal()
    sealer.close()
    return [sealed]


def make_stateful_provider(name: str, path: str, d: Deal, entries: Sequence[Execution], snaps: Sequence[tuple[State, bytes]], *,
                           honest_weight: int | None = None, bad: set[int] = frozenset()) -> Provider:
    seals = commit_stateful(path, entries, snaps)
    (claim,) = attest(path, seals, d)
    records = [e.record.encode() for e in entries]
    return Provider(name, path, claim, weight_of(d, records) if honest_weight is None else honest_weight,
                    bad_leaves=frozenset(bad), bad_intervals=intervals(d, records, 0, set(bad)), service=COUNTER)


def job_history(d: Deal, steps: int, *, restart: int = 0, beyond: bool = False) -> tuple[list[Execution], list[tuple[State, bytes]], Any]:
    """A customer's job of `steps` steps of add(1) on the counter (spec §14.7), run honestly,
    and the job. With `restart`, the provider then starts the lineage again from genesis and
    bills `restart` more steps (what §13.6 alone could not bound): under the job's first step
    numbers again, or with `beyond`, under numbers past its last (the signature still covers the
    job's real step count, so the block carries it)."""
    from poe.formats.invocation import JOB_BLOCK
    from poe.protocol.request import Job

    call = add(1)
    terms = Job(1, d.digest, address(CUSTOMERS[0]), 500, call.call_digest, CM.limits.fuel, 0, 0, steps)
    job = SignedRequest(terms, K1.sign_hash(CUSTOMERS[0], terms.digest))
    ex = Executor(COUNTER, CM)
    out: list[Execution] = []
    with ex.session() as s:
        snaps = [(s.state, s.image())]
        for k in range(steps):
            out.append(s.run(answer(call, job, k), k))
    with ex.session() as again:  # the lineage started over: genesis, as a new lineage may
        for k in range(restart):
            step = steps + k if beyond else k
            block = JOB_BLOCK.pack(1, d.digest, terms.customer, terms.sequence, steps, terms.fuel_budget, 0, 0, job.signature, step)
            out.append(again.run(dataclasses.replace(call, request=block), steps + k))
    return out, snaps, job


def make_job_provider(name: str, path: str, d: Deal, entries: Sequence[Execution], snaps: Sequence[tuple[State, bytes]], *,
                      honest_weight: int | None = None, bad: set[int] = frozenset(), ledger: bool = False) -> Provider:
    seals = commit_stateful(path, entries, snaps, ledger=ledger)
    records = [e.record.encode() for e in entries]
    bills = [bill_entries(records, [e.invocation for e in entries], 0)]
    (claim,) = attest(path, seals, d, bills)
    if ledger:
        with TraceStore.open(path) as store:
            assert store.bill(0)[1].root == claim.statement.bill_root
    return Provider(name, path, claim, weight_of(d, records) if honest_weight is None else honest_weight,
                    bad_intervals=bill_intervals(d, bills[0], set(bad) | disorder_footprint(bills[0])), service=COUNTER, bill=() if ledger else tuple(bills[0]))


# -- trees built by hand (RFC 9162 shape, docs/spec.md §10) ---------------------------------------

def build_levels(leaves: Sequence[Node], bump: tuple[int, int, Sums] | None = None) -> tuple[tuple[Node, ...], ...]:
    """Every level of the tree over `leaves`; `bump` = (level, index, extra) adds `extra` to that
    node's committed sums (its hash stays the hash of its children), then builds on up from it."""
    levels = [list(leaves)]
    while True:
        cur = levels[-1]
        if bump and bump[0] == len(levels) - 1:
            n = cur[bump[1]]
            cur[bump[1]] = Node(n.hash, n.sums + bump[2])
        if len(cur) == 1:
            break
        nxt = [node(cur[i], cur[i + 1]) for i in range(0, len(cur) - 1, 2)]
        if len(cur) % 2:
            nxt.append(cur[-1])
        levels.append(nxt)
    return tuple(tuple(level) for level in levels)


def levels_root(levels: Sequence[Sequence[Node]]) -> Root:
    top = levels[-1][0]
    return Root(len(levels[0]), top.hash, top.sums)


def levels_path(levels: Sequence[Sequence[Node]], index: int) -> tuple[Node, ...]:
    path, i = [], index
    for level in levels[:-1]:
        if i ^ 1 < len(level):
            path.append(level[i ^ 1])
        i >>= 1
    return tuple(path)


def levels_descend(levels: Sequence[Sequence[Node]], d: Deal, position: int) -> int:
    """The leaf a provider reading these levels places at `position` (a weight offset from the
    start of the log): left if it falls in the left child's committed weight, else right."""
    h, i = len(levels) - 1, 0
    while h > 0:
        below = levels[h - 1]
        left = below[2 * i]
        if 2 * i + 1 < len(below) and position >= d.weight(left.sums):
            position -= d.weight(left.sums)
            i = 2 * i + 1
        else:
            i = 2 * i
        h -= 1
    return i


def leaves_under(levels: Sequence[Sequence[Node]], level: int, index: int) -> range:
    return range(index << level, min((index + 1) << level, len(levels[0])))


# -- answering a challenge --------------------------------------------------------------------

def _opening(store: TraceStore, target: str, index: int, size: int, path: Sequence[Node]) -> Opening:
    record, inv, _ = store.segment(index)
    return Opening(target, index, record.encode(), InclusionProof(index, size, tuple(path)).encode(),
                   inv.encoded, {p.digest.hex(): p.data.hex() for p in inv.blobs()})


class _SignedBill:
    """The provider's store, answering `bill` with the bill tree the provider signed."""

    def __init__(self, store: TraceStore, entries: Sequence[BillEntry]) -> None:
        self._store, self._entries = store, list(entries)
        self._tree = ordered_tree([e.leaf for e in entries])

    def bill(self, epoch: int) -> tuple[list[BillEntry], Tree]:
        return self._entries, self._tree

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)


def respond(p: Provider, store: TraceStore, ch: Challenge) -> list[Opening]:
    st = p.claim.statement
    if p.bill:
        store = _SignedBill(store, p.bill)  # type: ignore[assignment]
    if p.respond == "honest":
        return open_targets(store, p.claim, ch)
    if p.respond == "withhold":  # it cannot answer a target on its lie, so it does not answer it
        return [o for o in open_targets(store, p.claim, ch) if o.index not in p.bad_leaves]
    if p.respond == "substitute":  # it answers a target on its lie with a cheap, honest leaf
        tree = store.tree(st.root.size)
        return [o if o.index not in p.bad_leaves else _opening(store, o.target, p.cheap_leaf, tree.size, tree.inclusion_path(p.cheap_leaf))
                for o in open_targets(store, p.claim, ch)]
    if p.respond == "levels":  # it answers from a tree it built itself
        base = p.claim.deal.weight(st.previous_root.sums)
        num, den = p.scale
        picks = [(f"w{j}", levels_descend(p.levels, p.claim.deal, base + r * num // den)) for j, r in enumerate(ch.weighted)]
        picks += [(f"u{j}", i) for j, i in enumerate(ch.uniform)]
        return [_opening(store, t, i, len(p.levels[0]), levels_path(p.levels, i)) for t, i in picks]
    raise ValueError(f"unknown way of answering: {p.respond}")


# -- one trial ----------------------------------------------------------------------------------

# Which audit check a problem line comes from: (label, text that only that check writes).
CHECKS = (  # first match wins: a bill-order fault carries its merkle code too
    ("bill order (billed twice)", "strictly increasing (customer, sequence) order"),
    ("bill order (billed twice)", "out of (customer, sequence) order"),
    ("inclusion proof", "[merkle."),
    ("leaf outside the epoch", "is outside the claimed epoch"),
    ("weighted target not covered", " covers ["),
    ("uniform target not answered", "] opening for u"),
    ("record index != leaf", "record says index"),
    ("another module or cost model", "another module or cost model"),
    ("invocation != input digest", "not the committed input"),
    ("re-execution", "re-execution of segment"),
    ("state chain", "[state.chain-broken]"),
    ("unsigned segment", "the deal bills signed requests only"),
    ("request of another leaf", "answers another request than its bill leaf says"),
    ("request signature", "was not signed by its customer"),
    ("request for another deal", "a request for another deal"),
    ("request outside its window", "not billable in epoch"),
    ("fuel beyond budget", "bills more fuel than its request allows"),
    ("step beyond the job", "of a job the customer signed for"),
)


def classify(v: Any) -> tuple[str, ...]:
    """The checks that fired in a verdict, e.g. ('re-execution: fuel, mem',)."""
    if v.verdict == "ACCEPT":
        return ()
    if v.verdict == "REFUSED":
        return ("REFUSED: missing openings" if "were not opened" in v.reason else f"REFUSED: {v.reason}",)
    if not v.problems:
        return (f"claim: {v.reason}",)
    out = set()
    for line in v.problems:
        label = next((lbl for lbl, text in CHECKS if text in line), f"other: {line}")
        if label == "re-execution":
            label += ": " + line.split("disagrees on ", 1)[1]
        out.add(label)
    return tuple(sorted(out))


@dataclass(frozen=True)
class Trial:
    verdict: str
    checks: tuple[str, ...]
    touched: bool  # did a target land on the provider's footprint?
    chain: str  # "ok", or the ChainError verify_chain raised against the accepted history
    k: int
    u: int
    pid: int
    proof: str = "none"  # a bill-leaf fraud proof the verdict carries, re-checked: "bill-leaf proven", or why not


_STORES: dict[str, TraceStore] = {}
_GENESIS: dict[bytes, tuple[State, bytes]] = {}


def _genesis(service: Service) -> tuple[State, bytes]:
    if service.digest not in _GENESIS:
        _GENESIS[service.digest] = Executor(service, CM).genesis()
    return _GENESIS[service.digest]


def beacon(label: str, i: int) -> bytes:
    return hashlib.sha256(f"poe cheating trial {label} {i}".encode()).digest()


def run_trial(task: tuple[Provider, bytes, Fraction, Fraction, int]) -> Trial:
    """Challenge the provider with this beacon, let it answer, audit, and check the chain."""
    p, b, epsilon, delta, uniform = task
    store = _STORES.get(p.path)
    if store is None:
        store = _STORES[p.path] = TraceStore.open(p.path)
    ch = Challenge.draw(p.claim, b, epsilon, delta, uniform)
    openings = respond(p, store, ch)
    states = None
    if p.service.digest == COUNTER.digest:
        states = open_states(store, openings, _genesis(p.service))
    v = audit(p.claim, ch, openings, p.service, deal=p.claim.deal, states=states)
    touched = any(lo <= r < hi for r in ch.weighted for lo, hi in p.bad_intervals) or any(i in p.bad_leaves for i in ch.uniform)
    chain = "ok"
    if p.previous is not None:
        try:
            verify_chain([p.claim.statement], previous=p.previous)
        except ChainError as exc:
            chain = exc.message
    proof = "none"
    if v.fraud_proof is not None and v.fraud_proof["kind"] == "bill-leaf":
        from poe.audit.fraud import check_fraud_proof
        from poe.errors import PoEError

        try:
            check_fraud_proof(json.loads(json.dumps(v.fraud_proof)), None, p.claim.deal)  # as a file would carry it
            proof = "bill-leaf proven"
        except PoEError as exc:
            proof = f"bill-leaf not proven: [{exc.code}] {exc.message}"
    return Trial(v.verdict, classify(v), touched, chain, len(ch.weighted), len(ch.uniform), os.getpid(), proof)


def run_trials(pool: Any, p: Provider, label: str, n: int, configs: Sequence[tuple[Fraction, Fraction, int]]) -> list[Trial]:
    """n seeded trials; trial i uses beacon (label, i) and challenge config i mod len(configs)."""
    tasks = [(p, beacon(label, i), *configs[i % len(configs)]) for i in range(n)]
    return list(pool.map(run_trial, tasks, chunksize=max(1, n // 16)))


# -- statistics ---------------------------------------------------------------------------------

def catch_bound(epsilon: Fraction, f: Fraction, k: int, u: int) -> float:
    """What the guarantee promises: each weighted target exposes an overbilling of epsilon with
    probability >= epsilon, each uniform target lands on the footprint with probability f."""
    return float(1 - (1 - max(epsilon, Fraction(0))) ** k * (1 - f) ** u)


def catch_expected(q: Fraction, f: Fraction, k: int, u: int) -> float:
    """The exact catch probability when every target on the footprint exposes the lie."""
    return float(1 - (1 - q) ** k * (1 - f) ** u)


def binomial_floor(p: float, n: int, sigmas: float = 3) -> float:
    return p - sigmas * math.sqrt(p * (1 - p) / n)


def summarize(strategy: str, p: Provider, trials: Sequence[Trial], *, caught_by: str = "audit", note: str = "") -> dict[str, Any]:
    n = len(trials)
    k, u = trials[0].k, trials[0].u
    assert all((t.k, t.u) == (k, u) for t in trials), "one challenge configuration per lying strategy"
    caught = sum(1 for t in trials if (t.chain != "ok" if caught_by == "chain" else t.verdict != "ACCEPT"))
    checks: Counter[str] = Counter()
    for t in trials:
        checks.update(t.checks)
        if t.chain != "ok":
            checks["verify_chain: " + t.chain.split(":")[-1].strip()] += 1
    bound = 1.0 if caught_by == "chain" else catch_bound(p.epsilon, p.f, k, u)
    expected = 1.0 if caught_by == "chain" else catch_expected(p.q, p.f, k, u)
    return {
        "strategy": strategy, "provider": p.name, "trials": n, "eps_actual": float(p.epsilon),
        "k": k, "uniform": u, "f_affected": float(p.f), "q_weighted": float(p.q),
        "p_theory": bound, "p_floor": max(0.0, binomial_floor(bound, n)), "p_expected": expected,
        "observed": caught / n, "caught": caught,
        "verdicts": dict(Counter(t.verdict for t in trials)), "checks": dict(checks.most_common()),
        "fraud_proofs": dict(Counter(t.proof for t in trials if t.proof != "none")),
        "caught_by": caught_by, "note": note,
    }


def table(rows: Sequence[dict[str, Any]]) -> str:
    head = f"{'strategy':<44} {'trials':>6} {'eps_act':>8} {'k':>3} {'u':>3} {'p theory':>8} {'p exact':>8} {'observed':>8}  verdicts / checks fired"
    lines = [head, "-" * len(head)]
    for r in rows:
        verdicts = " ".join(f"{k}={v}" for k, v in sorted(r["verdicts"].items()))
        checks = "; ".join(f"{k} x{v}" for k, v in r["checks"].items()) or "-"
        lines.append(f"{r['strategy'][:44]:<44} {r['trials']:>6} {r['eps_actual']:>8.4f} {r['k']:>3} {r['uniform']:>3} "
                     f"{r['p_theory']:>8.4f} {r['p_expected']:>8.4f} {r['observed']:>8.4f}  {verdicts} | {checks}")
    return "\n".join(lines)

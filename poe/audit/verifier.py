"""Responding to a challenge, auditing the openings, fraud proofs and settlement (spec §12).

The auditor's checks are pure functions of the claim, the challenge, the openings and the
module bytes; the only work outside them is re-executing sampled segments, which goes through
`reexecute` (a plain function of picklable arguments) so it can fan out over processes here,
or over any distributed engine that can map a function over tasks.
"""

from __future__ import annotations

import json
import multiprocessing
import struct
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from poe.protocol.attestation import verify_envelope
from poe.protocol.billing import Challenge, Claim, Deal, landing_offset
from poe.formats.costmodel import CostModel
from poe.wasm.executor import Executor, Service
from poe.formats.invocation import Invocation
from poe.formats.record import Record
from poe.wasm.replay import record_diff
from poe.crypto.schemes import get_scheme
from poe.formats.state import CHUNK_SIZE, State, bundle_roots, bundle_states, manifest_of, open_bundle
from poe.merkle.build import Tree
from poe.merkle.hasher import leaf
from poe.merkle.verify import InclusionProof, verify_inclusion
from poe.errors import (
    CostModelMismatchError,
    EncodingError,
    InputError,
    PoEError,
    SignatureError,
    StateChainError,
    StateMismatchError,
    StoreError,
    VerificationError,
)

__all__ = ["Opening", "find_weighted_leaf", "open_targets", "open_states", "audit", "Verdict", "check_fraud_proof", "settle", "reexecute"]

_ZERO = bytes(32)


@dataclass(frozen=True)
class Opening:
    """What a provider shows for one sample: the record, its proof, and its inputs."""

    target: str  # "w<j>" for weighted target j, "u<j>" for uniform target j
    index: int
    record: bytes
    proof: bytes
    invocation: bytes
    payloads: dict[str, str]  # hex digest -> hex bytes
    # Stateful segments: the adjacent records (index, record, proof) the state chain is checked
    # against: the previous one unless the segment starts from genesis, and the next one if any.
    neighbors: tuple[tuple[int, bytes, bytes], ...] = ()

    def to_json(self) -> dict[str, Any]:
        d: dict[str, Any] = {"target": self.target, "index": self.index, "record": self.record.hex(), "proof": self.proof.hex(),
                             "invocation": self.invocation.hex(), "payloads": self.payloads}
        if self.neighbors:
            d["neighbors"] = [{"index": i, "record": r.hex(), "proof": p.hex()} for i, r, p in self.neighbors]
        return d

    @classmethod
    def from_json(cls, d: Any) -> Opening:
        try:
            payloads = {str(k): str(v) for k, v in d["payloads"].items()}
            for k, v in payloads.items():  # hex, so decoding later cannot fail
                if len(bytes.fromhex(k)) != 32:
                    raise ValueError("a payload digest is 32 bytes")
                bytes.fromhex(v)
            neighbors = tuple((int(n["index"]), bytes.fromhex(n["record"]), bytes.fromhex(n["proof"])) for n in d.get("neighbors", ()))
            if len(neighbors) > 2:
                raise ValueError("an opening has at most two neighbours")
            return cls(str(d["target"]), int(d["index"]), bytes.fromhex(d["record"]), bytes.fromhex(d["proof"]),
                       bytes.fromhex(d["invocation"]), payloads, neighbors)
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise EncodingError(f"malformed opening: {type(exc).__name__}: {exc}") from None

    def decode_invocation(self) -> Invocation:
        blobs = {bytes.fromhex(k): bytes.fromhex(v) for k, v in self.payloads.items()}
        return Invocation.decode(self.invocation, blobs.__getitem__)


def find_weighted_leaf(tree: Tree, deal: Deal, position: int) -> int:
    """The leaf whose priced interval holds `position` (absolute, from the start of the log)."""
    start, end = 0, tree.size
    while end - start > 1:
        k = 1 << ((end - start - 1).bit_length() - 1)
        left = deal.weight(tree.subtree(start, start + k).sums)
        if position < left:
            end = start + k
        else:
            position -= left
            start += k
    return start


def open_targets(store: Any, claim: Claim, challenge: Challenge) -> list[Opening]:
    """The provider's side: open every target of a challenge from its trace store."""
    st = claim.statement
    tree = store.tree(st.root.size)
    if tree.root != st.root:
        raise VerificationError("the store's log does not produce the attested root", expected=st.root.to_json(), observed=tree.root.to_json())
    base = claim.deal.weight(st.previous_root.sums)
    picks = [(f"w{j}", find_weighted_leaf(tree, claim.deal, base + r)) for j, r in enumerate(challenge.weighted)]
    picks += [(f"u{j}", i) for j, i in enumerate(challenge.uniform)]
    out = []

    def proof(i: int) -> bytes:
        return InclusionProof(i, tree.size, tuple(tree.inclusion_path(i))).encode()

    for target, index in picks:
        record, inv, _ = store.segment(index)
        neighbors = []
        if record.pre_state != _ZERO:
            neighbors = [(i, store.record(i).encode(), proof(i)) for i in (index - 1, index + 1) if 0 <= i < tree.size]
        out.append(Opening(
            target, index, record.encode(), proof(index),
            inv.encoded, {p.digest.hex(): p.data.hex() for p in inv.blobs()}, tuple(neighbors),
        ))
    return out


def open_states(store: Any, openings: list[Opening], genesis: tuple[State, bytes]) -> dict[str, Any] | None:
    """The provider's side: a bundle of the pre-states of every stateful opening (None when there
    are none), as deltas over the lineage's genesis; `genesis` is the module's genesis state."""
    indices = sorted({o.index for o in openings if Record.decode(o.record).pre_state != _ZERO})
    if not indices:
        return None

    def distinct():
        seen = set()
        for _, state, manifest in store.pre_states(indices):
            if state.root not in seen:
                seen.add(state.root)
                yield state, manifest

    return bundle_states(bytes(manifest_of(genesis[1])), distinct(), store.chunk)


_EXECUTORS: dict[tuple[bytes, bytes], Executor] = {}


def _executor(main: bytes, links: dict[str, bytes], cm_bytes: bytes) -> Executor:
    service = Service(main, links)
    # One executor per service and cost model in each process: setting up the WASI host and the
    # instance template costs more than a small segment.
    key = (service.digest, cm_bytes)
    if key not in _EXECUTORS:
        _EXECUTORS[key] = Executor(service, CostModel.from_json(json.loads(cm_bytes)))
    return _EXECUTORS[key]


def reexecute(task: tuple) -> bytes:
    """Run one sampled segment: (main, links, cost model canonical JSON bytes, invocation,
    payloads, index[, pre-state header, pre-state image]) -> record bytes. Plain picklable
    values: any engine can map it. A stateful segment runs on a fresh instance restored to its
    pre-state (checked against the header's root before it runs)."""
    main, links, cm_bytes, invocation, payloads, index, *pre = task
    blobs = {bytes.fromhex(k): bytes.fromhex(v) for k, v in payloads.items()}
    inv = Invocation.decode(invocation, blobs.__getitem__)
    ex = _executor(main, links, cm_bytes)
    if pre:
        return ex.run_stateful((State.decode(pre[0]), pre[1]), inv, index).record_bytes
    return ex.run(inv, index).record_bytes


def _reexecute_or_error(task: tuple) -> bytes | tuple[str, str]:
    """`reexecute`, with a provider-caused failure (a pre-state restore refuses, an invocation
    this module cannot run) as (code, message): plain values that cross a process pool."""
    try:
        return reexecute(task)
    except (InputError, VerificationError, StoreError) as exc:  # ModuleError, ArgumentError, StateMismatchError...
        return (exc.code, exc.message)


def check_state_chain(record: Record, neighbors: tuple[tuple[int, bytes, bytes], ...], root: Any, genesis_root: bytes) -> None:
    """Check a stateful record against its adjacent records (each already proven against `root`
    here): its pre-state must be genesis or the previous segment's post-state, and the next
    segment, if it continues a lineage, must start from this one's post-state. Raises
    StateChainError (a forged pre-state or a skipped step) or VerificationError."""
    i = record.index
    by_index = {}
    for n_index, n_record, n_proof in neighbors:
        if n_index not in (i - 1, i + 1) or n_index in by_index:
            raise VerificationError(f"segment {i}: a neighbour must be segment {i - 1} or {i + 1}, once", observed=n_index)
        proof = InclusionProof.decode(n_proof)
        verify_inclusion(n_record, proof, root)
        r = Record.decode(n_record)
        if not proof.index == r.index == n_index:
            raise VerificationError(f"segment {i}: a neighbour's record, proof and index disagree", expected=n_index, observed=[proof.index, r.index])
        by_index[n_index] = r
    if record.pre_state != genesis_root:
        prev = by_index.get(i - 1)
        if prev is None:
            raise VerificationError(f"segment {i} starts from state {record.pre_state.hex()[:16]}..., which is not genesis, "
                                  "and the segment before it was not opened to show it left that state",
                                  expected=genesis_root.hex(), observed=record.pre_state.hex())
        if prev.post_state != record.pre_state:
            raise StateChainError(f"segment {i} starts from a state segment {i - 1} did not leave: a forged pre-state or a skipped step",
                                  expected=prev.post_state.hex(), observed=record.pre_state.hex())
    if i + 1 < root.size:
        nxt = by_index.get(i + 1)
        if nxt is None:
            raise VerificationError(f"segment {i + 1} was not opened next to stateful segment {i}; the chain cannot be checked")
        # (a segment of another module starts its own lineage: not this chain's business)
        if nxt.module_digest == record.module_digest and nxt.pre_state not in (_ZERO, genesis_root, record.post_state):
            raise StateChainError(f"segment {i + 1} starts from a state segment {i} did not leave: a forged pre-state or a skipped step",
                                  expected=record.post_state.hex(), observed=nxt.pre_state.hex())


@dataclass
class Verdict:
    verdict: str  # ACCEPT, REJECT or REFUSED
    claim: Claim
    reason: str
    refused_by: str | None = None  # "auditor" (cannot audit) or "provider" (did not open samples)
    statement: str | None = None
    problems: list[str] = field(default_factory=list)
    fraud_proof: dict[str, Any] | None = None
    checked: dict[str, int] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        st = self.claim.statement
        return {
            "format": "poe verdict v1",
            "verdict": self.verdict,
            "reason": self.reason,
            "guarantee": self.statement,
            "claim_id": self.claim.claim_id.hex(),
            "deal_id": self.claim.deal.deal_id,
            "deal_digest": self.claim.deal.digest.hex(),
            "refused_by": self.refused_by,
            "provider": self.claim.deal.provider_key.hex(),
            "epoch": st.epoch,
            "claimed_amount": self.claim.amount,
            "checked": self.checked,
            "problems": self.problems,
            "fraud_proof": self.fraud_proof,
        }


def audit(claim: Claim, challenge: Challenge, openings: list[Opening], service: Service, *,
          deal: Deal, jobs: int = 1, final: bool = False, states: dict[str, Any] | None = None) -> Verdict:
    """Settle one claim: ACCEPT with the challenge's guarantee, REJECT with reasons, or REFUSED.

    Stateful samples are checked against their neighbours (the state chain) and re-executed
    from their pre-state, which the provider sends in the `states` bundle.

    `deal` is the deal the auditor agreed to, never the one the claim carries: a provider must
    not choose its own prices. With `final` (the deal's response deadline has passed), samples
    the provider did not open are a REJECT rather than a refusal.
    """
    st, env = claim.statement, claim.envelope

    def refuse(reason: str, by: str = "auditor") -> Verdict:
        return Verdict("REFUSED", claim, reason, refused_by=by)

    def reject(reason: str, **kw: Any) -> Verdict:
        return Verdict("REJECT", claim, reason, **kw)

    if claim.deal.digest != deal.digest:
        return reject("the claim carries other deal terms than the deal the auditor agreed to")
    if (st.deal_id, st.scheme, st.public_key) != (deal.deal_id, deal.scheme, deal.provider_key):
        return reject("the attestation is not for this deal or is signed by another provider")
    if st.module_digest != deal.module_digest or st.cost_model_digest != deal.cost_model_digest:
        return reject("the attestation names another module or cost model than the deal")
    try:
        report = verify_envelope(env, get_scheme(st.scheme), trusted_keys=[deal.provider_key], require_reproducible=True)
    except CostModelMismatchError as exc:
        return refuse(f"cannot reproduce the claimed cost model here: {exc.message}")
    except (SignatureError, VerificationError, EncodingError) as exc:
        return reject(f"the attestation does not verify: [{exc.code}] {exc.message}")
    if service.digest != deal.module_digest:
        return refuse("the module given to the auditor is not the deal's module")
    expected = deal.amount(st.totals)
    if claim.amount != expected:
        return reject(f"claimed amount {claim.amount} is not price x totals + subscription = {expected}")
    if challenge.claim_id != claim.claim_id or challenge.root != st.root:
        raise EncodingError("the challenge is for another claim")
    challenge.matches(claim)
    by_target = {o.target: o for o in openings}
    wanted = [f"w{j}" for j in range(len(challenge.weighted))] + [f"u{j}" for j in range(len(challenge.uniform))]
    missing = [t for t in wanted if t not in by_target]
    if missing:
        text = f"{len(missing)} of {len(wanted)} challenged samples were not opened (first: {missing[0]})"
        if final:
            return reject(text + " by the deadline")
        return refuse(text + "; a re-audit must use this same challenge, and after the deadline this is a REJECT", by="provider")
    cm_bytes = report.cost_model.canonical_bytes
    problems: list[str] = []
    fraud: dict[str, Any] | None = None
    tasks, task_openings = [], []
    stateful: dict[str, Any] = {}  # genesis and the bundle's state headers, on first need

    def pre_state_root(record: Record) -> bytes:
        """Check a stateful sample's chain and that its pre-state is genesis or in the bundle;
        the images themselves are rebuilt one at a time when the samples run."""
        if "genesis" not in stateful:
            stateful["genesis"] = _executor(service.main, service.links, cm_bytes).genesis()
            try:
                stateful["roots"], stateful["error"] = bundle_roots(states) if states is not None else set(), None
            except PoEError as exc:
                stateful["roots"], stateful["error"] = set(), exc
        g = stateful["genesis"]
        check_state_chain(record, o.neighbors, st.root, g[0].root)
        if record.pre_state == g[0].root:
            return record.pre_state
        if stateful["error"] is not None:
            raise stateful["error"]
        if record.pre_state not in stateful["roots"]:
            raise StateMismatchError(f"segment {record.index}'s pre-state is not in the provider's state bundle",
                                     expected=record.pre_state.hex(), observed=None)
        return record.pre_state

    for target in wanted:
        o = by_target[target]
        try:
            proof = InclusionProof.decode(o.proof)
            verify_inclusion(o.record, proof, st.root)
            if not st.first_index <= proof.index < st.end_index or proof.index != o.index:
                raise VerificationError(f"leaf {proof.index} is outside the claimed epoch", expected=[st.first_index, st.end_index], observed=proof.index)
            record = Record.decode(o.record)
            if target[0] == "w":
                r = challenge.weighted[int(target[1:])]
                lo, hi = landing_offset(deal, st.previous_root.sums, proof, leaf(o.record).sums)
                if not lo <= r < hi:
                    raise VerificationError(f"opening for weighted target {target} covers [{lo}, {hi}), not {r}", expected=r, observed=[lo, hi])
            elif proof.index != challenge.uniform[int(target[1:])]:
                raise VerificationError(f"opening for {target} is leaf {proof.index}, not {challenge.uniform[int(target[1:])]}")
            if record.index != proof.index:
                raise VerificationError(f"record says index {record.index} but sits at leaf {proof.index}", expected=proof.index, observed=record.index)
            if record.module_digest != deal.module_digest or record.cost_model_digest != deal.cost_model_digest:
                raise VerificationError(f"record {record.index} was made with another module or cost model")
            inv = o.decode_invocation()
            if inv.digest != record.input_digest:
                raise VerificationError(f"record {record.index}: the opened invocation is not the committed input")
            pre = pre_state_root(record) if record.pre_state != _ZERO else None
        except (PoEError, ValueError, IndexError, struct.error) as exc:  # whatever a provider sends, a failed sample
            if not isinstance(exc, PoEError):
                exc = EncodingError(f"malformed opening: {exc}")
            problems.append(f"{target}: [{exc.code}] {exc.message}")
            if isinstance(exc, StateChainError) and fraud is None:
                fraud = {"format": "poe fraud proof v1", "kind": "state-chain", "claim": claim.to_json(), "opening": o.to_json(),
                         "reason": exc.message}
            continue
        tasks.append(((service.main, service.links, cm_bytes, o.invocation, o.payloads, o.index), pre))
        task_openings.append((o, record))
    # Several targets often land on one segment: re-execute each segment once.
    unique = {t[5]: (t, pre, o.record) for (t, pre), (o, _) in zip(tasks, task_openings)}
    # An honest bundle holds one state per distinct stateful pre-state among the openings: a
    # bundle with more asks for work nobody needs.
    pre_roots = set()
    for o in (by_target[t] for t in wanted):  # openings nobody asked for must not raise the bound
        if len(o.record) == 288 and o.record[224:256] != _ZERO:
            pre_roots.add(o.record[224:256])
    outcomes = _reexecute_all(list(unique.values()), jobs, stateful.get("genesis"), states, report.cost_model.limits.memory_pages,
                              max(1, len(pre_roots)))
    for o, committed in task_openings:
        observed, pre = outcomes[o.index]
        if isinstance(observed, tuple):  # the provider's data could not be re-executed
            problems.append(f"{o.target}: [{observed[0]}] segment {o.index} cannot be re-executed: {observed[1]}")
            continue
        if observed != o.record:
            diff = record_diff(committed, Record.decode(observed))
            problems.append(f"{o.target}: re-execution of segment {o.index} disagrees on {', '.join(diff)}")
            # A stateful segment's proof must carry its pre-state: only one such bundle is built.
            provable = committed.pre_state == _ZERO or pre is not None
            if provable and (fraud is None or fraud["kind"] != "re-execution"):
                fraud = {
                    "format": "poe fraud proof v1", "kind": "re-execution",
                    "claim": claim.to_json(), "opening": o.to_json(), "observed_record": observed.hex(),
                    "differences": {k: [a, b] for k, (a, b) in diff.items()},
                }
                if pre is not None:  # self-contained: the pre-state travels with the proof
                    fraud["states"] = pre
    checked = {"weighted": len(challenge.weighted), "uniform": len(challenge.uniform), "re_executed": len(unique)}
    if problems:
        return reject(f"{len(problems)} of {len(wanted)} samples fail", problems=problems, fraud_proof=fraud, checked=checked)
    return Verdict("ACCEPT", claim, "every sample verifies and re-executes to the committed record", statement=challenge.guarantee(), checked=checked)


def _reexecute_all(items: list[tuple[tuple, bytes | None, bytes]], jobs: int, genesis: tuple[State, bytes] | None,
                   states: dict[str, Any] | None, max_pages: int, max_states: int) -> dict[int, tuple[Any, dict[str, Any] | None]]:
    """Re-execute each (task, pre-state root, committed record) once: index -> (record bytes, or
    the (code, message) of the provider error that stopped it; and for one stateful record that
    differs from the committed one, a bundle of its pre-state for the fraud proof). Stateful tasks run as the bundle's images are
    rebuilt, one image at a time, in batches: an audit holds a few images, not one per sample."""
    # One pool for the whole audit: a spawned worker costs more to start than a batch to run.
    with _Pool(jobs if len(items) > 1 else 1) as pool:
        return _reexecute_in(pool, items, genesis, states, max_pages, max_states)


def _reexecute_in(pool: _Pool, items: list[tuple[tuple, bytes | None, bytes]], genesis: tuple[State, bytes] | None,
                  states: dict[str, Any] | None, max_pages: int, max_states: int) -> dict[int, tuple[Any, dict[str, Any] | None]]:
    out: dict[int, tuple[Any, dict[str, Any] | None]] = {}
    committed = {t[5]: c for t, _, c in items}
    plain = [t for t, root, _ in items if root is None]
    for t, rec in zip(plain, pool.map(_reexecute_or_error, plain)):
        out[t[5]] = (rec, None)
    by_root: dict[bytes, list[tuple]] = {}
    for t, root, _ in items:
        if root is not None:
            by_root.setdefault(root, []).append(t)
    if not by_root:
        return out
    assert genesis is not None
    batch: list[tuple[tuple, State, bytes]] = []
    proof_bundle: list[int] = []  # one fraud proof needs one pre-state: build at most one bundle

    def flush() -> None:
        for (t, state, image), rec in zip(batch, pool.map(_reexecute_or_error, [t + (state.encoded, image) for t, state, image in batch])):
            differs = isinstance(rec, bytes) and rec != committed[t[5]]
            bundle = None
            if differs and not proof_bundle:
                bundle = _single_state_bundle(genesis, (state, image))
                proof_bundle.append(t[5])
            out[t[5]] = (rec, bundle)
        batch.clear()

    ready = [(genesis[0], genesis[1])] if genesis[0].root in by_root else []
    try:
        needed = set(by_root) - {genesis[0].root}
        for state, image in _chain_images(ready, states, genesis[1], max_pages, max_states, needed):
            for t in by_root.pop(state.root, ()):
                batch.append((t, state, image))
            if len(batch) >= 4 * pool.jobs:
                flush()
            if not by_root:
                break
        flush()
    except PoEError as exc:  # the bundle itself is bad: every sample still waiting on it fails
        failed = ((exc.code, f"the provider's state bundle is unusable: {exc.message}"), None)
        for t, _, _ in batch:
            out.setdefault(t[5], failed)
        for ts in by_root.values():
            for t in ts:
                out[t[5]] = failed
    return out


def _chain_images(first: list[tuple[State, bytes]], states: dict[str, Any] | None, genesis_image: bytes,
                  max_pages: int, max_states: int, needed: set[bytes]):
    yield from first
    if states is not None and needed:
        # Images are hashed where they are restored (Session.attach checks the root), once.
        yield from open_bundle(states, genesis_image, max_pages=max_pages, max_states=max_states, wanted=needed, check_images=False)


def _single_state_bundle(genesis: tuple[State, bytes], pre: tuple[State, bytes]) -> dict[str, Any]:
    state, image = pre
    manifest = manifest_of(image)  # every chunk hashed once: the manifest also addresses the chunks
    chunks = {bytes(manifest[k * 32 : k * 32 + 32]): image[k * CHUNK_SIZE : (k + 1) * CHUNK_SIZE] for k in range(state.chunks)}
    return bundle_states(bytes(manifest_of(genesis[1])), [(state, manifest)], chunks.__getitem__)


class _Pool:
    """Maps a function over tasks in this process (jobs <= 1) or over `jobs` spawned workers,
    started once and reused for every map (spawn, not fork: this process may already hold a
    wasmtime engine, which must not be forked)."""

    def __init__(self, jobs: int) -> None:
        self.jobs = max(1, jobs)
        self._pool: ProcessPoolExecutor | None = None

    def map(self, fn: Any, tasks: list) -> list:
        if self.jobs <= 1 or len(tasks) < 2:
            return [fn(t) for t in tasks]
        if self._pool is None:
            self._pool = ProcessPoolExecutor(max_workers=self.jobs, mp_context=multiprocessing.get_context("spawn"))
        return list(self._pool.map(fn, tasks, chunksize=max(1, len(tasks) // (4 * self.jobs))))

    def __enter__(self) -> _Pool:
        return self

    def __exit__(self, *exc: object) -> None:
        if self._pool is not None:
            self._pool.shutdown()


def check_fraud_proof(proof: dict[str, Any], service: Service) -> dict[str, Any]:
    """Re-check a fraud proof. A "re-execution" proof costs one re-execution (from the pre-state
    it carries, for a stateful segment); a "state-chain" proof shows two adjacent committed
    records whose states do not chain. Returns what was proven; raises if nothing."""
    if not isinstance(proof, dict) or proof.get("format") != "poe fraud proof v1" or proof.get("kind") not in ("re-execution", "state-chain") \
            or not {"claim", "opening"} <= set(proof):
        raise EncodingError("not a poe fraud proof v1 document")
    claim = Claim.from_json(proof["claim"])
    st = claim.statement
    if (claim.deal.deal_id, claim.deal.provider_key) != (st.deal_id, st.public_key):
        raise VerificationError("the fraud proof's deal is not the one the provider signed for")
    verify_envelope(claim.envelope, get_scheme(st.scheme), trusted_keys=[claim.deal.provider_key], require_reproducible=True)
    o = Opening.from_json(proof["opening"])
    inclusion = InclusionProof.decode(o.proof)
    verify_inclusion(o.record, inclusion, st.root)
    committed = Record.decode(o.record)
    # The position is the proof's, never the opening's say-so: re-executing a leaf at another
    # index would "prove" fraud against an honest record.
    if not (o.index == inclusion.index == committed.index) or not st.first_index <= inclusion.index < st.end_index:
        raise VerificationError(
            "the opening's index, its proof's leaf and its record's index disagree, or the leaf is outside the epoch",
            expected=inclusion.index, observed=[o.index, committed.index],
        )
    if service.digest != committed.module_digest:
        raise VerificationError("the module given is not the one the committed record names", expected=committed.module_digest.hex(), observed=service.digest.hex())
    cm_bytes = CostModel.from_json(claim.envelope.cost_model).canonical_bytes
    summary = {"proven": True, "kind": proof["kind"], "provider": st.public_key.hex(), "deal_id": st.deal_id, "epoch": st.epoch, "segment": o.index}
    if proof["kind"] == "state-chain":
        if committed.pre_state == _ZERO:
            raise VerificationError("the segment is stateless: it has no state chain")
        genesis = _executor(service.main, service.links, cm_bytes).genesis()
        try:
            check_state_chain(committed, o.neighbors, st.root, genesis[0].root)
        except StateChainError as exc:
            return {**summary, "reason": exc.message}
        raise VerificationError("the segment's states chain with its neighbours: no fraud here")
    if o.decode_invocation().digest != committed.input_digest:
        raise VerificationError("the opened invocation is not the committed input")
    task = (service.main, service.links, cm_bytes, o.invocation, o.payloads, o.index)
    if committed.pre_state != _ZERO:
        genesis = _executor(service.main, service.links, cm_bytes).genesis()
        if committed.pre_state == genesis[0].root:
            pre = genesis
        else:
            cm = CostModel.from_json(claim.envelope.cost_model)
            found = {s_.root: (s_, img) for s_, img in open_bundle(proof.get("states"), genesis[1], max_pages=cm.limits.memory_pages,
                                                                   max_states=1, wanted={committed.pre_state})}
            if committed.pre_state not in found:
                raise VerificationError("the fraud proof does not carry the segment's pre-state")
            pre = found[committed.pre_state]
        task += (pre[0].encoded, pre[1])
    observed = reexecute(task)
    if observed == o.record:
        raise VerificationError("re-execution reproduces the committed record: no fraud here", expected="a different record", observed=observed.hex())
    diff = record_diff(committed, Record.decode(observed))
    return {**summary, "differences": {k: [a, b] for k, (a, b) in diff.items()}}


def settle(verdicts: list[dict[str, Any]], deal: Deal) -> dict[str, Any]:
    """Integer payouts per provider and epoch: accepted pays the claim, rejected the penalty."""
    rows, total = [], 0
    seen: dict[tuple[str, int], str] = {}
    for v in verdicts:
        if not isinstance(v, dict) or v.get("format") != "poe verdict v1" or v.get("deal_id") != deal.deal_id:
            raise EncodingError("a verdict file is malformed or for another deal")
        if v.get("deal_digest") != deal.digest.hex():
            raise EncodingError("a verdict was reached under other deal terms than this deal's")
        epoch, claimed = v.get("epoch"), v.get("claimed_amount")
        if not all(isinstance(x, int) and not isinstance(x, bool) and x >= 0 for x in (epoch, claimed)):
            raise EncodingError("a verdict's epoch and claimed amount must be non-negative integers")
        key = (str(v.get("provider")), epoch)
        if key in seen:
            # Two verdicts for one provider's epoch: a replayed claim, or one audited twice.
            raise EncodingError(f"two verdicts for provider {key[0][:16]}... epoch {key[1]}; settle each epoch once",
                                expected="one verdict per epoch", observed=[seen[key], v.get("claim_id")])
        seen[key] = str(v.get("claim_id"))
        if v.get("verdict") == "ACCEPT":
            pay, status = claimed, "paid"
        elif v.get("verdict") == "REJECT":
            pay = 0 if deal.penalty["kind"] == "forfeit" else -int(deal.penalty["amount"])
            status = "penalised"
        elif v.get("verdict") == "REFUSED":
            pay = 0
            status = ("withheld: the provider must open the same challenge's samples" if v.get("refused_by") == "provider"
                      else "withheld pending a re-audit")
        else:
            raise EncodingError(f"unknown verdict {v.get('verdict')!r}")
        rows.append({"provider": v["provider"], "epoch": v["epoch"], "claim_id": v["claim_id"], "verdict": v["verdict"],
                     "claimed": claimed, "payout": pay, "status": status})
        total += pay
    return {"format": "poe payouts v1", "deal_id": deal.deal_id, "payouts": rows, "total": total}


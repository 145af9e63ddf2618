"""The provider's answer to a challenge: open every target from the trace store (spec §12.3, §13.6)."""

from __future__ import annotations

from typing import Any

from poe.errors import InputError, VerificationError
from poe.formats.record import Record
from poe.formats.state import State, bundle_states, manifest_of
from poe.merkle.build import Tree
from poe.merkle.verify import InclusionProof, encode_bill_range
from poe.protocol.challenge import Challenge
from poe.protocol.claim import Claim
from poe.protocol.deal import Deal
from poe.protocol.openings import BillOpening, Opening, Openings

__all__ = ["find_weighted_leaf", "open_targets", "open_states", "respond"]

_ZERO = bytes(32)


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
    bills: dict[int, BillOpening] = {}
    if not st.bills:  # no ordered bill tree: weighted targets land in the record tree
        base = claim.deal.weight(st.previous_root.sums)
        picks = [(f"w{j}", find_weighted_leaf(tree, claim.deal, base + r)) for j, r in enumerate(challenge.weighted)]
    else:  # weighted targets land in the epoch's bill tree, whose sums are the records' (spec §14.3)
        entries, btree = store.bill(st.epoch)
        if btree.root != st.bill_root:
            raise VerificationError("the store's bill tree is not the attested one", expected=st.bill_root.to_json(), observed=btree.root.to_json())
        picks = []
        for j, r in enumerate(challenge.weighted):
            pos = find_weighted_leaf(btree, claim.deal, r)
            lo, hi = max(0, pos - 1), min(btree.size, pos + 2)
            bills[j] = BillOpening(pos, tuple(entries[lo:hi]), encode_bill_range(lo, hi, btree.range_path(lo, hi)))
            picks.append((f"w{j}", entries[pos].index))
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
            bills.get(int(target[1:])) if target[0] == "w" else None,
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


def respond(store: Any, claim: Claim, challenge: Challenge, genesis: Any = None) -> Openings:
    """Everything `poe respond` sends back: the openings and, for stateful samples, the bundle of
    their pre-states. `genesis` gives the module's genesis state when the caller holds it; else
    it is computed (which needs the executor) only if some sample is stateful."""
    if challenge.claim_id != claim.claim_id:
        raise InputError("the challenge is for another claim")
    challenge.matches(claim)
    openings = open_targets(store, claim, challenge)
    states = None
    if any(Record.decode(o.record).pre_state != _ZERO for o in openings):
        if genesis is None:
            from poe.wasm.executor import Executor

            genesis = Executor(store.service(claim.statement.module_digest), store.cost_model).genesis()
        states = open_states(store, openings, genesis)
    return Openings(claim.claim_id, challenge.seed, tuple(openings), states)

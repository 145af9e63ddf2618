"""Fraud proofs (spec §12.3, §13.6): self-contained files anyone can re-check.

A "re-execution" proof costs one re-execution (from the pre-state it carries, for a stateful
segment); a "state-chain" proof shows two adjacent committed records whose states do not
chain, and needs none; a "bill-leaf" proof shows a leaf of the signed bill tree that fails a
check of spec §14.3 (unsigned or misattributed work, a request billed twice, outside its window
or budget, a leaf naming another record), and needs neither a module nor a re-execution.
"""

from __future__ import annotations

from typing import Any

from poe.audit.chain import ZERO_STATE as _ZERO, check_state_chain
from poe.audit.reexec import executor_for, reexecute
from poe.errors import EncodingError, InputError, NotProvenError, StateChainError, VerificationError
from poe.formats.costmodel import CostModel
from poe.formats.moduleset import Service
from poe.formats.record import Record, record_diff
from poe.formats.state import open_bundle
from poe.merkle.verify import InclusionProof, verify_inclusion
from poe.protocol.attestation import verify_envelope
from poe.protocol.bill import BillLeafFault, check_bill_leaf, check_bill_opening
from poe.protocol.claim import Claim
from poe.protocol.openings import Opening

__all__ = ["check_fraud_proof", "fraud_proof_of"]


def fraud_proof_of(doc: Any) -> Any:
    """A fraud proof, or the one a verdict carries (NotProvenError if the verdict has none)."""
    if isinstance(doc, dict) and isinstance(doc.get("format"), str) and doc["format"].startswith("poe verdict v"):
        if not doc.get("fraud_proof"):
            raise NotProvenError(f"the verdict ({str(doc.get('verdict'))[:20]}) carries no fraud proof: nothing is proven")
        return doc["fraud_proof"]
    return doc


def check_fraud_proof(proof: dict[str, Any], service: Service | None, deal: Any = None) -> dict[str, Any]:
    """Re-check a fraud proof. A "re-execution" proof costs one re-execution (from the pre-state
    it carries, for a stateful segment); a "state-chain" proof shows two adjacent committed
    records whose states do not chain; a "bill-leaf" proof a bill leaf that fails a check of
    spec §14.3 (no module needed: `service` may be None), against `deal`, the deal the checker
    trusts: the statement signs the deal's id but not its terms, so a proof cannot bring its own.
    Returns what was proven; raises if nothing."""
    if not isinstance(proof, dict) or proof.get("format") != "poe fraud proof v1" \
            or proof.get("kind") not in ("re-execution", "state-chain", "bill-leaf") or not {"claim", "opening"} <= set(proof):
        raise EncodingError("not a poe fraud proof v1 document")
    claim = Claim.from_json(proof["claim"])
    st = claim.statement
    if (why := claim.deal.mismatch(st)) is not None:
        raise VerificationError(f"the fraud proof's deal is not the one the provider signed for: {why}")
    from poe.crypto.schemes import get_scheme  # loads when a signature is checked

    verify_envelope(claim.envelope, get_scheme(st.scheme), trusted_keys=[claim.deal.provider_key], require_reproducible=proof["kind"] != "bill-leaf")
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
    summary = {"proven": True, "kind": proof["kind"], "provider": st.public_key.hex(), "deal_id": st.deal_id, "epoch": st.epoch, "segment": o.index}
    if proof["kind"] == "bill-leaf":
        if deal is None:
            raise InputError("a bill-leaf proof is checked against the deal you trust (its window, its policy and its digest, which "
                             "requests sign): give it")
        if deal.digest != claim.deal.digest:
            raise VerificationError("the proof's claim carries other deal terms than the deal given: nothing is proven against it")
        return {**summary, "reason": _bill_leaf_fault(st, deal, o, committed)}
    if service is None:
        raise InputError(f"a {proof['kind']} proof is re-checked against the module: give it")
    if service.digest != committed.module_digest:
        raise VerificationError("the module given is not the one the committed record names", expected=committed.module_digest.hex(), observed=service.digest.hex())
    cm_bytes = CostModel.from_json(claim.envelope.cost_model).canonical_bytes
    if proof["kind"] == "state-chain":
        if committed.pre_state == _ZERO:
            raise VerificationError("the segment is stateless: it has no state chain")
        genesis = executor_for(service.main, service.links, cm_bytes).genesis()
        try:
            check_state_chain(committed, o.neighbors, st.root, genesis[0].root)
        except StateChainError as exc:
            return {**summary, "reason": exc.message}
        raise NotProvenError("the segment's states chain with its neighbours: no fraud here")
    if o.decode_invocation().digest != committed.input_digest:
        raise VerificationError("the opened invocation is not the committed input")
    task = (service.main, service.links, cm_bytes, o.invocation, o.payloads, o.index)
    if committed.pre_state != _ZERO:
        genesis = executor_for(service.main, service.links, cm_bytes).genesis()
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
        raise NotProvenError("re-execution reproduces the committed record: no fraud here", expected="a different record", observed=observed.hex())
    diff = record_diff(committed, Record.decode(observed))
    return {**summary, "differences": {k: [a, b] for k, (a, b) in diff.items()}}


def _bill_leaf_fault(statement: Any, deal: Any, opening: Opening, record: Record) -> str:
    """The fault a bill-leaf proof shows (spec §14.3 checks 2-4), from signed data only."""
    if not statement.bills:
        raise VerificationError("the attestation signs no ordered bill tree: there is no bill leaf to prove anything about")
    try:
        entry, lo, _ = check_bill_opening(statement, opening)
        check_bill_leaf(statement, deal, opening, record, entry, lo)
    except BillLeafFault as exc:
        return exc.message
    raise NotProvenError("the bill leaf passes every check: no fraud here")

"""The state chain of stateful samples (spec §13.6): pure checks against proven neighbours."""

from __future__ import annotations

from typing import Any

from poe.errors import StateChainError, VerificationError
from poe.formats.record import Record
from poe.merkle.verify import InclusionProof, verify_inclusion

__all__ = ["check_state_chain", "ZERO_STATE"]

ZERO_STATE = bytes(32)
_ZERO = ZERO_STATE


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

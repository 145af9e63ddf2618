"""Settlement (spec §12.4): integer payouts that follow from signed inputs and the deal alone.

A verdict file pays nothing by what it says: its auditor's signature must verify under a key the
settler trusts, its claim's attestation under the deal's provider key, and the amount paid is
recomputed from the attested totals and the deal's prices, never read from the file.
"""

from __future__ import annotations

from typing import Any

from poe.errors import EncodingError, VerificationError
from poe.protocol.attestation import verify_envelope
from poe.protocol.deal import Deal
from poe.protocol.verdict import SignedVerdict

__all__ = ["settle"]


def settle(verdicts: list[Any], deal: Deal, auditors: list[tuple[str, bytes]]) -> dict[str, Any]:
    """Integer payouts per provider and epoch: accepted pays the claim, rejected the penalty.

    `verdicts` are verdict documents (JSON objects); `auditors` the (scheme, public key) of every
    auditor whose verdicts count. Raises on any verdict that is unsigned, signed by another key,
    under other terms than `deal`, or a second verdict for one provider's epoch."""
    if not auditors:
        raise EncodingError("settlement needs at least one trusted auditor key")
    from poe.crypto.schemes import get_scheme  # signature backends load when a signature is checked

    rows, total = [], 0
    seen: dict[tuple[bytes, int], str] = {}
    for doc in verdicts:
        v = SignedVerdict.from_json(doc)
        v.verify(auditors)
        claim, st = v.claim, v.claim.statement
        if claim.deal.digest != deal.digest:
            raise EncodingError("a verdict was reached under other deal terms than this deal's",
                                expected=deal.digest.hex(), observed=claim.deal.digest.hex())
        if (why := deal.mismatch(st)) is not None:
            raise VerificationError(f"a verdict's claim: {why}")
        verify_envelope(claim.envelope, get_scheme(st.scheme), trusted_keys=[deal.provider_key])
        key = (st.public_key, st.epoch)
        if key in seen:
            # Two verdicts for one provider's epoch: a replayed claim, or one audited twice.
            raise EncodingError(f"two verdicts for provider {st.public_key.hex()[:16]}... epoch {st.epoch}; settle each epoch once",
                                expected="one verdict per epoch", observed=[seen[key], claim.claim_id.hex()])
        seen[key] = claim.claim_id.hex()
        amount = deal.amount(st.totals)
        if v.outcome == "ACCEPT":
            pay, status = amount, "paid"
        elif v.outcome == "REJECT":
            pay, status = deal.penalty_payout(), "penalised"
        else:
            pay = 0
            status = ("withheld: the provider must open the same challenge's samples" if v.refused_by == "provider"
                      else "withheld pending a re-audit")
        rows.append({"provider": st.public_key.hex(), "epoch": st.epoch, "claim_id": claim.claim_id.hex(), "verdict": v.outcome,
                     "claimed": amount, "payout": pay, "status": status, "auditor": v.auditor_key.hex()})
        total += pay
    return {"format": "poe payouts v1", "deal_id": deal.deal_id, "payouts": rows, "total": total}

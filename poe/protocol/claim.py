"""Claims (docs/spec.md §12.1): an attestation billed under a deal, for exactly price · totals + subscription."""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cached_property
from typing import Any

from poe.errors import EncodingError, VerificationError
from poe.formats import hashing as h
from poe.protocol.attestation import Envelope, Statement
from poe.protocol.deal import QUANTITIES, Deal
from poe.protocol.fields import document, uint

__all__ = ["Claim", "MAX_AMOUNT"]

CTX_CLAIM = "poe 2026-11 claim v1"
MAX_AMOUNT = 1 << 256


def _canonical(value: Any) -> str:
    # 2.0 == 2 in Python; in a document it is another value
    return json.dumps(value, sort_keys=True)


@dataclass(frozen=True)
class Claim:
    deal: Deal
    envelope: Envelope
    amount: int

    @classmethod
    def bill(cls, envelope: Envelope, deal: Deal) -> Claim:
        """The claim for an attested epoch under a deal: the amount follows from its totals."""
        return cls(deal, envelope, deal.amount(envelope.statement.totals))

    @cached_property
    def statement(self) -> Statement:
        return self.envelope.statement

    @cached_property
    def claim_id(self) -> bytes:
        return h.digest(CTX_CLAIM, self.deal.digest + self.statement.digest)

    def verify_under(self, deal: Deal) -> Any:
        """Check that this claim is billed under `deal`, the one the caller trusts, and that its
        attestation is signed by that deal's provider; return the verification report. The
        statement signs the deal's id, not its terms, so a claim could otherwise carry terms
        (prices, provider key) of the writer's choosing. Raises VerificationError or
        SignatureError."""
        if self.deal.digest != deal.digest:
            raise VerificationError("the claim carries other deal terms than the deal you trust", expected=deal.digest.hex(),
                                    observed=self.deal.digest.hex())
        if (why := deal.mismatch(self.statement)) is not None:
            raise VerificationError(why)
        from poe.crypto.schemes import get_scheme  # the signature backend loads when a signature is checked
        from poe.protocol.attestation import verify_envelope

        return verify_envelope(self.envelope, get_scheme(self.statement.scheme), trusted_keys=[deal.provider_key])

    def breakdown(self) -> dict[str, int]:
        st = self.statement
        return {**{q: p * getattr(st.totals, q) for q, p in zip(QUANTITIES, self.deal.prices)}, "subscription": self.deal.subscription}

    def to_json(self) -> dict[str, Any]:
        return {
            "format": "poe claim v1",
            "claim_id": self.claim_id.hex(),
            "amount": self.amount,
            "breakdown": self.breakdown(),
            "deal": self.deal.to_json(),
            "attestation": self.envelope.to_json(),
        }

    @classmethod
    def from_json(cls, doc: Any) -> Claim:
        d = document(doc, "poe claim v1", ["amount", "deal", "attestation"], ["claim_id", "breakdown"])
        claim = cls(Deal.from_json(d["deal"]), Envelope.from_json(d["attestation"]), uint(d["amount"], "claimed amount", MAX_AMOUNT))
        claim.statement  # noqa: B018 - the statement bytes must decode now, not in the middle of an audit
        derived = claim.to_json()
        for key in ("claim_id", "breakdown"):  # derived fields must say what they derive from
            if key in d and _canonical(d[key]) != _canonical(derived[key]):
                raise EncodingError(f"claim field {key!r} does not follow from the deal and the attestation")
        return claim

    @classmethod
    def loads(cls, raw: bytes | str) -> Claim:
        try:
            return cls.from_json(json.loads(raw))
        except (ValueError, UnicodeDecodeError, RecursionError) as exc:
            raise EncodingError(f"a claim must be JSON ({exc})") from None

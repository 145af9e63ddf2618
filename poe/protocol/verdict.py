"""Verdicts (docs/spec.md §12.4): the auditor's signed word on one claim.

What a verdict decides is signed by the auditor as a small binary statement: the outcome, the
claim id, the deal digest and the digest of the fraud proof, if any. The verdict file carries
the whole claim (the provider-signed attestation and the deal) beside it, so settlement
recomputes every amount from signed inputs and the deal; the reasons, problems and figures in
the file are for people and are never paid from.
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from poe.errors import EncodingError, SignatureError, VerificationError
from poe.formats import hashing as h
from poe.protocol.attestation import PUBLIC_KEY_SIZES, SCHEME_IDS
from poe.protocol.claim import Claim
from poe.protocol.fields import exact, hexbytes, text, uint

__all__ = ["Verdict", "SignedVerdict", "VERDICT_FORMAT", "OUTCOMES"]

VERDICT_FORMAT = "poe verdict v2"
STATEMENT_VERSION = 1
CTX_VERDICT = "poe 2026-12 verdict v1"
CTX_FRAUD_PROOF = "poe 2026-12 fraud proof v1"
# (verdict, refused_by) -> code in the signed statement
OUTCOMES = {("ACCEPT", None): 1, ("REJECT", None): 2, ("REFUSED", "auditor"): 3, ("REFUSED", "provider"): 4}
_OUTCOME_OF = {v: k for k, v in OUTCOMES.items()}
_SCHEME_OF = {v: k for k, v in SCHEME_IDS.items()}
_HEAD = struct.Struct("<BB32s32s32sBH")
_INFO = ("reason", "guarantee", "claim_id", "deal_id", "deal_digest", "refused_by", "provider", "epoch", "claimed_amount",
         "checked", "problems", "fraud_proof", "verdict")


def fraud_proof_digest(proof: dict[str, Any] | None) -> bytes:
    if proof is None:
        return h.ZERO_DIGEST
    return h.digest(CTX_FRAUD_PROOF, json.dumps(proof, sort_keys=True, separators=(",", ":")).encode())


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
            "format": VERDICT_FORMAT,
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
            "claim": self.claim.to_json(),
        }

    def signed_statement(self, scheme_name: str, public_key: bytes, issued_at: int) -> bytes:
        """The canonical bytes an auditor signs for this verdict (spec §12.4)."""
        return _encode(OUTCOMES[(self.verdict, self.refused_by)], self.claim.claim_id, self.claim.deal.digest,
                       fraud_proof_digest(self.fraud_proof), scheme_name, public_key, issued_at)

    def sign(self, scheme: Any, secret_key: bytes, issued_at: int) -> dict[str, Any]:
        """The verdict document, signed by the auditor's key."""
        pk = scheme.public_key(secret_key)
        raw = self.signed_statement(scheme.name, pk, issued_at)
        return {**self.to_json(), "auditor": {"scheme": scheme.name, "public_key": pk.hex()}, "statement": raw.hex(),
                "signature": scheme.sign(secret_key, h.digest(CTX_VERDICT, raw)).hex()}


def _encode(outcome: int, claim_id: bytes, deal_digest: bytes, fraud: bytes, scheme: str, pk: bytes, issued_at: int) -> bytes:
    return _HEAD.pack(STATEMENT_VERSION, outcome, claim_id, deal_digest, fraud, SCHEME_IDS[scheme], len(pk)) + pk + struct.pack("<Q", issued_at)


@dataclass(frozen=True)
class SignedVerdict:
    """A verdict file as settlement reads it: only signed bytes and the provider-signed claim."""

    outcome: str
    refused_by: str | None
    claim: Claim
    fraud_digest: bytes
    scheme: str
    auditor_key: bytes
    issued_at: int
    statement_bytes: bytes
    signature: bytes

    @classmethod
    def from_json(cls, doc: Any) -> SignedVerdict:
        if not isinstance(doc, dict) or doc.get("format") != VERDICT_FORMAT:
            raise EncodingError(f"not a {VERDICT_FORMAT} document (an unsigned or older verdict cannot be settled)")
        if not {"auditor", "statement", "signature"} <= set(doc):
            raise EncodingError("the verdict is not signed: only verdicts signed by an auditor (`poe audit --key`) settle")
        exact(doc, "verdict", {"format", "claim", "auditor", "statement", "signature"}, _INFO)
        auditor = exact(doc["auditor"], "verdict auditor", ["scheme", "public_key"])
        raw = hexbytes(doc["statement"], "verdict statement", max_length=512)
        try:
            version, outcome, claim_id, deal_digest, fraud, scheme_id, pk_len = _HEAD.unpack_from(raw)
            pk = raw[_HEAD.size : _HEAD.size + pk_len]
            (issued_at,) = struct.unpack_from("<Q", raw, _HEAD.size + pk_len)
        except struct.error:
            raise EncodingError("the verdict statement is truncated") from None
        if version != STATEMENT_VERSION or outcome not in _OUTCOME_OF or scheme_id not in _SCHEME_OF:
            raise EncodingError("the verdict statement has an unknown version, outcome or scheme")
        scheme = _SCHEME_OF[scheme_id]
        if len(pk) != PUBLIC_KEY_SIZES[scheme] or len(raw) != _HEAD.size + pk_len + 8:
            raise EncodingError("the verdict statement's key has the wrong size, or bytes follow it")
        if (text(auditor["scheme"], "auditor scheme"), hexbytes(auditor["public_key"], "auditor key", max_length=128)) != (scheme, pk):
            raise EncodingError("the verdict's auditor field does not name the key in its signed statement")
        claim = Claim.from_json(doc["claim"])
        if (claim.claim_id, claim.deal.digest) != (claim_id, deal_digest):
            raise EncodingError("the verdict's claim is not the claim its signed statement names")
        verdict, refused_by = _OUTCOME_OF[outcome]
        if fraud != fraud_proof_digest(doc.get("fraud_proof")):
            raise EncodingError("the verdict's fraud proof is not the one its auditor signed")
        return cls(verdict, refused_by, claim, fraud, scheme, pk, uint(issued_at, "issued at"), raw,
                   hexbytes(doc["signature"], "verdict signature", max_length=256))

    @cached_property
    def digest(self) -> bytes:
        return h.digest(CTX_VERDICT, self.statement_bytes)

    def verify(self, trusted: list[tuple[str, bytes]]) -> None:
        """The auditor is one of `trusted` (scheme, public key) and its signature verifies."""
        if (self.scheme, self.auditor_key) not in trusted:
            raise VerificationError("the verdict is signed by an auditor you did not trust",
                                    expected=[pk.hex() for _, pk in trusted], observed=self.auditor_key.hex())
        from poe.crypto.schemes import get_scheme  # a signature backend loads only when one is checked

        try:
            get_scheme(self.scheme).verify(self.auditor_key, self.digest, self.signature)
        except SignatureError as exc:
            raise SignatureError(f"the auditor's signature on the verdict does not verify: {exc.message}", **exc.details) from None

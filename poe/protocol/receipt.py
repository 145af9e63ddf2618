"""Receipts (docs/spec.md §14.5): the provider's signed promise, per executed request, that the
segment answering it is billed in a named epoch, and the customer's check of that promise.

A receipt names the deal, the request (its EIP-712 digest, customer and sequence), the segment
(index and the record's leaf hash) and the epoch whose attested roots will include it, signed
with the deal's provider key. Once that epoch is attested, the customer's bill (§14.4) either
holds the segment or it does not; a receipt not honoured, with the signed claim and the bill,
is a fraud proof anyone re-checks with no re-execution. Everything here is pure.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Any

from poe.errors import EncodingError, NotProvenError, VerificationError
from poe.formats import hashing as h
from poe.protocol.fields import document, exact, hex0x, hexbytes, uint

__all__ = ["Receipt", "RECEIPT_FORMAT", "RECEIPT_FRAUD_FORMAT", "sign_receipt", "check_receipts", "check_receipt_fraud", "receipt_fraud_proof"]

RECEIPT_FORMAT = "poe receipt v1"
RECEIPT_FRAUD_FORMAT = "poe receipt fraud v1"
CTX_RECEIPT = "poe 2026-12 receipt v1"
RECEIPT_VERSION = 1
# version, deal digest, request digest, customer, sequence, epoch, index, record leaf hash
_STATEMENT = struct.Struct("<B32s32s20sQQQ32s")
_FIELDS = ("deal", "request", "customer", "sequence", "epoch", "index", "record_leaf", "signature")


@dataclass(frozen=True)
class Receipt:
    deal: bytes  # the deal's digest
    request: bytes  # the request's EIP-712 digest
    customer: bytes  # 20 address bytes
    sequence: int
    epoch: int  # the epoch whose attested roots the provider promises include the segment
    index: int
    record_leaf: bytes  # the record's leaf hash in the record tree (commits the record's bytes)
    signature: bytes = b""

    def statement(self) -> bytes:
        return _STATEMENT.pack(RECEIPT_VERSION, self.deal, self.request, self.customer, self.sequence, self.epoch, self.index, self.record_leaf)

    @property
    def digest(self) -> bytes:
        return h.digest(CTX_RECEIPT, self.statement())

    def verify(self, scheme: Any, provider_key: bytes) -> None:
        """SignatureError unless the deal's provider signed this receipt."""
        scheme.verify(provider_key, self.digest, self.signature)

    def to_json(self) -> dict[str, Any]:
        return {"format": RECEIPT_FORMAT, "deal": self.deal.hex(), "request": self.request.hex(), "customer": "0x" + self.customer.hex(),
                "sequence": self.sequence, "epoch": self.epoch, "index": self.index, "record_leaf": self.record_leaf.hex(),
                "signature": self.signature.hex()}

    @classmethod
    def from_json(cls, doc: Any) -> Receipt:
        d = document(doc, RECEIPT_FORMAT, _FIELDS)
        return cls(hexbytes(d["deal"], "receipt deal", 32), hexbytes(d["request"], "receipt request", 32), hex0x(d["customer"], "receipt customer", 20),
                   uint(d["sequence"], "receipt sequence"), uint(d["epoch"], "receipt epoch"), uint(d["index"], "receipt index"),
                   hexbytes(d["record_leaf"], "receipt record leaf", 32), hexbytes(d["signature"], "receipt signature", max_length=128))


def sign_receipt(scheme: Any, secret_key: bytes, *, deal: bytes, request: bytes, customer: bytes, sequence: int, epoch: int, index: int,
                 record_leaf: bytes) -> Receipt:
    unsigned = Receipt(deal, request, customer, sequence, epoch, index, record_leaf)
    return Receipt(deal, request, customer, sequence, epoch, index, record_leaf, scheme.sign(secret_key, unsigned.digest))


def check_receipts(receipts: list[Receipt], claim: Any, bill: Any) -> dict[str, Any]:
    """The customer's check, once the receipts' epoch is attested: every receipt is for this deal,
    customer and epoch, and honoured by the bill (a :class:`~poe.protocol.bill.CheckedBill`
    already checked against the claim's statement): its segment is billed with the record it
    promised. A receipt the bill does not honour must be signed by the deal's provider (its
    signature is what makes it a proof); an honoured one's signature is not checked, since the
    provider signed the bill that keeps it. Returns the honoured and broken receipts (indices into
    `receipts`) and the billed segments no receipt names; raises on a receipt for another bill or
    a broken one the provider did not sign."""
    from poe.crypto.schemes import get_scheme

    deal, st = claim.deal, claim.statement
    scheme = get_scheme(deal.scheme)
    billed = {(s["sequence"], s["index"], s["request"], s["record_leaf"]) for s in bill.segments}
    honoured, broken, named = [], [], set()
    for i, r in enumerate(receipts):
        _check_one(r, deal, st.epoch, bill.customer, i)
        named.add((r.sequence, r.index))
        if (r.sequence, r.index, r.request.hex(), r.record_leaf.hex()) in billed:
            honoured.append(i)  # kept: who signed the promise no longer matters, the bill is signed
        else:
            r.verify(scheme, deal.provider_key)  # a broken promise is a proof only if the provider made it
            broken.append(i)
    unnamed = [s for s in bill.segments if (s["sequence"], s["index"]) not in named]
    return {"honoured": honoured, "broken": broken, "billed_without_receipt": unnamed}


def _check_one(r: Receipt, deal: Any, epoch: int, customer: bytes, i: int) -> None:
    if r.deal != deal.digest:
        raise VerificationError(f"receipt {i} is for another deal", expected=deal.digest.hex(), observed=r.deal.hex())
    if r.epoch != epoch:
        raise EncodingError(f"receipt {i} promises epoch {r.epoch}; the claim is for epoch {epoch}", expected=epoch, observed=r.epoch)
    if r.customer != customer:
        raise EncodingError(f"receipt {i} is another customer's than the bill's", observed="0x" + r.customer.hex())


def receipt_fraud_proof(receipt: Receipt, claim: Any, bill_doc: Any) -> dict[str, Any]:
    """A self-contained proof that `receipt` was not honoured: it, the signed claim for its
    epoch, and the customer's bill for that epoch, which proves everything billed to it."""
    return {"format": RECEIPT_FRAUD_FORMAT, "receipt": receipt.to_json(), "claim": claim.to_json(), "bill": bill_doc}


def check_receipt_fraud(doc: Any) -> dict[str, Any]:
    """Re-check a receipt fraud proof: the claim's attestation verifies under its deal's key and
    signs a bill root, the bill is the customer's whole bill under it, the receipt is the
    provider's, for that deal, customer and epoch, and the bill does not hold what it promised.
    Returns what is proven; NotProvenError when the bill honours the receipt."""
    from poe.crypto.schemes import get_scheme
    from poe.protocol.attestation import verify_envelope
    from poe.protocol.bill import check_bill
    from poe.protocol.claim import Claim

    d = exact(doc, "receipt fraud proof", ("format", "receipt", "claim", "bill"))
    if d["format"] != RECEIPT_FRAUD_FORMAT:
        raise EncodingError(f"not a {RECEIPT_FRAUD_FORMAT} document")
    claim = Claim.from_json(d["claim"])
    st = claim.statement
    if (why := claim.deal.mismatch(st)) is not None:
        raise VerificationError(f"the proof's deal is not the one the provider signed for: {why}")
    verify_envelope(claim.envelope, get_scheme(st.scheme), trusted_keys=[claim.deal.provider_key])
    receipt = Receipt.from_json(d["receipt"])
    bill = check_bill(d["bill"], st, claim.deal.digest, claim.deal.window)
    result = check_receipts([receipt], claim, bill)
    if not result["broken"]:
        raise NotProvenError("the bill holds the segment the receipt promised: no fraud here")
    return {"proven": True, "kind": "receipt-not-honoured", "provider": st.public_key.hex(), "deal_id": st.deal_id, "epoch": st.epoch,
            "customer": "0x" + receipt.customer.hex(), "sequence": receipt.sequence, "index": receipt.index, "request": receipt.request.hex()}

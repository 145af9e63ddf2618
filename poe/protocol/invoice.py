"""Invoices (docs/spec.md §14.6): a claim's amount split by customer, as exact integers that add
up to it, each customer's part proven by the signed bill tree.

The bill tree sorts an epoch's leaves by customer, so customers are consecutive ranges that
partition its leaves. An invoice (`poe invoice v1`) lists each range with its covering nodes
(`Tree.cover`); rebuilding the signed bill root from them fixes every range's sums, and the
deal's prices turn them into amounts. The bill tree is ordered (§14.2): every covering node
carries the least and greatest key below it, which must be the line's customer's, so where a
line begins and ends is fixed too; a customer's own bill (§14.4) must show the same range
(`check_invoice(..., bill=...)`). Pure.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from poe.errors import EncodingError, VerificationError
from poe.merkle.build import ANONYMOUS
from poe.merkle.hasher import BILL_NODE_SIZE, BillNode, Sums
from poe.merkle.verify import verify_partition
from poe.protocol.fields import array, document, exact, hex0x, hexbytes, uint

__all__ = ["INVOICE_FORMAT", "invoice_document", "check_invoice", "CheckedInvoice"]

INVOICE_FORMAT = "poe invoice v1"
MAX_LINES = 1_000_000
_MAX_COVER = 2 * 64  # a range's cover holds at most two subtrees per level


def invoice_document(epoch: int, deal: Any, size: int, lines: list[tuple[bytes, int, int, list[BillNode]]], subscription: int) -> dict[str, Any]:
    """`lines` as (customer, start, end, covering nodes) in bill-tree order."""
    out = []
    for customer, start, end, nodes in lines:
        total = Sums()
        for n in nodes:
            total = total + n.sums
        out.append({"customer": "0x" + customer.hex(), "range": [start, end], "sums": total.to_json(), "amount": deal.weight(total),
                    "nodes": b"".join(n.encode() for n in nodes).hex()})
    return {"format": INVOICE_FORMAT, "epoch": epoch, "deal": deal.digest.hex(), "bill_size": size, "lines": out,
            "subscription": subscription, "total": sum(line["amount"] for line in out) + subscription}


@dataclass(frozen=True)
class CheckedInvoice:
    epoch: int
    lines: list[dict[str, Any]]  # customer, range, sums, amount (the anonymous line's customer is the zero address)
    subscription: int
    total: int

    def to_json(self) -> dict[str, Any]:
        return {"epoch": self.epoch, "lines": self.lines, "subscription": self.subscription, "total": self.total}


def check_invoice(doc: Any, claim: Any, bill: Any = None) -> CheckedInvoice:
    """Check an invoice against a claim whose attestation the caller has verified (statement
    version 3): its ranges partition the bill tree in customer order and rebuild the signed bill
    root, each amount is the deal's weight of its range's sums, and the amounts plus the
    subscription are the claim's amount. With `bill` (a CheckedBill of one customer for the same
    epoch), that customer's line must be its bill's range and sums."""
    st, deal = claim.statement, claim.deal
    if not st.bills:
        raise VerificationError(f"the attestation signs no ordered bill tree (statement version {st.version}): it cannot prove an invoice")
    d = document(doc, INVOICE_FORMAT, ("epoch", "deal", "bill_size", "lines", "subscription", "total"))
    if uint(d["epoch"], "epoch") != st.epoch or hexbytes(d["deal"], "deal digest", 32) != deal.digest:
        raise VerificationError("the invoice is for another epoch or deal than the claim")
    if uint(d["bill_size"], "bill size") != st.bill_root.size:
        raise VerificationError("the invoice is for a bill tree of another size", expected=st.bill_root.size, observed=d["bill_size"])
    parts, lines = [], []
    previous = None
    for raw in array(d["lines"], "invoice lines", MAX_LINES):
        line = exact(raw, "invoice line", ("customer", "range", "sums", "amount", "nodes"))
        customer = hex0x(line["customer"], "line customer", 20)
        if previous is not None and customer <= previous:
            raise VerificationError("invoice lines are not in strictly increasing customer order: a customer is split or listed twice")
        previous = customer
        bounds = array(line["range"], "line range", 2)
        if len(bounds) != 2:
            raise EncodingError("a line's range is [start, end]")
        blob = hexbytes(line["nodes"], "covering nodes", max_length=_MAX_COVER * BILL_NODE_SIZE)
        if not blob or len(blob) % BILL_NODE_SIZE:
            raise EncodingError(f"a line's covering nodes are whole {BILL_NODE_SIZE}-byte bill-tree nodes")
        nodes = [BillNode.decode(blob[i : i + BILL_NODE_SIZE]) for i in range(0, len(blob), BILL_NODE_SIZE)]
        if any(n.lo[:20] != customer or n.hi[:20] != customer for n in nodes):
            raise VerificationError(f"the line of 0x{customer.hex()} covers leaves of another customer")
        parts.append((uint(bounds[0], "range start"), uint(bounds[1], "range end"), nodes))
        lines.append((customer, Sums.from_json(line["sums"]), uint(line["amount"], "line amount", 1 << 256)))
    if st.bill_root.size == 0:
        if parts:
            raise VerificationError("an empty epoch bills no customer")
        sums: list[Sums] = []
    else:
        sums = verify_partition(parts, st.bill_root, bill=True)
    out = []
    for (customer, said, amount), (start, end, _), proven in zip(lines, parts, sums):
        if said != proven or amount != deal.weight(proven):
            raise VerificationError(f"the line of 0x{customer.hex()} does not state its range's proven sums and their price",
                                    expected={"sums": proven.to_json(), "amount": deal.weight(proven)}, observed={"sums": said.to_json(), "amount": amount})
        out.append({"customer": "0x" + customer.hex(), "anonymous": customer == ANONYMOUS, "range": [start, end], "sums": proven.to_json(),
                    "amount": amount})
    subscription, total = uint(d["subscription"], "subscription", 1 << 256), uint(d["total"], "total", 1 << 256)
    if subscription != deal.subscription or total != sum(line["amount"] for line in out) + subscription or total != claim.amount:
        raise VerificationError("the invoice's amounts and subscription do not add up to the claim's amount",
                                expected=claim.amount, observed=total)
    if bill is not None:
        mine = [line for line in out if line["customer"] == "0x" + bill.customer.hex()]
        if (mine[0]["range"] if mine else None) != (bill.range if bill.segments else None) or (mine and mine[0]["sums"] != bill.sums.to_json()):
            raise VerificationError("the invoice bills this customer for another range or amount than its bill proves")
    return CheckedInvoice(st.epoch, out, subscription, total)

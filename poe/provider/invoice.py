"""A claim's invoice from the provider's store (docs/spec.md §14.6): each customer's range of the
epoch's bill tree with its covering nodes; the document and its check are poe.protocol.invoice."""

from __future__ import annotations

from itertools import groupby
from typing import Any

from poe.errors import VerificationError
from poe.protocol.invoice import invoice_document

__all__ = ["make_invoice"]


def make_invoice(store: Any, claim: Any) -> dict[str, Any]:
    st = claim.statement
    if not st.bills:
        raise VerificationError(f"the claim's attestation signs no ordered bill tree (statement version {st.version}): there is nothing to invoice by customer")
    entries, tree = store.bill(st.epoch)
    if tree.root != st.bill_root:
        raise VerificationError("the store's bill tree is not the attested one", expected=st.bill_root.to_json(), observed=tree.root.to_json())
    lines, at = [], 0
    for customer, group in groupby(entries, key=lambda e: e.customer):
        n = sum(1 for _ in group)
        lines.append((customer, at, at + n, tree.cover(at, at + n)))
        at += n
    return invoice_document(st.epoch, claim.deal, tree.size, lines, claim.deal.subscription)

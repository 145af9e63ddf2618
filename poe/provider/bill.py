"""A customer's bill from a provider's store (docs/spec.md §14.4): what `poe bill prove` writes;
the document and its check are :mod:`poe.protocol.bill`."""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from typing import Any

from poe.errors import InputError
from poe.merkle.build import ANONYMOUS
from poe.merkle.verify import encode_bill_range
from poe.protocol.bill import bill_document

__all__ = ["make_bill"]


def make_bill(store: Any, epoch: int, customer: bytes) -> dict[str, Any]:
    """Sealed `epoch`'s bill for `customer` (20 address bytes): its range of the bill tree, every
    segment in it with record and invocation, the leaves on either side, and one range proof."""
    if len(customer) != 20 or customer == ANONYMOUS:
        raise InputError("a customer is a 20-byte address other than zero")
    entries, tree = store.bill(epoch)
    if not entries:
        raise InputError(f"epoch {epoch} has no segments: there is no bill to prove")
    customers = [e.customer for e in entries]
    start, end = bisect_left(customers, customer), bisect_right(customers, customer)
    left = entries[start - 1] if start > 0 else None
    right = entries[end] if end < len(entries) else None
    lo, hi = start - (left is not None), end + (right is not None)
    proof = encode_bill_range(lo, hi, tree.range_path(lo, hi))
    billed = entries[start:end]
    # inclusion_proofs builds the epoch's record tree once and returns each record with its proof.
    proven = store.inclusion_proofs([e.index for e in billed], epoch)
    mine = [(e, record, store.segment_bytes(e.index)[1], proof.encode()) for e, (record, proof) in zip(billed, proven)]
    return bill_document(epoch, customer, start, end, tree.size, mine, left, right, proof)

"""The provider's receipts (docs/spec.md §14.5): one per executed request, signed once its segment
is durable, naming the epoch the segment was recorded in."""

from __future__ import annotations

from typing import Any

from poe.errors import InputError
from poe.formats.invocation import block_terms
from poe.merkle.hasher import leaf
from poe.protocol.receipt import Receipt, sign_receipt
from poe.protocol.request import request_of

__all__ = ["issue_receipts"]


def issue_receipts(store: Any, deal: Any, scheme: Any, secret_key: bytes, indices: list[int]) -> list[Receipt]:
    """Receipts for the requested segments at `indices` (a job's last step: the job's receipt,
    naming the step count by its sequence and the final output by its record), signed with the
    deal's provider key.

    Each names the epoch its segment was flushed into, read back from the store: a seal between
    a request's check and its write moves the segment to the next epoch (or drops it), so only
    the stored epoch is a promise the provider can keep."""
    if scheme.name != deal.scheme or scheme.public_key(secret_key) != deal.provider_key:
        raise InputError("the receipt key is not the deal's provider key: customers check receipts against the deal")
    out = []
    for index in indices:
        record, inv, _ = store.segment(index)
        signed = request_of(inv)
        if signed is None:
            raise InputError(f"segment {index} answers no request: there is no one to give a receipt")
        customer, sequence, _, _ = block_terms(inv.request)  # a job's step k: its first sequence + k
        out.append(sign_receipt(scheme, secret_key, deal=deal.digest, request=signed.digest, customer=customer, sequence=sequence,
                                epoch=store.segment_epoch(index), index=index, record_leaf=leaf(record.encode()).hash))
    return out

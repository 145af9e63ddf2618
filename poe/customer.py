"""The customer's public API: sign requests a provider may bill, and check what it billed.

    from poe.customer import request_for
    signed = request_for(deal, invocation, key=secret_key, sequence=7, fuel_budget=10_000_000, epochs=(4, 12))
    open("req.json", "w").write(json.dumps(signed.to_json()))

Once the epoch is attested: ``check_bill(bill_doc, claim.statement, deal.digest, deal.window)``
proves everything billed to you (spec §14.4), ``check_receipts(receipts, claim, bill)`` holds the
provider to its receipts (§14.5), ``check_invoice(invoice_doc, claim, bill)`` checks your line of
the claim's invoice (§14.6); first check the claim against the deal you trust (``claim.verify_under(deal)``: its terms, and its attestation under that deal's provider key).

A request is EIP-712 typed data (docs/spec.md §14.1): ``signed.request.typed_data()`` is what a
wallet signs with ``eth_signTypedData_v4`` instead, and ``SignedRequest(request, signature)``
takes the wallet's signature. Importing this loads neither wasmtime nor py-ecc.
"""

from __future__ import annotations

from typing import Any

from poe.protocol.bill import CheckedBill, check_bill
from poe.protocol.invoice import CheckedInvoice, check_invoice
from poe.protocol.receipt import Receipt, check_receipt_fraud, check_receipts, receipt_fraud_proof
from poe.protocol.request import JOB_FORMAT, REQUEST_FORMAT, Job, Request, SignedRequest, sign_request

__all__ = ["REQUEST_FORMAT", "JOB_FORMAT", "Request", "Job", "SignedRequest", "sign_request", "request_for", "check_bill", "CheckedBill",
           "Receipt", "check_receipts", "receipt_fraud_proof", "check_receipt_fraud", "check_invoice", "CheckedInvoice"]


def request_for(deal: Any, invocation: Any, *, key: bytes, sequence: int, fuel_budget: int, epochs: tuple[int, int],
                chain_id: int = 1, steps: int | None = None) -> SignedRequest:
    """Sign, with the customer's secp256k1 secret ``key``, a request to run ``invocation`` (a
    :class:`poe.Invocation`) under ``deal`` (a :class:`poe.verify.Deal`), billable in the epochs
    ``epochs[0]..epochs[1]`` for at most ``fuel_budget`` fuel. With ``steps``, a stateful job:
    that many steps of the call on one lineage, each with at most ``fuel_budget`` fuel, step k
    billed under ``sequence + k`` (spec §14.7)."""
    return sign_request(key, chain_id=chain_id, deal=deal.digest, sequence=sequence, invocation=invocation.call_digest,
                        fuel_budget=fuel_budget, not_before=epochs[0], not_after=epochs[1], steps=steps)

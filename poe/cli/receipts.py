"""`poe receipts verify` and `poe receipts check-fraud`: a customer holds the provider to its receipts."""

from __future__ import annotations

import json

import click

from poe.errors import InputError
from ._options import emit_json, fail_verification, info, json_option, load_json, read_deal, write_output


@click.group("receipts")
def receipts() -> None:
    """Receipts (spec §14.5): the provider's signed promise, per executed request, that its
    segment is billed in a named epoch. Once that epoch is attested, the customer's bill shows
    whether each promise was kept; a broken one is a fraud proof anyone can re-check."""


@receipts.command("verify")
@click.argument("receipt_paths", metavar="RECEIPT...", nargs=-1, required=True, type=click.Path(dir_okay=False))
@click.option("--claim", "claim_path", required=True, type=click.Path(dir_okay=False), help="The provider's claim for the receipts' epoch.")
@click.option("--deal", "deal_path", required=True, type=click.Path(dir_okay=False),
              help="The deal you trust (JSON or .toml): the one your requests name. A claim carrying other terms is refused.")
@click.option("--bill", "bill_path", required=True, type=click.Path(dir_okay=False),
              help="Your bill for that epoch (`poe bill prove`): it proves every segment billed to you, and nothing else is.")
@click.option("--fraud-proof", "fraud_path", type=click.Path(dir_okay=False), default=None,
              help="If a receipt is broken, write the fraud proof of the first one here (poe receipt fraud v1; never over a file).")
@json_option
def verify(receipt_paths, claim_path, deal_path, bill_path, fraud_path, as_json):
    """Check your RECEIPTs against the attested epoch: exit 0 if the bill holds every segment a
    receipt promised (with the record it promised), 1 if one is missing or another record stands
    in its place (a broken promise: see --fraud-proof) or a receipt's signature is not the deal's
    provider's, 3 if a receipt is for another epoch or customer than the claim and bill."""
    from poe.protocol.bill import check_bill
    from poe.protocol.claim import Claim
    from poe.protocol.receipt import Receipt, check_receipts, receipt_fraud_proof

    claim = Claim.from_json(load_json(claim_path, "claim"))
    claim.verify_under(read_deal(deal_path))
    st = claim.statement
    bill_doc = load_json(bill_path, "bill")
    checked = check_bill(bill_doc, st, claim.deal.digest, claim.deal.window)
    held = [Receipt.from_json(load_json(p, "receipt")) for p in receipt_paths]
    result = check_receipts(held, claim, checked)
    broken = [receipt_paths[i] for i in result["broken"]]
    if broken and fraud_path is not None:
        proof = receipt_fraud_proof(held[result["broken"][0]], claim, bill_doc)
        write_output(fraud_path, json.dumps(proof) + "\n", "receipt fraud proof")
    amount = claim.deal.weight(checked.sums)
    out = {"epoch": st.epoch, "customer": "0x" + checked.customer.hex(), "receipts": len(held), "honoured": len(result["honoured"]),
           "broken": broken, "billed_without_receipt": result["billed_without_receipt"], "billed_segments": len(checked.segments),
           "amount": amount, "ok": not broken}
    if as_json:
        emit_json(out)
    else:
        info(f"receipts: {len(result['honoured'])} of {len(held)} honoured in epoch {st.epoch}; the bill holds {len(checked.segments)} "
             f"segments of 0x{checked.customer.hex()}, {amount:,} base units under the deal's prices")
        for p in broken:
            info(f"BROKEN  {p}: the provider promised this segment in epoch {st.epoch}, and the bill does not hold it")
        if result["billed_without_receipt"]:
            info(f"note: {len(result['billed_without_receipt'])} billed segments answer requests you signed but name no receipt you gave")
    if broken:
        fail_verification(f"{len(broken)} of {len(held)} receipts are not honoured by the attested bill", as_json)


@receipts.command("check-fraud")
@click.argument("proof_path", metavar="FILE", type=click.Path(dir_okay=False))
@json_option
def check_fraud(proof_path, as_json):
    """Re-check a receipt fraud proof (no re-execution): exit 0 if it proves the provider broke a
    signed receipt, 5 if the bill honours the receipt, 1 if the proof's signatures or bill do
    not verify, 3 if FILE is not such a proof."""
    from poe.protocol.receipt import check_receipt_fraud

    doc = load_json(proof_path, "receipt fraud proof")
    if not isinstance(doc, dict):
        raise InputError("a receipt fraud proof is a JSON object")
    result = check_receipt_fraud(doc)
    if as_json:
        emit_json(result)
    else:
        info(f"FRAUD PROVEN: the provider signed a receipt for request {result['sequence']} of {result['customer']} (segment "
             f"{result['index']}) in epoch {result['epoch']} of deal {result['deal_id']!r}, and its attested bill does not hold it")

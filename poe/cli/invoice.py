"""`poe invoice make` and `poe invoice verify`: a claim's amount split by customer, proven."""

from __future__ import annotations

import json

import click

from ._options import emit_json, info, json_option, load_json, read_deal, write_output


@click.group("invoice")
def invoice() -> None:
    """Invoices (spec §14.6): each customer's amount under the deal for one attested epoch,
    exact integers that add up to the claim's amount with the subscription, each proven by the
    signed bill tree; a customer checks its own line against its bill."""


@invoice.command("make")
@click.argument("store_path", metavar="STORE", type=click.Path(dir_okay=False))
@click.option("--claim", "claim_path", required=True, type=click.Path(dir_okay=False), help="The claim for the epoch to invoice.")
@click.option("--out", type=click.Path(dir_okay=False), default=None, help="Write the invoice (poe invoice v1) to this new file (default: stdout).")
def make(store_path, claim_path, out):
    """The provider's side: the invoice of CLAIM's epoch from STORE."""
    from poe.protocol.claim import Claim
    from poe.provider.invoice import make_invoice
    from poe.store.tracestore import TraceStore

    claim = Claim.from_json(load_json(claim_path, "claim"))
    with TraceStore.open(store_path) as store:
        doc = make_invoice(store, claim)
    write_output(out, json.dumps(doc, indent=2) + "\n", "invoice")
    info(f"poe: invoice of epoch {doc['epoch']}: {len(doc['lines'])} lines, total {doc['total']:,} (subscription {doc['subscription']:,})")


@invoice.command("verify")
@click.argument("invoice_path", metavar="INVOICE", type=click.Path(dir_okay=False))
@click.option("--claim", "claim_path", required=True, type=click.Path(dir_okay=False), help="The claim the invoice splits.")
@click.option("--deal", "deal_path", required=True, type=click.Path(dir_okay=False),
              help="The deal you trust (JSON or .toml): the one your requests name. A claim carrying other terms is refused.")
@click.option("--bill", "bill_path", type=click.Path(dir_okay=False), default=None,
              help="Your bill for the epoch (`poe bill prove`): your line must be its range and amount.")
@json_option
def verify(invoice_path, claim_path, deal_path, bill_path, as_json):
    """Exit 0 if INVOICE splits the claim's amount by customer as the signed bill tree proves
    (and, with --bill, bills you exactly what your bill proves); 1 if it does not."""
    from poe.protocol.bill import check_bill
    from poe.protocol.claim import Claim
    from poe.protocol.invoice import check_invoice

    claim = Claim.from_json(load_json(claim_path, "claim"))
    claim.verify_under(read_deal(deal_path))
    st = claim.statement
    bill = check_bill(load_json(bill_path, "bill"), st, claim.deal.digest, claim.deal.window) if bill_path else None
    checked = check_invoice(load_json(invoice_path, "invoice"), claim, bill)
    if as_json:
        emit_json(checked.to_json())
        return
    info(f"invoice OK: epoch {checked.epoch}, {len(checked.lines)} lines + subscription {checked.subscription:,} = {checked.total:,}, the claim's amount")
    for line in checked.lines:
        who = "anonymous segments" if line["anonymous"] else line["customer"]
        info(f"  {who:<44} leaves {line['range'][0]:>7}..{line['range'][1] - 1:<7} {line['amount']:>16,}")

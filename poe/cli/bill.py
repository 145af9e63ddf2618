"""`poe bill prove` and `poe bill verify`: a customer's bill for an epoch, proven complete."""

from __future__ import annotations

import json

import click

from poe.errors import InputError, VerificationError
from ._options import emit_json, fail_verification, info, json_option, load_json, read_deal, write_output


def _address(ctx: click.Context, param: click.Parameter, text: str) -> bytes:
    body = text[2:] if text.startswith("0x") else text
    try:
        raw = bytes.fromhex(body)
    except ValueError:
        raw = b""
    if len(raw) != 20:
        raise click.BadParameter(f"an address is 0x and 40 hex digits, got {text!r}")
    return raw


@click.group("bill")
def bill() -> None:
    """A customer's bill for one epoch: every segment billed to it, with one range proof of the
    epoch's bill tree (spec §14.4) showing nothing else is billed to it."""


@bill.command("prove")
@click.argument("store_path", metavar="STORE", type=click.Path(dir_okay=True))
@click.option("--epoch", required=True, type=click.IntRange(min=0), help="A sealed epoch.")
@click.option("--customer", required=True, callback=_address, help="The customer's address (0x and 40 hex digits).")
@click.option("--out", type=click.Path(dir_okay=False), default=None, help="Write the bill (poe bill v1) to this new file (default: stdout).")
def prove(store_path, epoch, customer, out):
    """The provider's side: write CUSTOMER's bill for EPOCH from STORE."""
    from poe.provider.bill import make_bill
    from poe.store.tracestore import TraceStore

    with TraceStore.open(store_path) as store:
        doc = make_bill(store, epoch, customer)
    write_output(out, json.dumps(doc, indent=2) + "\n", "bill")
    info(f"poe: bill of 0x{customer.hex()} for epoch {epoch}: {len(doc['entries'])} segments")


@bill.command("verify")
@click.argument("bill_path", metavar="BILL", type=click.Path(dir_okay=False))
@click.option("--claim", "claim_path", required=True, type=click.Path(dir_okay=False), help="The provider's claim for the epoch (its attestation signs the bill root).")
@click.option("--deal", "deal_path", required=True, type=click.Path(dir_okay=False),
              help="The deal you trust (JSON or .toml): the one your requests name. A claim carrying other terms is refused.")
@click.option("--customer", required=True, callback=_address, help="Your address (0x and 40 hex digits): the bill must be yours.")
@click.option("--request", "request_paths", multiple=True, type=click.Path(dir_okay=False),
              help="A request you signed (poe request v1) that must be in the bill; repeatable. One missing is a broken promise (exit 1).")
@json_option
def verify(bill_path, claim_path, deal_path, customer, request_paths, as_json):
    """The customer's side: check BILL against the claim's attestation. Exit 0 if it proves the
    segments billed to you, each answering a request you signed, and that nothing else in the
    epoch is billed to you; 1 if it does not, or a --request you give is not in it."""
    from poe.protocol.bill import check_bill
    from poe.protocol.claim import Claim
    from poe.protocol.request import SignedRequest

    claim = Claim.from_json(load_json(claim_path, "claim"))
    claim.verify_under(read_deal(deal_path))
    st = claim.statement
    checked = check_bill(load_json(bill_path, "bill"), st, claim.deal.digest, claim.deal.window)
    if checked.customer != customer:  # another customer's bill proves nothing about yours
        raise VerificationError(f"the bill is 0x{checked.customer.hex()}'s, not yours", expected="0x" + customer.hex(),
                                observed="0x" + checked.customer.hex())
    billed = {s["request"] for s in checked.segments}
    wanted = [SignedRequest.from_json(load_json(p, "request")) for p in request_paths]
    for w in wanted:
        if w.request.customer != checked.customer:
            raise InputError("a --request of another customer than the bill's", observed="0x" + w.request.customer.hex())
    missing = [p for p, w in zip(request_paths, wanted) if w.digest.hex() not in billed]
    amount = claim.deal.weight(checked.sums)
    result = {**checked.to_json(), "amount": amount, "missing_requests": missing, "ok": not missing}
    if as_json:
        emit_json(result)
    else:
        info(f"bill OK: {len(checked.segments)} segments of epoch {checked.epoch} billed to 0x{checked.customer.hex()}, "
             f"fuel {checked.sums.fuel:,}, mem {checked.sums.mem:,}, io {checked.sums.io:,}: {amount:,} base units under the deal's prices")
        for p in missing:
            info(f"FAIL  {p}: the provider promised to run this request in this epoch, and it is not in the bill")
    if missing:
        fail_verification(f"{len(missing)} of your requests are not in the bill", as_json)

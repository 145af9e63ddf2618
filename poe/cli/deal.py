"""`poe deal new`: write a deal from a module, a provider key and prices, instead of by hand."""

from __future__ import annotations

import json

import click

from poe.errors import ArgumentError
from ._invocation import read_service
from ._options import emit_json, info, json_option, limit_options, limits_from, write_output


@click.group("deal")
def deal() -> None:
    """Deals: the terms a provider bills under and an auditor checks against (spec §12.1)."""


def _penalty(ctx: click.Context, param: click.Parameter, text: str) -> dict:
    if text == "forfeit":
        return {"kind": "forfeit"}
    kind, sep, amount = text.partition(":")
    if kind == "slash" and sep and amount.isascii() and amount.isdigit():
        return {"kind": "slash", "amount": int(amount)}
    raise click.BadParameter(f"forfeit or slash:AMOUNT, got {text!r}")


@deal.command("new")
@click.argument("module", type=click.Path(dir_okay=False))
@click.option("--id", "deal_id", required=True, help="The deal's id (what attestations name).")
@click.option("--provider", "key_file", required=True, type=click.Path(dir_okay=False), help="The provider's key file (only its public key is read).")
@click.option("--price-fuel", type=click.IntRange(0, 2**64 - 1), default=0, show_default=True, help="Base units per unit of fuel.")
@click.option("--price-mem", type=click.IntRange(0, 2**64 - 1), default=0, show_default=True, help="Base units per page-fuel of memory.")
@click.option("--price-io", type=click.IntRange(0, 2**64 - 1), default=0, show_default=True, help="Base units per payload byte.")
@click.option("--subscription", type=click.IntRange(0, 2**64 - 1), default=0, show_default=True, help="Flat base units per epoch.")
@click.option("--penalty", default="forfeit", show_default=True, callback=_penalty, help="What a rejected claim pays: forfeit (nothing) or slash:AMOUNT.")
@click.option("--window", type=click.IntRange(1, 2**16 - 1), default=1, show_default=True,
              help="The most epochs a customer's request may stay billable. 1 lets the audit catch every replayed request; "
                   "a wider window lets a request replayed within it escape the audit (its customer's bill still shows it).")
@click.option("--anonymous/--signed-only", default=False, show_default=True,
              help="Whether segments no customer signed a request for may be billed. --anonymous weakens the guarantee: the audit "
                   "cannot tell an anonymous segment someone asked for from one nobody did.")
@click.option("--v1", "version1", is_flag=True, help="Write a version-1 deal (no customers policy: anonymous segments billable, no window cap).")
@click.option("--store", "store_path", type=click.Path(dir_okay=False), default=None,
              help="Take the cost model from this trace store (what its segments were run under); else this machine's, with the limit flags.")
@click.option("--link", "links", multiple=True, help="NAME=OTHER.wasm for multi-module services.")
@limit_options
@click.option("--out", type=click.Path(dir_okay=False), default=None, help="Write the deal here, never over an existing file (default: stdout).")
@json_option
def new(module, deal_id, key_file, price_fuel, price_mem, price_io, subscription, penalty, window, anonymous, version1, store_path, links,
        fuel, max_memory_pages, max_output, out, as_json):
    """Write a deal (poe deal v2) for MODULE: its digest, the cost model's digest, your public
    key, integer prices, and who may be billed (signed requests only, by default, each billable
    within a window of epochs). Customers sign requests against its digest; auditors check
    claims against it."""
    from poe.crypto.keys import read_key_file
    from poe.crypto.schemes import get_scheme
    from poe.formats.costmodel import CostModel
    from poe.protocol.deal import Deal

    key = read_key_file(key_file, unlock=False)
    get_scheme(key.scheme).check_public_key(key.public_key)
    limits = limits_from(fuel, max_memory_pages, max_output)
    if store_path is not None:
        if limits is not None:
            raise ArgumentError("give --store or limit flags, not both: a store's cost model fixes its limits")
        from poe.store.tracestore import TraceStore

        with TraceStore.open(store_path) as store:
            cost_model = store.cost_model
    else:
        cost_model = CostModel.current(limits)
    doc = {"format": "poe deal v1" if version1 else "poe deal v2", "deal_id": deal_id, "provider": {"scheme": key.scheme, "public_key": key.public_key.hex()},
           "module_digest": read_service(module, links).digest.hex(), "cost_model_digest": cost_model.digest.hex(),
           "prices": {"fuel": price_fuel, "mem": price_mem, "io": price_io}, "subscription": subscription, "penalty": penalty}
    if not version1:
        doc["customers"] = {"anonymous": anonymous, "window": window}
    made = Deal.from_json(doc)  # every rule a reader applies, applied before anything is written
    if out is not None or not as_json:
        write_output(out, json.dumps(made.to_json(), indent=2) + "\n", "deal")
    if as_json:
        emit_json({**made.to_json(), "digest": made.digest.hex()})
    who = "anonymous segments billable, no window cap" if made.window is None else (
        f"{'anonymous segments billable' if made.anonymous else 'signed requests only'}, windows of at most {made.window} epoch(s)")
    info(f"poe: deal {deal_id!r} (digest {made.digest.hex()[:16]}...) under cost model {cost_model.name}; {who}")

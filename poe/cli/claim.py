"""`poe claim`: turn an attested epoch into a billing claim under a deal."""

from __future__ import annotations

import json

import click

from poe.protocol.attestation import Envelope
from poe.provider.attest import make_claim
from ._options import info, read_deal, read_file, write_output


@click.command("claim")
@click.argument("attestation", type=click.Path(dir_okay=False))
@click.option("--deal", "deal_path", required=True, type=click.Path(dir_okay=False), help="Deal file (JSON or .toml): prices, subscription, penalty.")
@click.option("--out", type=click.Path(dir_okay=False), default=None, help="Write claim.json here (default: stdout).")
def claim(attestation, deal_path, out):
    """Bill an attested epoch: amount = price · epoch totals + subscription, in integers.

    ATTESTATION is the envelope from `poe attest`; it must be for the deal's id, module and cost
    model, and its signature must verify under the deal's provider key (exit 1 if not).
    """
    deal = read_deal(deal_path)
    c = make_claim(Envelope.loads(read_file(attestation, "attestation")), deal)
    write_output(out, json.dumps(c.to_json(), indent=2) + "\n", "claim")
    info(f"poe: claim {c.claim_id.hex()[:16]}...: epoch {c.statement.epoch} of {deal.deal_id!r}, amount {c.amount:,} base units")

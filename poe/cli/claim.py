"""`poe claim`: turn an attested epoch into a billing claim under a deal."""

from __future__ import annotations

import json
import os

import click

from poe.protocol.attestation import Envelope
from poe.protocol.billing import Claim, Deal
from poe.errors import InputError
from ._options import info, read_file, write_output


@click.command("claim")
@click.argument("attestation", type=click.Path(dir_okay=False))
@click.option("--deal", "deal_path", required=True, type=click.Path(dir_okay=False), help="Deal file (JSON or .toml): prices, subscription, penalty.")
@click.option("--out", type=click.Path(dir_okay=False), default=None, help="Write claim.json here (default: stdout).")
def claim(attestation, deal_path, out):
    """Bill an attested epoch: amount = price · epoch totals + subscription, in integers.

    ATTESTATION is the envelope from `poe attest`; it must be for the deal's id, module and cost
    model and signed by the deal's provider key.
    """
    deal = Deal.load_text(read_file(deal_path, "deal"), os.path.basename(deal_path))
    env = Envelope.loads(read_file(attestation, "attestation"))
    st = env.statement
    if (st.deal_id, st.public_key, st.module_digest, st.cost_model_digest) != (deal.deal_id, deal.provider_key, deal.module_digest, deal.cost_model_digest):
        raise InputError("the attestation does not match the deal (deal id, provider key, module or cost model)")
    c = Claim(deal, env, deal.amount(st.totals))
    write_output(out, json.dumps(c.to_json(), indent=2) + "\n", "claim")
    info(f"poe: claim {c.claim_id.hex()[:16]}...: epoch {st.epoch} of {deal.deal_id!r}, amount {c.amount:,} base units")

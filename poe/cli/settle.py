"""`poe settle`: integer payouts from verdicts."""

from __future__ import annotations

import json
import os

import click

from poe.audit.verifier import settle
from poe.protocol.billing import Deal
from ._options import info, load_json, read_file, write_output


@click.command("settle")
@click.argument("verdicts", nargs=-1, required=True, type=click.Path(dir_okay=False))
@click.option("--deal", "deal_path", required=True, type=click.Path(dir_okay=False), help="The deal the verdicts are under.")
@click.option("--out", type=click.Path(dir_okay=False), default=None, help="Write payouts.json here (default: stdout).")
def settle_cmd(verdicts, deal_path, out):
    """Accepted claims are paid in full; rejected ones get the deal's penalty; refused ones wait."""
    deal = Deal.load_text(read_file(deal_path, "deal"), os.path.basename(deal_path))
    result = settle([load_json(v, "verdict") for v in verdicts], deal)
    write_output(out, json.dumps(result, indent=2) + "\n", "payouts")
    info(f"poe: {len(result['payouts'])} verdict(s), total payout {result['total']:,} base units")

"""`poe settle`: integer payouts from signed verdicts, recomputed from the claims and the deal."""

from __future__ import annotations

import json

import click

from poe.audit.settle import settle
from poe.errors import InputError
from ._options import info, load_json, read_deal, write_output


def _auditor(spec: str) -> tuple[str, bytes]:
    scheme, sep, key = spec.partition(":")
    try:
        if not sep:
            raise ValueError
        return scheme, bytes.fromhex(key)
    except ValueError:
        raise InputError(f"--auditor {spec!r} must look like SCHEME:PUBKEY_HEX (as `poe pubkey` prints them)") from None


@click.command("settle")
@click.argument("verdicts", nargs=-1, required=True, type=click.Path(dir_okay=False))
@click.option("--deal", "deal_path", required=True, type=click.Path(dir_okay=False), help="The deal the verdicts are under.")
@click.option("--auditor", "auditors", multiple=True, required=True,
              help="SCHEME:PUBKEY_HEX of an auditor whose signed verdicts you accept (e.g. secp256k1:02ab...). Repeatable.")
@click.option("--out", type=click.Path(dir_okay=False), default=None, help="Write payouts.json here (default: stdout).")
def settle_cmd(verdicts, deal_path, auditors, out):
    """Accepted claims are paid in full; rejected ones get the deal's penalty; refused ones wait.

    Only verdicts signed by a trusted --auditor count, and nothing is paid from a number a
    verdict file states: each amount is recomputed from the provider-signed claim it carries
    and the deal's prices. Exit 1 if a verdict's signature or claim does not verify.
    """
    deal = read_deal(deal_path)
    result = settle([load_json(v, "verdict") for v in verdicts], deal, [_auditor(a) for a in auditors])
    write_output(out, json.dumps(result, indent=2) + "\n", "payouts")
    info(f"poe: {len(result['payouts'])} verdict(s), total payout {result['total']:,} base units")

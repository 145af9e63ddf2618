"""`poe challenge`: draw the auditor's samples for a claim."""

from __future__ import annotations

import json
from fractions import Fraction

import click

from poe.protocol.challenge import DEFAULT_UNIFORM, MAX_UNIFORM, Challenge

from poe.protocol.claim import Claim
from poe.errors import InputError
from ._options import info, load_json, write_output


def _fraction(text: str, what: str) -> Fraction:
    try:
        return Fraction(text)
    except (ValueError, ZeroDivisionError):
        raise InputError(f"{what} must be a decimal or a fraction, got {text!r}") from None


@click.command("challenge")
@click.argument("claim_path", metavar="CLAIM", type=click.Path(dir_okay=False))
@click.option("--beacon", required=True, help="16-64 bytes of hex the provider could not predict when it attested (a nonce, a future block hash, a drand round).")
@click.option("--epsilon", default="0.01", show_default=True, help="Overbilling fraction to detect.")
@click.option("--delta", default="0.001", show_default=True, help="Allowed probability of missing it.")
@click.option("--uniform", type=click.IntRange(0, MAX_UNIFORM), default=DEFAULT_UNIFORM, show_default=True, help="Extra samples by index (check outputs, not only bills).")
@click.option("--out", type=click.Path(dir_okay=False), default=None, help="Write challenge.json here (default: stdout).")
def challenge(claim_path, beacon, epsilon, delta, uniform, out):
    """Draw k weighted and U uniform sample targets; k is the least with (1-ε)^k ≤ δ."""
    c = Claim.from_json(load_json(claim_path, "claim"))
    try:
        beacon_bytes = bytes.fromhex(beacon)
    except ValueError:
        raise InputError("--beacon must be hex") from None
    ch = Challenge.draw(c, beacon_bytes, _fraction(epsilon, "--epsilon"), _fraction(delta, "--delta"), uniform)
    write_output(out, json.dumps(ch.to_json(), indent=2) + "\n", "challenge")
    info(f"poe: {len(ch.weighted)} weighted + {len(ch.uniform)} uniform samples: {ch.guarantee()}")

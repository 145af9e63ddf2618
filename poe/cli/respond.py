"""`poe respond`: open a challenge's targets from the provider's store."""

from __future__ import annotations

import click

from poe.protocol.challenge import Challenge
from poe.protocol.claim import Claim
from poe.provider.respond import respond as open_challenge
from poe.store.tracestore import TraceStore
from ._options import info, load_json, write_output


@click.command("respond")
@click.argument("store_path", metavar="STORE", type=click.Path(dir_okay=True))
@click.argument("claim_path", metavar="CLAIM", type=click.Path(dir_okay=False))
@click.argument("challenge_path", metavar="CHALLENGE", type=click.Path(dir_okay=False))
@click.option("--out", type=click.Path(dir_okay=False), default=None, help="Write the openings here (default: stdout).")
def respond(store_path, claim_path, challenge_path, out):
    """For every target: the record, its inclusion proof and everything needed to re-execute it.

    A stateful segment's opening also carries its neighbours' records (the state chain), and the
    document a bundle of the sampled pre-states: each the chunks that changed since the previous
    one in the bundle (the first since the module's genesis), and those chunks."""
    c = Claim.from_json(load_json(claim_path, "claim"))
    ch = Challenge.from_json(load_json(challenge_path, "challenge"))
    with TraceStore.open(store_path) as store:
        answer = open_challenge(store, c, ch)
    write_output(out, answer.dumps(), "openings")
    info(f"poe: opened {len(answer.openings)} targets ({len({o.index for o in answer.openings})} distinct segments)")

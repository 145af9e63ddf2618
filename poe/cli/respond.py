"""`poe respond`: open a challenge's targets from the provider's store."""

from __future__ import annotations

import json

import click

from poe.audit.verifier import open_states, open_targets
from poe.wasm.executor import Executor
from poe.protocol.billing import Challenge, Claim
from poe.store.tracestore import TraceStore
from poe.errors import InputError
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
    if ch.claim_id != c.claim_id:
        raise InputError("the challenge is for another claim")
    ch.matches(c)
    store = TraceStore.open(store_path)
    try:
        openings = open_targets(store, c, ch)
        states = None
        if any(o.neighbors or o.record[224:256] != bytes(32) for o in openings):
            # Stateful samples: ship their pre-states, as deltas over the module's genesis state.
            genesis = Executor(store.service(c.statement.module_digest), store.cost_model).genesis()
            states = open_states(store, openings, genesis)
    finally:
        store.close()
    doc = {"format": "poe openings v1", "claim_id": c.claim_id.hex(), "seed": ch.seed.hex(), "openings": [o.to_json() for o in openings]}
    if states is not None:
        doc["states"] = states
    write_output(out, json.dumps(doc) + "\n", "openings")
    info(f"poe: opened {len(openings)} targets ({len({o.index for o in openings})} distinct segments)")

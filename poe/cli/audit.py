"""`poe audit`: settle a claim by checking and re-executing its sampled segments."""

from __future__ import annotations

import json
import os

import click

from poe.audit.verifier import Opening, audit
from poe.protocol.billing import Challenge, Claim, Deal
from poe.wasm.executor import Service
from poe.errors import EncodingError
from ._options import emit_json, info, json_option, load_json, read_file


@click.command("audit")
@click.argument("claim_path", metavar="CLAIM", type=click.Path(dir_okay=False))
@click.argument("challenge_path", metavar="CHALLENGE", type=click.Path(dir_okay=False))
@click.argument("openings_path", metavar="OPENINGS", type=click.Path(dir_okay=False))
@click.option("--deal", "deal_path", required=True, type=click.Path(dir_okay=False), help="The deal you agreed to (JSON or .toml): a claim carrying other terms is rejected.")
@click.option("--module", "module_path", required=True, type=click.Path(dir_okay=False), help="The deal's module (its digest must match).")
@click.option("--final", is_flag=True, help="The deal's response deadline has passed: unopened samples are a REJECT, not a refusal.")
@click.option("--link", "links", multiple=True, help="NAME=OTHER.wasm for multi-module services.")
@click.option("--jobs", type=click.IntRange(1, 256), default=1, show_default=True,
              help="Re-execute samples in this many processes. Each starts its own interpreter and compiles the module, "
                   "which pays off for heavy segments (tens of ms and up), not for small ones.")
@click.option("--out", type=click.Path(dir_okay=False), default=None, help="Write verdict.json here.")
@json_option
def audit_cmd(claim_path, challenge_path, openings_path, deal_path, module_path, final, links, jobs, out, as_json):
    """ACCEPT with a stated guarantee, REJECT with reasons and a fraud proof, or REFUSED.

    Exit 0 on ACCEPT, 1 on REJECT, 3 on REFUSED (the auditor could not audit: unknown cost
    model, missing openings, another module), which is no verdict against the provider.
    """
    claim = Claim.from_json(load_json(claim_path, "claim"))
    challenge = Challenge.from_json(load_json(challenge_path, "challenge"))
    doc = load_json(openings_path, "openings")
    if not isinstance(doc, dict) or doc.get("format") != "poe openings v1" or not isinstance(doc.get("openings"), list):
        raise EncodingError(f"{openings_path} is not a poe openings v1 document")
    if doc.get("claim_id") != claim.claim_id.hex() or doc.get("seed") != challenge.seed.hex():
        raise EncodingError("the openings answer another claim or another challenge")
    openings = [Opening.from_json(o) for o in doc["openings"]]
    link_wasm = {}
    for spec in links:
        name, _, path = spec.partition("=")
        link_wasm[name] = read_file(path, f"linked module {name!r}")
    deal = Deal.load_text(read_file(deal_path, "deal"), os.path.basename(deal_path))
    verdict = audit(claim, challenge, openings, Service(read_file(module_path, "module"), link_wasm), deal=deal, jobs=jobs, final=final, states=doc.get("states"))
    result = verdict.to_json()
    if out:
        with open(out, "w") as f:
            f.write(json.dumps(result, indent=2) + "\n")
    if as_json:
        emit_json(result)
    else:
        info(f"{verdict.verdict}: {verdict.reason}")
        if verdict.statement:
            info(f"  {verdict.statement}")
        for p in verdict.problems[:10]:
            info(f"  - {p}")
        if verdict.fraud_proof:
            info("  a fraud proof is in the verdict (\"fraud_proof\"); anyone can re-check it with `poe check-fraud-proof`")
    if verdict.verdict != "ACCEPT":
        raise click.exceptions.Exit(1 if verdict.verdict == "REJECT" else 3)

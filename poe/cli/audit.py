"""`poe audit`: settle a claim by checking and re-executing its sampled segments."""

from __future__ import annotations

import json
import time

import click

from poe.audit.verifier import audit
from poe.formats.moduleset import Service
from poe.protocol.challenge import DEFAULT_UNIFORM, MAX_UNIFORM, Challenge
from poe.protocol.claim import Claim
from poe.protocol.openings import Openings
from ._options import emit_json, info, json_option, load_json, passphrase_option, read_deal, read_file, read_link_options, write_output


@click.command("audit")
@click.argument("claim_path", metavar="CLAIM", type=click.Path(dir_okay=False))
@click.argument("challenge_path", metavar="CHALLENGE", type=click.Path(dir_okay=False))
@click.argument("openings_path", metavar="OPENINGS", type=click.Path(dir_okay=False))
@click.option("--deal", "deal_path", required=True, type=click.Path(dir_okay=False), help="The deal you agreed to (JSON or .toml): a claim carrying other terms is rejected.")
@click.option("--module", "module_path", required=True, type=click.Path(dir_okay=False), help="The deal's module (its digest must match).")
@click.option("--key", "key_file", type=click.Path(dir_okay=False), default=None,
              help="Your auditor key file (from `poe keygen`): the verdict is signed with it, and only signed verdicts settle.")
@click.option("--uniform", "min_uniform", type=click.IntRange(0, MAX_UNIFORM), default=DEFAULT_UNIFORM, show_default=True,
              help="Your policy: refuse a challenge that draws fewer uniform samples than this (what `poe challenge` draws by default; "
                   "a challenge whose uniform list was cut short looks valid otherwise). 0 accepts any.")
@click.option("--final", is_flag=True, help="The deal's response deadline has passed: unopened samples are a REJECT, not a refusal.")
@click.option("--link", "links", multiple=True, help="NAME=OTHER.wasm for multi-module services.")
@click.option("--jobs", type=click.IntRange(1, 256), default=1, show_default=True,
              help="Re-execute samples in this many processes. Each starts its own interpreter and compiles the module, "
                   "which pays off for heavy segments (tens of ms and up), not for small ones.")
@click.option("--out", type=click.Path(dir_okay=False), default=None, help="Write verdict.json here (never over an existing file).")
@passphrase_option
@json_option
def audit_cmd(claim_path, challenge_path, openings_path, deal_path, module_path, key_file, min_uniform, final, links, jobs, out,
              passphrase_file, as_json):
    """ACCEPT with a stated guarantee, REJECT with reasons and a fraud proof, or REFUSED.

    Exit 0 on ACCEPT, 1 on REJECT, 3 on REFUSED (the auditor could not audit: unknown cost
    model, missing openings, another module), which is no verdict against the provider.
    """
    signer = _signer(key_file, passphrase_file)
    claim = Claim.from_json(load_json(claim_path, "claim"))
    challenge = Challenge.from_json(load_json(challenge_path, "challenge"))
    answer = Openings.from_json(load_json(openings_path, "openings"))
    answer.answers(claim.claim_id, challenge.seed)
    service = Service(read_file(module_path, "module"), read_link_options(links))
    verdict = audit(claim, challenge, list(answer.openings), service, deal=read_deal(deal_path), jobs=jobs, final=final,
                    states=answer.states, min_uniform=min_uniform)
    result = verdict.sign(signer[0], signer[1], int(time.time())) if signer else verdict.to_json()
    if out:
        write_output(out, json.dumps(result, indent=2) + "\n", "verdict")
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
        if not signer:
            info("  the verdict is unsigned (no --key): `poe settle` will not pay on it")
    if verdict.verdict != "ACCEPT":
        raise click.exceptions.Exit(1 if verdict.verdict == "REJECT" else 3)


def _signer(key_file: str | None, passphrase_file: str | None):
    """(scheme, secret key) from the auditor's key file, read before any work is done."""
    if key_file is None:
        return None
    from poe.crypto.keys import read_signing_key
    from ._options import read_passphrase

    scheme, key = read_signing_key(key_file, lambda: read_passphrase(passphrase_file))
    return scheme, key.secret_key

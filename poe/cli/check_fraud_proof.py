"""`poe check-fraud-proof`: re-check a fraud proof (one re-execution at most)."""

from __future__ import annotations

import click

from poe.audit.fraud import check_fraud_proof, fraud_proof_of
from poe.formats.moduleset import Service
from ._options import emit_json, info, json_option, load_json, read_deal, read_file, read_link_options


@click.command("check-fraud-proof")
@click.argument("proof_path", metavar="FILE", type=click.Path(dir_okay=False))
@click.option("--module", "module_path", default=None, type=click.Path(dir_okay=False),
              help="The module the committed record names (needed by re-execution and state-chain proofs, not by bill-leaf ones).")
@click.option("--link", "links", multiple=True, help="NAME=OTHER.wasm for multi-module services.")
@click.option("--deal", "deal_path", type=click.Path(dir_okay=False), default=None,
              help="The deal you trust (needed by bill-leaf proofs: the statement signs its id, not its terms).")
@json_option
def check_fraud_proof_cmd(proof_path, module_path, links, deal_path, as_json):
    """Exit 0 if the fraud is proven, 5 if it is not (the record re-executes as committed, or the
    states chain), 1 if the proof itself does not verify, 3 if FILE is not a fraud proof.

    FILE is a fraud proof, or a verdict that contains one. A `re-execution` proof is proven when
    the signed, committed record does not re-execute (from the pre-state the proof carries, for a
    stateful segment); a `state-chain` proof when two adjacent committed records of a stateful
    lineage do not chain (a forged pre-state or a skipped step): no re-execution needed; a
    `bill-leaf` proof when a leaf of the signed bill tree bills work no customer signed, a
    request twice, outside its window or budget, or names another record (spec §14.3): no
    module needed.
    """
    proof = fraud_proof_of(load_json(proof_path, "fraud proof"))
    service = Service(read_file(module_path, "module"), read_link_options(links)) if module_path is not None else None
    result = check_fraud_proof(proof, service, read_deal(deal_path) if deal_path is not None else None)
    if as_json:
        emit_json(result)
    elif result["kind"] in ("state-chain", "bill-leaf"):
        info(f"FRAUD PROVEN: segment {result['segment']} of epoch {result['epoch']} (deal {result['deal_id']!r}): {result['reason']}")
    else:
        info(f"FRAUD PROVEN: segment {result['segment']} of epoch {result['epoch']} (deal {result['deal_id']!r}) does not re-execute to its signed record")
        for k, (a, b) in result["differences"].items():
            info(f"  {k}: committed {a}, re-executed {b}")

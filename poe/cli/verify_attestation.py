"""`poe verify-attestation`: check signed epoch heads, alone and as a chain."""

from __future__ import annotations

import click

from poe.errors import EncodingError, PoEError
from poe.crypto.schemes import backend_report
from poe.protocol.attestation import Envelope, verify_envelopes
from ._options import emit_json, info, json_option, read_file


@click.command("verify-attestation")
@click.argument("files", nargs=-1, required=True, type=click.Path(dir_okay=False))
@click.option("--pubkey", "pubkeys", multiple=True, help="Public key (hex) you trust; repeatable. Without it any key is accepted and named.")
@click.option("--previous", type=click.Path(dir_okay=False), default=None, help="The last attestation you accepted: the files must continue it (no replay, no gap).")
@click.option("--require-reproducible", is_flag=True, help="Refuse attestations whose cost model this machine cannot reproduce.")
@json_option
def verify_attestation(files, pubkeys, previous, require_reproducible, as_json):
    """Verify attestation envelopes: signature, cost model, consistency proof, chain.

    BLS signatures of several files are checked in one batch (a random linear combination);
    if the batch fails, the bad ones are named. Files of one provider and deal must form an
    unbroken chain of epochs. --json also says which signature backend checked each scheme
    ("crypto"; POE_CRYPTO_BACKEND=py-ecc forces the pure-Python reference). Exit 0 if all verify, 1 if any does not, 3 if a file is unreadable.
    """
    try:
        trusted = [bytes.fromhex(k) for k in pubkeys] or None
    except ValueError:
        raise EncodingError("--pubkey must be hex") from None
    failed: dict[str, dict] = {}
    loaded: dict[str, Envelope] = {}
    for path in files:
        try:
            env = Envelope.loads(read_file(path, "attestation"))
            env.statement  # noqa: B018 (decodes and checks the statement)
            loaded[path] = env
        except PoEError as exc:
            failed[path] = {"ok": False, "error": exc.to_json()}
    prior = Envelope.loads(read_file(previous, "previous attestation")) if previous is not None else None
    checked, chain_error = verify_envelopes(loaded, trusted_keys=trusted, require_reproducible=require_reproducible, previous=prior)
    results = {path: failed.get(path) or checked[path] for path in files}
    ok = all(r["ok"] for r in results.values()) and chain_error is None
    if as_json:
        crypto = backend_report(env.statement.scheme for env in loaded.values())
        emit_json({"ok": ok, "files": results, "chain": {"ok": chain_error is None, "error": chain_error}, "crypto": crypto})
    else:
        for path, r in results.items():
            if r["ok"]:
                st = r["statement"]
                extra = "" if r["cost_model_reproducible"] else f" (cost model not reproducible here: {r['note']})"
                info(f"OK    {path}: epoch {st['epoch']} of deal {st['deal_id']!r}, segments {st['leaf_range'][0]}..{st['leaf_range'][1] - 1}, signed by {r['signer']}{extra}")
            else:
                info(f"FAIL  {path}: [{r['error']['code']}] {r['error']['message']}")
        if chain_error:
            info(f"FAIL  chain: [{chain_error['code']}] {chain_error['message']}")
    if not ok:
        unreadable = all(r["ok"] or r["error"]["code"] in ("encoding.malformed", "input.invalid") for r in results.values()) and chain_error is None
        raise click.exceptions.Exit(3 if unreadable else 1)

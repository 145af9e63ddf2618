"""`poe verify-attestation`: check signed epoch heads, alone and as a chain."""

from __future__ import annotations

import click

from poe.protocol.attestation import Envelope, verify_chain, verify_envelope
from poe.crypto.schemes import get_scheme
from poe.errors import BatchVerificationError, EncodingError, PoEError, VerificationError
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
    unbroken chain of epochs. Exit 0 if all verify, 1 if any does not, 3 if a file is unreadable.
    """
    try:
        trusted = [bytes.fromhex(k) for k in pubkeys] or None
    except ValueError:
        raise EncodingError("--pubkey must be hex") from None
    results: dict[str, dict] = {}
    loaded: dict[str, Envelope] = {}
    for path in files:
        try:
            env = Envelope.loads(read_file(path, "attestation"))
            env.statement  # noqa: B018 (decodes and checks the statement)
            loaded[path] = env
        except PoEError as exc:
            results[path] = {"ok": False, "error": exc.to_json()}
    batch_checked: set[str] = set()
    bls = [p for p, e in loaded.items() if e.statement.scheme == "bls12-381"]
    if len(bls) > 1:
        scheme = get_scheme("bls12-381")
        try:
            scheme.batch_verify([(loaded[p].statement.public_key, loaded[p].statement.digest, loaded[p].signature) for p in bls])
            batch_checked.update(bls)
        except BatchVerificationError as exc:
            bad = {bls[i] for i in exc.bad_indices}
            for p in bad:
                results[p] = {"ok": False, "error": {"code": exc.code, "message": "signature does not verify (named by the batch check)"}}
            batch_checked.update(set(bls) - bad)
    statements = []
    for path, env in loaded.items():
        if path in results:
            continue
        st = env.statement
        try:
            report = verify_envelope(env, get_scheme(st.scheme), trusted_keys=trusted, require_reproducible=require_reproducible, signature_checked=path in batch_checked)
            results[path] = {"ok": True, "statement": st.to_json(), "signer": get_scheme(st.scheme).identity(st.public_key),
                             "cost_model_reproducible": report.reproducible, "note": report.note}
        except PoEError as exc:
            results[path] = {"ok": False, "error": exc.to_json()}
            continue
        statements.append(st)
    chain_error = None
    prior = None
    if previous is not None:
        prior_env = Envelope.loads(read_file(previous, "previous attestation"))
        verify_envelope(prior_env, get_scheme(prior_env.statement.scheme), trusted_keys=trusted)
        prior = prior_env.statement
    if statements and (len(statements) > 1 or prior is not None):
        try:
            verify_chain(statements, prior)
        except VerificationError as exc:
            chain_error = exc.to_json()
    ok = all(r["ok"] for r in results.values()) and chain_error is None
    if as_json:
        emit_json({"ok": ok, "files": results, "chain": {"ok": chain_error is None, "error": chain_error}})
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

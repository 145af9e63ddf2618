"""`poe request`: a customer signs a request for one invocation under a deal."""

from __future__ import annotations

import json

import click

from poe.errors import InputError, KeyFileError
from ._invocation import invocation_from_flags, invocation_options, read_service
from ._options import emit_json, info, json_option, passphrase_option, read_deal, read_passphrase, write_output


def _epochs(ctx: click.Context, param: click.Parameter, text: str) -> tuple[int, int]:
    first, sep, last = text.partition("..")
    if not first.isdigit() or (sep and not last.isdigit()) or not first.isascii() or not last.isascii():
        raise click.BadParameter(f"N or FIRST..LAST (epoch numbers), got {text!r}")
    return int(first), int(last if sep else first)


@click.command("request")
@click.argument("module", type=click.Path(dir_okay=False))
@click.option("--deal", "deal_path", required=True, type=click.Path(dir_okay=False), help="The deal the request is billed under (JSON or .toml).")
@click.option("--key", "key_file", required=True, type=click.Path(dir_okay=False), help="Your customer key file (`poe keygen --scheme secp256k1`): its address is the request's customer.")
@click.option("--sequence", required=True, type=click.IntRange(0, 2**64 - 1), help="Your counter for this deal: give each request a new one.")
@click.option("--budget", "fuel_budget", required=True, type=click.IntRange(1, 2**64 - 1), help="The most fuel you agree to pay for; the provider runs the request with it as the fuel limit.")
@click.option("--epochs", "epochs", required=True, callback=_epochs, help="N or FIRST..LAST: the provider's epochs the request may be billed in.")
@click.option("--chain-id", type=click.IntRange(1, 2**64 - 1), default=1, show_default=True, help="The EIP-712 domain's chain id.")
@click.option("--job-steps", "steps", type=click.IntRange(1, 2**64 - 1), default=None,
              help="Sign a stateful job instead (poe job v1): at most N steps of the call on one lineage (`poe run --stateful`), "
                   "each with at most --budget fuel; step k bills under --sequence + k, so the job reserves N sequences.")
@invocation_options
@click.option("--seed", default=None, help="32-byte hex seed for random_get (default all zero); it is part of what you sign.")
@click.option("--out", type=click.Path(dir_okay=False), default=None, help="Write the signed request (poe request v1) here, never over an existing file (default: stdout).")
@passphrase_option
@json_option
def request(module, deal_path, key_file, sequence, fuel_budget, epochs, chain_id, steps, export, args, env, stdin_path, files, links, seed, out,
            passphrase_file, as_json):
    """Sign a request for one invocation of MODULE under a deal: EIP-712 typed data (spec §14.1)
    naming the deal, your address, a sequence number, the invocation's digest, a fuel budget and
    the epochs it may be billed in. The invocation flags mean what they mean to `poe run`.

    \b
    Example:
      poe request funcs.wasm --deal deal.json --key me.key --sequence 1 --budget 1000000 \\
          --epochs 0..9 --invoke add --arg 2 --arg 40 --out req.json
    """
    from poe.crypto.keys import read_signing_key
    from poe.customer import request_for
    from poe.formats.costmodel import CostModel
    from poe.provider.run import parse_seed
    from poe.wasm.executor import Executor

    deal = read_deal(deal_path)
    service = read_service(module, links)
    if service.digest != deal.module_digest:
        raise InputError("the module (with its links) is not the deal's", expected=deal.module_digest.hex(), observed=service.digest.hex())
    scheme, key = read_signing_key(key_file, lambda: read_passphrase(passphrase_file))
    if scheme.name != "secp256k1":
        raise KeyFileError(f"{key_file} is a {scheme.name} key; a customer signs with secp256k1 (an EVM address)")
    # The executor only reads the export's parameter types here: the digest does not depend on limits.
    if deal.window is not None and epochs[1] - epochs[0] >= deal.window:
        raise InputError(f"--epochs spans {epochs[1] - epochs[0] + 1} epochs; the deal lets a request stay billable for at most {deal.window}")
    inv = invocation_from_flags(Executor(service, CostModel.current()), module, export, args, env, stdin_path, files, parse_seed(seed),
                                stateful=steps is not None)
    if steps is not None and sequence + steps > 2**64:
        raise InputError("--sequence + --job-steps must fit in 64 bits: the job reserves one sequence a step")
    signed = request_for(deal, inv, key=key.secret_key, sequence=sequence, fuel_budget=fuel_budget, epochs=epochs, chain_id=chain_id,
                         steps=steps)
    doc = signed.to_json()
    if out is not None or not as_json:
        write_output(out, json.dumps(doc, indent=2) + "\n", "request")
    if as_json:
        emit_json({**doc, "digest": signed.digest.hex()})
    what = f"job of {steps:,} steps (sequences {sequence}..{sequence + steps - 1})" if steps is not None else f"request {sequence}"
    info(f"poe: {what} of {doc['request']['customer']} for {inv.export}: digest {signed.digest.hex()[:16]}..., "
         f"budget {fuel_budget:,} fuel{' a step' if steps is not None else ''}, epochs {epochs[0]}..{epochs[1]} of deal {deal.deal_id!r}")

"""`poe pubkey`: show a key file's public key (and a BLS proof of possession)."""

from __future__ import annotations

import base64

import click

from poe.crypto.keys import read_key_file, read_signing_key
from poe.crypto.schemes import get_scheme
from poe.errors import KeyFileError
from ._options import emit_json, info, json_option, passphrase_option, read_passphrase


@click.command("pubkey")
@click.argument("key_file", type=click.Path(dir_okay=False))
@click.option("--pop", is_flag=True, help="Also compute a BLS proof of possession (needs the secret key).")
@passphrase_option
@json_option
def pubkey(key_file, pop, passphrase_file, as_json):
    """Print the public key and identity of KEY_FILE (no passphrase needed unless --pop)."""
    key = read_key_file(key_file, unlock=False)
    s = get_scheme(key.scheme)
    s.check_public_key(key.public_key)
    result = {"scheme": s.name, "public_key": key.public_key.hex(), "identity": s.identity(key.public_key), "encrypted": key.encrypted}
    if pop:
        if not s.aggregatable:
            raise KeyFileError("a proof of possession exists only for BLS keys")
        _, unlocked = read_signing_key(key_file, lambda: read_passphrase(passphrase_file))
        result["proof_of_possession"] = base64.b64encode(s.pop_prove(unlocked.secret_key)).decode()
    if as_json:
        emit_json(result)
    else:
        for k, v in result.items():
            info(f"{k:<20}: {v}")

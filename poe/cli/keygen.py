"""`poe keygen`: create a provider signing key."""

from __future__ import annotations

import click

from poe.crypto.keys import write_key_file
from poe.crypto.schemes import SCHEME_NAMES, get_scheme
from ._options import emit_json, info, json_option, passphrase_option, read_passphrase

# Every registered scheme by its own name, plus the short name users type for BLS.
SCHEME_CHOICES = {"bls": "bls12-381", **{name: name for name in SCHEME_NAMES}}


@click.command("keygen")
@click.option("--scheme", type=click.Choice(sorted(SCHEME_CHOICES)), required=True, help="bls (BLS12-381, aggregatable) or secp256k1 (EVM ecrecover).")
@click.option("--out", required=True, type=click.Path(dir_okay=False), help="Key file to create (mode 0600; an existing file is never overwritten).")
@click.option("--encrypt", is_flag=True, help="Encrypt the secret key with a passphrase (scrypt + BLAKE3).")
@passphrase_option
@json_option
def keygen(scheme, out, encrypt, passphrase_file, as_json):
    """Create a signing key and write it to a key file readable only by you."""
    s = get_scheme(SCHEME_CHOICES[scheme])
    passphrase = read_passphrase(passphrase_file, confirm=True) if encrypt or passphrase_file else None
    sk = s.generate_key()
    pk = s.public_key(sk)
    write_key_file(out, s.name, sk, pk, passphrase)
    result = {"key_file": out, "scheme": s.name, "public_key": pk.hex(), "identity": s.identity(pk), "encrypted": passphrase is not None}
    if as_json:
        emit_json(result)
    else:
        info(f"poe: wrote {s.name} key to {out}{' (encrypted)' if passphrase else ''}")
        info(f"  public key : {pk.hex()}")
        info(f"  identity   : {s.identity(pk)}")

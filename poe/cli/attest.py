"""`poe attest`: sign an epoch's tree head with the provider's key."""

from __future__ import annotations

import os

import click

from poe.crypto.keys import read_signing_key
from poe.store.tracestore import TraceStore
from poe.errors import InputError
from poe.protocol.attestation import check_deal_id
from poe.provider.attest import sign_epoch
from ._options import info, passphrase_option, read_passphrase, write_output


@click.command("attest")
@click.argument("store_path", metavar="STORE", type=click.Path(dir_okay=True))
@click.option("--key", "key_file", required=True, type=click.Path(dir_okay=False), help="Provider key file (from `poe keygen`).")
@click.option("--deal", "deal_id", required=True, help="Deal id the epoch is billed under.")
@click.option("--epoch", type=click.IntRange(min=0), default=None, help="Epoch to attest (default: seal the open epoch and attest it).")
@click.option("--out", type=click.Path(dir_okay=False), default=None, help="Write the attestation envelope here (default: stdout).")
@passphrase_option
def attest(store_path, key_file, deal_id, epoch, out, passphrase_file):
    """Seal an epoch if needed and sign its head: the attestation envelope (JSON).

    The signed statement binds the cost model, the module, your key, the deal, the epoch's
    leaf range, its root and totals, and the previous epoch's root with a reference to the
    consistency proof between them (carried in the envelope), so epochs chain.
    """
    scheme, key = read_signing_key(key_file, lambda: read_passphrase(passphrase_file))
    check_deal_id(deal_id)  # everything that can fail on input fails before the epoch is sealed
    if out is not None and os.path.lexists(out):
        raise InputError(f"{out} already exists; not overwriting an attestation")
    with TraceStore.open(store_path, seal=True) as store:
        envelope = sign_epoch(store, scheme, key.secret_key, deal_id, epoch)
    write_output(out, envelope.dumps(), "attestation")
    st, t = envelope.statement, envelope.statement.totals
    info(f"poe: attested epoch {st.epoch} (segments {st.first_index}..{st.end_index - 1}) of deal {deal_id!r}")
    info(f"  root {st.root.hash.hex()}; epoch fuel {t.fuel:,} mem {t.mem:,} io {t.io:,}; signed by {scheme.identity(key.public_key)}")

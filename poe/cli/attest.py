"""`poe attest`: sign an epoch's tree head with the provider's key."""

from __future__ import annotations

import os
import time

import click

from poe.protocol.attestation import EMPTY_ROOT, Envelope, Statement, check_deal_id, consistency_digest
from poe.crypto.keys import read_key_file
from poe.crypto.schemes import get_scheme
from poe.store.tracestore import TraceStore
from poe.merkle.verify import ConsistencyProof
from poe.errors import InputError, KeyFileError, StoreError
from ._options import info, passphrase_option, read_passphrase


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
    locked = read_key_file(key_file, unlock=False)
    key = read_key_file(key_file, read_passphrase(passphrase_file) if locked.encrypted else None)
    scheme = get_scheme(key.scheme)
    if scheme.public_key(key.secret_key) != key.public_key:
        raise KeyFileError(f"{key_file}: the secret key does not match the public key stored beside it; nothing was signed")
    check_deal_id(deal_id)  # everything that can fail on input fails before the epoch is sealed
    out_file = _reserve(out)
    try:
        text = _attest(store_path, key, scheme, deal_id, epoch)
    except BaseException:
        if out_file is not None:
            out_file.close()
            os.unlink(out)
        raise
    if out_file is None:
        click.echo(text, nl=False)
        return
    with out_file:
        out_file.write(text)
    st = Envelope.loads(text).statement
    t = st.totals
    info(f"poe: attested epoch {st.epoch} (segments {st.first_index}..{st.end_index - 1}) of deal {deal_id!r} to {out}")
    info(f"  root {st.root.hash.hex()}; epoch fuel {t.fuel:,} mem {t.mem:,} io {t.io:,}; signed by {scheme.identity(key.public_key)}")


def _reserve(out: str | None):
    if out is None:
        return None
    try:
        return open(out, "x")
    except FileExistsError:
        raise InputError(f"{out} already exists; not overwriting an attestation") from None
    except OSError as exc:
        raise InputError(f"cannot write {out}: {exc.strerror}") from None


def _attest(store_path: str, key, scheme, deal_id: str, epoch: int | None) -> str:
    store = TraceStore.open(store_path, seal=True)
    try:
        sealed = store.seal(epoch)
        previous = sealed.previous_root or EMPTY_ROOT
        proof = None
        if previous.size:
            if previous.size == sealed.root.size:
                proof = ConsistencyProof(previous.size, previous.size, ()).encode()
            else:
                proof = store.consistency_proof(sealed.epoch - 1, sealed.epoch)[2].encode()
        modules = store.module_digests(sealed.first_index, sealed.end_index)
        if not modules:
            services = store.services()
            if len(services) != 1:
                raise StoreError(f"epoch {sealed.epoch} is empty and the store has {len(services)} services: cannot tell which module to attest")
            modules = {services[0][0]}
        if len(modules) != 1:
            raise InputError(f"epoch {sealed.epoch} mixes {len(modules)} services; an attestation covers one module (use one store per service)")
        cost_model = store.cost_model
    finally:
        store.close()
    statement = Statement(
        scheme=scheme.name, cost_model_digest=cost_model.digest, module_digest=modules.pop(), public_key=key.public_key,
        deal_id=deal_id, epoch=sealed.epoch, first_index=sealed.first_index, end_index=sealed.end_index,
        root=sealed.root, previous_root=previous, consistency_digest=consistency_digest(proof), issued_at=int(time.time()),
    )
    envelope = Envelope(
        statement.encode(), scheme.sign(key.secret_key, statement.digest), scheme.identity(key.public_key),
        cost_model.to_json(), proof, scheme.pop_prove(key.secret_key) if scheme.name == "bls12-381" else None,
    )
    return envelope.dumps()

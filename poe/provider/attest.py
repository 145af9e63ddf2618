"""Sealing and signing an epoch, and billing it: the provider's side of spec §11 and §12.1."""

from __future__ import annotations

import time
from typing import Any

from poe.errors import InputError, StoreError
from poe.merkle.verify import ConsistencyProof
from poe.protocol.attestation import EMPTY_ROOT, Envelope, Statement, check_deal_id, consistency_digest, verify_envelope
from poe.protocol.claim import Claim
from poe.protocol.deal import Deal

__all__ = ["sign_epoch", "make_claim"]


def sign_epoch(store: Any, scheme: Any, secret_key: bytes, deal_id: str, epoch: int | None = None, *,
               issued_at: int | None = None, billed: bool = True) -> Envelope:
    """Seal `epoch` of a store opened for sealing (default: the open epoch) if it is not sealed
    yet, and sign its head: the statement (version 2) binds cost model, module, key, deal, leaf
    range, root, totals, the previous head, whose consistency proof the envelope carries, and the
    epoch's bill root (spec §14.2), against which a customer checks its bill; with `billed=False`
    a version-1 statement without it, as poe made them before."""
    check_deal_id(deal_id)
    public_key = scheme.public_key(secret_key)
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
    bill_root = store.bill(sealed.epoch)[1].root if billed else None
    statement = Statement(
        scheme=scheme.name, cost_model_digest=cost_model.digest, module_digest=modules.pop(), public_key=public_key,
        deal_id=deal_id, epoch=sealed.epoch, first_index=sealed.first_index, end_index=sealed.end_index,
        root=sealed.root, previous_root=previous, consistency_digest=consistency_digest(proof),
        issued_at=int(time.time()) if issued_at is None else issued_at, bill_root=bill_root,
    )
    # A scheme whose keys aggregate proves possession of its key with every attestation (spec §11.2).
    pop = scheme.pop_prove(secret_key) if scheme.aggregatable else None
    return Envelope(statement.encode(), scheme.sign(secret_key, statement.digest), scheme.identity(public_key),
                    cost_model.to_json(), proof, pop)


def make_claim(envelope: Envelope, deal: Deal) -> Claim:
    """Bill an attested epoch under a deal, once the attestation verifies under the deal's key
    and names the deal's id, module and cost model."""
    st = envelope.statement
    if (why := deal.mismatch(st)) is not None:
        raise InputError(why)
    from poe.crypto.schemes import get_scheme

    verify_envelope(envelope, get_scheme(st.scheme), trusted_keys=[deal.provider_key])
    return Claim.bill(envelope, deal)

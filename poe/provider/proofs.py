"""Proof bundles from a provider's store: what `poe prove` writes (the document is
:mod:`poe.protocol.proofs`, which also checks it)."""

from __future__ import annotations

from typing import Any

from poe.protocol import proofs

__all__ = ["inclusion_bundle", "consistency_bundle"]


def inclusion_bundle(store: Any, index: int, epoch: int | None = None) -> dict[str, Any]:
    """Segment `index`'s record and its inclusion proof against a sealed head: `epoch`'s, or by
    default the first that contains the segment."""
    record, proof, root = store.inclusion_proof(index, epoch)
    return proofs.inclusion_bundle(index, record, proof, root)


def consistency_bundle(store: Any, old_epoch: int, new_epoch: int | None = None) -> dict[str, Any]:
    """A proof that `new_epoch`'s head (default: the latest sealed) extends `old_epoch`'s."""
    if new_epoch is None:
        new_epoch = store.latest_sealed_epoch()
    old, new, proof = store.consistency_proof(old_epoch, new_epoch)
    return proofs.consistency_bundle(old_epoch, new_epoch, old, new, proof)

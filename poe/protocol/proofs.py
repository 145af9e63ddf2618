"""Proof bundles (`poe prove`, `poe verify-proof`): a segment's inclusion proof or a consistency
proof between two heads, as a JSON document anyone can check by hand (spec §10).

A bundle carries the root it was made against, which shows only that it is self-consistent; a
verifier passes the root it trusts (from a signed attestation) and the result says which was used.
"""

from __future__ import annotations

from typing import Any

from poe.errors import EncodingError
from poe.formats.record import RECORD_SIZE, Record
from poe.merkle.hasher import Root
from poe.merkle.verify import MAX_PROOF_BYTES, ConsistencyProof, InclusionProof, verify_consistency, verify_inclusion
from poe.protocol.fields import document, hexbytes, uint

__all__ = ["BUNDLE_FORMAT", "inclusion_bundle", "consistency_bundle", "check_proof_bundle"]

BUNDLE_FORMAT = "poe proof bundle v1"


def inclusion_bundle(index: int, record: bytes, proof: InclusionProof, root: Root) -> dict[str, Any]:
    return {"format": BUNDLE_FORMAT, "kind": "inclusion", "index": index,
            "record": record.hex(), "proof": proof.encode().hex(), "root": root.to_json()}


def consistency_bundle(old_epoch: int, new_epoch: int, old: Root, new: Root, proof: ConsistencyProof) -> dict[str, Any]:
    return {"format": BUNDLE_FORMAT, "kind": "consistency", "old_epoch": old_epoch, "new_epoch": new_epoch,
            "old_root": old.to_json(), "new_root": new.to_json(), "proof": proof.encode().hex()}


def check_proof_bundle(doc: Any, *, root: Root | None = None, old_root: Root | None = None) -> dict[str, Any]:
    """Verify a bundle against `root` (for consistency: the new head) and `old_root` when given,
    else against the roots it carries. Returns what was proven, with ``checked_against`` naming
    which roots were used; raises a VerificationError (or EncodingError) otherwise."""
    kind = doc.get("kind") if isinstance(doc, dict) else None
    if kind == "inclusion":
        d = document(doc, BUNDLE_FORMAT, ("kind", "index", "record", "proof", "root"))
        record = hexbytes(d["record"], "record", RECORD_SIZE)
        proof = InclusionProof.decode(hexbytes(d["proof"], "inclusion proof", max_length=MAX_PROOF_BYTES))
        if uint(d["index"], "index") != proof.index:
            raise EncodingError("the bundle's index is not the one its proof is for", expected=proof.index, observed=d["index"])
        against = root if root is not None else Root.from_json(d["root"])
        verify_inclusion(record, proof, against)
        return {"ok": True, "kind": kind, "index": proof.index, "root": against.to_json(), "record": Record.decode(record).to_json(),
                "checked_against": "trusted root" if root is not None else "the bundle's own root"}
    d = document(doc, BUNDLE_FORMAT, ("kind", "old_epoch", "new_epoch", "old_root", "new_root", "proof"))
    if d["kind"] != "consistency":
        raise EncodingError("a proof bundle's kind is inclusion or consistency", observed=repr(d["kind"])[:40] if isinstance(d["kind"], str) else type(d["kind"]).__name__)
    uint(d["old_epoch"], "old epoch"), uint(d["new_epoch"], "new epoch")
    new = root if root is not None else Root.from_json(d["new_root"])
    old = old_root if old_root is not None else Root.from_json(d["old_root"])
    verify_consistency(old, new, ConsistencyProof.decode(hexbytes(d["proof"], "consistency proof", max_length=MAX_PROOF_BYTES)))
    trusted = root is not None and old_root is not None
    return {"ok": True, "kind": "consistency", "old_root": old.to_json(), "new_root": new.to_json(),
            "checked_against": "trusted root" if trusted else "the bundle's own root"}

"""`poe prove` and `poe verify-proof`: Merkle proofs anyone can check by hand."""

from __future__ import annotations

import json

import click

from poe.errors import EncodingError
from poe.formats.record import Record
from poe.merkle.build import native_note
from poe.merkle.hasher import Root
from poe.merkle.verify import ConsistencyProof, InclusionProof, verify_consistency, verify_inclusion
from poe.store.tracestore import TraceStore
from poe.store.views import BUNDLE_FORMAT, consistency_bundle, inclusion_bundle
from ._options import emit_json, info, json_option, load_json, write_output


@click.command("prove")
@click.argument("store_path", metavar="STORE", type=click.Path(dir_okay=True))
@click.option("--index", type=click.IntRange(min=0), default=None, help="Segment to prove included.")
@click.option("--consistency", "old_epoch", type=click.IntRange(min=0), default=None, help="Prove the --epoch head extends this older epoch's head.")
@click.option("--epoch", type=click.IntRange(min=0), default=None, help="Sealed epoch whose head to prove against (default: the first that contains the segment; for --consistency, the latest sealed).")
@click.option("--out", type=click.Path(dir_okay=False), default=None, help="Write the proof bundle to this new file (default: stdout).")
def prove(store_path, index, old_epoch, epoch, out):
    """Write a proof bundle (JSON): an inclusion proof for a segment, or a consistency proof."""
    if (index is None) == (old_epoch is None):
        raise click.UsageError("give exactly one of --index I or --consistency OLD_EPOCH")
    note = native_note()
    if note:
        info(f"poe: note: {note}")
    with TraceStore.open(store_path) as store:
        if index is not None:
            bundle = inclusion_bundle(store, index, epoch)
        else:
            bundle = consistency_bundle(store, old_epoch, epoch)
    write_output(out, json.dumps(bundle, indent=2) + "\n", f"{bundle['kind']} proof")


@click.command("verify-proof")
@click.argument("bundle_path", metavar="BUNDLE", type=click.Path(dir_okay=False))
@click.option("--root", "root_path", default=None, help="A root you trust (JSON file with size, hash, totals); for consistency, the new root.")
@click.option("--old-root", "old_root_path", default=None, help="For consistency proofs: the older root you trust (JSON file).")
@json_option
def verify_proof(bundle_path, root_path, old_root_path, as_json):
    """Check a proof bundle from `poe prove`. Exit 0 if it verifies, 1 if it does not.

    Without --root the bundle is checked against the root it carries, which shows only that it
    is self-consistent: pass the root you obtained independently (from a signed attestation).
    """
    bundle = load_json(bundle_path, "proof bundle")
    if not isinstance(bundle, dict) or bundle.get("format") != BUNDLE_FORMAT or bundle.get("kind") not in ("inclusion", "consistency"):
        raise EncodingError(f"{bundle_path} is not a {BUNDLE_FORMAT} file")
    trusted = root_path is not None
    try:
        if bundle["kind"] == "inclusion":
            root = Root.from_json(load_json(root_path, "root")) if root_path else Root.from_json(bundle["root"])
            record = bytes.fromhex(bundle["record"])
            proof = InclusionProof.decode(bytes.fromhex(bundle["proof"]))
            verify_inclusion(record, proof, root)
            r = Record.decode(record)
            result = {"ok": True, "kind": "inclusion", "index": proof.index, "root": root.to_json(), "record": r.to_json()}
            message = (f"inclusion proof OK: segment {proof.index} ({r.describe_outcome()}, fuel {r.fuel:,}) is in the tree "
                       f"of {root.size:,} segments with root {root.hash.hex()[:16]}...")
        else:
            new = Root.from_json(load_json(root_path, "root")) if root_path else Root.from_json(bundle["new_root"])
            old = Root.from_json(load_json(old_root_path, "old root")) if old_root_path else Root.from_json(bundle["old_root"])
            trusted = trusted and old_root_path is not None
            proof = ConsistencyProof.decode(bytes.fromhex(bundle["proof"]))
            verify_consistency(old, new, proof)
            result = {"ok": True, "kind": "consistency", "old_root": old.to_json(), "new_root": new.to_json()}
            message = f"consistency proof OK: the tree of {new.size:,} segments extends the tree of {old.size:,}"
    except (KeyError, TypeError, ValueError) as exc:
        raise EncodingError(f"{bundle_path} is malformed: {type(exc).__name__}: {exc}") from None
    result["checked_against"] = "trusted root" if trusted else "the bundle's own root"
    if as_json:
        emit_json(result)
    else:
        info(message)
        if not trusted:
            info("  note: checked against the root inside the bundle; pass --root (and --old-root) to check against roots you trust")


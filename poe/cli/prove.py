"""`poe prove` and `poe verify-proof`: Merkle proofs anyone can check by hand."""

from __future__ import annotations

import json

import click

from poe.merkle.build import native_note
from poe.merkle.hasher import Root
from poe.protocol.proofs import check_proof_bundle
from poe.provider.proofs import consistency_bundle, inclusion_bundle
from poe.store.tracestore import TraceStore
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
    root = Root.from_json(load_json(root_path, "root")) if root_path else None
    old_root = Root.from_json(load_json(old_root_path, "old root")) if old_root_path else None
    result = check_proof_bundle(load_json(bundle_path, "proof bundle"), root=root, old_root=old_root)
    if as_json:
        emit_json(result)
        return
    if result["kind"] == "inclusion":
        r, size = result["record"], result["root"]["size"]
        info(f"inclusion proof OK: segment {result['index']} ({r['outcome_text']}, fuel {r['fuel']:,}) is in the tree "
             f"of {size:,} segments with root {result['root']['hash'][:16]}...")
    else:
        info(f"consistency proof OK: the tree of {result['new_root']['size']:,} segments extends the tree of {result['old_root']['size']:,}")
    if result["checked_against"] != "trusted root":
        info("  note: checked against the root inside the bundle; pass --root (and --old-root) to check against roots you trust")

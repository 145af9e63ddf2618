"""`poe gc`: free the stored states of settled epochs."""

from __future__ import annotations

import click

from poe.store.tracestore import TraceStore
from ._options import emit_json, human, info, json_option


@click.command("gc")
@click.argument("store_path", metavar="STORE", type=click.Path(dir_okay=True))
@click.option("--epoch", type=click.IntRange(min=0), required=True, help="Collect the states of every segment up to the end of this sealed epoch.")
@json_option
def gc(store_path, epoch, as_json):
    """Delete the stored states of segments in epochs up to EPOCH, once they are settled.

    Stateful segments keep their states as changed 1 KiB chunks so a challenge can be answered
    with each sample's pre-state. After an epoch is paid (or its audit window closed), those
    states are dead weight: gc keeps the state the next segment starts from as a full snapshot,
    then deletes older deltas, snapshots nothing later starts from, and every chunk nothing left
    names. Records, proofs and payloads are kept; only the pre-states of collected segments can no
    longer be opened. Takes the writer lock: run it between runs.
    """
    with TraceStore.open_writer(store_path) as store:
        before = store.state_usage()
        freed = store.collect(epoch)
        after = store.state_usage()
    doc = {"store": store_path, "through_epoch": epoch, "freed": freed, "before": before, "after": after}
    if as_json:
        emit_json(doc)
        return
    info(f"poe: collected the states of epochs <= {epoch}: {freed['states']:,} deltas, {freed['snapshots']:,} snapshots, "
         f"{freed['chunks']:,} chunks ({human(freed['bytes'])}B)")
    kept = after["bytes"]
    info(f"  kept     : {after['chunks']:,} chunks, {after['states']:,} deltas, {after['snapshots']:,} snapshots ({human(kept)}B)")

"""`poe seal`: commit an epoch of the trace store in the Merkle sum tree."""

from __future__ import annotations

import click

from poe.store.tracestore import TraceStore
from poe.merkle.build import native_note
from ._options import emit_json, info, json_option


@click.command("seal")
@click.argument("store_path", metavar="STORE", type=click.Path(dir_okay=True))
@click.option("--epoch", type=click.IntRange(min=0), default=None, help="Epoch to seal (default: the open one, which is closed first).")
@json_option
def seal(store_path, epoch, as_json):
    """Close an epoch and record its tree head: size, root hash and totals.

    The tree covers the store's whole log; an epoch is the range of segments appended since the
    previous seal, and its bill is this head's totals minus the previous head's. Sealing works
    while `poe run` keeps appending: new segments go to the next epoch. With no new segments
    since the last seal, nothing new is sealed and the last sealed epoch is reported. Sealing an
    epoch again recomputes it and refuses if the store's segments changed since.
    """
    note = native_note()
    if note:
        info(f"poe: note: {note}")
    with TraceStore.open(store_path, seal=True) as store:
        result = store.seal(epoch)
    if as_json:
        emit_json(result.to_json())
        return
    r, t = result.root, result.totals
    verb = "was already sealed" if result.already else "sealed"
    info(f"epoch {result.epoch} {verb}: segments {result.first_index}..{result.end_index - 1} ({result.end_index - result.first_index:,})")
    info(f"  root     : {r.hash.hex()} (tree of {r.size:,} segments)")
    info(f"  epoch    : fuel {t.fuel:,}  mem {t.mem:,}  io {t.io:,}")
    info(f"  log total: fuel {r.sums.fuel:,}  mem {r.sums.mem:,}  io {r.sums.io:,}")

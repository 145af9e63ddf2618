"""The trace store: one SQLite file per provider (WAL), the embedded default.

What it keeps: every segment's record with its canonical invocation and output, payload
blobs addressed by BLAKE3 (what an auditor will ask for), the modules of each service, and
epochs. Segments are written in batches, each batch one transaction, so a crash (even
``kill -9``) loses at most the batch in flight and never leaves a half-written segment: a
reopen sees whole batches only. ``synchronous=FULL`` makes a committed batch survive power
loss too. One process writes at a time: the writer holds an exclusive lock on a sidecar
``<store>.lock`` file, which the kernel releases if the process dies.

`TraceStore` is assembled from one part per concern, each a module of this package:
``_connection`` (the file, the writer lock, schema and format), ``_log`` (segments, payloads,
services), ``_epochs`` (sealing, tree heads, proofs) and ``_states`` (stateful segments' states
and their gc). The parts share one SQLite connection and call each other through ``self``.
"""

from __future__ import annotations

import sqlite3

from poe.formats.costmodel import CostModel

from ._connection import STORE_FORMAT, Connection
from ._epochs import Epoch, Epochs, SealResult, Totals
from ._log import SegmentLog
from ._states import States

__all__ = ["TraceStore", "STORE_FORMAT", "Totals", "Epoch", "SealResult"]


class TraceStore(SegmentLog, Epochs, States, Connection):
    """Open with :meth:`create_or_open` to write or :meth:`open` to read."""

    def __init__(self, path: str, conn: sqlite3.Connection, lock_fd: int | None, cost_model: CostModel) -> None:
        Connection.__init__(self, path, conn, lock_fd, cost_model)
        self._init_log()
        self._init_states()

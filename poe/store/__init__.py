"""The trace store: one SQLite file per provider store (spec §9)."""

from .tracestore import STORE_FORMAT, Epoch, SealResult, Totals, TraceStore

__all__ = ["TraceStore", "STORE_FORMAT", "Totals", "Epoch", "SealResult"]

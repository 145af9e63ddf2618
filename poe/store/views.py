"""What the store commands show, as plain documents: a store's overview, one segment, a
post-state's memory image.

The commands only print these; the choices (which epoch is meant, what a segment shows) are made
here, beside the store they read. Proof bundles are written by :mod:`poe.provider.proofs`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from poe.errors import InputError, StateUnavailableError
from poe.formats import hashing as h
from poe.formats.invocation import Invocation, Output
from poe.formats.record import Record
from poe.formats.state import State

from .tracestore import TraceStore

__all__ = ["SegmentView", "overview", "segment_view", "memory_image"]


def overview(store: TraceStore, path: str, epoch: int | None = None, *, check: bool = False) -> dict[str, Any]:
    """Cost model, services, epochs, totals and outcomes (of one epoch, or all), state usage,
    and with `check` the integrity report."""
    totals, outcomes = store.summary(epoch)
    data: dict[str, Any] = {
        "store": path,
        "segments": store.count(),
        "cost_model": store.cost_model.to_json(),
        "cost_model_name": store.cost_model.name,
        "cost_model_digest": store.cost_model.digest.hex(),
        "services": [{"digest": d.hex(), "name": n} for d, n in store.services()],
        "epochs": store.epochs(),
        "scope": "all epochs" if epoch is None else f"epoch {epoch}",
        "totals": totals.to_json(),
        "outcomes": outcomes,
        "state_store": store.state_usage(),
    }
    if check:
        problems = store.check_integrity()
        data["integrity"] = {"ok": not problems, "problems": problems}
    return data


@dataclass(frozen=True)
class SegmentView:
    record: Record
    invocation: Invocation
    output: Output
    post_state: dict[str, Any] | None  # a stateful segment's post-state, or why it is unavailable

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {"record": self.record.to_json(), "invocation": self.invocation.to_json(), "output": self.output.to_json()}
        if self.post_state is not None:
            data["post_state"] = self.post_state
        return data


def segment_view(store: TraceStore, index: int) -> SegmentView:
    record, invocation, output = store.segment(index)
    post = None
    if record.post_state != h.ZERO_DIGEST:
        try:
            post = store.state_after(index).to_json()
        except StateUnavailableError as exc:  # collected by gc: the record still names its root
            post = {"root": record.post_state.hex(), "unavailable": exc.message}
    return SegmentView(record, invocation, output, post)


def memory_image(store: TraceStore, index: int) -> tuple[State, bytes]:
    """Stateful segment `index`'s post-state and its linear memory, checked against its root."""
    if store.record(index).post_state == h.ZERO_DIGEST:
        raise InputError(f"segment {index} is stateless: it has no memory to dump")
    return store.post_state_image(index)

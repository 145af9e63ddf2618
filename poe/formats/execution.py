"""What running one segment produced: its record, its invocation and output, and (stateful) its post-state."""

from __future__ import annotations

from dataclasses import dataclass

from poe.formats.invocation import Invocation, Output
from poe.formats.record import Record
from poe.formats.state import State

__all__ = ["Execution"]


@dataclass(frozen=True)
class Execution:
    record: Record
    invocation: Invocation
    output: Output
    io_log: list[tuple] | None = None
    # Stateful mode: the post-state and the memory chunks (index, bytes) whose contents the
    # segment changed, which is what a snapshot store keeps per segment.
    state: State | None = None
    changed: tuple[tuple[int, bytes], ...] = ()

    @property
    def record_bytes(self) -> bytes:
        return self.record.encode()

"""Re-execute a committed segment and compare the whole record, byte for byte.

Pure apart from running the guest: the caller supplies the record, the invocation (with its
payloads) and the service; nothing is read from disk. This is the auditor's inner check.
"""

from __future__ import annotations

from poe.formats.costmodel import CostModel
from poe.wasm.executor import Execution, Executor, Service
from poe.formats.invocation import Invocation
from poe.formats.record import Record, record_diff
from poe.errors import RecordMismatchError, VerificationError

__all__ = ["replay", "record_diff"]


def replay(claimed: Record, invocation: Invocation, service: Service, cost_model: CostModel, *, executor: Executor | None = None) -> Execution:
    """Run the segment again; return the execution if its record equals `claimed`, else raise."""
    if invocation.digest != claimed.input_digest:
        raise VerificationError(
            f"segment {claimed.index}: the invocation does not hash to the record's input digest",
            expected=claimed.input_digest.hex(), observed=invocation.digest.hex(),
        )
    if service.digest != claimed.module_digest:
        raise VerificationError(
            f"segment {claimed.index}: the modules given are not the ones the record names",
            expected=claimed.module_digest.hex(), observed=service.digest.hex(),
        )
    ex = executor or Executor(service, cost_model)
    execution = ex.run(invocation, claimed.index)
    if execution.record_bytes != claimed.encode():
        diff = record_diff(claimed, execution.record)
        fields = ", ".join(f"{k} claimed {a} observed {b}" for k, (a, b) in diff.items())
        raise RecordMismatchError(
            f"segment {claimed.index}: re-execution gives a different record ({fields})",
            expected=claimed.encode().hex(), observed=execution.record_bytes.hex(), fields=sorted(diff),
        )
    return execution

"""poe: proof-of-execution verification and metering for WebAssembly functions.

The public surface is what ``__all__`` lists; everything in ``poe._*`` modules is private.
"""

from poe.formats.costmodel import CostModel, Limits
from poe.wasm.executor import Execution, Executor, Service
from poe.formats.invocation import Invocation, Output, Payload, Value
from poe.formats.record import RECORD_SIZE, Outcome, Record, TrapKind
from poe.store.tracestore import Totals, TraceStore
from poe import errors

__version__ = "0.1.0"

__all__ = [
    "__version__",
    "CostModel",
    "Limits",
    "Service",
    "Executor",
    "Execution",
    "Invocation",
    "Value",
    "Payload",
    "Output",
    "Record",
    "RECORD_SIZE",
    "Outcome",
    "TrapKind",
    "TraceStore",
    "Totals",
    "errors",
]

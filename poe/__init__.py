"""poe: proof-of-execution verification and metering for WebAssembly functions.

The public surface is what ``__all__`` lists; everything in ``poe._*`` modules is private.
"""

from ._costmodel import CostModel, Limits
from ._executor import Execution, Executor, Service
from ._invocation import Invocation, Output, Payload, Value
from ._record import RECORD_SIZE, Outcome, Record, TrapKind
from ._store import Totals, TraceStore
from . import errors

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

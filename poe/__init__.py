"""poe: proof-of-execution verification and metering for WebAssembly functions.

Two public APIs, each what its ``__all__`` lists:

* ``poe`` — the provider's: run functions as metered segments (`Executor`, `Service`,
  `Invocation`), keep them (`TraceStore`), sign epochs (`sign_epoch`), bill them (`make_claim`)
  and answer challenges (`respond`).
* ``poe.verify`` — the auditor's and the customer's: load documents, draw challenges, audit,
  check fraud proofs, attestations and proofs, settle. It imports neither wasmtime nor py-ecc
  until a re-execution or a signature check needs them.

``poe.errors`` is the one error tree. The subpackages (formats, merkle, crypto, wasm, store,
protocol, audit, provider, cli) are the layout, not an API: docs/architecture.md draws them.
Names load on first use, so ``import poe`` costs nothing it does not need.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

__version__ = "0.1.0"

_EXPORTS = {
    "CostModel": "poe.formats.costmodel",
    "Limits": "poe.formats.costmodel",
    "Service": "poe.formats.moduleset",
    "Execution": "poe.formats.execution",
    "Executor": "poe.wasm.executor",
    "Invocation": "poe.formats.invocation",
    "Value": "poe.formats.invocation",
    "Payload": "poe.formats.invocation",
    "Output": "poe.formats.invocation",
    "Record": "poe.formats.record",
    "RECORD_SIZE": "poe.formats.record",
    "Outcome": "poe.formats.record",
    "TrapKind": "poe.formats.record",
    "TraceStore": "poe.store.tracestore",
    "Totals": "poe.store.tracestore",
    "sign_epoch": "poe.provider.attest",
    "make_claim": "poe.provider.attest",
    "respond": "poe.provider.respond",
}

__all__ = ["__version__", "errors", *_EXPORTS]


def __getattr__(name: str) -> Any:
    if name == "errors":
        return import_module("poe.errors")
    if name in _EXPORTS:
        value = getattr(import_module(_EXPORTS[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'poe' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)

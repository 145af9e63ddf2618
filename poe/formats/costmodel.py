"""The cost model: everything that can change a segment's fuel, outcome or results.

Fuel counts are only comparable under the same engine build and configuration: wasmtime
releases have changed the fuel cost of bulk-memory and instantiation, stack depth at overflow
depends on the compiled code of the platform, and poe's host charges fuel for its own work.
All of it is written down here, hashed into a digest that every record carries, and checked
before a verifier compares numbers. A machine that cannot reproduce a cost model refuses.
"""

from __future__ import annotations

import json
import platform
import sys
from dataclasses import asdict, dataclass, field, fields
from functools import cached_property
from typing import Any

from poe.formats import hashing as h
from poe.errors import CostModelMismatchError, LimitError

__all__ = ["Limits", "CostModel", "HOST_ABI", "WASM_PAGE"]

WASM_PAGE = 65536
MAX_MODULES = 16  # instances (and so memories) per service: bounds peak pages for the mem quantity
HOST_ABI = 1  # bump when the WASI host's observable behaviour or fuel charges change

# Engine flags, written out in full even where they equal wasmtime's defaults, so a default
# that moves in a future release cannot silently change fuel or results.
ENGINE_FLAGS: dict[str, Any] = {
    "consume_fuel": True,
    "cranelift_nan_canonicalization": True,
    "cranelift_opt_level": "speed",
    "strategy": "cranelift",
    "memory_init_cow": True,
    "wasm_bulk_memory": True,
    "wasm_multi_value": True,
    "wasm_reference_types": True,
    "wasm_simd": True,
    "wasm_relaxed_simd": True,
    "wasm_relaxed_simd_deterministic": True,
    "wasm_tail_call": True,
    "wasm_threads": False,
    "shared_memory": False,
    "wasm_multi_memory": False,
    "wasm_memory64": False,
    "wasm_gc": False,
    "wasm_function_references": False,
    "wasm_exceptions": False,
    "wasm_component_model": False,
    "wasm_wide_arithmetic": False,
    "wasm_custom_page_sizes": False,
    "wasm_stack_switching": False,
    "epoch_interruption": False,
}

# Fuel the host charges per WASI call and per byte it moves: host work is billable work.
HOST_CALL_FUEL = 100
HOST_BYTES_PER_FUEL = 16
# Virtual clocks: one nanosecond per unit of fuel consumed, realtime starting at this instant.
CLOCK_REALTIME_BASE_NS = 1_700_000_000 * 10**9
CLOCK_NS_PER_FUEL = 1

U64 = 1 << 64


@dataclass(frozen=True)
class Limits:
    """Per-segment resource limits. Each one, when hit, ends the segment with a recorded outcome."""

    fuel: int = 10_000_000_000
    memory_pages: int = 16_384  # per linear memory (1 GiB); a service has at most MAX_MODULES memories
    table_elements: int = 1_000_000
    output_bytes: int = 16 * 1024 * 1024  # stdout + stderr
    stack_bytes: int = 512 * 1024

    def __post_init__(self) -> None:
        for name in ("fuel", "memory_pages", "table_elements", "output_bytes", "stack_bytes"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise LimitError(f"limit {name} must be a positive integer, got {value!r}")
        if self.memory_pages > 65_536:
            raise LimitError("memory limit cannot exceed 65536 pages (4 GiB, the wasm32 address space)")
        if self.table_elements > 0xFFFF_FFFF:
            raise LimitError("table limit cannot exceed 2^32 - 1 elements (a wasm32 table's index space)")
        if self.output_bytes > 1 << 32:
            raise LimitError("output limit cannot exceed 4 GiB per segment")
        if self.stack_bytes > 4 * 1024 * 1024:
            raise LimitError("stack limit above 4 MiB could exceed the host thread's native stack")
        # mem = peak pages x fuel is a u64 in the record: make overflow impossible by construction.
        if MAX_MODULES * self.memory_pages * self.fuel >= U64:
            raise LimitError(
                f"fuel limit {self.fuel} x memory limit {self.memory_pages} pages x {MAX_MODULES} memories "
                "could overflow the 64-bit mem quantity; lower one of them"
            )


def _wasmtime_version() -> str:
    from importlib import metadata  # ~30 ms to import: only when a cost model is made here

    return metadata.version("wasmtime")


def _target() -> str:
    return f"{platform.machine().lower()}-{sys.platform}"


@dataclass(frozen=True)
class CostModel:
    wasmtime: str
    target: str
    limits: Limits = field(default_factory=Limits)
    engine: dict[str, Any] = field(default_factory=lambda: dict(ENGINE_FLAGS))
    host_abi: int = HOST_ABI
    host_call_fuel: int = HOST_CALL_FUEL
    host_bytes_per_fuel: int = HOST_BYTES_PER_FUEL
    clock_realtime_base_ns: int = CLOCK_REALTIME_BASE_NS
    clock_ns_per_fuel: int = CLOCK_NS_PER_FUEL

    @classmethod
    def current(cls, limits: Limits | None = None) -> CostModel:
        """The cost model this machine and this poe produce."""
        return cls(wasmtime=_wasmtime_version(), target=_target(), limits=limits or Limits())

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["format"] = "poe cost model v1"
        return d

    @classmethod
    def from_json(cls, d: Any) -> CostModel:
        """Exactly the fields `to_json` writes, each of its type: a section left out is an error,
        never a default filled in."""
        if not isinstance(d, dict) or d.get("format") != "poe cost model v1":
            raise LimitError(f"unknown cost model format {d.get('format') if isinstance(d, dict) else d!r:.60}")
        names = {f.name for f in fields(cls)}
        if set(d) != names | {"format"}:
            raise LimitError(f"a cost model has exactly the fields {', '.join(sorted(names))}", expected=sorted(names), observed=sorted(map(str, d)))
        limits = d["limits"]
        limit_names = {f.name for f in fields(Limits)}
        if not isinstance(limits, dict) or set(limits) != limit_names:
            raise LimitError(f"cost model limits have exactly the fields {', '.join(sorted(limit_names))}")
        for name in ("wasmtime", "target"):
            if not isinstance(d[name], str) or len(d[name]) > 256:
                raise LimitError(f"cost model {name} must be a string")
        for name in names - {"wasmtime", "target", "limits", "engine"}:
            value = d[name]
            if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value < 1 << 64:
                raise LimitError(f"cost model {name} must be an integer in [0, 2^64)")
        engine = d["engine"]
        if not isinstance(engine, dict) or len(engine) > 256 or not all(isinstance(k, str) and isinstance(v, (bool, int, str)) for k, v in engine.items()):
            raise LimitError("cost model engine flags must be an object of booleans, integers and strings")
        return cls(**{**{k: v for k, v in d.items() if k != "format"}, "limits": Limits(**limits), "engine": dict(engine)})

    @cached_property
    def canonical_bytes(self) -> bytes:
        return json.dumps(self.to_json(), sort_keys=True, separators=(",", ":")).encode()

    @cached_property
    def digest(self) -> bytes:
        return h.digest(h.CTX_COST_MODEL, self.canonical_bytes)

    @property
    def name(self) -> str:
        return f"wasmtime-{self.wasmtime}/{self.target}/host-{self.host_abi}/{self.digest.hex()[:12]}"

    def check_reproducible(self) -> None:
        """Raise CostModelMismatchError unless this machine can execute under this cost model."""
        here = CostModel.current(self.limits)
        for what, want, have in (
            ("wasmtime version", self.wasmtime, here.wasmtime),
            ("target", self.target, here.target),
            ("host ABI", self.host_abi, here.host_abi),
        ):
            if want != have:
                raise CostModelMismatchError(
                    f"cost model needs {what} {want}, this machine has {have}: fuel would not be comparable",
                    expected=str(want),
                    observed=str(have),
                )
        if self.digest != here.digest:
            raise CostModelMismatchError(
                "cost model settings differ from what this poe produces (engine flags or host fuel charges)",
                expected=self.digest.hex(),
                observed=here.digest.hex(),
            )

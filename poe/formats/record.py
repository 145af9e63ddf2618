"""Segment records: the fixed-size, versioned bytes that the Merkle tree commits to.

Layout (little-endian, 288 bytes, docs/spec.md §2):

    off  size  field
      0     2  version            u16  = RECORD_VERSION
      2     1  outcome            u8   (Outcome)
      3     1  reserved           u8   = 0
      4     4  outcome code       u32  exit code, trap kind, limit kind; 0 otherwise
      8     8  index              u64  position of the segment in the store's log
     16     8  fuel               u64  fuel consumed by the invocation (not instantiation)
     24     4  peak pages         u32  peak 64 KiB pages over every memory of the service
     28     4  reserved           u32  = 0
     32     8  mem                u64  peak pages x fuel (checked: never wraps)
     40     8  input bytes        u64
     48     8  output bytes       u64
     56     8  host calls         u64
     64    32  module digest      (module set: main module and every linked module)
     96    32  cost model digest
    128    32  input digest       (canonical invocation)
    160    32  output digest      (canonical output)
    192    32  io digest          (running digest of every host call)
    224    32  pre-state root     (all zero in stateless mode)
    256    32  post-state root    (all zero in stateless mode)

Metered quantities, summed by the commitment: fuel, mem, io = input bytes + output bytes.
Decoding is strict: a record has exactly one encoding, so equal records are equal bytes.
"""

from __future__ import annotations

import enum
import struct
from dataclasses import dataclass

from poe.errors import EncodingError, LimitError

__all__ = ["Outcome", "TrapKind", "Record", "RECORD_SIZE", "RECORD_VERSION", "U64_MAX", "record_diff"]

RECORD_VERSION = 1
U64_MAX = (1 << 64) - 1
U32_MAX = (1 << 32) - 1

_LAYOUT = struct.Struct("<HBBIQQIIQQQQ32s32s32s32s32s32s32s")
RECORD_SIZE = _LAYOUT.size
assert RECORD_SIZE == 288


class Outcome(enum.IntEnum):
    """How an invocation ended. Outcomes are data: every one of them is billable."""

    OK = 0
    EXIT = 1  # proc_exit(code); code in the record
    TRAP = 2  # a wasm trap; TrapKind in the record
    OUT_OF_FUEL = 3
    MEMORY_LIMIT = 4  # code 0: linear memory, 1: table
    OUTPUT_LIMIT = 5  # captured stdout+stderr would exceed the cost model's limit

    @property
    def label(self) -> str:
        return self.name.lower().replace("_", "-")


class TrapKind(enum.IntEnum):
    """poe's own stable numbering of trap causes (wasmtime's enum values are not a protocol)."""

    OTHER = 0
    STACK_OVERFLOW = 1
    MEMORY_OUT_OF_BOUNDS = 2
    HEAP_MISALIGNED = 3
    TABLE_OUT_OF_BOUNDS = 4
    INDIRECT_CALL_TO_NULL = 5
    BAD_SIGNATURE = 6
    INTEGER_OVERFLOW = 7
    INTEGER_DIVISION_BY_ZERO = 8
    BAD_CONVERSION_TO_INTEGER = 9
    UNREACHABLE = 10
    NULL_REFERENCE = 11
    ARRAY_OUT_OF_BOUNDS = 12
    ALLOCATION_TOO_LARGE = 13
    CAST_FAILURE = 14
    UNCAUGHT_EXCEPTION = 15
    INSTANTIATION = 16  # the module's start function or segment initialisation failed

    @property
    def label(self) -> str:
        return self.name.lower().replace("_", "-")


_ZERO32 = bytes(32)


def describe_outcome(outcome: Outcome, code: int) -> str:
    """"exit(3)", "trap(unreachable)", "memory-limit", "ok"...: an outcome and its code as text."""
    if outcome is Outcome.EXIT:
        return f"exit({code})"
    if outcome is Outcome.TRAP:
        return f"trap({TrapKind(code).label})"
    if outcome is Outcome.MEMORY_LIMIT:
        return "memory-limit" if code == 0 else "table-limit"
    return outcome.label


@dataclass(frozen=True, slots=True)
class Record:
    index: int
    outcome: Outcome
    outcome_code: int
    fuel: int
    peak_pages: int
    input_bytes: int
    output_bytes: int
    host_calls: int
    module_digest: bytes
    cost_model_digest: bytes
    input_digest: bytes
    output_digest: bytes
    io_digest: bytes
    pre_state: bytes = _ZERO32
    post_state: bytes = _ZERO32

    @property
    def mem(self) -> int:
        return self.peak_pages * self.fuel

    @property
    def io(self) -> int:
        return self.input_bytes + self.output_bytes

    def quantities(self) -> tuple[int, int, int]:
        """(fuel, mem, io): the metered quantities the sum tree adds up."""
        return (self.fuel, self.mem, self.io)

    def encode(self) -> bytes:
        mem = self.peak_pages * self.fuel
        if mem > U64_MAX:
            raise LimitError(
                f"segment {self.index}: peak pages x fuel = {mem} does not fit in 64 bits",
            )
        if self.input_bytes + self.output_bytes > U64_MAX:
            raise LimitError(f"segment {self.index}: payload bytes overflow 64 bits")
        try:
            return _LAYOUT.pack(
                RECORD_VERSION,
                int(self.outcome),
                0,
                self.outcome_code,
                self.index,
                self.fuel,
                self.peak_pages,
                0,
                mem,
                self.input_bytes,
                self.output_bytes,
                self.host_calls,
                self.module_digest,
                self.cost_model_digest,
                self.input_digest,
                self.output_digest,
                self.io_digest,
                self.pre_state,
                self.post_state,
            )
        except struct.error as exc:
            raise LimitError(f"segment {self.index}: a record field is out of range ({exc})") from None

    @classmethod
    def decode(cls, data: bytes) -> Record:
        if len(data) != RECORD_SIZE:
            raise EncodingError(
                f"a record is {RECORD_SIZE} bytes, got {len(data)}",
                expected=RECORD_SIZE,
                observed=len(data),
            )
        (
            version,
            outcome,
            reserved8,
            code,
            index,
            fuel,
            pages,
            reserved32,
            mem,
            in_bytes,
            out_bytes,
            calls,
            *digests,
        ) = _LAYOUT.unpack(data)
        if version != RECORD_VERSION:
            raise EncodingError(
                f"record version {version} is not supported (this poe reads version {RECORD_VERSION})",
                expected=RECORD_VERSION,
                observed=version,
            )
        if reserved8 or reserved32:
            raise EncodingError("record has non-zero reserved bytes")
        try:
            kind = Outcome(outcome)
        except ValueError:
            raise EncodingError(f"record has unknown outcome {outcome}") from None
        if kind in (Outcome.OK, Outcome.OUT_OF_FUEL, Outcome.OUTPUT_LIMIT) and code != 0:
            raise EncodingError(f"outcome {kind.label} carries code {code}, expected 0")
        if kind is Outcome.TRAP and code not in TrapKind._value2member_map_:
            raise EncodingError(f"record has unknown trap kind {code}")
        if kind is Outcome.MEMORY_LIMIT and code > 1:
            raise EncodingError(f"record has unknown limit kind {code}")
        if mem != pages * fuel:
            raise EncodingError(
                "record's mem field is not peak pages x fuel",
                expected=pages * fuel,
                observed=mem,
            )
        if in_bytes + out_bytes > U64_MAX:
            raise EncodingError("record's payload bytes overflow 64 bits")
        return cls(index, kind, code, fuel, pages, in_bytes, out_bytes, calls, *digests)

    def describe_outcome(self) -> str:
        return describe_outcome(self.outcome, self.outcome_code)

    def to_json(self) -> dict[str, object]:
        return {
            "version": RECORD_VERSION,
            "index": self.index,
            "outcome": self.outcome.label,
            "outcome_code": self.outcome_code,
            "outcome_text": self.describe_outcome(),
            "fuel": self.fuel,
            "peak_pages": self.peak_pages,
            "mem": self.mem,
            "input_bytes": self.input_bytes,
            "output_bytes": self.output_bytes,
            "io": self.io,
            "host_calls": self.host_calls,
            "module_digest": self.module_digest.hex(),
            "cost_model_digest": self.cost_model_digest.hex(),
            "input_digest": self.input_digest.hex(),
            "output_digest": self.output_digest.hex(),
            "io_digest": self.io_digest.hex(),
            "pre_state": self.pre_state.hex(),
            "post_state": self.post_state.hex(),
        }


def record_diff(claimed: Record, observed: Record) -> dict[str, tuple[object, object]]:
    """Fields whose values differ, as name -> (claimed, observed); digests as hex."""
    want, have = claimed.to_json(), observed.to_json()
    return {name: (want[name], have[name]) for name in want if want[name] != have[name]}

"""What a segment is asked to do, and what it answered: canonical encodings.

An :class:`Invocation` names the export, its wasm parameters, argv, environment, stdin, the
files of the read-only directory ``.`` and the random seed. Its canonical bytes reference the
payloads (stdin, files) by BLAKE3 digest and length, so a large input is stored once however
many segments read it. The record's input digest is the derive-key digest of those bytes.

An :class:`Output` is the export's results plus references to captured stdout and stderr.

Both encodings are strict (one encoding per value) and versioned; see docs/spec.md §3.
"""

from __future__ import annotations

import math
import struct
from dataclasses import dataclass
from functools import cached_property
from typing import Callable, Iterable, Mapping, Sequence

from poe.formats import hashing as h
from poe.errors import ArgumentError, EncodingError

__all__ = ["Payload", "Value", "Invocation", "Output", "VALTYPES", "REQUEST_BLOCK", "JOB_BLOCK", "split_requested", "block_terms"]

INVOCATION_VERSION = 1
REQUESTED_INVOCATION_VERSION = 2  # the same call, followed by the customer's signed request
OUTPUT_VERSION = 1
# A signed request (docs/spec.md §3, §14.1) as an invocation carries it: chain id, deal digest,
# customer address, sequence, fuel budget, first and last epoch, signature (r || s || v).
REQUEST_BLOCK = struct.Struct("<Q32s20sQQQQ65s")
JOB_INVOCATION_VERSION = 3  # one step of a stateful job: the call, then the customer's signed job and the step
# A signed job (docs/spec.md §3, §14.7) as each of its steps carries it: chain id, deal digest,
# customer address, first sequence, steps, fuel budget (per step), first and last epoch,
# signature, and this step's number (0-based; it bills under sequence + step).
JOB_BLOCK = struct.Struct("<Q32s20sQQQQQ65sQ")
_BLOCKS = {REQUEST_BLOCK.size: REQUESTED_INVOCATION_VERSION, JOB_BLOCK.size: JOB_INVOCATION_VERSION}


def block_terms(block: bytes) -> tuple[bytes, int, int, int]:
    """(customer, the sequence the segment bills under, first epoch, last epoch) of a request or
    job block; a job's step bills under its first sequence plus the step."""
    if len(block) == JOB_BLOCK.size:
        _, _, customer, sequence, _, _, first, last, _, step = JOB_BLOCK.unpack(block)
        return customer, sequence + step, first, last
    _, _, customer, sequence, _, first, last, _ = REQUEST_BLOCK.unpack(block)
    return customer, sequence, first, last

VALTYPES = ("i32", "i64", "f32", "f64")
_VALTYPE_CODE = {name: i for i, name in enumerate(VALTYPES)}
MAX_NAME = 4096


class Payload:
    """Bytes with their content address computed once."""

    __slots__ = ("data", "_digest")

    def __init__(self, data: bytes) -> None:
        self.data = bytes(data)
        self._digest: bytes | None = None

    @property
    def digest(self) -> bytes:
        if self._digest is None:
            self._digest = h.blob_digest(self.data)
        return self._digest

    def __len__(self) -> int:
        return len(self.data)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Payload) and other.data == self.data

    def __hash__(self) -> int:
        return hash(self.digest)

    def __repr__(self) -> str:
        return f"Payload({len(self.data)} bytes, {self.digest.hex()[:16]})"


EMPTY = Payload(b"")


@dataclass(frozen=True, slots=True)
class Value:
    """A wasm value kept as its bit pattern, so NaN payloads and -0.0 survive round trips."""

    type: str
    bits: int

    @classmethod
    def parse(cls, type_: str, text: str) -> Value:
        """Parse a command-line argument for a parameter of wasm type `type_`."""
        try:
            if type_ in ("i32", "i64"):
                width = 32 if type_ == "i32" else 64
                n = int(text, 0)
                if not -(1 << (width - 1)) <= n < (1 << width):
                    raise ValueError(f"{n} does not fit in {type_}")
                return cls(type_, n & ((1 << width) - 1))
            if type_ == "f32":
                return cls(type_, struct.unpack("<I", struct.pack("<f", float(text)))[0])
            if type_ == "f64":
                return cls(type_, struct.unpack("<Q", struct.pack("<d", float(text)))[0])
        except (ValueError, OverflowError) as exc:
            raise ArgumentError(f"argument {text!r} is not a valid {type_}: {exc}") from None
        raise ArgumentError(f"parameters of type {type_} cannot be given on the command line")

    @classmethod
    def of(cls, type_: str, value: int | float) -> Value:
        if type_ == "i32":
            return cls(type_, int(value) & 0xFFFFFFFF)
        if type_ == "i64":
            return cls(type_, int(value) & 0xFFFFFFFFFFFFFFFF)
        if type_ == "f32":
            return cls(type_, struct.unpack("<I", struct.pack("<f", value))[0])
        if type_ == "f64":
            return cls(type_, struct.unpack("<Q", struct.pack("<d", value))[0])
        raise ArgumentError(f"unsupported value type {type_}")

    @property
    def python(self) -> int | float:
        """The value as Python sees it (signed integers, floats)."""
        if self.type == "i32":
            return self.bits - (1 << 32) if self.bits >= 1 << 31 else self.bits
        if self.type == "i64":
            return self.bits - (1 << 64) if self.bits >= 1 << 63 else self.bits
        if self.type == "f32":
            return struct.unpack("<f", struct.pack("<I", self.bits))[0]
        return struct.unpack("<d", struct.pack("<Q", self.bits))[0]

    def __str__(self) -> str:
        v = self.python
        if isinstance(v, float) and math.isnan(v):
            return f"nan:0x{self.bits:x}"
        return f"{v}"

    def to_json(self) -> dict[str, object]:
        v = self.python
        return {"type": self.type, "bits": f"0x{self.bits:x}", "value": v if not (isinstance(v, float) and not math.isfinite(v)) else str(self)}


def _valid_file_name(name: str) -> bool:
    if not name or len(name.encode()) > MAX_NAME or name.startswith("/") or "\x00" in name:
        return False
    return all(part not in ("", ".", "..") for part in name.split("/"))


@dataclass(frozen=True)
class Invocation:
    export: str = "_start"
    params: tuple[Value, ...] = ()
    argv: tuple[bytes, ...] = ()
    env: tuple[bytes, ...] = ()  # "KEY=VALUE" entries, in the order the guest sees them
    stdin: Payload = EMPTY
    files: tuple[tuple[str, Payload], ...] = ()  # sorted by name
    seed: bytes = h.ZERO_DIGEST
    request: bytes = b""  # empty, the REQUEST_BLOCK of the customer request it answers, or a job step's JOB_BLOCK

    def __post_init__(self) -> None:
        if self.request and len(self.request) not in _BLOCKS:
            raise ArgumentError(f"a request block has {REQUEST_BLOCK.size} bytes, a job step's {JOB_BLOCK.size}")
        for name in (self.export, *(n for n, _ in self.files)):
            try:
                name.encode()
            except UnicodeEncodeError:
                raise ArgumentError(f"name {name!r} is not valid UTF-8") from None
        if not self.export or len(self.export.encode()) > MAX_NAME:
            raise ArgumentError("export name must be 1..4096 bytes")
        if len(self.seed) != 32:
            raise ArgumentError("seed must be 32 bytes")
        for entry in self.env:
            if b"=" not in entry or entry.startswith(b"=") or b"\x00" in entry:
                raise ArgumentError(f"environment entry {entry!r} must look like KEY=VALUE")
        for arg in self.argv:
            if b"\x00" in arg:
                raise ArgumentError("argv entries cannot contain NUL bytes")
        names = [n for n, _ in self.files]
        for n in names:
            if not _valid_file_name(n):
                raise ArgumentError(f"file name {n!r} must be a relative path without '.' or '..' parts")
        if names != sorted(names, key=str.encode) or len(set(names)) != len(names):
            raise ArgumentError("file names must be unique and sorted")
        taken = set(names)
        for n in names:
            parts = n.split("/")
            for depth in range(1, len(parts)):
                if "/".join(parts[:depth]) in taken:
                    raise ArgumentError(f"{'/'.join(parts[:depth])!r} cannot be both a file and the directory of {n!r}")

    @classmethod
    def build(
        cls,
        export: str = "_start",
        *,
        params: Sequence[Value] = (),
        argv: Iterable[str | bytes] = (),
        env: Mapping[str, str] | Iterable[str | bytes] = (),
        stdin: bytes | Payload = b"",
        files: Mapping[str, bytes | Payload] = {},  # noqa: B006 (read-only)
        seed: bytes = h.ZERO_DIGEST,
    ) -> Invocation:
        def b(x: str | bytes) -> bytes:
            # Command-line text that was not UTF-8 arrives surrogate-escaped: give back its bytes.
            return x.encode("utf-8", "surrogateescape") if isinstance(x, str) else bytes(x)

        def p(x: bytes | Payload) -> Payload:
            return x if isinstance(x, Payload) else Payload(x)

        env_entries = [b(f"{k}={v}") for k, v in env.items()] if isinstance(env, Mapping) else [b(e) for e in env]
        return cls(
            export=export,
            params=tuple(params),
            argv=tuple(b(a) for a in argv),
            env=tuple(env_entries),
            stdin=p(stdin),
            files=tuple(sorted(((n, p(d)) for n, d in files.items()), key=lambda kv: kv[0].encode("utf-8", "surrogateescape"))),
            seed=seed,
        )

    def with_seed(self, seed: bytes) -> Invocation:
        """The same invocation under another seed. A batch builds one per segment, so the checks
        this invocation already passed are not repeated and its encoding is reused: the seed is
        its last 32 bytes."""
        if len(seed) != 32:
            raise ArgumentError("seed must be 32 bytes")
        if self.request:
            raise ArgumentError("a requested invocation's seed is what its customer signed")
        other = object.__new__(Invocation)
        for name in ("export", "params", "argv", "env", "stdin", "files", "request"):
            object.__setattr__(other, name, getattr(self, name))
        object.__setattr__(other, "seed", bytes(seed))
        other.__dict__["encoded"] = self.encoded[:-32] + other.seed
        return other

    @cached_property
    def encoded(self) -> bytes:
        """Version 1 for a plain call; version 2, the same fields and then the request block,
        for one that answers a customer's request; version 3, with a job block, for a job's step."""
        if self.request:
            return struct.pack("<B", _BLOCKS[len(self.request)]) + self.call_encoded[1:] + self.request
        return self.call_encoded

    @cached_property
    def call_encoded(self) -> bytes:
        """The call alone, in version 1: what a customer's request names by its digest."""
        out = bytearray()
        out += struct.pack("<B", INVOCATION_VERSION)
        _put_str16(out, self.export)
        _put_values(out, self.params)
        out += struct.pack("<I", len(self.argv))
        for a in self.argv:
            _put_bytes32(out, a)
        out += struct.pack("<I", len(self.env))
        for e in self.env:
            _put_bytes32(out, e)
        out += self.stdin.digest + struct.pack("<Q", len(self.stdin))
        out += struct.pack("<I", len(self.files))
        for name, payload in self.files:
            _put_str16(out, name)
            out += payload.digest + struct.pack("<Q", len(payload))
        out += self.seed
        return bytes(out)

    @cached_property
    def digest(self) -> bytes:
        """The record's input digest: of the call and, when there is one, the request it answers."""
        return h.digest(h.CTX_INVOCATION, self.encoded)

    @cached_property
    def call_digest(self) -> bytes:
        """The digest of the call alone, which a customer's request signs (equal to `digest`
        when there is no request)."""
        return h.digest(h.CTX_INVOCATION, self.call_encoded)

    @cached_property
    def fuel_budget(self) -> int | None:
        """The fuel the customer agreed to pay for at most (None without a request)."""
        if not self.request:
            return None
        return JOB_BLOCK.unpack(self.request)[5] if len(self.request) == JOB_BLOCK.size else REQUEST_BLOCK.unpack(self.request)[4]

    @property
    def payload_bytes(self) -> int:
        """Input bytes metered as io: the canonical encoding plus every payload it references."""
        return len(self.encoded) + len(self.stdin) + sum(len(p) for _, p in self.files)

    def blobs(self) -> list[Payload]:
        return [self.stdin, *(p for _, p in self.files)]

    @classmethod
    def decode(cls, data: bytes, fetch: Callable[[bytes], bytes]) -> Invocation:
        """Decode canonical bytes; `fetch(digest)` returns a payload's bytes (KeyError if absent)."""
        r = _Reader(data, "invocation")
        version = r.u8()
        if version not in (INVOCATION_VERSION, REQUESTED_INVOCATION_VERSION, JOB_INVOCATION_VERSION):
            raise EncodingError(f"invocation version {version} is not supported",
                                expected=[INVOCATION_VERSION, REQUESTED_INVOCATION_VERSION, JOB_INVOCATION_VERSION], observed=version)
        export = r.str16()
        params = r.values()
        argv = tuple(r.bytes32() for _ in range(r.count(4)))
        env = tuple(r.bytes32() for _ in range(r.count(4)))
        stdin = _fetch_payload(r, fetch, "stdin")
        files = []
        for _ in range(r.count(42)):
            name = r.str16()
            files.append((name, _fetch_payload(r, fetch, f"file {name!r}")))
        seed = r.take(32)
        request = r.take({REQUESTED_INVOCATION_VERSION: REQUEST_BLOCK.size, JOB_INVOCATION_VERSION: JOB_BLOCK.size}.get(version, 0))
        r.end()
        try:
            inv = cls(export, tuple(params), argv, env, stdin, tuple(files), seed, request)
        except ArgumentError as exc:
            raise EncodingError(f"invocation is not canonical: {exc.message}") from None
        if inv.encoded != bytes(data):
            raise EncodingError("invocation is not in canonical form")
        return inv

    def to_json(self) -> dict[str, object]:
        return {
            "export": self.export,
            "params": [v.to_json() for v in self.params],
            "argv": [a.decode("utf-8", "backslashreplace") for a in self.argv],
            "env": [e.decode("utf-8", "backslashreplace") for e in self.env],
            "stdin": {"digest": self.stdin.digest.hex(), "bytes": len(self.stdin)},
            "files": [{"name": n, "digest": p.digest.hex(), "bytes": len(p)} for n, p in self.files],
            "seed": self.seed.hex(),
            **({"request": self.request.hex(), "call_digest": self.call_digest.hex()} if self.request else {}),
            "digest": self.digest.hex(),
        }


def split_requested(encoded: bytes) -> tuple[bytes, bytes] | None:
    """(the call's version-1 bytes, the request or job block) of a version-2 or -3 invocation's
    canonical bytes, read without its payloads (a bill carries none); None for a version-1 one.
    The inverse of :attr:`Invocation.encoded`: nothing here says the bytes decode."""
    size = {REQUESTED_INVOCATION_VERSION: REQUEST_BLOCK.size, JOB_INVOCATION_VERSION: JOB_BLOCK.size}.get(encoded[0] if encoded else 0)
    if size is None or len(encoded) < 1 + size:
        return None
    return struct.pack("<B", INVOCATION_VERSION) + encoded[1:-size], encoded[-size:]


@dataclass(frozen=True)
class Output:
    results: tuple[Value, ...] = ()
    stdout: Payload = EMPTY
    stderr: Payload = EMPTY

    @cached_property
    def encoded(self) -> bytes:
        out = bytearray(struct.pack("<B", OUTPUT_VERSION))
        _put_values(out, self.results)
        out += self.stdout.digest + struct.pack("<Q", len(self.stdout))
        out += self.stderr.digest + struct.pack("<Q", len(self.stderr))
        return bytes(out)

    @cached_property
    def digest(self) -> bytes:
        return h.digest(h.CTX_OUTPUT, self.encoded)

    @property
    def payload_bytes(self) -> int:
        return len(self.encoded) + len(self.stdout) + len(self.stderr)

    def blobs(self) -> list[Payload]:
        return [self.stdout, self.stderr]

    @classmethod
    def decode(cls, data: bytes, fetch: Callable[[bytes], bytes]) -> Output:
        r = _Reader(data, "output")
        version = r.u8()
        if version != OUTPUT_VERSION:
            raise EncodingError(f"output version {version} is not supported", expected=OUTPUT_VERSION, observed=version)
        results = r.values()
        stdout = _fetch_payload(r, fetch, "stdout")
        stderr = _fetch_payload(r, fetch, "stderr")
        r.end()
        out = cls(tuple(results), stdout, stderr)
        if out.encoded != bytes(data):
            raise EncodingError("output is not in canonical form")
        return out

    def to_json(self) -> dict[str, object]:
        return {
            "results": [v.to_json() for v in self.results],
            "stdout": {"digest": self.stdout.digest.hex(), "bytes": len(self.stdout)},
            "stderr": {"digest": self.stderr.digest.hex(), "bytes": len(self.stderr)},
            "digest": self.digest.hex(),
        }


def _put_values(out: bytearray, values: Sequence[Value]) -> None:
    out += struct.pack("<I", len(values))
    for v in values:
        out += struct.pack("<BQ", _VALTYPE_CODE[v.type], v.bits)


def _put_str16(out: bytearray, s: str) -> None:
    raw = s.encode()
    out += struct.pack("<H", len(raw)) + raw


def _put_bytes32(out: bytearray, b: bytes) -> None:
    out += struct.pack("<I", len(b)) + b


def _fetch_payload(r: _Reader, fetch: Callable[[bytes], bytes], what: str) -> Payload:
    digest, length = r.take(32), r.u64()
    if length == 0 and digest == EMPTY.digest:
        return EMPTY
    try:
        data = fetch(digest)
    except KeyError:
        raise EncodingError(f"payload for {what} ({digest.hex()}) is missing") from None
    payload = Payload(data)
    if len(payload) != length or payload.digest != digest:
        raise EncodingError(f"payload for {what} does not match its digest and length")
    return payload


class _Reader:
    __slots__ = ("data", "pos", "what")

    def __init__(self, data: bytes, what: str) -> None:
        self.data = bytes(data)
        self.pos = 0
        self.what = what

    def take(self, n: int) -> bytes:
        if self.pos + n > len(self.data):
            raise EncodingError(f"{self.what} is truncated at byte {len(self.data)}")
        chunk = self.data[self.pos : self.pos + n]
        self.pos += n
        return chunk

    def u8(self) -> int:
        return self.take(1)[0]

    def u64(self) -> int:
        return struct.unpack("<Q", self.take(8))[0]

    def count(self, min_item: int) -> int:
        n = struct.unpack("<I", self.take(4))[0]
        if n * min_item > len(self.data) - self.pos:
            raise EncodingError(f"{self.what} claims {n} items but is too short for them")
        return n

    def values(self) -> list[Value]:
        out = []
        for _ in range(self.count(9)):
            code, bits = self.u8(), self.u64()
            if code >= len(VALTYPES):
                raise EncodingError(f"{self.what} has unknown value type {code}")
            t = VALTYPES[code]
            if t in ("i32", "f32") and bits >> 32:
                raise EncodingError(f"{self.what} has a {t} value with bits above 32")
            out.append(Value(t, bits))
        return out

    def str16(self) -> str:
        n = struct.unpack("<H", self.take(2))[0]
        try:
            return self.take(n).decode()
        except UnicodeDecodeError:
            raise EncodingError(f"{self.what} has a name that is not UTF-8") from None

    def bytes32(self) -> bytes:
        n = struct.unpack("<I", self.take(4))[0]
        return self.take(n)

    def end(self) -> None:
        if self.pos != len(self.data):
            raise EncodingError(f"{self.what} has {len(self.data) - self.pos} trailing bytes")


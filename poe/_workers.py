"""Work a poe process hands to another core: request signatures, checked by a warm worker.

A customer's request costs one secp256k1 recovery (~45 µs), about as much as a small segment.
A provider recording requests and an auditor re-executing samples both hand those recoveries
to one long-lived child process and go on with their own work; the answers come back in order.
"""

from __future__ import annotations

import os
import struct
import threading
from typing import Any, Callable

from poe.errors import InputError, SignatureError

__all__ = ["SignatureChecks"]


def _check_signatures(blocks: list[tuple[bytes, bytes]]) -> tuple[str, dict[str, Any]] | None:
    """The (message, details) of the first request block (block, call digest) whose signature
    does not verify, or None."""
    from poe.protocol.request import SignedRequest

    for block, call_digest in blocks:
        try:
            SignedRequest.from_block(block, call_digest).verify()
        except SignatureError as exc:
            return exc.message, {k: v for k, v in exc.details.items() if isinstance(v, (str, int))}
    return None


_FRAME = struct.Struct("<I")


def _serve_signatures() -> None:
    """The worker's loop (a child process of the provider's): read chunks of request blocks from
    stdin, answer each with _check_signatures's result on stdout, until stdin closes."""
    import pickle
    import sys

    from poe.crypto.schemes import get_scheme

    get_scheme("secp256k1")
    src, dst = sys.stdin.buffer, sys.stdout.buffer
    while header := src.read(_FRAME.size):
        blocks = pickle.loads(src.read(_FRAME.unpack(header)[0]))
        out = pickle.dumps(_check_signatures(blocks))
        dst.write(_FRAME.pack(len(out)) + out)
        dst.flush()


class _Worker:
    """One long-lived child process that checks signatures (`_serve_signatures`). A plain
    subprocess on pipes rather than multiprocessing: it imports only poe, never the caller's
    main module, so it works from any script."""

    _lock = threading.Lock()
    _proc: Any = None

    @classmethod
    def acquire(cls) -> Any:
        """The worker's process, started on first use, or None when another batch holds it or it
        cannot start (the caller then checks inline)."""
        if not cls._lock.acquire(blocking=False):
            return None
        if cls._proc is None or cls._proc.poll() is not None:
            import atexit
            import subprocess
            import sys

            try:
                cls._proc = subprocess.Popen([sys.executable, "-c", "from poe._workers import _serve_signatures; _serve_signatures()"],
                                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, bufsize=0)
            except OSError:
                cls._lock.release()
                return None
            atexit.register(cls._proc.kill)
        return cls._proc

    @classmethod
    def release(cls, broken: bool) -> None:
        if broken and cls._proc is not None:
            cls._proc.kill()
            cls._proc = None
        cls._lock.release()


class SignatureChecks:
    """The signatures of a batch of signed request blocks (block, call digest), checked in chunks
    ahead of their execution: `wait(at)` returns once the chunk starting at `at` verified, and
    raises InputError for the first request that did not (to the provider, a request that does
    not verify is bad input, refused before it runs). Batches of PARALLEL_AT or more use a warm
    worker process on another core, kept for the life of this process; smaller ones, a machine
    with one core, or a worker that fails, check inline."""

    PARALLEL_AT = 512
    CHUNK = 128
    AHEAD = 2  # chunks in flight: enough to keep the worker busy, within a pipe's buffer

    def __init__(self, blocks: list[tuple[bytes, bytes]], *, whole: bool = False, parallel_at: int | None = None) -> None:
        """With `whole`, the batch is one chunk, sent at once: for a caller that does other work
        (an audit's re-executions) and then waits for all of it."""
        self._blocks = blocks
        least = self.PARALLEL_AT if parallel_at is None else parallel_at
        parallel = bool(blocks) and len(blocks) >= least and (os.cpu_count() or 1) >= 2
        self._proc = _Worker.acquire() if parallel else None
        self._step = self.CHUNK if self._proc is not None and not whole else max(1, len(blocks))  # what one wait() covers
        self._sent = self._received = 0  # chunks
        self._broken = False
        if whole and self._proc is not None:
            self._guarded(self._send)

    def __enter__(self) -> SignatureChecks:
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._proc is not None:
            # Answers still in flight would be read by the next batch: drain them, or drop the worker.
            try:
                while self._received < self._sent:
                    self._receive()
            except (OSError, EOFError, ValueError):
                self._broken = True
            _Worker.release(self._broken)
            self._proc = None

    def chunks(self) -> list[tuple[int, int]]:
        return [(at, min(at + self._step, len(self._blocks))) for at in range(0, len(self._blocks), self._step)]

    def wait(self, at: int) -> None:
        if self._proc is None:
            bad = _check_signatures(self._blocks[at : at + self._step])
        else:
            bad = self._guarded(lambda: self._next(at // self._step))
            if self._proc is None:  # the worker died: this batch checks inline from here
                bad = _check_signatures(self._blocks[at : at + self._step])
        if bad is not None:
            message, details = bad
            raise InputError(f"the request's signature does not verify: {message}", **details)

    def _next(self, index: int) -> tuple[str, dict[str, Any]] | None:
        while self._sent <= min(index + self.AHEAD, (len(self._blocks) - 1) // self._step):
            self._send()
        return self._receive()

    def _guarded(self, step: Callable[[], Any]) -> Any:
        try:
            return step()
        except (OSError, EOFError, ValueError):
            self._broken = True
            _Worker.release(True)
            self._proc = None
            return None

    def _send(self) -> None:
        import pickle

        at = self._sent * self._step
        raw = pickle.dumps(self._blocks[at : at + self._step])
        self._proc.stdin.write(_FRAME.pack(len(raw)) + raw)
        self._sent += 1

    def _receive(self) -> tuple[str, dict[str, Any]] | None:
        import pickle

        header = self._read(_FRAME.size)
        result = pickle.loads(self._read(_FRAME.unpack(header)[0]))
        self._received += 1
        return result

    def _read(self, n: int) -> bytes:
        parts, got = [], 0
        while got < n:
            part = self._proc.stdout.read(n - got)
            if not part:
                raise EOFError("the signature worker exited")
            parts.append(part)
            got += len(part)
        return b"".join(parts)

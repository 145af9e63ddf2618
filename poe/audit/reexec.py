"""Re-execution tasks and the mapper they run on (spec §12.3 step 5).

A task is plain picklable values, (modules, cost model canonical bytes, invocation, payloads,
index[, pre-state header, pre-state image]) -> record bytes, so any engine that maps a function
over a list can run an audit's re-executions: `LocalPool` (this process, or spawned workers) is
the default mapper; a cluster engine plugs in with the same two members, `jobs` and `map`.
"""

from __future__ import annotations

import json
import multiprocessing
from concurrent.futures import ProcessPoolExecutor
from typing import Any, Callable, Protocol

from poe.errors import InputError, PoEError, StoreError, VerificationError
from poe.formats.costmodel import CostModel
from poe.formats.invocation import Invocation
from poe.formats.moduleset import Service
from poe.formats.state import CHUNK_SIZE, State, bundle_states, manifest_of, open_bundle

__all__ = ["Mapper", "LocalPool", "reexecute", "reexecute_or_error", "reexecute_all", "executor_for"]


class Mapper(Protocol):
    """What `audit()` needs of an engine: how many tasks it runs at once, and an ordered map."""

    jobs: int

    def map(self, fn: Callable[[Any], Any], tasks: list) -> list: ...


_EXECUTORS: dict[tuple, Any] = {}


def executor_for(main: bytes, links: dict[str, bytes], cm_bytes: bytes) -> Any:
    from poe.wasm.executor import Executor  # wasmtime loads when the first segment is re-executed

    # One executor per service and cost model in each process: setting up the WASI host and the
    # instance template costs more than a small segment. Keyed by the bytes themselves, not the
    # module-set digest: bytes cache their hash, so an audit's tasks, which share one module
    # object, find it without hashing the module again for every sample.
    key = (main, tuple(sorted(links.items())), cm_bytes)
    if key not in _EXECUTORS:
        _EXECUTORS[key] = Executor(Service(main, links), CostModel.from_json(json.loads(cm_bytes)))
    return _EXECUTORS[key]


def reexecute(task: tuple) -> bytes:
    """Run one sampled segment: (main, links, cost model canonical JSON bytes, invocation,
    payloads, index[, pre-state header, pre-state image]) -> record bytes. Plain picklable
    values: any engine can map it. A stateful segment runs on a fresh instance restored to its
    pre-state (checked against the header's root before it runs)."""
    main, links, cm_bytes, invocation, payloads, index, *pre = task
    blobs = {bytes.fromhex(k): bytes.fromhex(v) for k, v in payloads.items()}
    inv = Invocation.decode(invocation, blobs.__getitem__)
    ex = executor_for(main, links, cm_bytes)
    if pre:
        return ex.run_stateful((State.decode(pre[0]), pre[1]), inv, index).record_bytes
    return ex.run(inv, index).record_bytes


def reexecute_or_error(task: tuple) -> bytes | tuple[str, str]:
    """`reexecute`, with a provider-caused failure (a pre-state restore refuses, an invocation
    this module cannot run) as (code, message): plain values that cross a process pool."""
    try:
        return reexecute(task)
    except (InputError, VerificationError, StoreError) as exc:  # ModuleError, ArgumentError, StateMismatchError...
        return (exc.code, exc.message)


def reexecute_all(pool: Mapper, items: list[tuple[tuple, bytes | None, bytes]], genesis: tuple[State, bytes] | None,
                  states: dict[str, Any] | None, max_pages: int, max_states: int) -> dict[int, tuple[Any, dict[str, Any] | None]]:
    """Re-execute each (task, pre-state root, committed record) once on `pool`: index -> (record
    bytes, or the (code, message) of the provider error that stopped it; and, for one stateful
    record that differs from the committed one, a bundle of its pre-state for the fraud proof).
    Stateful tasks run as the bundle's images are rebuilt, one image at a time, in batches: an
    audit holds a few images, not one per sample."""
    out: dict[int, tuple[Any, dict[str, Any] | None]] = {}
    committed = {t[5]: c for t, _, c in items}
    plain = [t for t, root, _ in items if root is None]
    for t, rec in zip(plain, pool.map(reexecute_or_error, plain)):
        out[t[5]] = (rec, None)
    by_root: dict[bytes, list[tuple]] = {}
    for t, root, _ in items:
        if root is not None:
            by_root.setdefault(root, []).append(t)
    if not by_root:
        return out
    assert genesis is not None
    batch: list[tuple[tuple, State, bytes]] = []
    proof_bundle: list[int] = []  # one fraud proof needs one pre-state: build at most one bundle

    def flush() -> None:
        for (t, state, image), rec in zip(batch, pool.map(reexecute_or_error, [t + (state.encoded, image) for t, state, image in batch])):
            differs = isinstance(rec, bytes) and rec != committed[t[5]]
            bundle = None
            if differs and not proof_bundle:
                bundle = _single_state_bundle(genesis, (state, image))
                proof_bundle.append(t[5])
            out[t[5]] = (rec, bundle)
        batch.clear()

    ready = [(genesis[0], genesis[1])] if genesis[0].root in by_root else []
    try:
        needed = set(by_root) - {genesis[0].root}
        for state, image in _chain_images(ready, states, genesis[1], max_pages, max_states, needed):
            for t in by_root.pop(state.root, ()):
                batch.append((t, state, image))
            if len(batch) >= 4 * pool.jobs:
                flush()
            if not by_root:
                break
        flush()
    except PoEError as exc:  # the bundle itself is bad: every sample still waiting on it fails
        failed = ((exc.code, f"the provider's state bundle is unusable: {exc.message}"), None)
        for t, _, _ in batch:
            out.setdefault(t[5], failed)
        for ts in by_root.values():
            for t in ts:
                out[t[5]] = failed
    return out


def _chain_images(first: list[tuple[State, bytes]], states: dict[str, Any] | None, genesis_image: bytes,
                  max_pages: int, max_states: int, needed: set[bytes]):
    yield from first
    if states is not None and needed:
        # Images are hashed where they are restored (Session.attach checks the root), once.
        yield from open_bundle(states, genesis_image, max_pages=max_pages, max_states=max_states, wanted=needed, check_images=False)


def _single_state_bundle(genesis: tuple[State, bytes], pre: tuple[State, bytes]) -> dict[str, Any]:
    state, image = pre
    manifest = manifest_of(image)  # every chunk hashed once: the manifest also addresses the chunks
    chunks = {bytes(manifest[k * 32 : k * 32 + 32]): image[k * CHUNK_SIZE : (k + 1) * CHUNK_SIZE] for k in range(state.chunks)}
    return bundle_states(bytes(manifest_of(genesis[1])), [(state, manifest)], chunks.__getitem__)


class LocalPool:
    """Maps a function over tasks in this process (jobs <= 1) or over `jobs` spawned workers,
    started once and reused for every map (spawn, not fork: this process may already hold a
    wasmtime engine, which must not be forked)."""

    def __init__(self, jobs: int) -> None:
        self.jobs = max(1, jobs)
        self._pool: ProcessPoolExecutor | None = None

    def map(self, fn: Any, tasks: list) -> list:
        if self.jobs <= 1 or len(tasks) < 2:
            return [fn(t) for t in tasks]
        if self._pool is None:
            self._pool = ProcessPoolExecutor(max_workers=self.jobs, mp_context=multiprocessing.get_context("spawn"))
        return list(self._pool.map(fn, tasks, chunksize=max(1, len(tasks) // (4 * self.jobs))))

    def __enter__(self) -> LocalPool:
        return self

    def __exit__(self, *exc: object) -> None:
        if self._pool is not None:
            self._pool.shutdown()

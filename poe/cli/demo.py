"""`poe demo`: an honest and a cheating provider, and a spot check that tells them apart."""

from __future__ import annotations

import dataclasses
import os
import random
import secrets
import shutil
import sys
import tempfile
import time

import click

from .._costmodel import CostModel
from .._demo import demo_csv, demo_module
from .._executor import Execution, Executor, Service
from .._invocation import Invocation
from .._replay import replay
from .._store import Totals, TraceStore
from .._treeverify import verify_inclusion
from ..errors import RecordMismatchError
from ._options import emit_json, info, json_option


@click.command("demo")
@click.option("--segments", type=click.IntRange(10, 1_000_000), default=400, show_default=True, help="Segments each provider runs.")
@click.option("--samples", type=click.IntRange(1, 10_000), default=30, show_default=True, help="Segments the auditor re-executes per provider.")
@click.option("--cheat-rate", type=click.FloatRange(0.0, 1.0), default=0.10, show_default=True, help="Fraction of segments whose fuel the cheating provider inflates.")
@click.option("--seed", type=int, default=None, help="Auditor's sampling seed (default: fresh randomness each run).")
@click.option("--keep", type=click.Path(file_okay=False), default=None, help="Keep the two stores in this directory instead of a temporary one.")
@json_option
def demo(segments, samples, cheat_rate, seed, keep, as_json):
    """Run the bundled Rust workload for an honest and a cheating provider, then spot-check both.

    Each provider executes the same invocations of csv_agg.wasm (a CSV aggregator compiled
    from Rust) into its own SQLite trace store and seals the epoch in a Merkle sum tree. The
    cheating one inflates the fuel of a fraction of its records before committing them. The
    auditor picks segments at random, checks each one's inclusion proof against the sealed
    root, re-executes it under the recorded cost model and compares the whole record.
    """
    workdir = keep or tempfile.mkdtemp(prefix="poe-demo-")
    os.makedirs(workdir, exist_ok=True)
    try:
        result = _demo(workdir, segments, samples, cheat_rate, seed, as_json)
    finally:
        if keep is None:
            shutil.rmtree(workdir, ignore_errors=True)
    if as_json:
        emit_json(result)


def _demo(workdir: str, segments: int, samples: int, cheat_rate: float, seed: int | None, as_json: bool) -> dict:
    cm = CostModel.current()
    service = Service(demo_module(), name="csv_agg.wasm")
    executor = Executor(service, cm)
    inputs = [Invocation.build(argv=["csv_agg"], stdin=demo_csv(i, 20 + (i * 37) % 480)) for i in range(segments)]
    say = (lambda *_: None) if as_json else info
    say(f"poe demo: {segments} segments of csv_agg.wasm (Rust, wasm32-wasi) per provider, cost model {cm.name}")

    stores = {}
    for role in ("honest", "cheating"):
        path = os.path.join(workdir, f"{role}.poe")
        rng = random.Random(f"cheat-{segments}")
        totals, started = Totals(), time.perf_counter()
        with TraceStore.create_or_open(path, cm) as store:
            store.register_service(service)
            with _progress(segments, f"{role:>8} provider", as_json) as bar:
                for inv in inputs:
                    e = executor.run(inv, store.next_index)
                    if role == "cheating" and rng.random() < cheat_rate:
                        e = Execution(dataclasses.replace(e.record, fuel=e.record.fuel * 6 // 5), e.invocation, e.output)
                    store.append(e)
                    totals.add(e.record)
                    bar.update(1)
        sealer = TraceStore.open(path, seal=True)
        try:
            sealed = sealer.seal()
        finally:
            sealer.close()
        stores[role] = (path, totals, time.perf_counter() - started, sealed.root)
        say(f"  {role:>8}: fuel {totals.fuel:,}  mem {totals.mem:,}  io {totals.io:,} bytes  ({stores[role][2]:.2f} s)")
        say(f"            sealed root {sealed.root.hash.hex()[:16]}... over {sealed.root.size} segments")

    audit_seed = seed if seed is not None else secrets.randbits(64)
    picks = random.Random(audit_seed).sample(range(segments), min(samples, segments))
    guarantee = 1 - (1 - cheat_rate) ** len(picks) if cheat_rate else 0.0
    say(f"auditor: checks the inclusion proof of {len(picks)} of {segments} segments per store against the sealed root,")
    say(f"         then re-executes each and compares the whole record (seed {audit_seed})")
    verdicts = {}
    for role, (path, totals, provider_seconds, root) in stores.items():
        store = TraceStore.open(path)
        caught, started = [], time.perf_counter()
        try:
            for (raw, proof), i in zip(store.inclusion_proofs(picks, epoch=0), picks):
                verify_inclusion(raw, proof, root)  # the opened record is the committed one
                record, invocation, _ = store.segment(i)
                try:
                    replay(record, invocation, store.service(record.module_digest), store.cost_model, executor=executor)
                except RecordMismatchError as exc:
                    caught.append({"index": i, "fields": exc.details.get("fields"), "claimed_fuel": record.fuel})
        finally:
            store.close()
        seconds = time.perf_counter() - started
        verdicts[role] = {
            "verdict": "MISMATCH" if caught else "MATCH",
            "root": root.to_json(),
            "claimed_fuel": totals.fuel,
            "mismatches": caught,
            "auditor_seconds": round(seconds, 3),
            "provider_seconds": round(provider_seconds, 3),
        }
        if caught:
            first = caught[0]
            say(f"  {role:>8}: MISMATCH in {len(caught)} sampled segment(s); first: segment {first['index']} claims fuel {first['claimed_fuel']:,}, re-execution disagrees on {', '.join(first['fields'])}")
        else:
            say(f"  {role:>8}: all {len(picks)} sampled records match byte for byte ({seconds:.2f} s vs {provider_seconds:.2f} s to run everything)")
    say(f"a provider that inflates {cheat_rate:.0%} of its segments is caught by {len(picks)} uniform samples with probability {guarantee:.4f}")
    return {
        "segments": segments,
        "samples": picks,
        "audit_seed": audit_seed,
        "cheat_rate": cheat_rate,
        "catch_probability": guarantee,
        "cost_model": cm.name,
        "providers": verdicts,
    }


class _progress:
    def __init__(self, n: int, label: str, quiet: bool) -> None:
        self.bar = None if quiet or not sys.stderr.isatty() else click.progressbar(length=n, label=label, file=sys.stderr)

    def __enter__(self):
        if self.bar is not None:
            self.bar.__enter__()
        return self

    def __exit__(self, *exc):
        if self.bar is not None:
            self.bar.__exit__(*exc)
        return False

    def update(self, n: int) -> None:
        if self.bar is not None:
            self.bar.update(n)

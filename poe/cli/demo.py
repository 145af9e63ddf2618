"""`poe demo`: the whole loop for an honest and a cheating provider, side by side."""

from __future__ import annotations

import contextlib
import os
import shutil
import sys
import tempfile
from fractions import Fraction

import click

from poe.errors import InputError
from ._options import emit_json, info, json_option


@click.command("demo")
@click.option("--segments", type=click.IntRange(10, 1_000_000), default=1000, show_default=True, help="Segments each provider runs.")
@click.option("--epsilon", default="0.01", show_default=True, help="Overbilling fraction the audit must detect.")
@click.option("--delta", default="0.001", show_default=True, help="Allowed probability of missing it.")
@click.option("--cheat-rate", type=click.FloatRange(0.0, 1.0), default=0.10, show_default=True, help="Fraction of segments whose fuel the cheat triples (and of requests the customers part's cheat bills twice).")
@click.option("--seed", type=int, default=None, help="Beacon seed for the auditor (default: fresh randomness each run).")
@click.option("--keep", type=click.Path(file_okay=False), default=None, help="Keep stores, claims, verdicts and payouts in this directory.")
@click.option("--customers/--no-customers", default=True, show_default=True, help="Also run the customers part: signed requests, a provider that bills some of them twice, and a customer checking its bill.")
@click.option("--stateful/--no-stateful", default=True, show_default=True, help="Also run the stateful part: a long computation cut into steps, with a provider that bills steps twice.")
@json_option
def demo(segments, epsilon, delta, cheat_rate, seed, keep, customers, stateful, as_json):
    """Run → seal → attest → claim → challenge → respond → audit → settle, twice.

    Two providers run the same invocations of csv_agg.wasm (a CSV aggregator compiled from
    Rust) into their own SQLite stores. The cheating one triples the fuel of some of its
    records before committing them. Each seals its epoch, signs it (secp256k1) and claims
    payment under the same deal; the auditor challenges each claim with an unpredictable
    beacon, checks the openings and re-executes them, and settles.

    The customers part (--no-customers skips it) runs csv_agg.wasm again, for four customers
    who sign every request (EIP-712, secp256k1) under a deal that bills signed requests only.
    The honest provider runs each request once; the cheating one runs some again and bills them
    twice, in the bill tree it signs. The audit catches the copies (equal bill keys side by side),
    and a customer checks its own bill against the signed bill root.

    The stateful part (--no-stateful skips it) runs step_sort.wasm, which sorts 1,048,576
    numbers in 2,689 steps on one instance, every step a segment whose record commits the state
    before and after it. The cheating provider re-runs some steps from their old state and bills
    them twice; the auditor's state-chain check catches it and proves it.
    """
    from poe.demo import run_customer_demo, run_demo, run_stateful_demo

    workdir = keep or tempfile.mkdtemp(prefix="poe-demo-")
    os.makedirs(workdir, exist_ok=True)
    if keep and any(name.endswith(".poe") for name in os.listdir(workdir)):
        raise InputError(f"--keep {keep} already holds a demo's stores; give an empty or new directory")
    say = (lambda *_: None) if as_json else info
    progress = _progress(as_json)
    try:
        result = run_demo(workdir, segments, _fraction(epsilon), _fraction(delta), cheat_rate, seed, say=say, progress=progress, keep=keep is not None)
        if customers:
            beacon = bytes.fromhex(result["beacon"])
            result["customers"] = run_customer_demo(workdir, beacon, _fraction(epsilon), _fraction(delta), cheat_rate, seed, say=say,
                                                    progress=progress, keep=keep is not None)
        if stateful:
            result["stateful"] = run_stateful_demo(workdir, bytes.fromhex(result["beacon"]), say=say, progress=progress, keep=keep is not None)
    finally:
        if keep is None:
            shutil.rmtree(workdir, ignore_errors=True)
    if as_json:
        emit_json(result)


def _fraction(text: str) -> Fraction:
    try:
        return Fraction(text)
    except (ValueError, ZeroDivisionError):
        raise InputError(f"{text!r} is not a decimal or a fraction") from None


def _progress(quiet: bool):
    """A progress bar on a terminal, nothing otherwise."""

    @contextlib.contextmanager
    def bar(n: int, label: str):
        if quiet or not sys.stderr.isatty():
            yield lambda k: None
            return
        with click.progressbar(length=n, label=label, file=sys.stderr) as b:
            yield b.update

    return bar

"""`poe run`: execute a module's function as metered segments and record them in a store."""

from __future__ import annotations

import json
import os
import sys

import click

from poe.errors import ArgumentError, InputError
from ._invocation import invocation_from_flags, invocation_options, read_service
from ._options import (emit_json, human, info, json_option, limit_options, limits_from, load_json, passphrase_option, read_deal,
                       read_passphrase, write_output)


@click.command("run")
@click.argument("module", type=click.Path(dir_okay=False))
@click.option("--store", "store_path", required=True, type=click.Path(), help="Trace store (SQLite file) to append segments to; created if missing.")
@invocation_options
@click.option("--repeat", type=click.IntRange(min=1), default=1, show_default=True, help="Run the invocation N times, one segment each.")
@click.option("--seed", default=None, help="32-byte hex seed for random_get (default all zero); with --repeat, segment i uses a seed derived from it and i.")
@click.option("--stateful", is_flag=True, help="Keep one instance across segments; each record commits the state (memory, globals, clock) before and after it. See --steps.")
@click.option("--steps", type=click.IntRange(min=1), default=None, help="With --stateful: call the export (default: step) up to N times, stopping early when it returns the i32 0 (done) or a segment does not end ok.")
@click.option("--all-steps", is_flag=True, help="With --steps: run all N steps even when the export returns 0 (a trap or exit still stops).")
@click.option("--resume", is_flag=True, help="With --stateful: continue the lineage the store's last segment left, instead of starting from the module's genesis state.")
@click.option("--request", "request_path", type=click.Path(dir_okay=False), default=None,
              help="A customer's signed request (from `poe request`) that this invocation answers, or with --stateful its signed job: "
                   "checked before anything runs "
                   "(signature, deal, epoch window, fuel budget, a sequence not run before), and committed by the record. Needs --deal.")
@click.option("--deal", "deal_path", type=click.Path(dir_okay=False), default=None, help="With --request: the deal the request must be for.")
@click.option("--receipt", "receipt_path", type=click.Path(dir_okay=False), default=None,
              help="With --request: sign a receipt for the customer (poe receipt v1: request, record, the epoch it is billed in) "
                   "with --key, and write it here (never over an existing file).")
@click.option("--key", "key_file", type=click.Path(dir_okay=False), default=None, help="With --receipt: the provider's key file (the deal's key).")
@passphrase_option
@click.option("--quiet", "-q", is_flag=True, help="No progress bar or guest output; only the summary.")
@limit_options
@json_option
def run(module, store_path, export, args, env, stdin_path, files, links, repeat, seed, stateful, steps, all_steps, resume, request_path, deal_path,
        receipt_path, key_file, passphrase_file,
        quiet, fuel, max_memory_pages, max_output, as_json):
    """Run MODULE's function as metered segments and append them to a store.

    Each invocation is one segment: fuel is measured around the call only, the outcome
    (ok, exit, trap, out-of-fuel, memory-limit, output-limit) is recorded, never raised.
    With a single run the guest's stdout and stderr are shown; a summary follows on stderr.

    \b
    Examples:
      poe run csv_agg.wasm --stdin sales.csv --store trace.poe
      poe run funcs.wasm --invoke add --arg 2 --arg 40 --store trace.poe
      poe run wordfreq.wasm --arg words.txt --file words.txt --repeat 1000 --store trace.poe
      poe run step_sort.wasm --stateful --steps 5000 --store trace.poe

    \b
    Stateful mode (--stateful): one instance lives across segments, as a long computation cut
    into steps needs. The guest keeps its progress in memory and exports `step() -> i32`,
    returning nonzero while work remains and 0 when done; --steps N drives it. Every record's
    pre- and post-state roots chain (post of one = pre of the next), and the store keeps each
    state as the 1 KiB chunks it changed. An interrupted run continues with --resume.
    """
    from poe.provider import run as loop
    from poe.wasm.executor import Executor

    if not stateful and (steps is not None or resume or all_steps):
        raise ArgumentError("--steps, --all-steps and --resume need --stateful")
    if stateful and repeat != 1:
        raise ArgumentError("with --stateful, use --steps N rather than --repeat (each step continues the last one's state)")
    if (request_path is None) != (deal_path is None) or (request_path is not None and repeat != 1):
        raise click.UsageError("--request and --deal go together, for one segment (no --repeat) or, with --stateful, a job's steps")
    if (receipt_path is None) != (key_file is None) or (receipt_path is not None and request_path is None):
        raise click.UsageError("--receipt and --key go together, with --request")
    signer = None
    if receipt_path is not None:  # the key is read before anything runs: a bad one records nothing
        from poe.crypto.keys import read_signing_key

        if os.path.exists(receipt_path):
            raise InputError(f"{receipt_path} exists; poe never writes a receipt over a file")
        signer = read_signing_key(key_file, lambda: read_passphrase(passphrase_file))
    executor = Executor(read_service(module, links), loop.store_cost_model(store_path, limits_from(fuel, max_memory_pages, max_output)))
    inv = invocation_from_flags(executor, module, export, args, env, stdin_path, files, loop.parse_seed(seed), stateful=stateful)
    n = (steps or 1) if stateful else repeat
    with _progress(n, "steps" if stateful else "segments", quiet) as tick:
        if request_path is not None:
            from poe.protocol.request import SignedRequest

            signed = SignedRequest.from_json(load_json(request_path, "request"))
            deal = read_deal(deal_path)
            if signer is not None and (signer[0].name, signer[1].public_key) != (deal.scheme, deal.provider_key):
                raise InputError("--key is not the deal's provider key: the customer checks the receipt against the deal")
            if stateful:
                summary, last = loop.run_steps(executor, inv, store_path, n, stop_at_zero=not all_steps, resume=resume, tick=tick,
                                               job=(signed, deal))
            elif signed.is_job:
                raise InputError("a job's steps run on one lineage: add --stateful (and --steps)")
            else:
                summary, last = loop.run_request(executor, inv, signed, deal, store_path)
            if signer is not None:
                from poe.provider.receipts import issue_receipts
                from poe.store.tracestore import TraceStore

                with TraceStore.open(store_path) as store:
                    (receipt,) = issue_receipts(store, deal, signer[0], signer[1].secret_key, [last.record.index])
                write_output(receipt_path, json.dumps(receipt.to_json(), indent=2) + "\n", "receipt")
                summary["receipt"] = receipt.to_json()
        elif stateful:
            summary, last = loop.run_steps(executor, inv, store_path, n, stop_at_zero=not all_steps, resume=resume, tick=tick)
        else:
            summary, last = loop.run_batch(executor, inv, store_path, n, tick=tick)
    if (stateful or n == 1) and not as_json and not quiet:
        sys.stdout.buffer.write(last.output.stdout.data)
        sys.stdout.flush()
        sys.stderr.buffer.write(last.output.stderr.data)
        sys.stderr.flush()
    if as_json:
        emit_json(summary)
    else:
        _print_summary(summary, last)


def _print_summary(s: dict, last) -> None:
    n, t, first = s["last_index"] - s["first_index"] + 1, s["totals"], s["first_index"]
    stateful = s.get("stateful", False)
    kind = "stateful segments" if stateful else ("segments" if n > 1 else "segment")
    info(f"poe: recorded {kind} {first}..{first + n - 1} in {s['store']}" + (" (resumed)" if s.get("resumed") else ""))
    if stateful:
        ok = last.record.outcome.name == "OK"
        how = ", done (the export returned 0)" if s["done"] else (", not done; continue with --resume" if ok else f" (stopped: {last.record.describe_outcome()})")
        info(f"  steps    : {n}{how}")
    info(f"  outcomes : {', '.join(f'{k} x{v}' for k, v in sorted(s['outcomes'].items()))}")
    info(f"  fuel     : {t['fuel']:,} (avg {t['fuel'] // n:,}/{'step' if stateful else 'segment'})")
    info(f"  memory   : {'' if stateful else 'peak '}{s['peak_pages']} pages ({s['peak_pages'] * 64} KiB); mem {human(t['mem'])} page-fuel")
    if stateful:
        info(f"  state    : {last.record.post_state.hex()[:16]}... after the last step; dirty chunks found by {s['dirty_tracking']}")
        stored = s["state_bytes_stored"]
        info(f"  stored   : {human(stored)}B of state ({stored / n:,.0f} B/step: changed chunks, deltas, checkpoints)")
    else:
        info(f"  io       : {t['io']:,} payload bytes")
    if s["seconds"] > 0:
        info(f"  time     : {s['seconds']:.3f} s ({n / s['seconds']:,.0f} {'steps' if stateful else 'segments'}/s)")


class _progress:
    """A progress bar on a terminal for more than one segment; a no-op tick otherwise."""

    def __init__(self, n: int, label: str, quiet: bool) -> None:
        show = n > 1 and not quiet and sys.stderr.isatty()
        self.bar = click.progressbar(length=n, label=label, file=sys.stderr, show_pos=True, show_eta=True) if show else None

    def __enter__(self):
        if self.bar is None:
            return lambda n: None
        self.bar.__enter__()
        return self.bar.update

    def __exit__(self, *exc):
        if self.bar is not None:
            self.bar.__exit__(*exc)
        return False

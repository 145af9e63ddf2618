"""`poe inspect`: what a trace store holds."""

from __future__ import annotations

import click

from poe._io import write_new
from poe.errors import InputError
from poe.store.tracestore import TraceStore
from poe.store.views import SegmentView, memory_image, overview, segment_view
from ._options import emit_json, human, info, json_option


@click.command("inspect")
@click.argument("store_path", metavar="STORE", type=click.Path(dir_okay=True))
@click.option("--segment", "index", type=click.IntRange(min=0), default=None, help="Show one segment: record, invocation and output.")
@click.option("--epoch", type=click.IntRange(min=0), default=None, help="Summarise one epoch only.")
@click.option("--check", is_flag=True, help="Check the store's integrity (SQLite, contiguous log, digests); exit 1 on a problem.")
@click.option("--dump-memory", "dump_path", type=click.Path(dir_okay=False), default=None,
              help="With --segment of a stateful segment: write its post-state's memory image here (a new file; check it with b3sum).")
@json_option
def inspect_cmd(store_path, index, epoch, check, dump_path, as_json):
    """Summarise a trace store: cost model, services, epochs, totals and outcomes.

    With --segment, one segment in full; for a stateful segment also its pre- and post-state
    roots, and with --dump-memory FILE the post-state's linear memory, whose plain BLAKE3 hash
    (`b3sum FILE`) is the state's memory root."""
    if dump_path is not None and index is None:
        raise InputError("--dump-memory needs --segment")
    with TraceStore.open(store_path) as store:
        if index is not None:
            view = segment_view(store, index)
            data = view.to_json()
            if view.invocation.request:
                from poe.protocol.request import request_of

                signed = request_of(view.invocation)
                data["request"] = {**signed.to_json(), "digest": signed.digest.hex()}
            if dump_path is not None:
                state, image = memory_image(store, index)
                write_new(dump_path, image, "memory image")
                data["dumped"] = {"path": dump_path, "bytes": len(image), "blake3": state.memory.hex()}
                info(f"poe: wrote segment {index}'s post-state memory ({len(image):,} bytes) to {dump_path}; b3sum gives {state.memory.hex()}")
            if as_json:
                emit_json(data)
            else:
                _print_segment(index, view, data)
            return
        data = overview(store, store_path, epoch, check=check)
    if as_json:
        emit_json(data)
    else:
        _print_overview(data)
    if data.get("integrity", {}).get("problems"):
        raise click.exceptions.Exit(1)


def _print_overview(data: dict) -> None:
    totals = data["totals"]
    info(f"store      : {data['store']} ({data['segments']:,} segments)")
    info(f"cost model : {data['cost_model_name']}")
    for s in data["services"]:
        info(f"service    : {s['name']} {s['digest']}")
    for e in data["epochs"]:
        info(f"epoch {e['epoch']:<5}: {e['status']}, {e['segments']:,} segments from index {e['first_index']}")
        if "root" in e:
            info(f"             root {e['root']['hash']} (log of {e['root']['size']:,}; fuel {e['root']['totals']['fuel']:,})")
    info(f"totals ({data['scope']}): fuel {totals['fuel']:,}  mem {human(totals['mem'])}  io {totals['io']:,} bytes")
    info("outcomes   : " + (", ".join(f"{k} x{v}" for k, v in sorted(data["outcomes"].items())) or "none"))
    u = data["state_store"]
    if u["states"] or u["snapshots"]:
        info(f"states     : {u['states']:,} stateful segments, {u['snapshots']:,} full snapshots, {u['chunks']:,} chunks "
             f"({human(u['bytes'])}B)")
    if "integrity" in data:
        problems = data["integrity"]["problems"]
        info("integrity  : ok" if not problems else "integrity  : PROBLEMS\n  " + "\n  ".join(problems))


def _print_segment(index: int, view: SegmentView, data: dict) -> None:
    record, invocation, output = view.record, view.invocation, view.output
    r = data["record"]
    info(f"segment {index}: {r['outcome_text']}, fuel {record.fuel:,}, peak {record.peak_pages} pages, io {record.io:,} bytes, {record.host_calls} host calls")
    info(f"  export {invocation.export} argv {data['invocation']['argv']} params {[str(v) for v in invocation.params]}")
    if "request" in data:
        q = data["request"]["request"]
        info(f"  answers request {q['sequence']} of customer {q['customer']} (budget {q['fuelBudget']:,} fuel, epochs "
             f"{q['notBefore']}..{q['notAfter']}; request digest {data['request']['digest']})")
    for key in ("module_digest", "cost_model_digest", "input_digest", "output_digest", "io_digest"):
        info(f"  {key:<18} {r[key]}")
    if record.pre_state != bytes(32):
        info(f"  {'pre_state':<18} {r['pre_state']}")
        info(f"  {'post_state':<18} {r['post_state']}")
        post = data.get("post_state", {})
        if "memory" in post:
            info(f"    {post['pages']} pages, memory BLAKE3 {post['memory']}, clock {post['clock_ns']:,} ns, {len(post['globals'])} globals")
    if output.results:
        info(f"  results {[str(v) for v in output.results]}")
    if output.stdout.data:
        preview = output.stdout.data[:400].decode("utf-8", "replace")
        info("  stdout:\n    " + preview.replace("\n", "\n    ") + ("..." if len(output.stdout) > 400 else ""))

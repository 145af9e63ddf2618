"""`poe inspect`: what a trace store holds."""

from __future__ import annotations

import click

from poe.store.tracestore import TraceStore
from poe.errors import InputError, StateUnavailableError
from ._options import emit_json, human, info, json_option


@click.command("inspect")
@click.argument("store_path", metavar="STORE", type=click.Path(dir_okay=True))
@click.option("--segment", "index", type=click.IntRange(min=0), default=None, help="Show one segment: record, invocation and output.")
@click.option("--epoch", type=click.IntRange(min=0), default=None, help="Summarise one epoch only.")
@click.option("--check", is_flag=True, help="Check the store's integrity (SQLite, contiguous log, digests); exit 1 on a problem.")
@click.option("--dump-memory", "dump_path", type=click.Path(dir_okay=False), default=None,
              help="With --segment of a stateful segment: write its post-state's memory image here (check it with b3sum).")
@json_option
def inspect_cmd(store_path, index, epoch, check, dump_path, as_json):
    """Summarise a trace store: cost model, services, epochs, totals and outcomes.

    With --segment, one segment in full; for a stateful segment also its pre- and post-state
    roots, and with --dump-memory FILE the post-state's linear memory, whose plain BLAKE3 hash
    (`b3sum FILE`) is the state's memory root."""
    if dump_path is not None and index is None:
        raise InputError("--dump-memory needs --segment")
    store = TraceStore.open(store_path)
    try:
        if index is not None:
            _show_segment(store, index, as_json, dump_path)
            return
        totals, outcomes = store.summary(epoch)
        data = {
            "store": store_path,
            "segments": store.count(),
            "cost_model": store.cost_model.to_json(),
            "cost_model_name": store.cost_model.name,
            "cost_model_digest": store.cost_model.digest.hex(),
            "services": [{"digest": d.hex(), "name": n} for d, n in store.services()],
            "epochs": store.epochs(),
            "scope": "all epochs" if epoch is None else f"epoch {epoch}",
            "totals": totals.to_json(),
            "outcomes": outcomes,
            "state_store": store.state_usage(),
        }
        problems = store.check_integrity() if check else None
        if problems is not None:
            data["integrity"] = {"ok": not problems, "problems": problems}
        if as_json:
            emit_json(data)
        else:
            info(f"store      : {store_path} ({data['segments']:,} segments)")
            info(f"cost model : {store.cost_model.name}")
            for s in data["services"]:
                info(f"service    : {s['name']} {s['digest']}")
            for e in data["epochs"]:
                info(f"epoch {e['epoch']:<5}: {e['status']}, {e['segments']:,} segments from index {e['first_index']}")
                if "root" in e:
                    info(f"             root {e['root']['hash']} (log of {e['root']['size']:,}; fuel {e['root']['totals']['fuel']:,})")
            info(f"totals ({data['scope']}): fuel {totals.fuel:,}  mem {human(totals.mem)}  io {totals.io:,} bytes")
            info("outcomes   : " + (", ".join(f"{k} x{v}" for k, v in sorted(outcomes.items())) or "none"))
            u = data["state_store"]
            if u["states"] or u["snapshots"]:
                info(f"states     : {u['states']:,} stateful segments, {u['snapshots']:,} full snapshots, {u['chunks']:,} chunks "
                     f"({human(u['bytes'])}B)")
            if problems is not None:
                info("integrity  : ok" if not problems else "integrity  : PROBLEMS\n  " + "\n  ".join(problems))
        if problems:
            raise click.exceptions.Exit(1)
    finally:
        store.close()


def _show_segment(store: TraceStore, index: int, as_json: bool, dump_path: str | None = None) -> None:
    record, invocation, output = store.segment(index)
    data = {"record": record.to_json(), "invocation": invocation.to_json(), "output": output.to_json()}
    if record.post_state != bytes(32):
        try:
            data["post_state"] = store.state_after(index).to_json()
        except StateUnavailableError as exc:
            data["post_state"] = {"root": record.post_state.hex(), "unavailable": exc.message}
    if dump_path is not None:
        if record.post_state == bytes(32):
            raise InputError(f"segment {index} is stateless: it has no memory to dump")
        state, image = store.post_state_image(index)
        with open(dump_path, "wb") as f:
            f.write(image)
        data["dumped"] = {"path": dump_path, "bytes": len(image), "blake3": state.memory.hex()}
        info(f"poe: wrote segment {index}'s post-state memory ({len(image):,} bytes) to {dump_path}; b3sum gives {state.memory.hex()}")
    if as_json:
        emit_json(data)
        return
    r = data["record"]
    info(f"segment {index}: {r['outcome_text']}, fuel {record.fuel:,}, peak {record.peak_pages} pages, io {record.io:,} bytes, {record.host_calls} host calls")
    info(f"  export {invocation.export} argv {data['invocation']['argv']} params {[str(v) for v in invocation.params]}")
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

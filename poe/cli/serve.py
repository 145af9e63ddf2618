"""`poe serve`: the metered HTTP gateway customers call (poe.provider.serve)."""

from __future__ import annotations

import click

from ._options import info, passphrase_option, read_deal, read_file, read_link_options, read_passphrase


def _listen(ctx: click.Context, param: click.Parameter, text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    if not host or not port.isdigit() or not 0 <= int(port) < 65536:
        raise click.BadParameter(f"HOST:PORT, e.g. 127.0.0.1:8080; got {text!r}")
    return host, int(port)


@click.command("serve")
@click.option("--deal", "deal_path", required=True, type=click.Path(dir_okay=False), help="The deal requests are billed under (JSON or .toml).")
@click.option("--module", "module_path", required=True, type=click.Path(dir_okay=False), help="The deal's module (its digest must match).")
@click.option("--link", "links", multiple=True, metavar="NAME=FILE", help="A module whose exports satisfy the main module's imports of NAME.")
@click.option("--key", "key_file", required=True, type=click.Path(dir_okay=False), help="The deal's provider key file: signs receipts and attestations.")
@click.option("--store", "store_path", required=True, type=click.Path(dir_okay=False), help="The trace store (created if missing).")
@click.option("--listen", default="127.0.0.1:8080", callback=_listen, show_default=True, help="HOST:PORT to listen on.")
@click.option("--epoch-segments", type=click.IntRange(min=1), default=None, help="Seal and attest an epoch every N segments.")
@click.option("--epoch-seconds", type=click.FloatRange(min=0.001), default=None, help="Seal and attest an epoch every S seconds (if it holds segments).")
@click.option("--workers", type=click.IntRange(min=1, max=64), default=2, show_default=True,
              help="Threads that check and run requests (wasmtime runs guests outside the GIL).")
@passphrase_option
def serve(deal_path, module_path, links, key_file, store_path, listen, epoch_segments, epoch_seconds, workers, passphrase_file):
    """Serve the deal's module over HTTP until interrupted (Ctrl-C or SIGTERM), then seal the open
    epoch. Endpoints (docs/http.md): POST /v1/invoke, GET /v1/epochs, GET /v1/epochs/N/attestation,
    GET /v1/epochs/N/claim, GET /healthz.

    A request is checked before it runs (deal, window, budget, the call it names, its signature,
    a sequence not answered before) and answered only once its segment is durable, with the
    guest's stdout, usage headers and the signed receipt.
    """
    from aiohttp import web

    from poe.crypto.keys import read_signing_key
    from poe.formats.moduleset import Service
    from poe.provider.run import store_cost_model
    from poe.provider.serve import Gateway, make_app
    from poe.wasm.executor import Executor

    deal = read_deal(deal_path)
    scheme, key = read_signing_key(key_file, lambda: read_passphrase(passphrase_file))
    service = Service(read_file(module_path, "module"), read_link_options(links), name=module_path)
    gateway = Gateway(Executor(service, store_cost_model(store_path, None)), deal, store_path, scheme, key.secret_key, epoch_segments=epoch_segments,
                      epoch_seconds=epoch_seconds, workers=workers)
    host, port = listen
    gateway.start()
    try:
        info(f"poe: serving deal {deal.deal_id!r} ({service.digest.hex()[:16]}...) on http://{host}:{port}, store {store_path}")
        web.run_app(make_app(gateway), host=host, port=port, print=None, handle_signals=True)
    finally:
        gateway.close()
        info(f"poe: stopped; {gateway.counters['requests']} requests answered, {len(gateway.epochs())} epochs sealed")

"""The gateway (`poe serve`, poe.provider.serve): a real aiohttp server on loopback, real HTTP."""

from __future__ import annotations

import asyncio
import json
import threading
import urllib.error
import urllib.request

import pytest

from poe import CostModel, Executor, Invocation, Service, TraceStore, Value
from poe.crypto.schemes import get_scheme
from poe.protocol.deal import Deal
from poe.protocol.request import sign_request

from .conftest import module_bytes

K1 = get_scheme("secp256k1")
PROVIDER = K1.generate_key(b"poe gateway tests: the provider's key")
CUSTOMER = K1.generate_key(b"poe gateway tests: the customer's key")


class Server:
    """A gateway and its aiohttp app on 127.0.0.1, port chosen by the kernel, in a thread."""

    def __init__(self, gateway):
        from aiohttp import web

        from poe.provider.serve import make_app

        self.gateway = gateway.start()
        self.loop = asyncio.new_event_loop()
        self.runner = web.AppRunner(make_app(gateway))
        self.loop.run_until_complete(self.runner.setup())
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        self.loop.run_until_complete(site.start())
        self.port = site._server.sockets[0].getsockname()[1]
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def stop(self) -> None:
        if not self.thread.is_alive():
            return
        asyncio.run_coroutine_threadsafe(self.runner.cleanup(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.gateway.close()


@pytest.fixture
def served(tmp_path):
    from poe.provider.serve import Gateway

    cm, service = CostModel.current(), Service(module_bytes("funcs.wasm"))
    deal = Deal.from_json({"format": "poe deal v2", "deal_id": "gw", "provider": {"scheme": "secp256k1", "public_key": K1.public_key(PROVIDER).hex()},
                           "module_digest": service.digest.hex(), "cost_model_digest": cm.digest.hex(), "prices": {"fuel": 1, "mem": 0, "io": 10},
                           "subscription": 0, "penalty": {"kind": "forfeit"}, "customers": {"anonymous": False, "window": 3}})
    server = Server(Gateway(Executor(service, cm), deal, str(tmp_path / "gw.poe"), K1, PROVIDER, epoch_segments=10))
    yield server, deal
    server.stop()


def call(a: int, b: int) -> Invocation:
    return Invocation.build("add", params=[Value.of("i32", a), Value.of("i32", b)])


def post(server, inv: Invocation, signed, *, body: bytes = b"", headers: dict | None = None):
    from poe.provider.serve import encode_call

    h = {"Poe-Invocation": encode_call(inv), "Poe-Request": json.dumps(signed.to_json())} if signed is not None else {}
    h.update(headers or {})
    req = urllib.request.Request(server.url("/v1/invoke"), data=body, headers=h, method="POST")
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, dict(r.headers), r.read()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read()


def signed_for(deal, inv, sequence, key=CUSTOMER, **terms):
    """Billable in epochs 0..2 (the deal's window is 3 epochs), so a test's requests fit whichever epoch they land in."""
    t = dict(chain_id=1, deal=deal.digest, sequence=sequence, invocation=inv.call_digest, fuel_budget=10**9, not_before=0, not_after=2)
    t.update(terms)
    return sign_request(key, **t)


def test_a_signed_request_is_run_recorded_and_receipted(served, tmp_path):
    from poe.protocol.receipt import Receipt

    server, deal = served
    inv = call(2, 3)
    status, headers, body = post(server, inv, signed_for(deal, inv, 1))
    assert status == 200, body
    receipt = Receipt.from_json(json.loads(headers["Poe-Receipt"]))
    assert receipt.index == int(headers["Poe-Index"]) == 0 and receipt.epoch == 0
    assert int(headers["Poe-Fuel"]) > 0 and headers["Poe-Outcome"] == "ok"
    with TraceStore.open(str(tmp_path / "gw.poe")) as store:  # durable before the answer was sent
        record, stored, _ = store.segment(0)
        assert record.fuel == int(headers["Poe-Fuel"]) and stored.request


def test_requests_that_do_not_fit_are_refused_before_they_run(served, tmp_path):
    server, deal = served
    inv = call(1, 1)
    ok = signed_for(deal, inv, 5)
    first = post(server, inv, ok)
    assert first[0] == 200
    # the same signed request again (its answer lost on the way): the recorded answer, nothing run or billed again
    again = post(server, inv, ok)
    assert again[0] == 200 and again[1]["Poe-Replayed"] == "1" and again[1]["Poe-Index"] == first[1]["Poe-Index"]
    assert again[2] == first[2] and json.loads(again[1]["Poe-Receipt"])["record_leaf"] == json.loads(first[1]["Poe-Receipt"])["record_leaf"]
    other_call = call(9, 9)
    assert post(server, other_call, ok)[0] == 400  # the request names another call
    assert post(server, other_call, signed_for(deal, other_call, 5))[0] == 409  # another request under a sequence answered before
    import dataclasses

    bad_sig = dataclasses.replace(signed_for(deal, inv, 7), signature=signed_for(deal, inv, 8).signature)
    status, _, body = post(server, inv, bad_sig)
    assert status == 400 and b"signature" in body
    assert post(server, inv, signed_for(deal, inv, 9, not_before=3, not_after=3))[0] == 400  # not billable now
    assert post(server, inv, None)[0] == 400  # no headers
    assert post(server, inv, ok, headers={"Poe-Invocation": "not base64!"})[0] == 400
    assert post(server, inv, ok, headers={"Poe-Request": "{"})[0] == 400
    with TraceStore.open(str(tmp_path / "gw.poe")) as store:
        assert store.count() == 1  # only the one good request was recorded


def test_concurrent_requests_are_all_recorded_once_and_epochs_seal_on_schedule(served, tmp_path):
    from concurrent.futures import ThreadPoolExecutor

    server, deal = served
    invs = [call(i, i) for i in range(25)]
    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(lambda i: post(server, invs[i], signed_for(deal, invs[i], 100 + i)), range(25)))
    assert all(r[0] == 200 for r in results), [r for r in results if r[0] != 200][:1]
    indices = sorted(int(h["Poe-Index"]) for _, h, _ in results)
    assert indices == list(range(25))
    with urllib.request.urlopen(server.url("/v1/epochs")) as r:
        epochs = json.loads(r.read())
    assert [e["epoch"] for e in epochs] == [0, 1]  # 10 segments an epoch: two sealed, the third open
    with urllib.request.urlopen(server.url("/v1/epochs/0/claim")) as r:
        claim_doc = json.loads(r.read())
    from poe.protocol.claim import Claim

    claim = Claim.from_json(claim_doc)
    claim.verify_under(deal)
    assert claim.statement.end_index - claim.statement.first_index == 10 and claim.statement.bills
    with pytest.raises(urllib.error.HTTPError) as missing:
        urllib.request.urlopen(server.url("/v1/epochs/7/attestation"))
    assert missing.value.code == 404
    with urllib.request.urlopen(server.url("/healthz")) as r:
        assert json.loads(r.read())["ok"] is True


# -- `poe serve` as a process -------------------------------------------------------------------


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start(p, port):
    import os
    import subprocess
    import sys
    import time

    proc = subprocess.Popen([sys.executable, "-m", "poe", "serve", "--deal", str(p / "deal.json"), "--module", str(p / "funcs.wasm"),
                             "--key", str(p / "p.key"), "--store", str(p / "s.poe"), "--listen", f"127.0.0.1:{port}"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(proc.stderr.read().decode())
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as r:
                if json.loads(r.read())["ok"]:
                    return proc
        except OSError:
            time.sleep(0.1)
    proc.kill()
    raise AssertionError("poe serve did not come up")


@pytest.fixture
def cli_parties(tmp_path):
    from click.testing import CliRunner

    from poe.cli import main

    (tmp_path / "funcs.wasm").write_bytes(module_bytes("funcs.wasm"))
    run = CliRunner().invoke
    assert run(main, ["keygen", "--scheme", "secp256k1", "--out", str(tmp_path / "p.key")]).exit_code == 0
    r = run(main, ["deal", "new", str(tmp_path / "funcs.wasm"), "--id", "served", "--provider", str(tmp_path / "p.key"),
                   "--price-fuel", "1", "--window", "16", "--out", str(tmp_path / "deal.json")])
    assert r.exit_code == 0, r.output
    return tmp_path


def test_serve_answers_over_http_survives_kill_9_and_seals_on_shutdown(cli_parties):
    import signal

    from poe.protocol.receipt import Receipt

    p = cli_parties
    deal = Deal.from_json(json.loads((p / "deal.json").read_text()))
    port = _free_port()
    proc = _start(p, port)

    class At:
        def url(self, path):
            return f"http://127.0.0.1:{port}{path}"

    receipts = []
    try:
        for i in range(3):
            inv = call(i, 7)
            status, headers, body = post(At(), inv, signed_for(deal, inv, i, not_after=15))
            assert status == 200, body
            receipts.append(Receipt.from_json(json.loads(headers["Poe-Receipt"])))
    finally:
        proc.kill()  # kill -9: every receipt handed out names a durable segment
        proc.wait()
    with TraceStore.open(str(p / "s.poe")) as store:
        assert store.count() == 3 and [r.index for r in receipts] == [0, 1, 2]
    proc = _start(p, port)
    try:
        inv = call(1, 7)
        again = post(At(), inv, signed_for(deal, inv, 1, not_after=15))  # answered before the crash: its answer, not a second run
        assert again[0] == 200 and again[1]["Poe-Replayed"] == "1" and int(again[1]["Poe-Index"]) == 1
        other = call(2, 2)
        assert post(At(), other, signed_for(deal, other, 1, not_after=15))[0] == 409  # another call under that sequence
        inv = call(9, 7)
        assert post(At(), inv, signed_for(deal, inv, 9, not_after=15))[0] == 200
    finally:
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err.decode()
    with TraceStore.open(str(p / "s.poe")) as store:
        assert store.count() == 4 and [e["status"] for e in store.epochs()][:1] == ["sealed"]
    assert (p / "s.poe.epochs" / "0.json").exists()


def _gateway(tmp_path, deal, **kw):
    from poe.provider.serve import Gateway

    cm, service = CostModel.current(), Service(module_bytes("funcs.wasm"))
    return Gateway(Executor(service, cm), deal, str(tmp_path / "gw.poe"), K1, PROVIDER, **kw)


def test_epoch_sealed_from_outside_is_named_in_the_receipts_after_it(served, tmp_path):
    # The review's finding: `poe seal` on the live store moved segments to the next epoch while
    # the receipts still named the old one.
    server, deal = served
    inv = call(1, 2)
    assert post(server, inv, signed_for(deal, inv, 1))[1]["Poe-Epoch"] == "0"
    with TraceStore.open(str(tmp_path / "gw.poe"), seal=True) as sealer:
        sealer.seal()
    inv = call(3, 4)
    status, headers, _ = post(server, inv, signed_for(deal, inv, 2))
    assert status == 200 and headers["Poe-Epoch"] == "1" and json.loads(headers["Poe-Receipt"])["epoch"] == 1
    with TraceStore.open(str(tmp_path / "gw.poe")) as store:
        assert store.segment_epoch(int(headers["Poe-Index"])) == 1
    inv = call(5, 6)
    assert post(server, inv, signed_for(deal, inv, 3, not_before=0, not_after=0))[0] == 400  # epoch 0 is closed now
    assert post(server, inv, signed_for(deal, inv, 4))[0] == 200  # and the writer is still serving


def test_restart_serves_the_epochs_it_attested_and_refuses_files_of_another_store(served, tmp_path):
    server, deal = served
    for i in range(12):
        inv = call(i, 0)
        assert post(server, inv, signed_for(deal, inv, i))[0] == 200
    server.stop()  # seals the second epoch (2 segments)
    with _gateway(tmp_path, deal, epoch_segments=10) as again:
        assert [(e["epoch"], e["first_index"], e["end_index"]) for e in again.epochs()] == [(0, 0, 10), (1, 10, 12)]
    # the store replaced under its files: the old attestations are not served for the new store
    (tmp_path / "gw.poe").unlink()
    for extra in tmp_path.glob("gw.poe-*"):
        extra.unlink()
    import time

    from poe.errors import StoreError

    fresh = _gateway(tmp_path, deal, epoch_segments=1)
    fresh.start()
    inv = call(0, 0)
    fresh.invoke(signed_for(deal, inv, 0), inv)  # recorded; sealing epoch 0 then finds 0.json of the old store
    deadline = time.monotonic() + 30
    while fresh._failed is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert isinstance(fresh._failed, StoreError) and "another epoch 0" in str(fresh._failed)
    inv = call(1, 0)
    with pytest.raises(StoreError):
        fresh.invoke(signed_for(deal, inv, 1), inv)
    fresh.close()


def test_headers_that_would_crash_a_parser_are_refused_as_bad_input(served):
    server, deal = served
    inv = call(1, 1)
    status, _, body = post(server, inv, signed_for(deal, inv, 1), headers={"Poe-Request": "[" * 5000})
    assert status == 400 and json.loads(body)["error"]["code"] == "input.invalid"


def test_truncated_or_oversized_requests_are_refused_without_a_traceback(served):
    import base64

    from poe.provider.serve import MAX_BODY, encode_call

    server, deal = served
    inv = call(1, 1)
    signed = signed_for(deal, inv, 1)
    truncated = base64.b64encode(base64.b64decode(encode_call(inv))[:-7]).decode()
    status, _, body = post(server, inv, signed, headers={"Poe-Invocation": truncated})
    assert status == 400 and json.loads(body)["error"]["code"].startswith(("encoding.", "input."))
    status, _, body = post(server, inv, signed, headers={"Poe-Request": json.dumps(signed.to_json())[:-20]})
    assert status == 400 and b"Traceback" not in body
    # a body that is not the call's stdin, and one over the limit
    assert post(server, inv, signed, body=b"not the stdin it names")[0] == 400
    assert post(server, inv, signed, body=b"x" * (MAX_BODY + 1))[0] == 413
    assert post(server, inv, signed)[0] == 200  # none of them was recorded or reserved it


@pytest.mark.parametrize("args, code", [
    (["--listen", "nowhere"], 2),
    (["--deal", "{garbage}"], 3),
    (["--key", "{garbage}"], 3),
    (["--module", "{garbage}"], 3),
])
def test_serve_refuses_bad_options_with_a_clear_error(cli_parties, args, code):
    from click.testing import CliRunner

    from poe.cli import main

    p = cli_parties
    (p / "garbage.json").write_text("{not json")
    base = {"--deal": str(p / "deal.json"), "--module": str(p / "funcs.wasm"), "--key": str(p / "p.key"), "--store": str(p / "s.poe")}
    for flag, value in zip(args[::2], args[1::2]):
        base[flag] = value.format(garbage=p / "garbage.json")
    r = CliRunner().invoke(main, ["serve", *[x for kv in base.items() for x in kv]])
    assert r.exit_code == code, r.output
    assert "Traceback" not in r.output

"""The command line: right exit codes, one clear line per error, stores left intact."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys

import pytest
from click.testing import CliRunner

from poe import TraceStore
from poe.cli import main

from .conftest import MODULES, ROOT


def _poe(*args: str, input: bytes | None = None):
    return CliRunner().invoke(main, list(args), input=input, catch_exceptions=False)


def _records(path: str) -> list[bytes]:
    store = TraceStore.open(path)
    try:
        return [r.encode() for r in store.records()]
    finally:
        store.close()


M = str(MODULES)


def test_run_prints_guest_output_and_a_summary(store_path):
    r = _poe("run", f"{M}/csv_agg.wasm", "--stdin", f"{M}/data/sales_small.csv", "--store", store_path)
    assert r.exit_code == 0, r.stderr
    assert json.loads(r.stdout)["bad_rows"] == 2
    assert "recorded segment 0..0" in r.stderr and "fuel" in r.stderr


def test_run_json_reports_the_record(store_path):
    r = _poe("run", f"{M}/funcs.wasm", "--invoke", "add", "--arg", "2", "--arg", "40", "--store", store_path, "--json")
    assert r.exit_code == 0, r.stderr
    data = json.loads(r.stdout)
    assert data["output"]["results"][0]["value"] == 42
    assert data["record"]["outcome"] == "ok" and data["totals"]["segments"] == 1
    assert _records(store_path)[0].hex() == TraceStore.open(store_path).record(0).encode().hex()


def test_run_repeat_gives_each_segment_its_own_seed(store_path):
    r = _poe("run", f"{M}/entropy_clock.wasm", "--repeat", "4", "--store", store_path, "--json")
    assert r.exit_code == 0, r.stderr
    store = TraceStore.open(store_path)
    try:
        assert store.count() == 4
        assert len({store.record(i).input_digest for i in range(4)}) == 4
        assert len({store.record(i).output_digest for i in range(4)}) == 4
    finally:
        store.close()


def test_run_with_files_env_and_links(store_path):
    r = _poe("run", f"{M}/wordfreq.wasm", "--arg", "words.txt", "--file", f"{M}/data/words.txt", "--store", store_path)
    assert r.exit_code == 0 and b"words:" in r.stdout_bytes
    r = _poe("run", f"{M}/entropy_clock.wasm", "--env", "GREETING=bonjour", "--store", store_path)
    assert r.exit_code == 0 and "GREETING: bonjour" in r.stdout
    r = _poe("run", f"{M}/linked_main.wasm", "--link", f"mathlib={M}/mathlib.wasm", "--invoke", "run", "--arg", "5", "--store", store_path, "--json")
    assert r.exit_code == 0, r.stderr
    assert json.loads(r.stdout)["output"]["results"][0]["value"] == 4 * 25 + 5


def test_guest_failures_are_recorded_not_errors(store_path):
    r = _poe("run", f"{M}/trap.wasm", "--store", store_path, "--fuel", "1000000", "--json")
    assert r.exit_code == 0
    assert json.loads(r.stdout)["record"]["outcome_text"] == "trap(integer-division-by-zero)"


def test_inspect_summarises_and_checks(store_path):
    _poe("run", f"{M}/funcs.wasm", "--invoke", "fib", "--arg", "30", "--repeat", "3", "--store", store_path)
    r = _poe("inspect", store_path, "--json", "--check")
    assert r.exit_code == 0, r.stderr
    data = json.loads(r.stdout)
    assert data["segments"] == 3 and data["integrity"]["ok"]
    assert data["totals"]["fuel"] == sum(TraceStore.open(store_path).record(i).fuel for i in range(3))
    r = _poe("inspect", store_path, "--segment", "1", "--json")
    assert json.loads(r.stdout)["record"]["index"] == 1
    r = _poe("inspect", store_path, "--segment", "9")
    assert r.exit_code == 3 and "no segment 9" in r.stderr


def test_inspect_check_fails_on_a_tampered_store(store_path):
    _poe("run", f"{M}/funcs.wasm", "--invoke", "noop", "--store", store_path)
    db = sqlite3.connect(store_path)
    db.execute("UPDATE segments SET invocation = invocation || x'00'")
    db.commit()
    db.close()
    r = _poe("inspect", store_path, "--check")
    assert r.exit_code == 1 and "PROBLEMS" in r.stderr


@pytest.fixture
def populated(store_path):
    r = _poe("run", f"{M}/funcs.wasm", "--invoke", "noop", "--store", store_path, "--fuel", "1000000")
    assert r.exit_code == 0
    return store_path


def _bad_inputs(tmp):
    trunc = tmp / "trunc.wasm"
    trunc.write_bytes((MODULES / "csv_agg.wasm").read_bytes()[:200])
    notwasm = tmp / "not.wasm"
    notwasm.write_text("#!/bin/sh\necho hello\n")
    return {
        "not a wasm file": (["run", str(notwasm)], "module.invalid"),
        "truncated wasm": (["run", str(trunc)], "module.invalid"),
        "unknown import": (["run", f"{M}/bad_import.wasm"], "module.unknown-import"),
        "missing export": (["run", f"{M}/funcs.wasm", "--invoke", "nope"], "module.missing-export"),
        "no _start": (["run", f"{M}/funcs.wasm"], "invocation.bad-argument"),
        "wrong argument count": (["run", f"{M}/funcs.wasm", "--invoke", "add", "--arg", "1"], "invocation.bad-argument"),
        "wrong argument type": (["run", f"{M}/funcs.wasm", "--invoke", "add", "--arg", "1", "--arg", "1.5"], "invocation.bad-argument"),
        "unreadable stdin file": (["run", f"{M}/csv_agg.wasm", "--stdin", str(tmp / "absent.csv")], "input.invalid"),
        "unreadable input file": (["run", f"{M}/wordfreq.wasm", "--file", f"w={tmp / 'absent.txt'}"], "input.invalid"),
        "file escaping the directory": (["run", f"{M}/wordfreq.wasm", "--file", f"../w={M}/data/words.txt"], "invocation.bad-argument"),
        "cost model mismatch": (["run", f"{M}/funcs.wasm", "--invoke", "noop", "--fuel", "999"], "cost-model.mismatch"),
        "bad seed": (["run", f"{M}/funcs.wasm", "--invoke", "noop", "--seed", "abc"], "invocation.bad-argument"),
    }


BAD_INPUTS = [
    "not a wasm file", "truncated wasm", "unknown import", "missing export", "no _start", "wrong argument count",
    "wrong argument type", "unreadable stdin file", "unreadable input file", "file escaping the directory",
    "cost model mismatch", "bad seed",
]


@pytest.mark.parametrize("case", BAD_INPUTS)
def test_bad_input_exits_3_with_a_clear_message_and_leaves_the_store_intact(case, populated, tmp_path):
    args, code = _bad_inputs(tmp_path)[case]
    before = _records(populated)
    r = _poe(*args, "--store", populated)
    assert r.exit_code == 3, (case, r.stderr)
    assert f"[{code}]" in r.stderr and "Traceback" not in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
    assert _records(populated) == before


def test_bad_input_with_json_also_reports_the_error_on_stdout(populated):
    r = _poe("run", f"{M}/bad_import.wasm", "--store", populated, "--json")
    assert r.exit_code == 3
    assert json.loads(r.stdout)["error"]["code"] == "module.unknown-import"


def test_store_path_that_is_a_directory_exits_3(tmp_path):
    r = _poe("run", f"{M}/funcs.wasm", "--invoke", "noop", "--store", str(tmp_path))
    assert r.exit_code == 3 and "is a directory" in r.stderr


def test_store_of_a_newer_format_exits_3(populated):
    db = sqlite3.connect(populated)
    db.execute("PRAGMA user_version = 7")
    db.commit()
    db.close()
    for args in (["inspect", populated], ["run", f"{M}/funcs.wasm", "--invoke", "noop", "--store", populated]):
        r = _poe(*args)
        assert r.exit_code == 3 and "[store.version]" in r.stderr


def test_second_writer_exits_3_while_the_first_holds_the_store(populated):
    holder = TraceStore.create_or_open(populated, TraceStore.open(populated).cost_model)
    try:
        r = _poe("run", f"{M}/funcs.wasm", "--invoke", "noop", "--store", populated)
        assert r.exit_code == 3 and "[store.locked]" in r.stderr
    finally:
        holder.close()


def test_usage_errors_exit_2():
    assert _poe("run").exit_code == 2
    assert _poe("run", f"{M}/funcs.wasm").exit_code == 2  # --store is required
    assert _poe("frobnicate").exit_code == 2


def test_demo_runs_the_whole_loop_and_settles_honest_and_cheat(tmp_path):
    r = _poe("demo", "--segments", "40", "--epsilon", "0.2", "--cheat-rate", "0.5", "--seed", "7", "--json", "--keep", str(tmp_path))
    assert r.exit_code == 0, r.stderr
    data = json.loads(r.stdout)
    honest, cheat = data["providers"]["honest"], data["providers"]["cheating"]
    assert honest["verdict"] == "ACCEPT" and cheat["verdict"] == "REJECT"
    assert "fraud_proof_segment" in cheat
    payouts = {row["verdict"]: row["payout"] for row in data["payouts"]["payouts"]}
    assert payouts["ACCEPT"] == honest["claimed"] and payouts["REJECT"] < 0
    assert (tmp_path / "cheating-verdict.json").exists()
    # the stateful part: the whole sort, honest and with steps billed twice
    steps = data["stateful"]["providers"]
    assert steps["honest"]["verdict"] == "ACCEPT" and steps["honest"]["steps"] == 2689
    assert steps["honest"]["guest_output"].endswith("ok")
    assert steps["cheating"]["verdict"] == "REJECT" and steps["cheating"]["repeated_steps"] > 0
    assert "fraud_proof_segment" in steps["cheating"]
    assert (tmp_path / "cheating-steps-verdict.json").exists()
    assert (tmp_path / "honest-claim.json").exists() and (tmp_path / "payouts.json").exists() and (tmp_path / "steps-payouts.json").exists()
    again = _poe("demo", "--segments", "10", "--no-stateful", "--keep", str(tmp_path))
    assert again.exit_code == 3 and "already holds" in again.stderr
    honest_verdict = str(tmp_path / "honest-verdict.json")
    r = _poe("check-fraud-proof", honest_verdict, "--module", f"{M}/csv_agg.wasm")
    assert r.exit_code == 5 and "no fraud proof" in r.stderr  # not proven: its own exit status


def test_demo_without_the_stateful_part(tmp_path):
    r = _poe("demo", "--segments", "20", "--epsilon", "0.3", "--seed", "1", "--no-stateful", "--json")
    assert r.exit_code == 0, r.stderr
    assert "stateful" not in json.loads(r.stdout)


def test_demo_customers_part_catches_requests_billed_twice_and_bills_a_customer(tmp_path):
    from poe.merkle.hasher import leaf
    from poe.protocol.deal import Deal
    from poe.protocol.request import request_of

    r = _poe("demo", "--segments", "10", "--epsilon", "0.05", "--seed", "3", "--no-stateful", "--json", "--keep", str(tmp_path))
    assert r.exit_code == 0, r.stderr
    data = json.loads(r.stdout)
    part = data["customers"]
    honest, cheat = part["providers"]["honest"], part["providers"]["cheating"]
    assert honest["verdict"] == "ACCEPT" and "covers work no customer signed" in part["guarantee"]
    assert cheat["verdict"] == "REJECT" and cheat["billed_twice"] == part["billed_twice"] > 0
    assert cheat["segments"] == honest["segments"] + cheat["billed_twice"]
    assert cheat["problem_count"] > 0 and cheat["problems"]
    assert all("(customer, sequence) order" in p for p in cheat["problems"])
    assert {row["verdict"]: row["status"] for row in part["payouts"]["payouts"]} == {"ACCEPT": "paid", "REJECT": "penalised"}
    assert not part["bills"]["cheating"]["checks"] and "billed twice" in part["bills"]["cheating"]["error"]
    # The customer's bill, recomputed from the honest provider's store: every segment whose
    # request that customer signed, priced by the deal the provider claimed under.
    bill = part["bills"]["honest"]
    assert bill["checks"] and bill["customer"] in part["customers"]
    deal = Deal.from_json(json.loads((tmp_path / "customers-honest-claim.json").read_text())["deal"])
    assert deal.window == 1 and not deal.anonymous
    customer = bytes.fromhex(bill["customer"][2:])
    with TraceStore.open(str(tmp_path / "customers-honest.poe")) as store:
        segments = [store.segment(i)[:2] for i in range(store.count())]
    mine = [record for record, inv in segments if request_of(inv).request.customer == customer]
    assert len(mine) == bill["segments"] == part["requests"] // len(part["customers"])
    assert bill["amount"] == sum(deal.weight(leaf(record.encode()).sums) for record in mine) > 0
    assert honest["claimed"] == sum(deal.weight(leaf(record.encode()).sums) for record, _ in segments) + deal.subscription


def test_demo_without_the_customers_part():
    r = _poe("demo", "--segments", "10", "--epsilon", "0.3", "--seed", "2", "--no-customers", "--no-stateful", "--json")
    assert r.exit_code == 0, r.stderr
    assert "customers" not in json.loads(r.stdout)


def test_entry_point_runs_as_a_module():
    r = subprocess.run([sys.executable, "-m", "poe", "--help"], capture_output=True, text=True)
    assert r.returncode == 0
    assert all(cmd in r.stdout for cmd in ("run", "inspect", "demo"))


def test_arguments_that_are_not_utf8_reach_the_guest_as_bytes(store_path):
    r = CliRunner().invoke(main, ["run", f"{M}/entropy_clock.wasm", "--arg", "\udcff\udcfe", "--store", store_path, "--json"])
    assert r.exit_code == 0, r.stderr
    store = TraceStore.open(store_path)
    try:
        _, inv, out = store.segment(0)
        assert inv.argv[1] == b"\xff\xfe" and b"argv[1]: \xff\xfe" in out.stdout.data
    finally:
        store.close()


def test_file_name_that_is_not_utf8_is_refused_clearly(store_path):
    r = _poe("run", f"{M}/wordfreq.wasm", "--file", f"\udcff={M}/data/words.txt", "--store", store_path)
    assert r.exit_code == 3 and "UTF-8" in r.stderr


def test_a_name_cannot_be_both_a_file_and_a_directory(store_path):
    r = _poe("run", f"{M}/wordfreq.wasm", "--file", f"a={M}/data/words.txt", "--file", f"a/b={M}/data/words.txt", "--store", store_path)
    assert r.exit_code == 3 and "both a file and the directory" in r.stderr


def test_bundled_demo_modules_are_the_ones_built_from_the_sources():
    from poe.demo import demo_module, step_module

    assert demo_module() == (ROOT / "vectors" / "modules" / "csv_agg.wasm").read_bytes()
    assert step_module() == (ROOT / "vectors" / "modules" / "step_sort.wasm").read_bytes()

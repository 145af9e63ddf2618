"""Regressions for the holes found in the trace store and its commands, each named after the attack."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from click.testing import CliRunner

from poe import CostModel, Executor, Invocation, Limits, Service, TraceStore, Value
from poe.cli import main
from poe.errors import InputError, StoreError

from .conftest import MODULES, ROOT, module_bytes

CM = CostModel.current(Limits(fuel=10_000_000, memory_pages=64))
SERVICE = Service(module_bytes("funcs.wasm"), name="funcs.wasm")
M = str(MODULES)


def _poe(*args: str):
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def _fill(path: str, n: int, start: int = 0) -> None:
    ex = Executor(SERVICE, CM)
    with TraceStore.create_or_open(path, CM) as store:
        store.register_service(SERVICE)
        for i in range(start, start + n):
            store.append(ex.run(Invocation.build("add", params=[Value.of("i32", i), Value.of("i32", 1)]), store.next_index))


def _seal(path: str):
    with TraceStore.open(path, seal=True) as store:
        return store.seal()


# -- a. a file that is not a poe store is never written ------------------------------------------


def _other_program_database(path: Path, *, wal: bool = False, app_id: int = 0) -> None:
    db = sqlite3.connect(path)
    if wal:
        db.execute("PRAGMA journal_mode=WAL")
    if app_id:
        db.execute(f"PRAGMA application_id = {app_id}")
    db.execute("CREATE TABLE accounts(name TEXT, balance INTEGER)")
    db.execute("INSERT INTO accounts VALUES ('alice', 10)")
    db.commit()
    db.close()


def _empty_database(path: Path) -> None:
    db = sqlite3.connect(path)
    db.execute("PRAGMA user_version = 1")  # a header page, no tables
    db.close()


FOREIGN = {
    "other.sqlite": lambda p: _other_program_database(p),
    "other-wal.sqlite": lambda p: _other_program_database(p, wal=True),
    "other-app.sqlite": lambda p: _other_program_database(p, app_id=0x12345678),
    "empty-file": lambda p: p.write_bytes(b""),
    "empty-sqlite": lambda p: _empty_database(p),
    "text.txt": lambda p: p.write_bytes(b"not a database\n" * 20),
}


@pytest.fixture(params=sorted(FOREIGN))
def foreign(request, tmp_path) -> Path:
    path = tmp_path / request.param
    FOREIGN[request.param](path)
    return path


def _left_alone(path: Path, before: bytes) -> None:
    assert path.read_bytes() == before
    assert sorted(p.name for p in path.parent.iterdir()) == [path.name]  # no -wal, -shm, -journal or .lock


def test_opening_another_programs_file_as_a_store_leaves_it_byte_for_byte_untouched(foreign):
    before = foreign.read_bytes()
    for opener in (lambda: TraceStore.open(str(foreign)), lambda: TraceStore.open(str(foreign), seal=True),
                   lambda: TraceStore.create_or_open(str(foreign), CM), lambda: TraceStore.open_writer(str(foreign))):
        with pytest.raises(StoreError, match="not a poe store"):
            opener()
        _left_alone(foreign, before)


@pytest.mark.parametrize("command", [
    ["seal"], ["inspect"], ["inspect", "--check"], ["prove", "--index", "0"], ["prove", "--consistency", "0"], ["gc", "--epoch", "0"],
])
def test_store_commands_on_another_programs_file_exit_3_and_leave_it_untouched(foreign, command):
    before = foreign.read_bytes()
    r = _poe(command[0], str(foreign), *command[1:])
    assert r.exit_code == 3, r.output
    assert "not a poe store" in r.stderr
    _left_alone(foreign, before)


@pytest.mark.parametrize("limits", [[], ["--fuel", "1000000"]])
def test_run_with_a_store_that_is_another_programs_file_exits_3_and_leaves_it_untouched(foreign, limits):
    before = foreign.read_bytes()
    r = _poe("run", f"{M}/funcs.wasm", "--invoke", "noop", "--store", str(foreign), *limits)
    assert r.exit_code == 3, r.output
    assert "not a poe store" in r.stderr
    _left_alone(foreign, before)


def test_attest_onto_another_programs_file_exits_3_and_leaves_it_untouched(tmp_path):
    other = tmp_path / "db" / "other.sqlite"
    other.parent.mkdir()
    _other_program_database(other)
    before = other.read_bytes()
    key = tmp_path / "k.key"
    assert _poe("keygen", "--scheme", "secp256k1", "--out", str(key)).exit_code == 0
    r = _poe("attest", str(other), "--key", str(key), "--deal", "deal-1")
    assert r.exit_code == 3 and "not a poe store" in r.stderr
    _left_alone(other, before)


def test_a_new_store_appears_whole_under_its_name_with_nothing_left_beside_it(tmp_path):
    path = tmp_path / "new.poe"
    _fill(str(path), 2)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["new.poe", "new.poe.lock"]
    with TraceStore.open(str(path)) as store:
        assert store.count() == 2 and store.check_integrity() == []
    assert path.stat().st_mode & 0o777 == 0o644 & ~_umask()  # as SQLite itself creates files


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_a_store_whose_first_transaction_is_still_in_its_write_ahead_log_opens(tmp_path):
    """A live store made by an earlier poe: the file's own header does not name it yet."""
    path = tmp_path / "live.poe"
    _fill(str(path), 3)
    writer = textwrap.dedent(
        """
        import shutil, sqlite3, sys
        db = sqlite3.connect(sys.argv[1], isolation_level=None)
        db.execute("PRAGMA wal_autocheckpoint=0")
        db.execute("PRAGMA application_id = 0")  # a header as it is before the first checkpoint
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        db.execute("PRAGMA application_id = 1886348593")  # the store's own, still only in the log
        shutil.copy(sys.argv[1], sys.argv[2])
        shutil.copy(sys.argv[1] + "-wal", sys.argv[2] + "-wal")
        """
    )
    copy = tmp_path / "copy.poe"
    subprocess.run([sys.executable, "-c", writer, str(path), str(copy)], check=True, cwd=ROOT)
    assert int.from_bytes(copy.read_bytes()[68:72], "big") == 0
    with TraceStore.open(str(copy)) as store:
        assert store.count() == 3


# -- b. two sealers never make an empty epoch -----------------------------------------------------


def _statuses(path: str) -> list[tuple[int, str, int]]:
    with TraceStore.open(path) as store:
        return [(e["epoch"], e["status"], e["segments"]) for e in store.epochs()]


def test_second_seal_with_nothing_new_reports_the_head_instead_of_sealing_an_empty_epoch(store_path):
    _fill(store_path, 5)
    first, second = TraceStore.open(store_path, seal=True), TraceStore.open(store_path, seal=True)
    try:
        a = first.seal()
        b = second.seal()
        assert (a.epoch, a.already) == (0, False)
        assert (b.epoch, b.already, b.root) == (0, True, a.root)
        assert first.seal() == b
    finally:
        first.close()
        second.close()
    assert _statuses(store_path) == [(0, "sealed", 5), (1, "open", 0)]
    _fill(store_path, 2, start=5)
    c = _seal(store_path)
    assert (c.epoch, c.first_index, c.end_index, c.already) == (1, 5, 7, False)


def test_seal_racing_another_sealers_unfinished_seal_completes_the_same_epoch(store_path):
    _fill(store_path, 4)
    slow, fast = TraceStore.open(store_path, seal=True), TraceStore.open(store_path, seal=True)
    try:
        assert slow._close(0) == 0  # the slow sealer has closed epoch 0 but not stored its head yet
        b = fast.seal()  # sees an empty open epoch 1: finishes epoch 0 instead of closing epoch 1
        a = slow.seal(0)
        assert (b.epoch, b.already) == (0, False)
        assert (a.epoch, a.already, a.root) == (0, True, b.root)
    finally:
        slow.close()
        fast.close()
    assert _statuses(store_path) == [(0, "sealed", 4), (1, "open", 0)]


def test_concurrent_poe_seal_processes_seal_exactly_one_epoch(store_path):
    _fill(store_path, 6)
    procs = [subprocess.Popen([sys.executable, "-m", "poe", "seal", store_path, "--json"], cwd=ROOT,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(4)]
    results = []
    for p in procs:
        out, err = p.communicate(timeout=120)
        assert p.returncode == 0, err
        results.append(json.loads(out))
    assert {r["epoch"] for r in results} == {0}
    assert sorted(r["already_sealed"] for r in results) == [False, True, True, True]
    assert _statuses(store_path) == [(0, "sealed", 6), (1, "open", 0)]


def test_attesting_again_with_nothing_new_signs_the_same_epoch_not_a_new_empty_one(store_path, tmp_path):
    _fill(store_path, 3)
    key = tmp_path / "k.key"
    assert _poe("keygen", "--scheme", "secp256k1", "--out", str(key)).exit_code == 0
    epochs = []
    for name in ("a.json", "b.json"):
        r = _poe("attest", store_path, "--key", str(key), "--deal", "deal-sub", "--out", str(tmp_path / name))
        assert r.exit_code == 0, r.output
        epochs.append(json.loads((tmp_path / name).read_text()))
    from poe.protocol.attestation import Envelope

    statements = [Envelope.loads(json.dumps(e)).statement for e in epochs]
    assert [(s.epoch, s.first_index, s.end_index) for s in statements] == [(0, 0, 3), (0, 0, 3)]
    assert _statuses(store_path) == [(0, "sealed", 3), (1, "open", 0)]


def test_sealing_a_named_open_epoch_that_has_no_segments_is_refused(store_path):
    _fill(store_path, 2)
    _seal(store_path)
    with TraceStore.open(store_path, seal=True) as store:
        with pytest.raises(StoreError, match="epoch 1 has no segments yet"):
            store.seal(1)
    r = _poe("seal", store_path, "--epoch", "1")
    assert r.exit_code == 3 and "epoch 1 has no segments yet" in r.stderr
    assert _statuses(store_path) == [(0, "sealed", 2), (1, "open", 0)]


def test_a_fresh_store_still_seals_its_first_epoch_once(store_path):
    TraceStore.create_or_open(store_path, CM).close()
    first = _seal(store_path)
    again = _seal(store_path)
    assert (first.epoch, first.end_index, first.already) == (0, 0, False)
    assert (again.epoch, again.already) == (0, True)
    assert _statuses(store_path) == [(0, "sealed", 0), (1, "open", 0)]


# -- c, f. epochs and segments that do not exist are the caller's mistake ----------------------------

HUGE = 10**30


def test_inspect_of_an_epoch_that_does_not_exist_exits_3_naming_it(store_path):
    _fill(store_path, 3)
    r = _poe("inspect", store_path, "--epoch", "99")
    assert r.exit_code == 3, r.output
    assert "[input.invalid]" in r.stderr and "no epoch 99" in r.stderr
    r = _poe("inspect", store_path, "--epoch", "99", "--json")
    assert json.loads(r.stdout)["error"]["code"] == "input.invalid"
    with TraceStore.open(store_path) as store:
        with pytest.raises(InputError, match="no epoch 99 .its epochs are 0..0."):
            store.summary(99)
        assert store.summary(0)[0].segments == 3


@pytest.mark.parametrize("number", [str(HUGE), str(2**63), str(2**64 - 1)])
def test_inspect_of_a_segment_number_beyond_sqlites_integers_exits_3(store_path, number):
    _fill(store_path, 1)
    for args in (["--segment", number], ["--epoch", number]):
        r = _poe("inspect", store_path, *args)
        assert r.exit_code == 3, r.output
        assert "[input.invalid]" in r.stderr and number in r.stderr


def test_every_lookup_by_a_number_beyond_sqlites_integers_is_an_input_error(store_path):
    _fill(store_path, 2)
    _seal(store_path)
    with TraceStore.open(store_path, seal=True) as store:
        for call in (lambda: store.record(HUGE), lambda: store.segment(HUGE), lambda: store.epoch_info(HUGE),
                     lambda: store.inclusion_proof(HUGE), lambda: store.inclusion_proof(0, HUGE), lambda: store.tree(HUGE),
                     lambda: store.state_after(HUGE), lambda: store.pre_state(HUGE), lambda: list(store.pre_states([HUGE])),
                     lambda: store.seal(HUGE), lambda: store.consistency_proof(0, HUGE), lambda: store.summary(HUGE),
                     lambda: list(store.records(HUGE)), lambda: store.module_digests(0, HUGE), lambda: store.record(-HUGE)):
            with pytest.raises(InputError):
                call()
    with TraceStore.open_writer(store_path) as store:
        with pytest.raises(InputError):
            store.collect(HUGE)


def test_a_missing_payload_is_a_store_error_not_a_key_error(store_path):
    _fill(store_path, 1)
    with TraceStore.open(store_path) as store:
        with pytest.raises(StoreError, match="missing payload"):
            store.blob(bytes(32))


# -- d. consistency proofs of epochs that are not there ------------------------------------------


def test_prove_consistency_with_no_sealed_epoch_exits_3(store_path):
    _fill(store_path, 2)
    r = _poe("prove", store_path, "--consistency", "0")
    assert r.exit_code == 3, r.output
    assert "no sealed epoch" in r.stderr and "internal" not in r.stderr


@pytest.mark.parametrize("args, message", [
    (["--consistency", "7"], "no epoch 7"),
    (["--consistency", "0", "--epoch", "7"], "no epoch 7"),
    (["--consistency", str(HUGE)], str(HUGE)),
    (["--index", "0", "--epoch", "7"], "no epoch 7"),
    (["--index", str(HUGE)], str(HUGE)),
])
def test_prove_against_an_epoch_or_segment_that_does_not_exist_exits_3(store_path, args, message):
    _fill(store_path, 2)
    _seal(store_path)
    r = _poe("prove", store_path, *args)
    assert r.exit_code == 3, r.output
    assert message in r.stderr and "internal" not in r.stderr


# -- e. files the store commands write never replace an existing one -------------------------------


def test_prove_out_refuses_to_overwrite_an_existing_file(store_path, tmp_path):
    _fill(store_path, 3)
    _seal(store_path)
    precious = tmp_path / "precious.json"
    precious.write_text("keep me\n")
    r = _poe("prove", store_path, "--index", "1", "--out", str(precious))
    assert r.exit_code == 3 and "already exists" in r.stderr
    assert precious.read_text() == "keep me\n"
    fresh = tmp_path / "fresh.json"
    r = _poe("prove", store_path, "--index", "1", "--out", str(fresh))
    assert r.exit_code == 0 and "wrote inclusion proof" in r.stderr
    assert _poe("verify-proof", str(fresh)).exit_code == 0


def test_inspect_dump_memory_refuses_to_overwrite_an_existing_file(tmp_path):
    store = str(tmp_path / "d.poe")
    wasm = tmp_path / "counter.wasm"
    wasm.write_bytes(module_bytes("counter.wasm"))
    assert _poe("run", str(wasm), "--stateful", "--steps", "2", "--store", store).exit_code == 0
    precious = tmp_path / "mem.bin"
    precious.write_bytes(b"keep me")
    r = _poe("inspect", store, "--segment", "1", "--dump-memory", str(precious))
    assert r.exit_code == 3 and "already exists" in r.stderr
    assert precious.read_bytes() == b"keep me"
    r = _poe("inspect", store, "--segment", "1", "--dump-memory", str(tmp_path / "new.bin"), "--json")
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["dumped"]["bytes"] == (tmp_path / "new.bin").stat().st_size


def test_gc_of_an_epoch_that_does_not_exist_exits_3(store_path):
    _fill(store_path, 1)
    _seal(store_path)
    r = _poe("gc", store_path, "--epoch", "5")
    assert r.exit_code == 3 and "no epoch 5" in r.stderr

"""The trace store: nothing committed is lost, nothing half-written is ever seen."""

from __future__ import annotations

import contextlib
import os
import random
import shutil
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time

import pytest

from poe import CostModel, Executor, Invocation, Limits, Service, TraceStore, Value
from poe.errors import CostModelMismatchError, StoreError, StoreLockedError, StoreVersionError

from .conftest import MODULES, module_bytes

CM = CostModel.current(Limits(fuel=10_000_000, memory_pages=64))


def _fill(path: str, n: int, *, batch: int = 1024) -> list[bytes]:
    service = Service(module_bytes("funcs.wasm"), name="funcs.wasm")
    ex = Executor(service, CM)
    records = []
    with TraceStore.create_or_open(path, CM) as store:
        store.batch_size = batch
        store.register_service(service)
        for i in range(n):
            e = ex.run(Invocation.build("add", params=[Value.of("i32", i), Value.of("i32", 1)]), store.next_index)
            store.append(e)
            records.append(e.record_bytes)
    return records


def test_appended_segments_read_back_identically(store_path):
    written = _fill(store_path, 50, batch=7)
    store = TraceStore.open(store_path)
    try:
        assert store.count() == 50
        assert [r.encode() for r in store.records()] == written
        record, inv, out = store.segment(10)
        assert inv.digest == record.input_digest and out.digest == record.output_digest
        assert out.results[0].python == 11
        assert store.check_integrity() == []
        service = store.service(record.module_digest)
        assert service.main == module_bytes("funcs.wasm")
    finally:
        store.close()


def test_reopening_continues_the_log(store_path):
    _fill(store_path, 5)
    _fill(store_path, 5)
    store = TraceStore.open(store_path)
    try:
        assert [r.index for r in store.records()] == list(range(10))
    finally:
        store.close()


def test_segment_out_of_order_is_refused(store_path):
    service = Service(module_bytes("funcs.wasm"))
    e = Executor(service, CM).run(Invocation.build("noop"), 3)
    with TraceStore.create_or_open(store_path, CM) as store:
        store.register_service(service)
        with pytest.raises(StoreError, match="does not follow"):
            store.append(e)


def test_second_writer_gets_a_clear_error_while_the_first_keeps_writing(store_path):
    first = TraceStore.create_or_open(store_path, CM)
    try:
        with pytest.raises(StoreLockedError, match="another process"):
            TraceStore.create_or_open(store_path, CM)
        reader = TraceStore.open(store_path)  # reading while a run writes is fine
        reader.close()
    finally:
        first.close()
    TraceStore.create_or_open(store_path, CM).close()  # the lock is released on close


def test_store_made_under_another_cost_model_is_refused(store_path):
    _fill(store_path, 1)
    other = CostModel.current(Limits(fuel=10_000_001, memory_pages=64))
    with pytest.raises(CostModelMismatchError):
        TraceStore.create_or_open(store_path, other)


def test_store_path_that_is_a_directory_is_refused(tmp_path):
    with pytest.raises(StoreError, match="directory"):
        TraceStore.create_or_open(str(tmp_path), CM)


@contextlib.contextmanager
def _read_only(path: str):
    """Make `path` unwritable even for root (CI runs as root): chattr +i, or chmod as a user."""
    if os.geteuid() == 0:
        if not shutil.which("chattr") or subprocess.run(["chattr", "+i", path], capture_output=True).returncode:
            pytest.skip("cannot make a file read-only for root here (no chattr or unsupported filesystem)")
        try:
            yield
        finally:
            subprocess.run(["chattr", "-i", path], check=True)
    else:
        mode = os.stat(path).st_mode
        os.chmod(path, 0o555 if os.path.isdir(path) else 0o444)
        try:
            yield
        finally:
            os.chmod(path, mode)


def test_read_only_store_is_refused_for_writing_and_left_intact(store_path):
    written = _fill(store_path, 3)
    with _read_only(store_path):
        with pytest.raises(StoreError, match="read-only|cannot"):
            _fill(store_path, 1)
    store = TraceStore.open(store_path)
    try:
        assert [r.encode() for r in store.records()] == written
    finally:
        store.close()


def test_new_store_in_a_read_only_directory_is_refused(tmp_path):
    ro = tmp_path / "ro"
    ro.mkdir()
    with _read_only(str(ro)):
        with pytest.raises(StoreError):
            _fill(str(ro / "t.poe"), 1)


def test_store_of_a_newer_format_is_refused(store_path):
    _fill(store_path, 1)
    db = sqlite3.connect(store_path)
    db.execute("PRAGMA user_version = 99")
    db.commit()
    db.close()
    with pytest.raises(StoreVersionError, match="newer"):
        TraceStore.open(store_path)
    with pytest.raises(StoreVersionError):
        TraceStore.create_or_open(store_path, CM)


def test_a_file_that_is_not_a_store_is_refused(tmp_path):
    junk = tmp_path / "junk.poe"
    junk.write_bytes(b"this is not sqlite at all" * 100)
    with pytest.raises(StoreError, match="not a poe store"):
        TraceStore.open(str(junk))
    other = tmp_path / "other.sqlite"
    db = sqlite3.connect(other)
    db.execute("CREATE TABLE t(x)")
    db.commit()
    db.close()
    with pytest.raises(StoreError, match="not a poe store"):
        TraceStore.create_or_open(str(other), CM)


def test_missing_store_is_refused_for_reading(tmp_path):
    with pytest.raises(StoreError, match="no store"):
        TraceStore.open(str(tmp_path / "absent.poe"))


def test_kill_9_mid_run_loses_no_committed_segment_and_never_corrupts(store_path):
    writer = textwrap.dedent(
        f"""
        import sys
        from poe import *
        cm = CostModel.current(Limits(fuel=10_000_000, memory_pages=64))
        service = Service(open({str(MODULES / 'funcs.wasm')!r}, 'rb').read())
        ex = Executor(service, cm)
        with TraceStore.create_or_open(sys.argv[1], cm) as store:
            store.batch_size = 200
            store.register_service(service)
            i = 0
            while True:
                store.append(ex.run(Invocation.build('add', params=[Value.of('i32', i), Value.of('i32', 1)]), store.next_index))
                if store.next_index % 200 == 0:
                    print(store.next_index, flush=True)  # a batch boundary was just committed
                i += 1
        """
    )
    proc = subprocess.Popen([sys.executable, "-c", writer, store_path], stdout=subprocess.PIPE, text=True)
    committed = 0
    deadline = time.monotonic() + 60
    while committed < 2000 and time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        committed = int(line)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert committed >= 2000, "writer did not get far enough"

    store = TraceStore.open(store_path)
    try:
        assert store.check_integrity() == []
        n = store.count()
        assert n >= committed
        assert n % 200 == 0  # whole batches only: a half-written batch was discarded
    finally:
        store.close()
    # The store keeps working: a new run appends right after the last committed segment.
    _fill(store_path, 3)
    store = TraceStore.open(store_path)
    try:
        assert store.count() == n + 3 and store.check_integrity() == []
    finally:
        store.close()


# -- hardening ------------------------------------------------------------------------------------


def test_a_full_disk_is_a_store_error_and_releases_the_lock(store_path):
    _fill(store_path, 2)
    store = TraceStore.create_or_open(store_path, CM)
    (pages,) = store._db.execute("PRAGMA page_count").fetchone()
    store._db.execute(f"PRAGMA max_page_count = {pages + 1}")  # what a full disk looks like to SQLite
    store.batch_size = 10_000
    service = Service(module_bytes("funcs.wasm"), name="funcs.wasm")
    store.register_service(service)
    ex = Executor(service, CM)
    big = Invocation.build("noop", argv=["x" * 60_000])  # payloads that cannot fit
    for _ in range(3):
        store.append(ex.run(big.with_seed(os.urandom(32)), store.next_index))
    with pytest.raises(StoreError, match="full|cannot write"):
        store.close()
    TraceStore.create_or_open(store_path, CM).close()  # not left locked
    assert len(_records(store_path)) == 2


def _records(path):
    s = TraceStore.open(path)
    try:
        return [r.encode() for r in s.records()]
    finally:
        s.close()


@pytest.mark.parametrize("name", ["h#1.poe", "q?mode=rw.poe", "pct%41.poe"])
def test_store_names_with_uri_characters_round_trip(tmp_path, name):
    path = str(tmp_path / name)
    written = _fill(path, 3)
    assert _records(path) == written
    assert sorted(p.name for p in tmp_path.iterdir() if not p.name.startswith(name)) == []


@pytest.mark.parametrize("name", ["", ":memory:", "file:x.poe"])
def test_names_sqlite_would_not_keep_on_disk_are_refused(name):
    with pytest.raises(StoreError, match="not a store file name"):
        TraceStore.create_or_open(name, CM)


def test_two_names_of_one_store_share_one_writer_lock(store_path, tmp_path):
    _fill(store_path, 1)
    link = tmp_path / "alias.poe"
    link.symlink_to(store_path)
    first = TraceStore.create_or_open(store_path, CM)
    try:
        with pytest.raises(StoreLockedError):
            TraceStore.create_or_open(str(link), CM)
    finally:
        first.close()


def test_a_corrupted_store_file_is_a_store_error_not_a_crash(store_path):
    _fill(store_path, 300)
    size = os.path.getsize(store_path)
    with open(store_path, "r+b") as f:  # scribble over the middle of the database
        f.seek(size // 2)
        f.write(random.Random(0).randbytes(min(8192, size // 4)))
    store = None
    try:
        store = TraceStore.open(store_path)
        list(store.records())
        problems = store.check_integrity()
        assert problems  # if it opened at all, the check must see the damage
    except StoreError:
        pass
    finally:
        if store is not None:
            store.close()


@pytest.mark.parametrize("value", ["[]", '"text"', "{}", '{"format": "poe cost model v1"}'])
def test_store_with_a_malformed_cost_model_is_a_store_error(store_path, value):
    _fill(store_path, 1)
    db = sqlite3.connect(store_path)
    db.execute("UPDATE meta SET value = ? WHERE key = 'cost_model'", (value,))
    db.commit()
    db.close()
    with pytest.raises(StoreError, match="malformed cost model"):
        TraceStore.open(store_path)


def _as_older_format(store_path: str, version: int, tables: tuple[str, ...]) -> None:
    """What an older poe wrote: the tables of later formats dropped, the format number set back."""
    db = sqlite3.connect(store_path)
    for table in tables:
        db.execute(f"DROP TABLE {table}")
    db.execute("UPDATE meta SET value = ? WHERE key = 'format'", (str(version),))
    db.execute(f"PRAGMA user_version = {version}")
    db.commit()
    db.close()


@pytest.mark.parametrize("version, tables", [(1, ("chunks", "states", "snapshots", "requests")), (2, ("requests",))])
def test_an_older_store_is_read_as_is_and_upgraded_when_opened_for_writing(store_path, version, tables):
    written = _fill(store_path, 3)
    _as_older_format(store_path, version, tables)
    with TraceStore.open(store_path) as store:
        assert [r.encode() for r in store.records()] == written
        assert store.state_usage()["bytes"] == 0 and store.last_state() is None
    _fill(store_path, 1)
    db = sqlite3.connect(store_path)
    assert db.execute("PRAGMA user_version").fetchone()[0] == 3
    assert db.execute("SELECT value FROM meta WHERE key = 'format'").fetchone()[0] == "3"
    assert db.execute("SELECT COUNT(*) FROM sqlite_master WHERE name IN ('chunks', 'states', 'snapshots', 'requests')").fetchone()[0] == 4
    db.close()
    assert len(_records(store_path)) == 4

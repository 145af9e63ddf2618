"""The trace store: nothing committed is lost, nothing half-written is ever seen."""

from __future__ import annotations

import contextlib
import os
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

"""The store file: what may be opened, how, by whom; its schema, format version and upgrade."""

from __future__ import annotations

import errno
import fcntl
import json
import os
import sqlite3
import time
from pathlib import Path

from poe.errors import CostModelMismatchError, LimitError, StoreError, StoreLockedError, StoreVersionError
from poe.formats.costmodel import CostModel

STORE_FORMAT = 2  # 2: stateful segments (chunks, states, snapshots); a format-1 store is upgraded on open for writing
_APPLICATION_ID = 0x706F6531  # "poe1": marks a SQLite file as a poe store

_SCHEMA = """
CREATE TABLE meta(key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE modules(digest BLOB PRIMARY KEY, wasm BLOB NOT NULL);
CREATE TABLE services(
    digest BLOB PRIMARY KEY,
    main BLOB NOT NULL REFERENCES modules(digest),
    links TEXT NOT NULL,
    name TEXT NOT NULL
);
CREATE TABLE blobs(digest BLOB PRIMARY KEY, data BLOB NOT NULL);
CREATE TABLE epochs(
    epoch INTEGER PRIMARY KEY,
    first_index INTEGER NOT NULL,
    end_index INTEGER,
    status TEXT NOT NULL CHECK (status IN ('open', 'closed', 'sealed')),
    root BLOB,
    frontier BLOB,
    sealed_at TEXT
);
CREATE TABLE segments(
    idx INTEGER PRIMARY KEY,
    epoch INTEGER NOT NULL REFERENCES epochs(epoch),
    record BLOB NOT NULL,
    invocation BLOB NOT NULL,
    output BLOB NOT NULL
);
CREATE INDEX segments_by_epoch ON segments(epoch, idx);
"""

# Stateful segments (spec §13). A state's memory is kept as 1 KiB chunks addressed by their
# plain BLAKE3 hash and shared by every state that holds them; each stateful segment stores
# its post-state header and the chunks it changed (a delta against its pre-state); full
# manifests (every chunk's digest in order) are kept for genesis states and as checkpoints,
# so rebuilding any state reads at most about one manifest's worth of deltas.
_STATE_SCHEMA = """
CREATE TABLE IF NOT EXISTS chunks(digest BLOB PRIMARY KEY, data BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS states(idx INTEGER PRIMARY KEY, header BLOB NOT NULL, delta BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS snapshots(
    root BLOB PRIMARY KEY, header BLOB NOT NULL, manifest BLOB NOT NULL,
    start INTEGER NOT NULL DEFAULT 0  -- 1: a lineage may start here (genesis), 0: a checkpoint
)
"""


class Connection:
    """The open file: its SQLite connection, the writer lock if held, and the cost model."""

    def __init__(self, path: str, conn: sqlite3.Connection, lock_fd: int | None, cost_model: CostModel) -> None:
        self.path = path
        self._db = conn
        self._lock_fd = lock_fd
        self.cost_model = cost_model

    @classmethod
    def open(cls, path: str, *, seal: bool = False):
        """Open an existing store to read it, or with `seal=True` also to seal epochs.

        Neither takes the writer lock: a run may keep appending meanwhile. SQLite serialises
        the sealer's short transactions with the writer's batches.
        """
        check_path(path, must_exist=True)
        conn = connect(path, readonly=not seal)
        return cls(path, conn, None, read_cost_model(conn, path))

    @classmethod
    def create_or_open(cls, path: str, cost_model: CostModel):
        """Open for writing, creating the store if needed. Refuses another cost model."""
        check_path(path, must_exist=False)
        lock_fd = take_lock(path)
        try:
            conn = connect(path, readonly=False)
            try:
                init_schema(conn, path, cost_model)
                stored = read_cost_model(conn, path)
            except BaseException:
                conn.close()
                raise
            if stored.digest != cost_model.digest:
                conn.close()
                raise CostModelMismatchError(
                    f"store {path} was made under cost model {stored.name}, this run uses {cost_model.name}; "
                    "use another store or the same limits and engine",
                    expected=stored.digest.hex(),
                    observed=cost_model.digest.hex(),
                )
            return cls(path, conn, lock_fd, stored)
        except BaseException:
            os.close(lock_fd)
            raise

    def close(self) -> None:
        try:
            if self._lock_fd is not None:
                self.flush()
        finally:
            self._db.close()
            if self._lock_fd is not None:
                os.close(self._lock_fd)
                self._lock_fd = None

    def flush(self) -> None:  # the segment log's: what a writer must write before closing
        raise NotImplementedError

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        # On an exception the batch in flight is still written: those segments did run.
        self.close()

    def _read(self, sql: str, args: tuple = ()) -> Rows:
        return Rows(self._db, sql, args, self.path)

    def _require_writer(self) -> None:
        if self._lock_fd is None:
            raise StoreError("store was opened read-only")

    def _transaction(self) -> Transaction:
        return Transaction(self._db, self.path)


class Rows:
    """Query results whose fetching, too, turns SQLite errors (a corrupt file) into StoreError."""

    def __init__(self, db: sqlite3.Connection, sql: str, args: tuple, path: str) -> None:
        self.path = path
        try:
            self.cursor = db.execute(sql, args)
        except sqlite3.Error as exc:
            raise StoreError(f"cannot read store {path}: {exc}") from None

    def fetchone(self):
        try:
            return self.cursor.fetchone()
        except sqlite3.Error as exc:
            raise StoreError(f"cannot read store {self.path}: {exc}") from None

    def __iter__(self):
        while True:
            try:
                rows = self.cursor.fetchmany(256)
            except sqlite3.Error as exc:
                raise StoreError(f"cannot read store {self.path}: {exc}") from None
            if not rows:
                return
            yield from rows


class Transaction:
    def __init__(self, db: sqlite3.Connection, path: str) -> None:
        self.db, self.path = db, path

    def __enter__(self) -> None:
        try:
            self.db.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as exc:
            raise StoreError(f"cannot write store {self.path}: {exc}") from None

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            try:
                self.db.execute("COMMIT")
                return
            except sqlite3.Error as err:
                self._rollback()
                raise StoreError(f"cannot write store {self.path}: {err}") from None
        self._rollback()
        if isinstance(exc, sqlite3.Error):
            raise StoreError(f"cannot write store {self.path}: {exc}") from None

    def _rollback(self) -> None:
        # SQLite may already have rolled back (a full disk does): only roll back what is open.
        if self.db.in_transaction:
            try:
                self.db.execute("ROLLBACK")
            except sqlite3.Error:
                pass


def as_bytes(value: object) -> bytes:
    """A BLOB column's value as bytes, even if someone stored it as TEXT."""
    if isinstance(value, str):
        return value.encode("utf-8", "surrogateescape")
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value)
    return repr(value).encode()


def _text(raw: bytes) -> str | bytes:
    """SQLite TEXT as str, or as bytes when it is not UTF-8 (a tampered blob column can be)."""
    try:
        return raw.decode()
    except UnicodeDecodeError:
        return raw


def check_path(path: str, *, must_exist: bool) -> None:
    if not path or path.startswith(":") or path.startswith("file:"):
        raise StoreError(f"{path!r} is not a store file name (SQLite would keep it in memory or read it as a URI)")
    if os.path.isdir(path):
        raise StoreError(f"store path {path} is a directory; give a file name such as {os.path.join(path, 'trace.poe')}")
    if must_exist and not os.path.exists(path):
        raise StoreError(f"no store at {path}")
    parent = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(parent):
        raise StoreError(f"cannot create store {path}: directory {parent} does not exist")


def take_lock(path: str) -> int:
    # Named from the resolved path, so two names of one store (a symlink) share one lock.
    lock_path = os.path.realpath(path) + ".lock"
    try:
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as exc:
        raise StoreError(f"cannot open store {path} for writing: {exc.strerror} ({lock_path})") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        os.close(fd)
        if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
            raise StoreLockedError(f"store {path} is being written by another process; wait for it or use another store") from None
        raise StoreError(f"cannot lock store {path}: {exc.strerror}") from None
    return fd


def connect(path: str, *, readonly: bool) -> sqlite3.Connection:
    try:
        real = Path(os.path.realpath(path))
        if readonly:  # as a URI, so '#', '?' and '%' in names are escaped, not parsed
            conn = sqlite3.connect(real.as_uri() + "?mode=ro", uri=True, isolation_level=None, check_same_thread=False)
        else:
            conn = sqlite3.connect(str(real), isolation_level=None, check_same_thread=False)
        conn.text_factory = _text
        (app_id,) = conn.execute("PRAGMA application_id").fetchone()
        if not readonly:
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=FULL")
        conn.execute("PRAGMA busy_timeout=5000")
    except sqlite3.DatabaseError as exc:
        raise StoreError(f"{path} is not a poe store ({exc})") from None
    if app_id not in (0, _APPLICATION_ID):
        conn.close()
        raise StoreError(f"{path} is a SQLite database, but not a poe store")
    return conn


def init_schema(conn: sqlite3.Connection, path: str, cost_model: CostModel) -> None:
    """Create the tables of a new store, or bring an older one to this poe's format (1 -> 2)."""
    try:
        (version,) = conn.execute("PRAGMA user_version").fetchone()
        (app_id,) = conn.execute("PRAGMA application_id").fetchone()
        if app_id == 0:
            tables = conn.execute("SELECT COUNT(*) FROM sqlite_master").fetchone()[0]
            if tables:
                raise StoreError(f"{path} is a SQLite database, but not a poe store")
            _write_schema(conn, cost_model)
            return
        check_version(version, path)
        if version < STORE_FORMAT:  # format 1 -> 2: add the state tables
            conn.execute("BEGIN IMMEDIATE")
            for stmt in _statements(_STATE_SCHEMA):
                conn.execute(stmt)
            conn.execute(f"PRAGMA user_version = {STORE_FORMAT}")
            conn.execute("UPDATE meta SET value = ? WHERE key = 'format'", (str(STORE_FORMAT),))
            conn.execute("COMMIT")
    except sqlite3.OperationalError as exc:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        if "readonly" in str(exc) or "read-only" in str(exc):
            raise StoreError(f"store {path} is read-only") from None
        raise StoreError(f"cannot initialise store {path}: {exc}") from None


def _write_schema(conn: sqlite3.Connection, cost_model: CostModel) -> None:
    conn.execute("BEGIN IMMEDIATE")
    for stmt in _statements(_SCHEMA + ";" + _STATE_SCHEMA):
        conn.execute(stmt)
    conn.execute("INSERT INTO meta VALUES ('format', ?)", (str(STORE_FORMAT),))
    conn.execute("INSERT INTO meta VALUES ('cost_model', ?)", (cost_model.canonical_bytes.decode(),))
    conn.execute("INSERT INTO meta VALUES ('created', ?)", (time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),))
    conn.execute("INSERT INTO epochs(epoch, first_index, status) VALUES (0, 0, 'open')")
    conn.execute(f"PRAGMA user_version = {STORE_FORMAT}")
    conn.execute(f"PRAGMA application_id = {_APPLICATION_ID}")
    conn.execute("COMMIT")


def _statements(script: str) -> list[str]:
    return [s for s in (s.strip() for s in script.split(";")) if s]


def check_version(version: int, path: str) -> None:
    if version > STORE_FORMAT:
        raise StoreVersionError(f"store {path} has format {version}, newer than this poe reads ({STORE_FORMAT}); upgrade poe")
    if version < 1:
        raise StoreError(f"store {path} is not initialised")


def read_cost_model(conn: sqlite3.Connection, path: str) -> CostModel:
    try:
        (version,) = conn.execute("PRAGMA user_version").fetchone()
        check_version(version, path)
        row = conn.execute("SELECT value FROM meta WHERE key = 'cost_model'").fetchone()
    except sqlite3.DatabaseError as exc:
        raise StoreError(f"{path} is not a readable poe store ({exc})") from None
    if row is None:
        raise StoreError(f"store {path} has no cost model")
    try:
        return CostModel.from_json(json.loads(row[0]))
    except (ValueError, TypeError, AttributeError, LimitError) as exc:
        raise StoreError(f"store {path} has a malformed cost model: {exc}") from None

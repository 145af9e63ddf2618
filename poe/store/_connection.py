"""The store file: what may be opened, how, by whom; its schema, format version and upgrade.

A file is checked to be a poe store before anything can write to it: SQLite writes on its own
(switching to WAL rewrites the header; opening a database with a hot journal rolls it back), so a
file that is not ours is refused after reading its first 100 bytes only. New stores are built
under a temporary name and linked into place whole, so a store file exists complete or not at
all, and an empty file or another program's database is never mistaken for a new store.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import secrets
import sqlite3
import time
from pathlib import Path
from typing import TypeVar

from poe.errors import CostModelMismatchError, InputError, LimitError, StoreError, StoreLockedError, StoreVersionError
from poe.formats.costmodel import CostModel

# 2: stateful segments (chunks, states, snapshots); 3: the customer requests segments answer.
# An older store is upgraded when it is opened for writing.
STORE_FORMAT = 3
_APPLICATION_ID = 0x706F6531  # "poe1": marks a SQLite file as a poe store
_SQLITE_MAGIC = b"SQLite format 3\x00"
_MAX_INTEGER = 2**63 - 1  # SQLite's INTEGER: a larger Python int cannot even be bound

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


# Customer requests (spec §14): which segment answers each (customer, sequence), so that a request
# is never run twice. The sequence is 8 big-endian bytes, so the key sorts as the bill tree does.
_REQUEST_SCHEMA = """
CREATE TABLE IF NOT EXISTS requests(
    customer BLOB NOT NULL, sequence BLOB NOT NULL, idx INTEGER NOT NULL, PRIMARY KEY (customer, sequence)
) WITHOUT ROWID
"""


_Store = TypeVar("_Store", bound="Connection")


class Connection:
    """The open file: its SQLite connection, the writer lock if held, and the cost model."""

    def __init__(self, path: str, conn: sqlite3.Connection, lock_fd: int | None, cost_model: CostModel) -> None:
        self.path = path
        self._db = conn
        self._lock_fd = lock_fd
        self.cost_model = cost_model

    @classmethod
    def open(cls: type[_Store], path: str, *, seal: bool = False) -> _Store:
        """Open an existing store to read it, or with `seal=True` also to seal epochs.

        Neither takes the writer lock: a run may keep appending meanwhile. SQLite serialises
        the sealer's short transactions with the writer's batches.
        """
        check_path(path, must_exist=True)
        require_store(path)
        conn = connect(path, readonly=not seal)
        try:
            cost_model = read_cost_model(conn, path)
        except BaseException:
            conn.close()
            raise
        return cls(path, conn, None, cost_model)

    @classmethod
    def create_or_open(cls: type[_Store], path: str, cost_model: CostModel) -> _Store:
        """Open for writing, creating the store if needed. Refuses another cost model."""
        return cls._open_writer(path, cost_model)

    @classmethod
    def open_writer(cls: type[_Store], path: str) -> _Store:
        """Open an existing store for writing under the cost model it was made with (maintenance: gc)."""
        return cls._open_writer(path, None)

    @classmethod
    def _open_writer(cls: type[_Store], path: str, cost_model: CostModel | None) -> _Store:
        check_path(path, must_exist=cost_model is None)
        # Checked before the lock too, so refusing a foreign file leaves no lock file beside it.
        exists = require_store(path)
        lock_fd = take_lock(path)
        try:
            # Another writer may have created the store between the check and the lock.
            if not exists and not require_store(path):
                if cost_model is None:
                    raise StoreError(f"no store at {path}")
                create(path, cost_model)
            conn = connect(path, readonly=False)
            try:
                stored = _writable_cost_model(conn, path, cost_model)
            except BaseException:
                conn.close()
                raise
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

    def flush(self) -> None:
        # Defined by the segment log; closing a writer must not drop the batch in flight.
        raise NotImplementedError

    def __enter__(self: _Store) -> _Store:
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


def _writable_cost_model(conn: sqlite3.Connection, path: str, wanted: CostModel | None) -> CostModel:
    upgrade(conn, path)
    stored = read_cost_model(conn, path)
    if wanted is not None and stored.digest != wanted.digest:
        raise CostModelMismatchError(
            f"store {path} was made under cost model {stored.name}, this run uses {wanted.name}; "
            "use another store or the same limits and engine",
            expected=stored.digest.hex(),
            observed=wanted.digest.hex(),
        )
    return stored


class Rows:
    """Query results whose fetching, too, turns SQLite errors (a corrupt file) into StoreError."""

    def __init__(self, db: sqlite3.Connection, sql: str, args: tuple, path: str) -> None:
        self.path = path
        try:
            self.cursor = db.execute(sql, args)
        except sqlite3.Error as exc:
            raise StoreError(f"cannot read store {path}: {exc}") from None
        except OverflowError:
            # Callers range-check what they are given; this catches one that did not.
            raise InputError(f"store {path} was asked for a number beyond SQLite's integers (at most {_MAX_INTEGER}); it holds none") from None

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


def check_number(value: int, what: str, path: str) -> None:
    """Refuse, as the caller's mistake, a segment or epoch number no store can hold."""
    if not 0 <= value <= _MAX_INTEGER:
        raise InputError(f"store {path} has no {what} {value}: {what}s are numbered from 0 to {_MAX_INTEGER}")


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


def require_store(path: str) -> bool:
    """False if nothing is at `path`; True if a poe store is; else StoreError, the file unread
    by SQLite and so unchanged."""
    try:
        with open(path, "rb") as f:
            header = f.read(100)
    except FileNotFoundError:
        return False
    except OSError as exc:
        raise StoreError(f"cannot read store {path}: {exc.strerror}") from None
    if not header:
        raise StoreError(f"{path} is an empty file, not a poe store; remove it or name a new file")
    if len(header) < 100 or not header.startswith(_SQLITE_MAGIC):
        raise StoreError(f"{path} is not a poe store (not a SQLite database)")
    app_id = int.from_bytes(header[68:72], "big")
    if app_id == _APPLICATION_ID:
        return True
    # A store made by an earlier poe may still have its first transaction in the write-ahead
    # log, the file's own header not yet updated: only then is SQLite asked (reading only).
    if app_id == 0 and header[18] == 2 and os.path.exists(os.path.realpath(path) + "-wal"):
        if _application_id(path) == _APPLICATION_ID:
            return True
    raise StoreError(f"{path} is a SQLite database, but not a poe store")


def _application_id(path: str) -> int:
    try:
        conn = sqlite3.connect(Path(os.path.realpath(path)).as_uri() + "?mode=ro", uri=True)
        try:
            return int(conn.execute("PRAGMA application_id").fetchone()[0])
        finally:
            conn.close()
    except sqlite3.Error as exc:
        raise StoreError(f"{path} is not a poe store ({exc})") from None


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
    """A connection to a file `require_store` accepted; its application id is read again
    through SQLite (the file may have been replaced since) before anything is written."""
    try:
        real = Path(os.path.realpath(path))
        if readonly:  # as a URI, so '#', '?' and '%' in names are escaped, not parsed
            conn = sqlite3.connect(real.as_uri() + "?mode=ro", uri=True, isolation_level=None, check_same_thread=False)
        else:
            conn = sqlite3.connect(str(real), isolation_level=None, check_same_thread=False)
    except sqlite3.DatabaseError as exc:
        raise StoreError(f"{path} is not a poe store ({exc})") from None
    try:
        conn.text_factory = _text
        (app_id,) = conn.execute("PRAGMA application_id").fetchone()
        if app_id != _APPLICATION_ID:
            raise StoreError(f"{path} is a SQLite database, but not a poe store")
        if not readonly:
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=FULL")
        conn.execute("PRAGMA busy_timeout=5000")
    except sqlite3.DatabaseError as exc:
        conn.close()
        raise StoreError(f"{path} is not a poe store ({exc})") from None
    except BaseException:
        conn.close()
        raise
    return conn


def create(path: str, cost_model: CostModel) -> None:
    """Make a new store at `path`, which must not exist: built under a temporary name beside it
    and linked into place once whole (the caller holds the writer lock)."""
    real = os.path.realpath(path)
    tmp = f"{real}.{secrets.token_hex(6)}.new"
    try:
        conn = sqlite3.connect(tmp, isolation_level=None)
        try:
            _write_schema(conn, cost_model)
            conn.execute("PRAGMA journal_mode=WAL")
        finally:
            conn.close()
        os.link(tmp, real)  # refuses an existing name, unlike rename
        _fsync_directory(os.path.dirname(real))
    except sqlite3.Error as exc:
        raise StoreError(f"cannot create store {path}: {_reason(exc)}") from None
    except FileExistsError:
        raise StoreError(f"cannot create store {path}: a file appeared there meanwhile") from None
    except OSError as exc:
        raise StoreError(f"cannot create store {path}: {exc.strerror}") from None
    finally:
        for leftover in (tmp, tmp + "-journal", tmp + "-wal", tmp + "-shm"):
            try:
                os.unlink(leftover)
            except OSError:
                pass


def _write_schema(conn: sqlite3.Connection, cost_model: CostModel) -> None:
    conn.execute("PRAGMA synchronous=FULL")
    conn.execute("BEGIN IMMEDIATE")
    for stmt in _statements(_SCHEMA + ";" + _STATE_SCHEMA + ";" + _REQUEST_SCHEMA):
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


def _fsync_directory(directory: str) -> None:
    # The new name must survive power loss as the store's content does (synchronous=FULL).
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _reason(exc: sqlite3.Error) -> str:
    text = str(exc)
    return "the file system is read-only" if "readonly" in text or "read-only" in text else text


def upgrade(conn: sqlite3.Connection, path: str) -> None:
    """Bring a store opened for writing to this poe's format (1 -> 2: add the state tables;
    2 -> 3: add the request table)."""
    try:
        (version,) = conn.execute("PRAGMA user_version").fetchone()
        check_version(version, path)
        if version < STORE_FORMAT:
            conn.execute("BEGIN IMMEDIATE")
            for stmt in _statements(_STATE_SCHEMA + ";" + _REQUEST_SCHEMA):
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

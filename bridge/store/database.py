"""Engine setup and transactions for SQLite and PostgreSQL.

SQLite: one file, WAL (readers never block the writer), `synchronous=FULL` by default (a
commit that returned survives a power cut, which is what "durably queued before the 202"
means; `NORMAL` survives a killed process but not a power cut, and skips the fsync), a busy
timeout so writers wait for each other instead of failing, and foreign keys on. Python's
sqlite3 driver would open transactions lazily and in DEFERRED mode; it is switched off so
every write transaction starts with `BEGIN IMMEDIATE` and takes the single write lock up
front, which makes read-then-write sequences (claim, merge) atomic.

PostgreSQL: a normal pooled engine with pre-ping; the queue uses row locks
(`FOR UPDATE SKIP LOCKED`) for the same atomicity among several processes.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Literal

from sqlalchemy import Connection, Engine, Table, create_engine, event
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from bridge.store.errors import StoreError

SQLITE_BUSY_TIMEOUT_SECONDS = 30.0
_BEGIN_OPTION = "jit_bridge_sqlite_begin"

SqliteSynchronous = Literal["FULL", "NORMAL"]


def safe_url(database_url: str) -> str:
    """The URL with its password masked, for messages and logs."""
    try:
        return make_url(database_url).render_as_string(hide_password=True)
    except ArgumentError:
        return "<unparseable database URL>"


def create_store_engine(
    database_url: str, *, sqlite_synchronous: SqliteSynchronous = "FULL"
) -> Engine:
    """An engine for `database_url` (sqlite:///FILE or postgresql+psycopg://…)."""
    try:
        url = make_url(database_url)
    except ArgumentError:
        # The URL may hold a password, so neither it nor the parser's message is repeated.
        raise StoreError(
            "database_url is not a SQLAlchemy URL; use sqlite:///path/to/jit-bridge.db "
            "or postgresql+psycopg://user@host/dbname"
        ) from None
    backend = url.get_backend_name()
    if backend == "sqlite":
        return _sqlite_engine(database_url, sqlite_synchronous)
    if backend == "postgresql":
        if url.drivername == "postgresql":
            url = url.set(drivername="postgresql+psycopg")
        return create_engine(url, pool_pre_ping=True, pool_size=5, max_overflow=10)
    raise StoreError(
        f"database_url {safe_url(database_url)} uses {backend!r}; the store supports "
        "sqlite:/// and postgresql:// URLs"
    )


def _sqlite_engine(database_url: str, synchronous: SqliteSynchronous) -> Engine:
    if synchronous not in ("FULL", "NORMAL"):
        raise StoreError(f"sqlite_synchronous must be FULL or NORMAL, not {synchronous!r}")
    engine = create_engine(
        database_url,
        connect_args={"timeout": SQLITE_BUSY_TIMEOUT_SECONDS, "check_same_thread": False},
        pool_size=5,
        max_overflow=10,
    )

    @event.listens_for(engine, "connect")
    def _configure(dbapi_connection: Any, _record: Any) -> None:
        # Autocommit at the driver level: we issue BEGIN ourselves (see module docstring).
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA synchronous={synchronous}")
        cursor.execute(f"PRAGMA busy_timeout={int(SQLITE_BUSY_TIMEOUT_SECONDS * 1000)}")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _begin(connection: Connection) -> None:
        mode = connection.get_execution_options().get(_BEGIN_OPTION, "DEFERRED")
        connection.exec_driver_sql(f"BEGIN {mode}")

    return engine


@contextmanager
def write_transaction(engine: Engine) -> Iterator[Connection]:
    """A transaction that will write: on SQLite it holds the write lock from its first
    statement, so nothing another writer does can slip between a read and the write that
    depends on it. Commits on leaving; a commit that returned is on disk."""
    if engine.dialect.name != "sqlite":
        with engine.begin() as connection:
            yield connection
        return
    # Threads of this process queue on a lock instead of in SQLite's busy handler, which
    # polls with sleeps of up to 100 ms; other processes still meet the busy timeout.
    with _sqlite_writer_lock(engine), engine.connect() as connection:
        connection.execution_options(**{_BEGIN_OPTION: "IMMEDIATE"})
        with connection.begin():
            yield connection


_writer_locks: dict[str, threading.Lock] = {}
_writer_locks_guard = threading.Lock()


def _sqlite_writer_lock(engine: Engine) -> threading.Lock:
    """One lock per database file for every engine of this process."""
    path = os.path.realpath(engine.url.database or "")
    with _writer_locks_guard:
        return _writer_locks.setdefault(path, threading.Lock())


@contextmanager
def read_transaction(engine: Engine) -> Iterator[Connection]:
    """A read-only transaction: one consistent view, no write lock."""
    with engine.connect() as connection, connection.begin():
        yield connection


def insert_ignoring_conflict(connection: Connection, table: Table, values: dict[str, Any]) -> bool:
    """INSERT unless a row with the same primary/unique key exists; true when inserted.

    Both dialects speak `ON CONFLICT DO NOTHING`; this is how concurrent first inserts of one
    key on PostgreSQL resolve without an error.
    """
    statement = dialect_insert(connection, table).values(**values).on_conflict_do_nothing()
    key = next(iter(table.primary_key.columns))
    return connection.execute(statement.returning(key)).first() is not None


def upsert(
    connection: Connection, table: Table, values: dict[str, Any], key_columns: list[str]
) -> None:
    """INSERT, or UPDATE the other columns of the row with the same key columns."""
    insert = dialect_insert(connection, table).values(**values)
    changes = {name: insert.excluded[name] for name in values if name not in key_columns}
    connection.execute(insert.on_conflict_do_update(index_elements=key_columns, set_=changes))


def upsert_many(
    connection: Connection, table: Table, rows: list[dict[str, Any]], key_columns: list[str]
) -> None:
    """`upsert` of many rows with the same columns: one statement, executed for each row."""
    if not rows:
        return
    insert = dialect_insert(connection, table)
    changes = {name: insert.excluded[name] for name in rows[0] if name not in key_columns}
    connection.execute(insert.on_conflict_do_update(index_elements=key_columns, set_=changes), rows)


def dialect_insert(connection: Connection, table: Table) -> sqlite.Insert | postgresql.Insert:
    if connection.dialect.name == "postgresql":
        return postgresql.insert(table)
    return sqlite.insert(table)

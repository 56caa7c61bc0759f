"""`jit-bridge db backup FILE`: a consistent copy of a SQLite state store, taken while the
service runs (docs/operations.md, Backup and restore).

SQLite's online backup API copies the database page by page under one read transaction: in
WAL mode readers never block the writer, so the service keeps taking webhooks and writing
while the copy is made, and the copy is the database as of one commit. The copy is written
next to FILE and renamed over it only once it is complete and passes `PRAGMA quick_check`, so
a backup that fails half-way never replaces a good one. The copy is a single file (journal
mode DELETE): nothing else needs to travel with it.

The schema is not upgraded first (unlike every other command that opens the store), so a
backup taken before an upgrade, with the new release already installed, is still of the
old schema. PostgreSQL stores are backed up with PostgreSQL's own tools (pg_dump).
"""

from __future__ import annotations

import os
import sqlite3
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from bridge.store.database import safe_url
from bridge.store.errors import StoreError


class BackupError(StoreError):
    """The backup could not be taken; the message says why and what to do."""


@dataclass(frozen=True)
class Backup:
    path: Path
    size: int
    #: The schema revision the copy is at (None: a database no jit-bridge has set up).
    revision: str | None


def sqlite_path(database_url: str) -> Path:
    """The file of a `sqlite:///FILE` URL; BackupError for any other store."""
    try:
        url = make_url(database_url)
    except ArgumentError:
        raise BackupError("database_url is not a SQLAlchemy URL") from None
    if url.get_backend_name() != "sqlite":
        raise BackupError(
            f"db backup copies a SQLite store; {safe_url(database_url)} is "
            f"{url.get_backend_name()}: back it up with pg_dump (docs/operations.md)"
        )
    if not url.database or url.database == ":memory:":
        raise BackupError("database_url names no SQLite file to back up")
    return Path(url.database)


def backup_sqlite(database_url: str, destination: Path) -> Backup:
    source_path = sqlite_path(database_url)
    if not source_path.is_file():
        raise BackupError(f"no SQLite database at {source_path} (database_url) to back up")
    if source_path.resolve() == destination.resolve():
        raise BackupError(f"{destination} is the database itself; choose another file")
    partial = destination.with_name(f".{destination.name}.partial-{os.getpid()}")
    try:
        # Opened read-write but used read-only (query_only): a read-only connection would
        # create the -wal and -shm files when none exist and leave them behind, owned by
        # whoever ran the backup, where the service may not be able to open them. This one,
        # if it is the last to close, removes them as the service itself would.
        source = sqlite3.connect(source_path, timeout=30)
        try:
            source.execute("PRAGMA query_only=1")
            copy = sqlite3.connect(partial)
            try:
                source.backup(copy)
                copy.execute("PRAGMA journal_mode=DELETE")
                checked = copy.execute("PRAGMA quick_check").fetchone()[0]
                if checked != "ok":
                    raise BackupError(f"the copy of {source_path} fails its check: {checked}")
                revision = _revision(copy)
            finally:
                copy.close()
        finally:
            source.close()
        os.replace(partial, destination)
    except sqlite3.Error as exc:
        raise BackupError(f"cannot back up {source_path} to {destination}: {exc}") from None
    except OSError as exc:
        raise BackupError(f"cannot write {destination}: {exc.strerror}") from None
    finally:
        partial.unlink(missing_ok=True)
    return Backup(destination, destination.stat().st_size, revision)


def _revision(connection: sqlite3.Connection) -> str | None:
    try:
        row = connection.execute("SELECT version_num FROM alembic_version").fetchone()
    except sqlite3.OperationalError:  # no such table: not a jit-bridge store (yet)
        return None
    return None if row is None else str(row[0])

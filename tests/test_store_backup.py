"""Backing up and upgrading the state store as docs/operations.md tells an operator to:
`jit-bridge db backup FILE` copies a SQLite store while it is in use, and a jit-bridge that
meets a schema a newer release made refuses it instead of using it."""

from __future__ import annotations

import json
import sqlite3
from contextlib import closing
from pathlib import Path

import pytest
from sqlalchemy import text

from bridge.cli import main
from bridge.store import Store
from bridge.store.database import write_transaction


def sqlite_url(path: Path) -> str:
    return f"sqlite:///{path}"


@pytest.fixture
def state(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An upgraded SQLite store that the CLI's settings point at, holding one queued key."""
    path = tmp_path / "state.db"
    monkeypatch.setenv("JIT_BRIDGE_DATABASE_URL", sqlite_url(path))
    store = Store.open(sqlite_url(path))
    store.upgrade()
    store.enqueue("email:ana@example.com", "login", event_id="ev-1", source="test")
    store.close()
    return path


def queued_keys(
    path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> list[str]:
    monkeypatch.setenv("JIT_BRIDGE_DATABASE_URL", sqlite_url(path))
    capsys.readouterr()
    assert main(["queue", "--json"]) == 0
    view = json.loads(capsys.readouterr().out)
    return sorted(entry["key"] for entry in view["entries"])


def test_backup_while_a_writer_is_mid_transaction_copies_the_last_commit(
    state: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    live = Store.open(sqlite_url(state))
    backup = tmp_path / "backups" / "state-copy.db"
    backup.parent.mkdir()
    try:
        # Another process's write is in flight (uncommitted) while the backup runs.
        with write_transaction(live.engine) as connection:
            connection.execute(
                text(
                    "INSERT INTO work_queue (key, pending, event_ids, attempts) "
                    "VALUES ('email:una@example.com', 1, '[]', 0)"
                )
            )
            assert main(["db", "backup", str(backup)]) == 0
        out = capsys.readouterr().out
        assert f"wrote {backup} (" in out
        assert "schema revision" in out
        # The live store went on: its commit landed after the copy was taken.
        assert queued_keys(state, monkeypatch, capsys) == [
            "email:ana@example.com",
            "email:una@example.com",
        ]
    finally:
        live.close()
    # The copy is one self-contained file, as of the last commit before it.
    assert sorted(p.name for p in backup.parent.iterdir()) == ["state-copy.db"]
    assert queued_keys(backup, monkeypatch, capsys) == ["email:ana@example.com"]


def test_a_failed_backup_leaves_the_previous_one_in_place(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    previous = tmp_path / "nightly.db"
    previous.write_bytes(b"yesterday's backup")
    monkeypatch.setenv("JIT_BRIDGE_DATABASE_URL", sqlite_url(tmp_path / "missing.db"))
    assert main(["db", "backup", str(previous)]) == 1
    assert "no SQLite database at" in capsys.readouterr().err
    assert previous.read_bytes() == b"yesterday's backup"
    assert not (tmp_path / "missing.db").exists()  # a backup never creates the store


def test_backup_of_a_postgresql_store_points_at_pg_dump(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv(
        "JIT_BRIDGE_DATABASE_URL", "postgresql+psycopg://bridge:hunter2@db.internal/jit_bridge"
    )
    assert main(["db", "backup", str(tmp_path / "x.db")]) == 1
    err = capsys.readouterr().err
    assert "pg_dump" in err
    assert "hunter2" not in err


def test_backup_does_not_upgrade_the_schema(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The backup taken before an upgrade, with the new release installed, is of the old
    schema: restoring it is a way back to the old release."""
    path = tmp_path / "state.db"
    store = Store.open(sqlite_url(path))
    store.upgrade()
    store.close()
    with closing(sqlite3.connect(path)) as connection, connection:
        connection.execute("UPDATE alembic_version SET version_num = '0001'")
    monkeypatch.setenv("JIT_BRIDGE_DATABASE_URL", sqlite_url(path))
    assert main(["db", "backup", str(tmp_path / "copy.db")]) == 0
    assert "schema revision 0001" in capsys.readouterr().out
    # Nothing left beside an idle store for its owner to trip over (a backup run as root on
    # a service's state directory must not leave root's -wal and -shm files there).
    assert sorted(p.name for p in tmp_path.iterdir()) == ["copy.db", "state.db"]
    for file in (path, tmp_path / "copy.db"):
        with sqlite3.connect(file) as connection:
            assert connection.execute("SELECT version_num FROM alembic_version").fetchone() == (
                "0001",
            )


def test_a_schema_from_a_newer_release_is_refused_and_left_alone(
    state: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with sqlite3.connect(state) as connection:
        connection.execute("UPDATE alembic_version SET version_num = '9999'")
    for command in (["db", "upgrade"], ["queue"]):
        assert main(command) == 1
        err = capsys.readouterr().err
        assert "schema is at revision 9999, newer than this jit-bridge knows" in err
        assert "Traceback" not in err
    with sqlite3.connect(state) as connection:
        assert connection.execute("SELECT version_num FROM alembic_version").fetchone() == ("9999",)
        assert connection.execute("SELECT count(*) FROM work_queue").fetchone() == (1,)

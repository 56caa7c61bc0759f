"""Bringing a database to the current schema with the Alembic migrations shipped in
`bridge/migrations` (`jit-bridge db upgrade`, and on every service start)."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, text

from bridge.store.database import read_transaction, write_transaction
from bridge.store.errors import StoreError

MIGRATIONS = Path(__file__).resolve().parent.parent / "migrations"
_UPGRADE_LOCK = 0x6A69_7462  # "jitb": serialises upgrades from several processes on PostgreSQL


def _config() -> Config:
    config = Config(str(MIGRATIONS / "alembic.ini"))
    config.set_main_option("script_location", str(MIGRATIONS))
    return config


class SchemaTooNewError(StoreError):
    """The database was upgraded by a newer jit-bridge than this one."""


def upgrade(engine: Engine) -> None:
    """Run every migration not yet applied, in one transaction (SQLite and PostgreSQL both
    have transactional DDL, so a failed upgrade leaves the schema as it was).

    Raises `SchemaTooNewError`, changing nothing, when a newer jit-bridge has already
    upgraded the database: this release does not know its schema, so it must not use it."""
    config = _config()
    script = ScriptDirectory.from_config(config)
    with write_transaction(engine) as connection:
        if connection.dialect.name == "postgresql":
            connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _UPGRADE_LOCK})
        current = MigrationContext.configure(connection).get_current_revision()
        known = {revision.revision for revision in script.walk_revisions()}
        if current is not None and current not in known:
            raise SchemaTooNewError(
                f"the database's schema is at revision {current}, newer than this jit-bridge "
                f"knows (its newest is {script.get_current_head()}): a newer jit-bridge "
                "upgraded it. Run that version, or restore the backup taken before the upgrade"
            )
        config.attributes["connection"] = connection
        command.upgrade(config, "head")


def is_current(engine: Engine) -> bool:
    """True when the database is at the newest migration."""
    head = ScriptDirectory.from_config(_config()).get_current_head()
    with read_transaction(engine) as connection:
        return MigrationContext.configure(connection).get_current_revision() == head

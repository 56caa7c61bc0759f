"""Alembic environment: runs migrations on the store's own engine setup (SQLite pragmas,
BEGIN IMMEDIATE), on a connection handed in by `Store.upgrade`, or on `-x database_url=…`
(falling back to $JIT_BRIDGE_DATABASE_URL) when alembic is run by hand."""

from __future__ import annotations

import os

from alembic import context

from bridge.store.database import create_store_engine, write_transaction
from bridge.store.tables import metadata

DEFAULT_DATABASE_URL = "sqlite:///jit-bridge.db"


def run_migrations() -> None:
    connection = context.config.attributes.get("connection")
    if connection is not None:
        context.configure(connection=connection, target_metadata=metadata)
        with context.begin_transaction():
            context.run_migrations()
        return
    database_url = context.get_x_argument(as_dictionary=True).get(
        "database_url", os.environ.get("JIT_BRIDGE_DATABASE_URL", DEFAULT_DATABASE_URL)
    )
    engine = create_store_engine(database_url)
    try:
        with write_transaction(engine) as connection:
            context.configure(connection=connection, target_metadata=metadata)
            with context.begin_transaction():
                context.run_migrations()
    finally:
        engine.dispose()


if context.is_offline_mode():
    raise SystemExit("offline (--sql) migrations are not supported; run against a database")
run_migrations()

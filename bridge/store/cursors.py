"""Durable positions of the event-store pollers (docs/design.md, Triggers), one JSON value per
name."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, select

from bridge.store.database import upsert
from bridge.store.tables import cursors


def get(connection: Connection, name: str) -> dict[str, Any] | None:
    value = connection.execute(
        select(cursors.c.value).where(cursors.c.name == name)
    ).scalar_one_or_none()
    return None if value is None else dict(value)


def put(connection: Connection, now: float, name: str, value: dict[str, Any]) -> None:
    upsert(connection, cursors, {"name": name, "value": value, "updated_at": now}, ["name"])

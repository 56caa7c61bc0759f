"""Keycloak user id → email, remembered so a user deleted in Keycloak (whose events carry only
the id) can still be found, by email, in the target and lose their access."""

from __future__ import annotations

from sqlalchemy import Connection, select

from bridge.store.database import upsert
from bridge.store.tables import known_users


def remember(connection: Connection, now: float, user_id: str, email: str) -> None:
    values = {"user_id": user_id, "email": email.lower(), "updated_at": now}
    upsert(connection, known_users, values, ["user_id"])


def email_for(connection: Connection, user_id: str) -> str | None:
    return connection.execute(
        select(known_users.c.email).where(known_users.c.user_id == user_id)
    ).scalar_one_or_none()

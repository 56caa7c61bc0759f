"""First logins begun and not yet finished.

A first login is several calls to the target: create the user, then each membership. If the
run stops between them (the process dies, the target fails), the user exists with less than
the mapping grants, and in jit mode an existing user is never touched again. So the email is
recorded before the create and cleared once every operation of the first login is applied;
while it is recorded, the planner finishes the first login (adds what is missing) instead of
leaving the user alone.
"""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import Connection, delete, select

from bridge.store.database import upsert
from bridge.store.tables import first_logins


def begin(connection: Connection, now: float, emails: Iterable[str]) -> set[str]:
    """Mark these first logins begun; returns those already marked by an earlier attempt."""
    wanted = {e.lower() for e in emails}
    earlier = unfinished(connection, wanted)
    for email in sorted(wanted - earlier):
        upsert(connection, first_logins, {"email": email, "started_at": now}, ["email"])
    return earlier


def finish(connection: Connection, emails: Iterable[str]) -> None:
    wanted = sorted({e.lower() for e in emails})
    if wanted:
        connection.execute(delete(first_logins).where(first_logins.c.email.in_(wanted)))


def unfinished(connection: Connection, emails: Iterable[str]) -> set[str]:
    wanted = sorted({e.lower() for e in emails})
    if not wanted:
        return set()
    rows = connection.execute(select(first_logins.c.email).where(first_logins.c.email.in_(wanted)))
    return {row.email for row in rows}

"""Named leases, so one process among several runs the scheduler or the event poller.

A holder keeps a lease by renewing it before `ttl_seconds` pass; a holder that died stops
renewing and another takes over once the lease expired.
"""

from __future__ import annotations

from sqlalchemy import Connection, delete, select, update

from bridge.store.database import insert_ignoring_conflict
from bridge.store.tables import leases

_l = leases.c


def acquire(connection: Connection, now: float, name: str, holder: str, ttl: float) -> bool:
    """Take or renew `name` for `holder`; false while another holder's lease is live."""
    row = (
        connection.execute(select(leases).where(_l.name == name).with_for_update())
        .mappings()
        .first()
    )
    if row is None:
        values = {"name": name, "holder": holder, "expires_at": now + ttl}
        # False when a concurrent first acquirer on PostgreSQL won the insert: its lease is live.
        return insert_ignoring_conflict(connection, leases, values)
    if row["holder"] != holder and row["expires_at"] > now:
        return False
    connection.execute(
        update(leases).where(_l.name == name).values(holder=holder, expires_at=now + ttl)
    )
    return True


def release(connection: Connection, name: str, holder: str) -> None:
    """Give `name` up now, if `holder` has it (a lease taken over meanwhile stays)."""
    connection.execute(delete(leases).where(_l.name == name, _l.holder == holder))


def live_holders(connection: Connection, now: float, prefix: str) -> set[str]:
    """Holders of the unexpired leases whose names start with `prefix`."""
    statement = select(_l.holder).where(_l.name.startswith(prefix), _l.expires_at > now)
    return set(connection.execute(statement).scalars())

"""Keycloak user id ↔ target account pairs (bridge.model.AccountPair), per target kind.

An account belongs to at most one Keycloak user: pairing it with another id drops the old
pair. Writes only what changed, so a full reconcile of an unchanged realm writes nothing.
"""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import Connection, delete, select

from bridge.model import AccountPair
from bridge.store.database import upsert
from bridge.store.tables import identity_pairs


def _pair(row: object) -> AccountPair:
    return AccountPair(
        user_id=row.user_id,  # type: ignore[attr-defined]
        account_id=row.account_id,  # type: ignore[attr-defined]
        email=row.email,  # type: ignore[attr-defined]
    )


def all_pairs(connection: Connection, target: str) -> list[AccountPair]:
    rows = connection.execute(select(identity_pairs).where(identity_pairs.c.target == target)).all()
    return [_pair(row) for row in rows]


def pairs_for(connection: Connection, target: str, user_ids: Iterable[str]) -> list[AccountPair]:
    wanted = sorted(set(user_ids))
    if not wanted:
        return []
    rows = connection.execute(
        select(identity_pairs).where(
            identity_pairs.c.target == target, identity_pairs.c.user_id.in_(wanted)
        )
    ).all()
    return [_pair(row) for row in rows]


def save(connection: Connection, now: float, target: str, pairs: Iterable[AccountPair]) -> int:
    """Store `pairs` (emails lower-cased); returns how many rows changed."""
    changed = 0
    for pair in pairs:
        email = pair.email.lower()
        current = connection.execute(
            select(identity_pairs.c.account_id, identity_pairs.c.email).where(
                identity_pairs.c.target == target, identity_pairs.c.user_id == pair.user_id
            )
        ).first()
        if current is not None and (current.account_id, current.email) == (
            pair.account_id,
            email,
        ):
            continue
        connection.execute(
            delete(identity_pairs).where(
                identity_pairs.c.target == target,
                identity_pairs.c.account_id == pair.account_id,
                identity_pairs.c.user_id != pair.user_id,
            )
        )
        values = {
            "target": target,
            "user_id": pair.user_id,
            "account_id": pair.account_id,
            "email": email,
            "updated_at": now,
        }
        upsert(connection, identity_pairs, values, ["target", "user_id"])
        changed += 1
    return changed

"""Keycloak user id ↔ target account pairs (bridge.model.AccountPair), per target kind.

An account belongs to at most one Keycloak user: pairing it with another id drops the old
pair. Writes only what changed, so a full reconcile of an unchanged realm writes nothing.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from sqlalchemy import Connection, Row, bindparam, delete, select

from bridge.model import AccountPair
from bridge.store.database import upsert, upsert_many
from bridge.store.tables import identity_pairs


def _pair(row: object) -> AccountPair:
    # The store's own strings (NOT NULL columns): a full reconcile reads every pair.
    return AccountPair.trusted(
        user_id=row.user_id,  # type: ignore[attr-defined]
        account_id=row.account_id,  # type: ignore[attr-defined]
        email=row.email,  # type: ignore[attr-defined]
    )


def all_pairs(connection: Connection, target: str) -> list[AccountPair]:
    rows = connection.execute(select(identity_pairs).where(identity_pairs.c.target == target)).all()
    return [_pair(row) for row in rows]


def changed(connection: Connection, target: str, pairs: list[AccountPair]) -> list[AccountPair]:
    """The pairs of `pairs` not stored as they are (emails compared lower-cased as stored).

    A full reconcile checks every user's pair (100,000 at a time): the stored pairs are
    streamed and compared as they come, so none of them is held beyond its row."""
    wanted = {p.user_id: (p.account_id, p.email.lower()) for p in pairs}
    rows = (
        _stored(connection.execution_options(yield_per=_CHUNK), target, None)
        if len(wanted) > _STREAM_ABOVE
        else _stored(connection, target, wanted)
    )
    for user_id, account_id, email in rows:
        if wanted.get(user_id) == (account_id, email):
            del wanted[user_id]
    return [p for p in pairs if p.user_id in wanted]


_STORED = select(identity_pairs.c.user_id, identity_pairs.c.account_id, identity_pairs.c.email)


def _stored(
    connection: Connection, target: str, user_ids: Iterable[str] | None
) -> Iterator[Row[str, str, str]]:
    """(user id, account id, email) of the target's stored pairs: every one (`user_ids`
    None), or those of these users, 500 users a query."""
    if user_ids is None:
        batches = [_STORED.where(identity_pairs.c.target == target)]
    else:
        ordered = sorted(set(user_ids))
        batches = [
            _STORED.where(identity_pairs.c.target == target).where(
                identity_pairs.c.user_id.in_(ordered[start : start + 500])
            )
            for start in range(0, len(ordered), 500)
        ]
    for query in batches:
        yield from connection.execute(query)


#: Above this many pairs, `changed` reads the target's stored pairs whole, in chunks.
_STREAM_ABOVE = 2_000
#: Rows fetched, and upserted, at a time: 100,000 pairs are never all in one statement's
#: parameters (which held ~180 MB at 100,000).
_CHUNK = 5_000


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
    """Store `pairs` (emails lower-cased); returns how many rows changed.

    A full reconcile pairs every user at once (10,000 on a new store): what is stored is read
    in one query per 500 users and the changes are written with one statement each for all,
    instead of three statements built per pair (which took minutes at 10,000)."""
    wanted = [
        p
        if p.email == (email := p.email.lower())
        else AccountPair.trusted(user_id=p.user_id, account_id=p.account_id, email=email)
        for p in pairs
    ]
    users = {p.user_id for p in wanted}
    accounts = {p.account_id for p in wanted}
    if len(users) < len(wanted) or len(accounts) < len(wanted):
        return _save_one_by_one(connection, now, target, wanted)  # order decides: keep it
    current = {
        user_id: (account, email) for user_id, account, email in _stored(connection, target, users)
    }
    changed = [p for p in wanted if current.get(p.user_id) != (p.account_id, p.email)]
    if not changed:
        return 0
    # An account belongs to one user: drop the pairs of other users with a changed pair's
    # account. Found first (one query per 500 accounts), since mostly there are none.
    owner = {p.account_id: p.user_id for p in changed}
    accounts_changed = sorted(owner)
    stale: list[str] = []
    for start in range(0, len(accounts_changed), 500):
        holders = connection.execute(
            select(identity_pairs.c.user_id, identity_pairs.c.account_id)
            .where(identity_pairs.c.target == target)
            .where(identity_pairs.c.account_id.in_(accounts_changed[start : start + 500]))
        ).all()
        stale += [row.user_id for row in holders if owner[row.account_id] != row.user_id]
    if stale:
        connection.execute(
            delete(identity_pairs).where(
                identity_pairs.c.target == bindparam("t"),
                identity_pairs.c.user_id == bindparam("u"),
            ),
            [{"t": target, "u": user_id} for user_id in stale],
        )
    for start in range(0, len(changed), _CHUNK):
        upsert_many(
            connection,
            identity_pairs,
            [
                {
                    "target": target,
                    "user_id": p.user_id,
                    "account_id": p.account_id,
                    "email": p.email,
                    "updated_at": now,
                }
                for p in changed[start : start + _CHUNK]
            ],
            ["target", "user_id"],
        )
    return len(changed)


def _save_one_by_one(
    connection: Connection, now: float, target: str, pairs: list[AccountPair]
) -> int:
    changed = 0
    for pair in pairs:
        email = pair.email
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

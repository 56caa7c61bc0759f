"""The durable, coalescing work queue (docs/design.md, Flow): one row per key with outstanding work.

A row holds up to two units of work: `pending_*` (waiting to be claimed; the columns without
prefix) and `work_*` (what the current claim is working on). Enqueueing merges into the
waiting unit, so ten events for one user become one reconcile; enqueueing a key that is being
worked creates a waiting unit beside the claim, so the key runs again after the attempt ends
and no trigger is lost. Because a key is one row and a claim marks that row, no two workers
ever hold the same key.

Every function here runs inside one write transaction of the caller (`BEGIN IMMEDIATE` on
SQLite; row locks on PostgreSQL, where claiming skips rows another claimer holds locked).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from functools import cache
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Connection,
    Executable,
    RowMapping,
    and_,
    bindparam,
    delete,
    func,
    or_,
    select,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite

from bridge.keys import EVERYONE, TRIGGER_STRENGTH, EnqueueResult, TriggerKind
from bridge.store.errors import StoreError
from bridge.store.records import QueueEntry, QueueItem
from bridge.store.tables import seen_events, user_reads, work_queue

MAX_EVENT_IDS = 50
"""Event ids kept per unit of work: enough to trace a burst, bounded so a hot key stays small."""

MAX_ERROR_LENGTH = 2000

_q = work_queue.c


@dataclass(frozen=True)
class _Work:
    """One unit of work for a key, as merged from any number of triggers."""

    trigger: TriggerKind
    event_ids: tuple[str, ...]
    source: str | None
    email_hint: str | None
    enqueued_at: float

    def merged(self, newer: _Work) -> _Work:
        """Strongest trigger, event ids of both (bounded, most recent kept), newest hints."""
        stronger = max(self.trigger, newer.trigger, key=TRIGGER_STRENGTH.__getitem__)
        return _Work(
            trigger=stronger,
            event_ids=_bounded(self.event_ids + newer.event_ids),
            source=newer.source or self.source,
            email_hint=newer.email_hint or self.email_hint,
            enqueued_at=min(self.enqueued_at, newer.enqueued_at),
        )

    @classmethod
    def waiting_in(cls, row: RowMapping) -> _Work:
        return cls(
            trigger=row["trigger"],
            event_ids=tuple(row["event_ids"]),
            source=row["source"],
            email_hint=row["email_hint"],
            enqueued_at=row["enqueued_at"],
        )

    @classmethod
    def claimed_in(cls, row: RowMapping) -> _Work:
        return cls(
            trigger=row["work_trigger"],
            event_ids=tuple(row["work_event_ids"] or ()),
            source=row["work_source"],
            email_hint=row["work_email_hint"],
            enqueued_at=row["work_enqueued_at"],
        )

    def as_waiting(self, not_before: float) -> dict[str, Any]:
        return {
            "pending": True,
            "trigger": self.trigger,
            "event_ids": list(self.event_ids),
            "source": self.source,
            "email_hint": self.email_hint,
            "enqueued_at": self.enqueued_at,
            "not_before": not_before,
        }

    def as_claimed(self) -> dict[str, Any]:
        return {
            "work_trigger": self.trigger,
            "work_event_ids": list(self.event_ids),
            "work_source": self.source,
            "work_email_hint": self.email_hint,
            "work_enqueued_at": self.enqueued_at,
        }


_NOTHING_WAITING: dict[str, Any] = {
    "pending": False,
    "trigger": None,
    "event_ids": [],
    "source": None,
    "email_hint": None,
    "enqueued_at": None,
    "not_before": None,
}
_NOT_CLAIMED: dict[str, Any] = {
    "claimed_by": None,
    "claim_token": None,
    "lease_until": None,
    "work_trigger": None,
    "work_event_ids": None,
    "work_source": None,
    "work_email_hint": None,
    "work_enqueued_at": None,
}


def _bounded(event_ids: tuple[str, ...]) -> tuple[str, ...]:
    unique = tuple(dict.fromkeys(event_ids))
    return unique[-MAX_EVENT_IDS:]


@dataclass(frozen=True)
class _EnqueueStatements:
    first_sighting: Executable
    row_by_key: Executable
    new_row: Executable


@cache
def _enqueue_statements(dialect: str) -> _EnqueueStatements:
    """The statements of `enqueue`, built once per dialect and run with bound parameters.

    Building a SQLAlchemy statement (values coerced, cache key computed) cost more than
    running it on SQLite: about two thirds of an enqueue when profiled (bench/webhook.py),
    and the webhook must take 1,000 events a second on one core (docs/design.md, Performance).
    """
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    seen = insert(seen_events).values(event_id=bindparam("event_id"), seen_at=bindparam("now"))
    # One statement, so two deliveries of one event racing on PostgreSQL cannot both win;
    # RETURNING rather than rowcount, as drivers disagree on rowcount for upserts.
    first_sighting = seen.on_conflict_do_update(
        index_elements=["event_id"],
        set_={"seen_at": seen.excluded.seen_at},
        where=seen_events.c.seen_at < bindparam("cutoff"),
    ).returning(seen_events.c.event_id)
    return _EnqueueStatements(
        first_sighting=first_sighting,
        row_by_key=select(work_queue).where(_q.key == bindparam("key")).with_for_update(),
        new_row=insert(work_queue).on_conflict_do_nothing().returning(_q.id),
    )


def check_request(key: str, trigger: str) -> None:
    """Refuse a request no enqueue could store."""
    if trigger not in TRIGGER_STRENGTH:
        raise StoreError(
            f"unknown trigger {trigger!r} for key {key!r}; use one of "
            f"{', '.join(sorted(TRIGGER_STRENGTH))}"
        )
    if not key:
        raise StoreError("a queue key must not be empty; use id:<uuid>, email:<addr> or all")


def enqueue(
    connection: Connection,
    now: float,
    key: str,
    trigger: TriggerKind,
    *,
    event_id: str | None,
    source: str | None,
    email_hint: str | None,
    not_before: float | None,
    event_retention: float,
) -> EnqueueResult:
    """Queue work for `key`, merging with what is there; see the module docstring."""
    check_request(key, trigger)
    statements = _enqueue_statements(connection.dialect.name)
    if event_id is not None and not _first_sighting(connection, event_id, now, event_retention):
        return "duplicate"
    work = _Work(
        trigger=trigger,
        event_ids=(event_id,) if event_id is not None else (),
        source=source,
        email_hint=email_hint,
        enqueued_at=now,
    )
    due = now if not_before is None else not_before
    # Insert first: a key with nothing queued (the usual case in a burst of logins) costs one
    # statement. Two rounds at most: the row found on conflict may be deleted (its work
    # finished) before we read it; then the second insert succeeds.
    new_row = {"key": key, "attempts": 0, **work.as_waiting(due), **_NOT_CLAIMED}
    for _ in range(2):
        if connection.execute(statements.new_row, new_row).first() is not None:
            return "queued"
        row = connection.execute(statements.row_by_key, {"key": key}).mappings().first()
        if row is None:
            continue
        if row["pending"]:
            merged = _Work.waiting_in(row).merged(work)
            _update(connection, row, merged.as_waiting(min(row["not_before"], due)))
            return "merged"
        # Being worked and nothing waiting yet: this becomes the re-run after the attempt.
        _update(connection, row, work.as_waiting(due))
        return "queued"
    raise StoreError(f"queue key {key!r} changed under a concurrent enqueue twice; retry")


def _first_sighting(connection: Connection, event_id: str, now: float, retention: float) -> bool:
    """Record `event_id` as seen; false when it was already seen within `retention` seconds."""
    statement = _enqueue_statements(connection.dialect.name).first_sighting
    seen = {"event_id": event_id, "now": now, "cutoff": now - retention}
    return connection.execute(statement, seen).first() is not None


def prune_seen_events(connection: Connection, now: float, retention: float) -> int:
    """Forget event ids older than the retention window; returns how many were dropped."""
    result = connection.execute(delete(seen_events).where(seen_events.c.seen_at < now - retention))
    return result.rowcount


def _ready(now: float) -> ColumnElement[bool]:
    """Waiting and due, or claimed by a worker whose lease ran out. A full reconcile runs
    beside users' own reconciles: it claims each user's key around its writes to that user
    (`claim_user`), so no user is reconciled by two workers at once."""
    return or_(
        and_(_q.pending, _q.claimed_by.is_(None), _q.not_before <= now),
        and_(_q.claimed_by.is_not(None), _q.lease_until < now),
    )


def has_ready(connection: Connection, now: float) -> bool:
    """Whether `claim` would find something; lets idle workers poll without the write lock."""
    statement = select(_q.id).where(_ready(now)).limit(1)
    return connection.execute(statement).first() is not None


def claim(
    connection: Connection, now: float, worker_id: str, lease_seconds: float
) -> QueueItem | None:
    """Take the oldest ready key: waiting and due, or claimed by a worker whose lease ran out."""
    oldest_first = (func.coalesce(_q.work_enqueued_at, _q.enqueued_at), _q.id)
    statement = (
        select(work_queue)
        .where(_ready(now))
        .order_by(*oldest_first)
        .limit(1)
        .with_for_update(skip_locked=True)
    )
    row = connection.execute(statement).mappings().first()
    if row is None:
        return None
    attempts = row["attempts"]
    changes: dict[str, Any] = {}
    if row["claimed_by"] is not None:
        # The previous worker died or hung: its attempt counts, and its work is redone.
        attempts += 1
        changes["last_error"] = f"lease of worker {row['claimed_by']} expired"
        work = _Work.claimed_in(row)
        if row["pending"]:
            work = work.merged(_Work.waiting_in(row))
    else:
        work = _Work.waiting_in(row)
    token = uuid.uuid4().hex
    lease_until = now + lease_seconds
    changes |= {
        **_NOTHING_WAITING,
        **work.as_claimed(),
        "attempts": attempts,
        "claimed_by": worker_id,
        "claim_token": token,
        "lease_until": lease_until,
    }
    _update(connection, row, changes)
    if row["key"] != EVERYONE:
        _note_read(connection, row["key"], now)
    return QueueItem(
        id=row["id"],
        key=row["key"],
        trigger=work.trigger,
        event_ids=work.event_ids,
        email_hint=work.email_hint,
        source=work.source,
        attempts=attempts,
        enqueued_at=work.enqueued_at,
        worker_id=worker_id,
        claim_token=token,
        lease_until=lease_until,
    )


def claim_user(
    connection: Connection,
    now: float,
    key: str,
    worker_id: str,
    lease_seconds: float,
    read_at: float,
) -> QueueItem | None:
    """Claim a user's key around a full reconcile's writes to that user. None when the user
    has a reconcile of their own queued or running (it reads afresh), or one that began
    after `read_at`, the full reconcile's bulk read: that newer run's plan stands."""
    last_read = connection.execute(
        select(user_reads.c.read_at).where(user_reads.c.key == key)
    ).scalar_one_or_none()
    if last_read is not None and last_read > read_at:
        return None
    token = uuid.uuid4().hex
    lease_until = now + lease_seconds
    work = _Work("reconcile", (), "full-reconcile", None, now)
    row = {
        "key": key,
        "attempts": 0,
        "last_error": None,
        **_NOTHING_WAITING,
        **work.as_claimed(),
        "claimed_by": worker_id,
        "claim_token": token,
        "lease_until": lease_until,
    }
    inserted = connection.execute(_enqueue_statements(connection.dialect.name).new_row, row)
    found = inserted.first()
    if found is None:
        return None
    return QueueItem(
        id=found.id,
        key=key,
        trigger=work.trigger,
        event_ids=(),
        email_hint=None,
        source=work.source,
        attempts=0,
        enqueued_at=now,
        worker_id=worker_id,
        claim_token=token,
        lease_until=lease_until,
    )


def _note_read(connection: Connection, key: str, now: float) -> None:
    """Remember that a reconcile of `key` began now (its reads come after)."""
    insert = postgresql.insert if connection.dialect.name == "postgresql" else sqlite.insert
    statement = insert(user_reads).values(key=key, read_at=now)
    connection.execute(
        statement.on_conflict_do_update(
            index_elements=["key"], set_={"read_at": statement.excluded.read_at}
        )
    )


def complete(connection: Connection, item: QueueItem) -> bool:
    """End a successful attempt; false (and no change) if the claim was lost to expiry."""
    row = _claimed_row(connection, item)
    if row is None:
        return False
    if row["pending"]:
        _update(connection, row, {**_NOT_CLAIMED, "attempts": 0, "last_error": None})
    else:
        connection.execute(delete(work_queue).where(_q.id == row["id"]))
    return True


def fail(connection: Connection, now: float, item: QueueItem, error: str, retry_in: float) -> bool:
    """End a failed attempt: the work (plus anything queued meanwhile) waits `retry_in` s."""
    row = _claimed_row(connection, item)
    if row is None:
        return False
    work = _Work.claimed_in(row)
    if row["pending"]:
        work = work.merged(_Work.waiting_in(row))
    changes = {
        **_NOT_CLAIMED,
        **work.as_waiting(now + retry_in),
        "attempts": row["attempts"] + 1,
        "last_error": error[:MAX_ERROR_LENGTH],
    }
    _update(connection, row, changes)
    return True


def release(connection: Connection, now: float, item: QueueItem, reason: str) -> bool:
    """Hand a claim back unfinished (a stopping process): the work waits for the next worker
    at once, without counting as a failed attempt."""
    row = _claimed_row(connection, item)
    if row is None:
        return False
    work = _Work.claimed_in(row)
    if row["pending"]:
        work = work.merged(_Work.waiting_in(row))
    _update(connection, row, {**_NOT_CLAIMED, **work.as_waiting(now), "last_error": reason})
    return True


def extend(connection: Connection, now: float, item: QueueItem, lease_seconds: float) -> bool:
    """Renew a claim's lease for a long attempt; false if it was already lost."""
    row = _claimed_row(connection, item)
    if row is None:
        return False
    _update(connection, row, {"lease_until": now + lease_seconds})
    return True


def depth(connection: Connection) -> int:
    """Keys with work waiting to be claimed (due or backing off)."""
    return connection.execute(select(func.count()).where(_q.pending)).scalar_one()


def entries(connection: Connection) -> list[QueueEntry]:
    rows = connection.execute(select(work_queue).order_by(_q.id)).mappings().all()
    return [
        QueueEntry(
            key=row["key"],
            trigger=row["work_trigger"] or row["trigger"],
            event_count=len(row["event_ids"]) + len(row["work_event_ids"] or ()),
            attempts=row["attempts"],
            enqueued_at=row["work_enqueued_at"] or row["enqueued_at"],
            not_before=row["not_before"],
            claimed_by=row["claimed_by"],
            lease_until=row["lease_until"],
            rerun_pending=bool(row["pending"] and row["claimed_by"]),
            last_error=row["last_error"],
        )
        for row in rows
    ]


def _locked_row(connection: Connection, condition: Any) -> RowMapping | None:
    statement = select(work_queue).where(condition).with_for_update()
    return connection.execute(statement).mappings().first()


def _claimed_row(connection: Connection, item: QueueItem) -> RowMapping | None:
    return _locked_row(connection, and_(_q.id == item.id, _q.claim_token == item.claim_token))


def _update(connection: Connection, row: RowMapping, changes: dict[str, Any]) -> None:
    connection.execute(update(work_queue).where(_q.id == row["id"]).values(**changes))

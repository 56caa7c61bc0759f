"""Sync runs, and the removals a removal budget held back until someone approves them
(docs/design.md, Safety).

A held run is a row, so it survives restarts; approval is one conditional UPDATE, so two
approvers racing (CLI and admin API, two processes) cannot both get the operations.
"""

from __future__ import annotations

import secrets
from collections.abc import Collection
from typing import Any

from sqlalchemy import Connection, RowMapping, case, insert, literal, or_, select, update

from bridge.store.clock import to_datetime
from bridge.store.errors import RunAlreadyApprovedError, RunNotFoundError, RunNotHeldError
from bridge.store.records import Run
from bridge.store.tables import runs

_r = runs.c
_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"


def new_run_id(now: float) -> str:
    """A ULID-shaped id: 10 characters of millisecond time, then 16 random ones.

    Ids sort by start time as plain strings, and are safe to type on a command line.
    """
    millis = int(now * 1000)
    stamp = "".join(_CROCKFORD[(millis >> shift) & 31] for shift in range(45, -1, -5))
    randomness = "".join(secrets.choice(_CROCKFORD) for _ in range(16))
    return stamp + randomness


def start(
    connection: Connection, now: float, kind: str, trigger: str, requested_by: str, holder: str
) -> str:
    run_id = new_run_id(now)
    connection.execute(
        insert(runs).values(
            id=run_id,
            kind=kind,
            trigger=trigger,
            requested_by=requested_by,
            status="running",
            started_at=now,
            summary={},
            holder=holder,
        )
    )
    return run_id


def running_holders(connection: Connection) -> set[str | None]:
    """The processes that have runs `running`."""
    statement = select(_r.holder).where(_r.status == "running").distinct()
    return set(connection.execute(statement).scalars())


def interrupt(connection: Connection, now: float, holders: set[str | None], reason: str) -> int:
    """Mark the `running` runs of `holders` (processes stopped or gone) `interrupted`; held
    removals stay approvable. Returns how many runs were marked."""
    if not holders:
        return 0
    named = sorted(h for h in holders if h is not None)
    whose = (
        or_(_r.holder.in_(named), _r.holder.is_(None)) if None in holders else _r.holder.in_(named)
    )
    result = connection.execute(
        update(runs)
        .where(_r.status == "running", whose)
        .values(
            status="interrupted",
            finished_at=now,
            summary={"status": "interrupted", "error": reason},
        )
    )
    return result.rowcount


def finish(
    connection: Connection,
    now: float,
    run_id: str,
    status: str,
    summary: dict[str, Any],
) -> None:
    _require(connection, run_id)
    # An approval that landed between hold and finish stays: reverting the status to
    # "held" would let the same operations be approved, and applied, a second time. A run
    # that holds removals stays `held` (approvable) whatever else failed in it; how the rest
    # went is in its summary.
    kept_status = case(
        (_r.approved_at.is_not(None), _r.status),
        (_r.held_operations.is_not(None), literal("held")),
        else_=literal(status),
    )
    connection.execute(
        update(runs)
        .where(_r.id == run_id)
        .values(status=kept_status, finished_at=now, summary=summary)
    )


def note_progress(connection: Connection, run_id: str, summary: dict[str, Any]) -> None:
    """What a running run has planned, for people watching it; `finish` replaces it."""
    connection.execute(
        update(runs).where(_r.id == run_id, _r.status == "running").values(summary=summary)
    )


def hold(
    connection: Connection, run_id: str, held_operations: list[dict[str, Any]], reason: str
) -> None:
    _require(connection, run_id)
    connection.execute(
        update(runs)
        .where(_r.id == run_id)
        .values(status="held", held_operations=held_operations, hold_reason=reason)
    )


def approve(
    connection: Connection, now: float, run_id: str, approved_by: str
) -> list[dict[str, Any]]:
    approved = connection.execute(
        update(runs)
        .where(_r.id == run_id, _r.status == "held", _r.approved_at.is_(None))
        .values(status="approved", approved_by=approved_by, approved_at=now)
    )
    row = _require(connection, run_id)
    if approved.rowcount == 1:
        return list(row["held_operations"] or [])
    if row["approved_at"] is not None:
        raise RunAlreadyApprovedError(
            f"run {run_id} was already approved by {row['approved_by']} at "
            f"{to_datetime(row['approved_at']).isoformat()}; its held operations were handed "
            "out then and are not applied twice. Start a new sync if access is still wrong."
        )
    raise RunNotHeldError(
        f"run {run_id} has status {row['status']!r} and holds nothing to approve; only runs "
        "with status 'held' can be approved; GET /api/v1/status lists them under held_runs"
    )


def get(connection: Connection, run_id: str) -> Run | None:
    row = connection.execute(select(runs).where(_r.id == run_id)).mappings().first()
    return None if row is None else _run(row)


def recent(connection: Connection, limit: int, status: str | None) -> list[Run]:
    """Newest first."""
    statement = select(runs).order_by(_r.id.desc()).limit(limit)
    if status is not None:
        statement = statement.where(_r.status == status)
    return [_run(row) for row in connection.execute(statement).mappings()]


def last_of(connection: Connection, kind: str, statuses: Collection[str]) -> Run | None:
    """The newest run of `kind` whose status is one of `statuses`."""
    statement = (
        select(runs)
        .where(_r.kind == kind, _r.status.in_(list(statuses)))
        .order_by(_r.id.desc())
        .limit(1)
    )
    row = connection.execute(statement).mappings().first()
    return None if row is None else _run(row)


def _require(connection: Connection, run_id: str) -> RowMapping:
    row = connection.execute(select(runs).where(_r.id == run_id)).mappings().first()
    if row is None:
        raise RunNotFoundError(
            f"no run with id {run_id!r}; held runs are listed by GET /api/v1/status (held_runs)"
        )
    return row


def _run(row: RowMapping) -> Run:
    return Run(
        id=row["id"],
        kind=row["kind"],
        trigger=row["trigger"],
        requested_by=row["requested_by"],
        status=row["status"],
        started_at=to_datetime(row["started_at"]),
        finished_at=None if row["finished_at"] is None else to_datetime(row["finished_at"]),
        summary=row["summary"],
        held_operations=row["held_operations"],
        hold_reason=row["hold_reason"],
        approved_by=row["approved_by"],
        approved_at=None if row["approved_at"] is None else to_datetime(row["approved_at"]),
    )

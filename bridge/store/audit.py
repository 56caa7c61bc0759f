"""The audit log (docs/design.md, Settings and state): every applied, held, skipped or failed
operation, append-only."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, Connection, RowMapping, insert, select

from bridge.store.clock import to_datetime, to_seconds
from bridge.store.records import AuditRecord
from bridge.store.tables import audit_log, runs

_a = audit_log.c


def record(
    connection: Connection, records: Iterable[AuditRecord], intent_id: int | None = None
) -> None:
    rows = [_row(entry, intent_id) for entry in records]
    if rows:
        connection.execute(insert(audit_log), rows)


def _row(entry: AuditRecord, intent_id: int | None) -> dict[str, Any]:
    return {
        "at": to_seconds(entry.time),
        "run_id": entry.run_id,
        "trigger": entry.trigger,
        "email": entry.email.lower(),
        "op": entry.op,
        "team": entry.team,
        "case_group": entry.case_group,
        "before": entry.before,
        "after": entry.after,
        "because": list(entry.because),
        "outcome": entry.outcome,
        "error": entry.error,
        "intent_id": intent_id,
    }


def record_intent(connection: Connection, entry: AuditRecord) -> int:
    """Record a write about to be sent (outcome `unknown`); returns the record's id, which
    the record of its outcome names (`settle`)."""
    row = _row(entry.model_copy(update={"outcome": "unknown"}), None)
    return int(connection.execute(insert(audit_log).values(row).returning(_a.id)).scalar_one())


def settle(connection: Connection, intent_id: int, outcome: AuditRecord) -> None:
    """Record the outcome of the write recorded as `intent_id` (the log stays append-only)."""
    record(connection, [outcome], intent_id)


def unsettled(
    connection: Connection, emails: Iterable[str] | None, finished_runs_only: bool
) -> list[tuple[int, AuditRecord]]:
    """Writes recorded before they were sent whose outcome was never recorded, oldest first.
    `finished_runs_only`: only those whose run is no longer `running` (not in flight)."""
    statement = (
        select(audit_log)
        .where(_a.outcome == "unknown", _a.intent_id.is_(None), ~_settled())
        .order_by(_a.id)
    )
    if emails is not None:
        statement = statement.where(_a.email.in_(sorted({e.lower() for e in emails})))
    if finished_runs_only:
        running = select(runs.c.id).where(runs.c.status == "running")
        statement = statement.where(_a.run_id.not_in(running))
    rows = connection.execute(statement).mappings().all()
    return [(int(row["id"]), _record(row)) for row in rows]


def _settled() -> ColumnElement[bool]:
    """Whether the row is a write's intent whose outcome was recorded (shown in its place)."""
    outcome = audit_log.alias("outcome")
    return select(outcome.c.id).where(outcome.c.intent_id == _a.id).exists()


def query(
    connection: Connection,
    *,
    email: str | None,
    since: datetime | float | None,
    run_id: str | None,
    limit: int,
) -> list[AuditRecord]:
    """The most recent `limit` matching records, oldest first (read like a log). A write
    appears once: as its outcome, or as `unknown` while no outcome is recorded."""
    statement = (
        select(audit_log).where(~_settled()).order_by(_a.at.desc(), _a.id.desc()).limit(limit)
    )
    if email is not None:
        statement = statement.where(_a.email == email.lower())
    if since is not None:
        statement = statement.where(_a.at >= to_seconds(since))
    if run_id is not None:
        statement = statement.where(_a.run_id == run_id)
    rows = connection.execute(statement).mappings().all()
    return [_record(row) for row in reversed(rows)]


def _record(row: RowMapping) -> AuditRecord:
    return AuditRecord(
        time=to_datetime(row["at"]),
        run_id=row["run_id"],
        trigger=row["trigger"],
        email=row["email"],
        op=row["op"],
        team=row["team"],
        case_group=row["case_group"],
        before=row["before"],
        after=row["after"],
        because=row["because"],
        outcome=row["outcome"],
        error=row["error"],
    )

"""The audit log (docs/design.md, Settings and state): every applied, held, skipped or failed
operation, append-only."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from sqlalchemy import Connection, insert, select

from bridge.store.clock import to_datetime, to_seconds
from bridge.store.records import AuditRecord
from bridge.store.tables import audit_log

_a = audit_log.c


def record(connection: Connection, records: Iterable[AuditRecord]) -> None:
    rows = [
        {
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
        }
        for entry in records
    ]
    if rows:
        connection.execute(insert(audit_log), rows)


def query(
    connection: Connection,
    *,
    email: str | None,
    since: datetime | float | None,
    run_id: str | None,
    limit: int,
) -> list[AuditRecord]:
    """The most recent `limit` matching records, oldest first (read like a log)."""
    statement = select(audit_log).order_by(_a.at.desc(), _a.id.desc()).limit(limit)
    if email is not None:
        statement = statement.where(_a.email == email.lower())
    if since is not None:
        statement = statement.where(_a.at >= to_seconds(since))
    if run_id is not None:
        statement = statement.where(_a.run_id == run_id)
    rows = connection.execute(statement).mappings().all()
    return [
        AuditRecord(
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
        for row in reversed(rows)
    ]

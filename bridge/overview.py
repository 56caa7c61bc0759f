"""What an operator asks of an installation: its status, recent runs, the queue, the audit log.

Read from the state store alone, so the CLI, the admin API and the web console give the same
answers from any process. Each view is a plain value with `to_json()`; rendering for people
is the caller's business.
"""

from __future__ import annotations

import concurrent.futures
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

from bridge.keys import EVERYONE
from bridge.store import AuditRecord, QueueEntry, Run, Store

#: Run statuses after which everything but held removals was applied.
COMPLETED_STATUSES = ("succeeded", "no_changes", "held", "approved")
#: Run statuses of a run that ended with work it could not do.
FAILED_STATUSES = ("failed", "partial")


@dataclass(frozen=True)
class RunView:
    """One run: who it was for, what happened, and how long it took."""

    id: str
    kind: str
    trigger: str
    subject: str | None
    status: str
    applied: int
    failed: int
    held: int
    skipped: int
    started_at: datetime
    finished_at: datetime | None
    duration_seconds: float | None
    requested_by: str
    error: str | None = None
    hold_reason: str | None = None
    approved_by: str | None = None
    orphans: int | None = None
    #: Mapped groups Keycloak could not read in this run (what they grant was not removed).
    unreadable_groups: int | None = None

    @classmethod
    def of(cls, run: Run) -> RunView:
        summary = run.summary or {}
        outcomes: dict[str, int] = summary.get("outcomes") or {}
        duration = summary.get("duration_seconds")
        if duration is None and run.finished_at is not None:
            duration = round((run.finished_at - run.started_at).total_seconds(), 3)
        subject = summary.get("subject")
        if subject is None and run.kind in (EVERYONE, "approval"):
            subject = EVERYONE
        return cls(
            id=run.id,
            kind=run.kind,
            trigger=run.trigger,
            subject=subject,
            status=run.status,
            applied=outcomes.get("applied", 0) + outcomes.get("dry_run", 0),
            failed=outcomes.get("failed", 0),
            held=len(run.held_operations or []) or int(summary.get("held") or 0),
            skipped=int(summary.get("skipped") or 0),
            started_at=run.started_at,
            finished_at=run.finished_at,
            duration_seconds=duration,
            requested_by=run.requested_by,
            error=summary.get("error"),
            hold_reason=run.hold_reason,
            approved_by=run.approved_by,
            orphans=summary.get("orphans"),
            unreadable_groups=(
                len(summary["unreadable_groups"]) if "unreadable_groups" in summary else None
            ),
        )

    @property
    def for_everyone(self) -> bool:
        return self.subject == EVERYONE

    @property
    def who(self) -> str:
        """ "everyone", or the user the run was for."""
        return "everyone" if self.for_everyone else self.subject or "?"

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["who"] = self.who
        for key in ("started_at", "finished_at"):
            value = data[key]
            data[key] = value.isoformat() if value is not None else None
        return data


@dataclass(frozen=True)
class QueueView:
    """The queue: how much waits, how much is being worked on, and how long the oldest waits."""

    waiting: int
    in_progress: int
    oldest_waiting_seconds: float | None
    entries: list[QueueEntry] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "waiting": self.waiting,
            "in_progress": self.in_progress,
            "oldest_waiting_seconds": self.oldest_waiting_seconds,
            "entries": [asdict(e) for e in self.entries],
        }


def queue_view(store: Store, now: float | None = None) -> QueueView:
    entries = store.queue_items()
    now = time.time() if now is None else now
    waiting = [e for e in entries if not e.claimed_by or e.rerun_pending]
    unclaimed_since = [e.enqueued_at for e in entries if not e.claimed_by and e.enqueued_at]
    oldest = round(max(0.0, now - min(unclaimed_since)), 3) if unclaimed_since else None
    return QueueView(
        waiting=len(waiting),
        in_progress=sum(1 for e in entries if e.claimed_by),
        oldest_waiting_seconds=oldest,
        entries=entries,
    )


def recent_runs(store: Store, *, held: bool = False, limit: int = 20) -> list[RunView]:
    """Newest first; `held`: only runs whose removals wait for approval."""
    return [RunView.of(r) for r in store.list_runs(limit=limit, status="held" if held else None)]


def last_full_reconcile(store: Store) -> RunView | None:
    """The newest full reconcile that completed (held removals aside)."""
    run = store.last_run(EVERYONE, COMPLETED_STATUSES)
    return None if run is None else RunView.of(run)


def last_full_reconcile_failed(store: Store) -> bool:
    """Whether the newest full reconcile that ended (interrupted ones aside: their key is
    run again) failed or was partial."""
    run = store.last_run(EVERYONE, COMPLETED_STATUSES + FAILED_STATUSES)
    return run is not None and run.status in FAILED_STATUSES


@dataclass(frozen=True)
class AuditPage:
    """The newest `limit` matching records (oldest first), and whether older ones exist."""

    records: list[AuditRecord]
    more: bool


def audit_page(
    store: Store,
    *,
    limit: int = 100,
    email: str | None = None,
    run_id: str | None = None,
    since: datetime | None = None,
) -> AuditPage:
    found = store.audit(
        email=email.lower() if email else None, since=since, limit=limit + 1, run_id=run_id
    )
    return AuditPage(records=found[-limit:] if limit else [], more=len(found) > limit)


@dataclass(frozen=True)
class StatusView:
    """Everything `jit-bridge status` shows."""

    health: dict[str, str]
    queue: QueueView
    last_full_reconcile: RunView | None
    held_runs: list[RunView]
    mapping_version: int | None

    @property
    def healthy(self) -> bool:
        return all(v == "ok" for v in self.health.values())

    @property
    def orphans(self) -> int | None:
        """Accounts the last full reconcile found in the target with no Keycloak user."""
        return None if self.last_full_reconcile is None else self.last_full_reconcile.orphans

    def to_json(self) -> dict[str, Any]:
        queue = self.queue.to_json()
        del queue["entries"]
        last = self.last_full_reconcile
        return {
            "healthy": self.healthy,
            "health": self.health,
            "queue": queue,
            "last_full_reconcile": None if last is None else last.to_json(),
            "held_runs": [r.to_json() for r in self.held_runs],
            "orphans": self.orphans,
            "mapping_version": self.mapping_version,
        }


def check_dependencies(
    store: Store, checks: dict[str, Callable[[], None]], *, wait: float | None = None
) -> dict[str, str]:
    """Ask each dependency now, all at once: name → "ok" or "failing: why". `checks`: name →
    a callable that raises when that dependency does not answer; the store is always asked.
    `wait`: seconds after which a dependency that has not answered counts as failing (its
    check goes on in the background, bounded by its own timeout)."""
    asked = {"store": store.ping, **checks}
    pool = ThreadPoolExecutor(len(asked), thread_name_prefix="readiness")
    try:
        answers = {name: pool.submit(check) for name, check in asked.items()}
        concurrent.futures.wait(answers.values(), timeout=wait)
    finally:
        pool.shutdown(wait=False)
    return {name: _answer(future, wait) for name, future in answers.items()}


def _answer(future: Future[None], wait: float | None) -> str:
    if not future.done():
        return f"failing: no answer within {wait:g} s"
    exc = future.exception()
    # Any failure is the answer, not an error of ours.
    return "ok" if exc is None else f"failing: {type(exc).__name__}: {exc}"


def status_view(
    store: Store, health: dict[str, str], *, mapping_version: int | None = None
) -> StatusView:
    """`health`: name → "ok" or "failing: why" (`check_dependencies`, or what a running
    service recorded)."""
    return StatusView(
        health=health,
        queue=queue_view(store),
        last_full_reconcile=last_full_reconcile(store),
        held_runs=recent_runs(store, held=True, limit=100),
        mapping_version=mapping_version,
    )


def held_run_count(store: Store) -> int:
    return len(store.list_runs(limit=10_000, status="held"))

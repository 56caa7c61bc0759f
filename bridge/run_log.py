"""What a run tells the log: one line for the run, one per failed operation, one per hold
(naming the approve command), and one per user the plan left alone, with the reason.

Users a jit full reconcile finds not yet created in the target are one line, however many:
a realm of thousands would otherwise bury everything else.
"""

from __future__ import annotations

import logging
from collections import Counter
from typing import TYPE_CHECKING

from bridge.keys import EVERYONE, UserRef
from bridge.logs import FIELDS
from bridge.model import Plan
from bridge.planner import NOT_YET_CREATED

if TYPE_CHECKING:
    from bridge.reconcile import RunReport

log = logging.getLogger("bridge.runs")


def user_subject(ref: UserRef, plan: Plan) -> str:
    """Whom a one-user run is for: the one email its plan speaks of, else what named them."""
    emails = {op.email.lower() for op in [*plan.operations, *plan.held]}
    emails |= {s.email.lower() for s in plan.skipped}
    if len(emails) == 1:
        return emails.pop()
    return ref.email.lower() if ref.email else ref.key


def describe_subject(subject: str | None) -> str:
    return "everyone" if subject == EVERYONE else subject or "?"


def counts(report: RunReport) -> dict[str, int]:
    """Applied, failed, held and skipped operations of a run."""
    outcomes = Counter(r.outcome for r in report.results)
    return {
        "applied": outcomes["applied"] + outcomes["dry_run"],
        "failed": outcomes["failed"],
        "held": len(report.plan.held),
        "skipped": len(report.plan.skipped),
    }


def log_run(report: RunReport, kind: str) -> None:
    run = report.run_id or "(not recorded)"
    n = counts(report)
    who = describe_subject(report.subject)
    duration = report.duration or 0.0
    verb = "would apply" if report.status == "dry_run" else "applied"
    fields = {
        "run_id": report.run_id,
        "kind": kind,
        "trigger": report.plan.trigger,
        "subject": who,
        "status": report.status,
        **n,
        "duration_seconds": round(duration, 3),
    }
    log.info(
        "run %s %s %s for %s: %s; %d %s, %d failed, %d held, %d skipped in %.2f s",
        run,
        kind,
        report.plan.trigger,
        who,
        report.status,
        n["applied"],
        verb,
        n["failed"],
        n["held"],
        n["skipped"],
        duration,
        extra={FIELDS: fields},
    )
    for result in report.results:
        if result.outcome == "failed":
            op = result.op
            where = getattr(op, "team", None)
            log.warning(
                "run %s: %s %s%s failed: %s",
                run,
                op.op,
                op.email,
                f" in {where}" if where else "",
                result.error,
                extra={FIELDS: {"run_id": report.run_id, "op": op.op, "email": op.email}},
            )
    if report.error and report.status in ("failed", "partial", "interrupted"):
        log.warning("run %s stopped: %s", run, report.error, extra={FIELDS: {"run_id": run}})
    if report.plan.held and report.status != "dry_run":
        log.warning(
            "run %s: %d operation(s) held by the removal budget; review them, then run: "
            "jit-bridge approve %s",
            run,
            n["held"],
            run,
            extra={FIELDS: {"run_id": report.run_id, "held": n["held"]}},
        )
    _log_skipped(report.plan, run)


def _log_skipped(plan: Plan, run: str) -> None:
    not_created = [s for s in plan.skipped if s.reason == NOT_YET_CREATED]
    if not_created:
        log.info(
            "run %s: %d user(s) not in the target yet, left for their first login",
            run,
            len(not_created),
        )
    for skipped in plan.skipped:
        if skipped.reason != NOT_YET_CREATED:
            log.info(
                "run %s: skipped %s: %s",
                run,
                skipped.email,
                skipped.reason,
                extra={FIELDS: {"email": skipped.email, "reason": skipped.reason}},
            )

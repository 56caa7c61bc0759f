"""One reconcile: read the IdP, read the target, plan, guard, apply, audit (docs/design.md, Flow).

This is the only path from a trigger to a change in the target. `plan` (and `sync
--dry-run`) run the same code and stop before the writes.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from bridge.apply import ApplyResult, OpResult, apply_operations, dry_run_results
from bridge.gcpause import paused_gc
from bridge.guard import apply_removal_budget, count_managed_memberships, is_removal
from bridge.keys import EVERYONE, UserRef
from bridge.mapping import Mapping
from bridge.model import CaseGroup, CreateUser, Operation, Plan, TargetState, Team, Trigger
from bridge.planner import plan as make_plan
from bridge.policy import Policy
from bridge.sources.base import IdentitySource
from bridge.targets.base import Target

if TYPE_CHECKING:  # an offline plan runs without the store (SQLAlchemy, Alembic)
    from bridge.store import FinishedRunStatus, Store

log = logging.getLogger(__name__)


@dataclass
class RunReport:
    """What one reconcile did; `exit_code` follows docs/design.md, Command line."""

    run_id: str | None
    plan: Plan
    status: FinishedRunStatus
    results: list[OpResult] = field(default_factory=list)
    error: str | None = None
    #: Mapped group selectors Keycloak could not read (removals they could affect were kept).
    unreadable_groups: dict[str, str] = field(default_factory=dict)

    @property
    def exit_code(self) -> int:
        if self.status in ("failed", "partial"):
            return 1
        if self.status == "held":
            return 3
        return 0

    def summary(self) -> dict[str, object]:
        counts: dict[str, int] = {}
        for result in self.results:
            counts[result.outcome] = counts.get(result.outcome, 0) + 1
        return {
            "status": self.status,
            "operations": len(self.plan.operations),
            "held": len(self.plan.held),
            "skipped": len(self.plan.skipped),
            "outcomes": counts,
            "error": self.error,
            "unreadable_groups": dict(self.unreadable_groups),
        }


class Reconciler:
    def __init__(
        self,
        *,
        policy: Policy,
        mapping: Callable[[], Mapping],
        source: IdentitySource,
        target: Target,
        store: Store | None = None,
        dry_run: bool = False,
    ) -> None:
        self.policy = policy
        self._mapping = mapping
        self.source = source
        self.target = target
        self.store = store
        self.dry_run = dry_run

    # -- planning (pure after the reads) -------------------------------------------------
    def plan_user(self, ref: UserRef, trigger: Trigger) -> tuple[Plan, TargetState]:
        return self._plan_user(ref, trigger)[:2]

    def _plan_user(
        self, ref: UserRef, trigger: Trigger
    ) -> tuple[Plan, TargetState, dict[str, str], frozenset[str]]:
        """The plan, the target state it was made from, the unreadable groups, and the emails
        whose first login began and did not finish (jit only)."""
        mapping = self._mapping()
        if ref.user_id and not ref.email and self.store is not None:
            # A deleted Keycloak user can only be found in the target by the email seen last.
            known = self.store.email_for(ref.user_id)
            ref = UserRef(user_id=ref.user_id, email=known)
        identity = self.source.read_user(ref)
        emails = {u.email.lower() for u in identity.users if u.email}
        emails |= {e.lower() for e in identity.deleted_users}
        if ref.email:
            emails.add(ref.email.lower())
        if self.store is not None:
            for user in identity.users:
                if user.email:
                    self.store.remember_user(user.id, user.email.lower())
        if not emails:
            no_email = [u for u in identity.users if not u.email]
            scope = frozenset({u.username or u.id for u in no_email})
            empty = TargetState(users=[], teams=[])
            plan = make_plan(mapping, self.policy, identity, empty, trigger, scope)
            return plan, empty, identity.unreadable_groups, frozenset()
        state = self._read_target_for(sorted(emails), creating=trigger == "login")
        unfinished: frozenset[str] = frozenset()
        if self._tracks_first_logins and trigger == "login":
            assert self.store is not None
            unfinished = frozenset(self.store.unfinished_first_logins(emails))
        plan = make_plan(
            mapping, self.policy, identity, state, trigger, frozenset(emails), unfinished
        )
        return plan, state, identity.unreadable_groups, unfinished

    def plan_all(
        self, trigger: Trigger, allow_removals: int | None = None
    ) -> tuple[Plan, TargetState]:
        return self._plan_all(trigger, allow_removals)[:2]

    def _plan_all(
        self, trigger: Trigger, allow_removals: int | None
    ) -> tuple[Plan, TargetState, dict[str, str]]:
        mapping = self._mapping()
        with paused_gc():
            identity = self.source.read_all(mapping)
            state = self.target.read_state()
            plan = make_plan(mapping, self.policy, identity, state, trigger, None)
            managed = count_managed_memberships(mapping, self.policy, state)
            budgeted = apply_removal_budget(plan, self.policy, managed, allow_removals)
        return budgeted, state, identity.unreadable_groups

    @property
    def _tracks_first_logins(self) -> bool:
        """Only jit needs to know a first login was cut short: enhanced converges anyway."""
        return self.store is not None and self.policy.mode == "jit" and not self.dry_run

    def _read_target_for(self, emails: list[str], *, creating: bool) -> TargetState:
        """`creating`: a login, whose plan creates a user the read shows absent."""
        if len(emails) == 1:
            return self.target.read_user_state(emails[0], creating=creating)
        states = [self.target.read_user_state(e, creating=creating) for e in emails]
        users = {u.email.lower(): u for s in states for u in s.users}
        return TargetState(users=list(users.values()), teams=_merge_teams(states))

    # -- sync ----------------------------------------------------------------------------
    def sync_user(
        self, ref: UserRef, trigger: Trigger, *, triggered_by: list[str], requested_by: str
    ) -> RunReport:
        plan, state, unreadable, unfinished = self._plan_user(ref, trigger)
        report = self._execute(
            "user", plan, state, triggered_by, requested_by, unreadable, unfinished
        )
        appeared = _appeared(report.results)
        if not appeared:
            return report
        # The user existed after all (created meanwhile, or a stale list of who exists): what
        # was planned for a new user may be wrong for them, so plan again from a fresh read.
        log.info("run %s: %s already existed; planning again", report.run_id, sorted(appeared))
        plan, state, unreadable, unfinished = self._plan_user(ref, trigger)
        cause = [report.run_id] if report.run_id else triggered_by
        return self._execute("user", plan, state, cause, requested_by, unreadable, unfinished)

    def sync_all(
        self,
        trigger: Trigger,
        *,
        triggered_by: list[str],
        requested_by: str,
        allow_removals: int | None = None,
    ) -> RunReport:
        plan, state, unreadable = self._plan_all(trigger, allow_removals)
        return self._execute(EVERYONE, plan, state, triggered_by, requested_by, unreadable)

    def approve(self, run_id: str, approved_by: str) -> RunReport:
        """Apply what a held run kept back, as far as a fresh plan still wants it.

        The world may have moved since the hold: a removal is applied only if a plan made
        now still contains it, so an approval can never remove access someone regained.
        The fresh read comes first: if it fails, the approval is not used up.
        """
        if self.store is None:
            raise RuntimeError("approving a held run needs the state store")
        fresh, state, unreadable = self._plan_all("reconcile", allow_removals=10**9)
        held = self.store.approve_run(run_id, approved_by)
        wanted = {_identity_of_dict(op) for op in held}
        still = [op for op in fresh.operations if _identity_of(op) in wanted]
        plan = fresh.model_copy(update={"operations": still, "held": []})
        return self._execute("approval", plan, state, [run_id], approved_by, unreadable)

    def _execute(
        self,
        kind: str,
        plan: Plan,
        state: TargetState,
        triggered_by: list[str],
        requested_by: str,
        unreadable: dict[str, str],
        unfinished: frozenset[str] = frozenset(),
    ) -> RunReport:
        run_id = None
        if self.store is not None:
            run_id = self.store.start_run(kind, plan.trigger, requested_by=requested_by)
        cause = ",".join(triggered_by) or (run_id or "")
        if unreadable:
            log.warning(
                "run %s: %d mapped group(s) could not be read; nothing they grant is removed: %s",
                run_id,
                len(unreadable),
                "; ".join(f"{k}: {v}" for k, v in sorted(unreadable.items())),
            )
        begun_before = self._begin_first_logins(plan)
        if self.dry_run:
            report = RunReport(run_id, plan, "dry_run", dry_run_results(plan.operations))
        elif not plan.operations:
            report = RunReport(run_id, plan, "held" if plan.held else "no_changes")
        else:

            def audit_now(result: OpResult) -> None:
                # Operations never sent (the run stopped first) are planned again next time;
                # the audit records what happened to access, so they are not in it.
                if run_id is not None and result.outcome != "not_run":
                    self._audit(run_id, cause, [result])

            outcome = apply_operations(self.target, list(plan.operations), state, audit_now)
            report = RunReport(run_id, plan, _status_of(plan, outcome), outcome.results)
            if outcome.stopped_by is not None:
                report.error = str(outcome.stopped_by)
            elif outcome.failed:
                report.error = "; ".join(r.error or "" for r in outcome.failed[:5])
        report.unreadable_groups = dict(unreadable)
        self._finish_first_logins(plan, report.results, unfinished, begun_before)
        if self.store is not None and run_id is not None:
            # Applied operations were audited one by one as they happened (see above).
            pending = report.results if self.dry_run else []
            held = [] if self.dry_run else [OpResult(op=op, outcome="held") for op in plan.held]
            self._audit(run_id, cause, [*pending, *held])
            if plan.held and not self.dry_run:
                self.store.hold_run(
                    run_id,
                    [op.model_dump(mode="json", by_alias=True) for op in plan.held],
                    reason=_hold_reason(plan, self.policy),
                )
            self.store.finish_run(run_id, report.status, report.summary())
        return report

    def _begin_first_logins(self, plan: Plan) -> set[str]:
        """Record, before the create, the first logins this plan begins (so one cut short is
        finished next time); returns those an earlier attempt had already begun."""
        creates = {op.email.lower() for op in plan.operations if isinstance(op, CreateUser)}
        if not self._tracks_first_logins or not creates:
            return set()
        assert self.store is not None
        return self.store.begin_first_logins(creates)

    def _finish_first_logins(
        self,
        plan: Plan,
        results: list[OpResult],
        unfinished: frozenset[str],
        begun_before: set[str],
    ) -> None:
        """Clear the first logins now over: every operation planned for the user applied,
        or nothing left to plan for one begun earlier. A user the target already had is
        ours only if an earlier attempt got as far as the create; else someone made them."""
        if not self._tracks_first_logins:
            return
        assert self.store is not None
        planned = {op.email.lower() for op in plan.operations}
        not_applied = {r.op.email.lower() for r in results if r.outcome != "applied"}
        over = (planned - not_applied) | (unfinished - planned)
        over |= _appeared(results) - begun_before
        if over:
            self.store.finish_first_logins(over)

    def _audit(self, run_id: str, cause: str, records: list[OpResult]) -> None:
        if self.store is None:
            return
        from bridge.store import AuditRecord

        for result in records:
            op = result.op
            self.store.record_audit(
                AuditRecord(
                    run_id=run_id,
                    trigger=cause,
                    email=op.email,
                    op=op.op,
                    team=getattr(op, "team", None),
                    case_group=getattr(op, "case_group", None),
                    before=result.before,
                    after=result.after,
                    because=list(getattr(op, "because", [])),
                    outcome=result.outcome,
                    error=result.error,
                )
            )


def _appeared(results: list[OpResult]) -> set[str]:
    """Lower-cased emails whose create found the user already there."""
    return {r.op.email.lower() for r in results if r.error_type == "appeared"}


def _status_of(plan: Plan, outcome: ApplyResult) -> FinishedRunStatus:
    if outcome.stopped_by is not None:
        return "failed" if not outcome.applied else "partial"
    if outcome.failed:
        return "partial" if outcome.applied else "failed"
    return "held" if plan.held else "succeeded"


def _hold_reason(plan: Plan, policy: Policy) -> str:
    removals = [op for op in plan.held if is_removal(op, policy)]
    return (
        f"{len(removals)} removals exceed the budget (max_removals={policy.max_removals}, "
        f"max_removal_fraction={policy.max_removal_fraction}); approve with "
        "`jit-bridge approve RUN_ID`"
    )


def _identity_of(op: Operation) -> tuple[str, ...]:
    return _identity_of_dict(op.model_dump(mode="json", by_alias=True))


def _identity_of_dict(op: dict[str, object]) -> tuple[str, ...]:
    """What makes two operations 'the same change' across plans (ignores `because`)."""
    keep = {k: v for k, v in op.items() if k != "because"}
    return tuple(f"{k}={keep[k]}" for k in sorted(keep))


def _merge_teams(states: list[TargetState]) -> list[Team]:
    """Teams of several per-user reads, with every user's memberships."""
    merged: dict[str, Team] = {}
    for state in states:
        for team in state.teams:
            if team.id not in merged:
                merged[team.id] = team
                continue
            prior = merged[team.id]
            groups = {g.id: g for g in prior.case_groups}
            for g in team.case_groups:
                old = groups.get(g.id)
                groups[g.id] = (
                    g
                    if old is None
                    else CaseGroup(id=g.id, name=g.name, members=[*old.members, *g.members])
                )
            merged[team.id] = Team(
                id=team.id,
                name=team.name,
                members=[*prior.members, *team.members],
                case_groups=list(groups.values()),
            )
    return list(merged.values())

"""One reconcile: read the IdP, read the target, plan, guard, apply, audit (docs/design.md, Flow).

This is the only path from a trigger to a change in the target. `plan` (and `sync
--dry-run`) run the same code and stop before the writes.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor, wait
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal

from pydantic import TypeAdapter, ValidationError

from bridge.apply import (
    ApplyResult,
    OpResult,
    UserClaims,
    apply_operations,
    change_of,
    dry_run_results,
    in_effect,
)
from bridge.gcpause import paused_gc
from bridge.guard import apply_removal_budget, count_managed_memberships, is_removal
from bridge.keys import EVERYONE, TriggerKind, UserRef, acts_on, plan_trigger
from bridge.mapping import GroupSelector, Mapping
from bridge.model import (
    AccountPair,
    CaseGroup,
    ChangeRole,
    CreateUser,
    IdentityView,
    Operation,
    Plan,
    RemoveMembership,
    SetTenantOwner,
    SetTenantPermissions,
    TargetState,
    TargetUser,
    Team,
    Trigger,
)
from bridge.planner import plan as make_plan
from bridge.policy import Policy
from bridge.progress import RunProgress
from bridge.run_log import log_run, user_subject
from bridge.sources.base import IdentitySource, SourceError, SourceRefusedError
from bridge.targets.base import Target, TargetError, TransientError, UnauthorizedError

if TYPE_CHECKING:  # an offline plan runs without the store (SQLAlchemy, Alembic)
    from bridge.store import AuditRecord, FinishedRunStatus, QueueItem, Store

log = logging.getLogger(__name__)

_OPERATION: TypeAdapter[Operation] = TypeAdapter(Operation)

#: How many orphan emails a run's summary (and so `status`) lists; the count is exact.
ORPHANS_LISTED = 100


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
    #: Whom the run was for: one user's email (or key), or EVERYONE.
    subject: str | None = None
    #: Seconds from the first read to the last write.
    duration: float | None = None
    #: The target error that stopped the run part-way (a transient or authorisation error).
    stopped_by: TargetError | None = None

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
            "orphans": len(self.plan.orphans),
            "orphan_emails": self.plan.orphans[:ORPHANS_LISTED],
            "outcomes": counts,
            "error": self.error,
            "unreadable_groups": dict(self.unreadable_groups),
            "subject": self.subject,
            "duration_seconds": None if self.duration is None else round(self.duration, 3),
        }


@dataclass(frozen=True)
class Applied:
    """Done: what was planned is in place, or nothing was needed (no report: the mode does
    not act on this trigger)."""

    report: RunReport | None = None


@dataclass(frozen=True)
class Failed:
    """Done, with operations the target refused for good (a bad request, a team that does
    not exist): retrying now fails alike; the next trigger plans them again."""

    report: RunReport


@dataclass(frozen=True)
class Held:
    """Done; removals over the budget wait for approval."""

    report: RunReport


@dataclass(frozen=True)
class RetryAfter:
    """Not done: try again after `seconds` (None: the worker's backoff; 0: at once, by any
    worker, for a process that is stopping). `failing` names the dependency to report."""

    seconds: float | None
    reason: str
    failing: Literal["keycloak", "target"] | None = None
    report: RunReport | None = None


@dataclass(frozen=True)
class Stop:
    """Not done, and no retry can help: the target or Keycloak refused the bridge's
    credentials (401, 403) or a TLS certificate did not verify. Workers take no more work
    until the settings are fixed and the process restarted; the key stays queued."""

    reason: str
    report: RunReport | None = None
    failing: Literal["keycloak", "target"] = "target"


Outcome = Applied | Failed | Held | RetryAfter | Stop
"""What a reconcile of one queued key came to: the one value the worker switches on."""


def outcome_of(report: RunReport | None) -> Outcome:
    if report is None:
        return Applied()
    if report.status == "interrupted":
        return RetryAfter(0.0, "handed back: its process stopped", report=report)
    if isinstance(report.stopped_by, UnauthorizedError):
        return Stop(_refused("the target", report.stopped_by), report)
    if isinstance(report.stopped_by, TransientError):
        reason = f"target unavailable: {report.stopped_by}"
        return RetryAfter(report.stopped_by.retry_after, reason, "target", report)
    if report.unreadable_groups:
        # Fail closed: the run kept whatever those groups grant; come back once Keycloak
        # answers for them again.
        groups = ", ".join(sorted(report.unreadable_groups))
        return RetryAfter(None, f"mapped groups could not be read: {groups}", "keycloak", report)
    if report.status in ("failed", "partial"):
        return Failed(report)
    if report.plan.held:
        return Held(report)
    return Applied(report)


def _refused(who: str, exc: Exception) -> str:
    return (
        f"{who} refused the bridge ({exc}); workers stopped: fix the credentials or "
        "TLS settings and restart. Queued work waits and is not retried until then"
    )


#: Seconds a full reconcile's claim on a user lasts unless renewed (renewed every third of it
#: while that user's writes run; a process that dies stops renewing, and workers take the
#: user over within this).
USER_CLAIM_LEASE = 60.0


def _renew_claims(
    store: Store, items: list[QueueItem], lease_seconds: float, done: threading.Event
) -> None:
    while not done.wait(lease_seconds / 3):
        try:
            held = store.extend_claims(items, lease_seconds)
        except Exception:
            log.exception("cannot renew a full reconcile's claims on %d users", len(items))
            continue
        if held < len(items):
            log.warning(
                "%d of %d users' claims were lost while written", len(items) - held, len(items)
            )


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
        should_stop: Callable[[], bool] | None = None,
        write_concurrency: int = 1,
        progress: RunProgress | None = None,
    ) -> None:
        """`should_stop`: asked before each write; once true (the process is stopping) the
        run ends `interrupted` and what it did not send is planned again by the next run."""
        self.policy = policy
        self._mapping = mapping
        self.source = source
        self.target = target
        self.store = store
        self.dry_run = dry_run
        self.should_stop = should_stop
        #: Users whose writes are sent at once (never two requests for one user at a time).
        self.write_concurrency = write_concurrency
        #: Updated as a full run goes: users read, operations planned, operations applied.
        self.progress = progress or RunProgress()

    # -- one queued key -------------------------------------------------------------------
    def reconcile(
        self,
        key: str,
        trigger: TriggerKind,
        *,
        causes: list[str],
        requested_by: str,
    ) -> Outcome:
        """Reconcile one queued key (a user, or everyone), read to write, as one outcome."""
        try:
            report = self._sync_key(key, trigger, causes, requested_by)
        except SourceRefusedError as exc:
            return Stop(_refused("Keycloak", exc), failing="keycloak")
        except SourceError as exc:
            return RetryAfter(None, f"Keycloak read failed: {exc}", "keycloak")
        except UnauthorizedError as exc:  # TLS verification failures included
            return Stop(_refused("the target", exc))
        except TransientError as exc:
            return RetryAfter(exc.retry_after, f"target unavailable: {exc}", "target")
        return outcome_of(report)

    def _sync_key(
        self,
        key: str,
        trigger: TriggerKind,
        causes: list[str],
        requested_by: str,
    ) -> RunReport | None:
        if not acts_on(self.policy.mode, trigger):
            return None  # nothing to read: the plan would be empty
        plan_as = plan_trigger(trigger)
        if key == EVERYONE:
            return self.sync_all(
                plan_as, triggered_by=causes, requested_by=requested_by, claim_users=True
            )
        # Nothing an event carried decides anything: the key names whom to re-read; an
        # email hint is never taken as the identity of a user Keycloak does not know.
        ref = UserRef.from_key(key)
        return self.sync_user(ref, plan_as, triggered_by=causes, requested_by=requested_by)

    # -- planning (pure after the reads) -------------------------------------------------
    def plan_user(self, ref: UserRef, trigger: Trigger) -> tuple[Plan, TargetState]:
        return self._plan_user(ref, trigger)[:2]

    def _plan_user(
        self, ref: UserRef, trigger: Trigger
    ) -> tuple[Plan, TargetState, dict[str, str], frozenset[str], IdentityView]:
        """The plan, the target state it was made from, the unreadable groups, the emails
        whose first login began and did not finish (jit only), and the Keycloak read."""
        mapping = self._mapping()
        identity = self.source.read_user(ref, mapping)
        ids = [u.id for u in identity.users] + list(identity.deleted_ids)
        pairs = {p.user_id: p for p in self._pairs_for(ids)}
        # (email, paired account id) to read in the target. A deleted Keycloak user is found
        # through the account the store paired with their id (or the email an earlier read
        # of Keycloak saw), never through an email an event carried.
        reads: list[tuple[str, str | None]] = []
        for user in identity.users:
            pair = pairs.get(user.id)
            if user.email:
                reads.append((user.email.lower(), pair.account_id if pair else None))
            if pair is not None and pair.email != (user.email or "").lower():
                reads.append((pair.email, pair.account_id))
        legacy: dict[str, str] = {}  # email → deleted id, for users deleted before pairing
        for user_id in identity.deleted_ids:
            pair = pairs.get(user_id)
            if pair is not None:
                reads.append((pair.email, pair.account_id))
            elif self.store is not None and (known := self.store.email_for(user_id)):
                reads.append((known, None))
                legacy[known.lower()] = user_id
        reads += [(e.lower(), None) for e in identity.deleted_users]
        if ref.email and not ref.user_id:
            reads.append((ref.email.lower(), None))
        if self.store is not None:
            for user in identity.users:
                if user.email:
                    self.store.remember_user(user.id, user.email.lower())
        if not reads:
            no_email = [u for u in identity.users if not u.email]
            scope = frozenset({u.username or u.id for u in no_email})
            empty = TargetState(users=[], teams=[])
            plan = make_plan(mapping, self.policy, identity, empty, trigger, scope)
            return plan, empty, identity.unreadable_groups, frozenset(), identity
        state = self._read_target_for(reads, creating=trigger == "login")
        found = {u.email.lower(): u for u in state.users}
        pair_list = list(pairs.values()) + [
            AccountPair(user_id=user_id, account_id=found[email].id, email=email)
            for email, user_id in legacy.items()
            if email in found
        ]
        paired_ids = {p.account_id for p in pair_list}
        emails = {e for e, _ in reads} | {
            u.email.lower() for u in state.users if u.id in paired_ids
        }
        self._settle_unknown_writes(state, emails)
        unfinished: frozenset[str] = frozenset()
        if self._tracks_first_logins and trigger == "login":
            assert self.store is not None
            unfinished = frozenset(self.store.unfinished_first_logins(emails))

        def planned(view: IdentityView) -> Plan:
            return make_plan(
                mapping,
                self.policy,
                view,
                state,
                trigger,
                frozenset(emails),
                unfinished,
                pairs=pair_list,
                email_changes=self.target.supports_email_change,
            )

        plan = planned(identity)
        # Fail closed as a full reconcile does: a removal or downgrade whose mapped groups
        # no longer exist (renamed, deleted) or cannot be read is not planned.
        suspects = _selectors_behind_removals(mapping, plan)
        suspects = [s for s in suspects if s.raw not in identity.unreadable_groups]
        missing = self.source.check_selectors(suspects) if suspects else {}
        if missing:
            unreadable = {**identity.unreadable_groups, **missing}
            identity = identity.model_copy(update={"unreadable_groups": unreadable})
            plan = planned(identity)
        return plan, state, identity.unreadable_groups, unfinished, identity

    def plan_all(
        self, trigger: Trigger, allow_removals: int | None = None
    ) -> tuple[Plan, TargetState]:
        return self._plan_all(trigger, allow_removals)[:2]

    def _plan_all(
        self, trigger: Trigger, allow_removals: int | None
    ) -> tuple[Plan, TargetState, dict[str, str], IdentityView]:
        mapping = self._mapping()
        with paused_gc():
            identity, state = self._read_both(mapping)
            self._settle_unknown_writes(state, None)
            self.progress.update(stage="planning", target_users=len(state.users))
            pairs = self.store.all_pairs(self.target.name) if self.store is not None else []
            plan = make_plan(
                mapping,
                self.policy,
                identity,
                state,
                trigger,
                None,
                pairs=pairs,
                email_changes=self.target.supports_email_change,
            )
            managed = count_managed_memberships(mapping, self.policy, state)
            budgeted = apply_removal_budget(plan, self.policy, managed, allow_removals)
        self.progress.update(stage="planned", planned=len(budgeted.operations))
        return budgeted, state, identity.unreadable_groups, identity

    def _read_both(self, mapping: Mapping) -> tuple[IdentityView, TargetState]:
        """Keycloak and the target read at the same time: a full reconcile mostly waits for
        their answers (and Tines paces `admin/users`). Both reads always finish before this
        returns; if both fail, Keycloak's error is the one raised, as when read in turn."""
        self.progress.update(stage="reading Keycloak and the target")
        with ThreadPoolExecutor(1, thread_name_prefix="target-read") as pool:
            target_read = pool.submit(self.target.read_state)
            try:
                identity = self.source.read_all(mapping)
            except BaseException:
                wait([target_read])
                raise
            self.progress.update(users_read=len(identity.users))
            state = target_read.result()
        return identity, state

    def _pairs_for(self, user_ids: list[str]) -> list[AccountPair]:
        if self.store is None or not user_ids:
            return []
        return self.store.pairs_for(self.target.name, user_ids)

    def _save_pairs(self, identity: IdentityView | None, accounts: dict[str, TargetUser]) -> None:
        """Pair every Keycloak user read with the account that has their email once the run
        is over (created, renamed, or met for the first time)."""
        if self.store is None or identity is None or self.dry_run:
            return
        counts = Counter((u.email or "").lower() for u in identity.users)
        found = [
            AccountPair.trusted(user_id=u.id, account_id=accounts[email].id, email=email)
            for u in identity.users
            if (email := (u.email or "").lower()) and counts[email] == 1 and email in accounts
        ]
        if not found:
            return
        changed = self.store.changed_pairs(self.target.name, found)
        if changed:
            self.store.save_pairs(self.target.name, changed)

    def _settle_unknown_writes(self, state: TargetState, emails: set[str] | None) -> None:
        """Record the outcome of writes whose answer a stopped process never got, from what
        this fresh read shows: in effect (`applied`) or not (`failed`; planned again)."""
        if self.store is None or self.dry_run:
            return
        for intent_id, intent in self.store.unsettled_writes(emails):
            op = _operation_of(intent)
            if op is None:
                continue
            applied = in_effect(op, state)
            later = self._applied_later(intent) if applied else None
            if later is not None:
                # A later run found the change not in effect and made it: this write did not.
                error: str | None = f"not in effect when run {later} read the target; it applied it"
            elif applied:
                error = None
            else:
                error = (
                    "not in effect at the next read (its process stopped while sending it); "
                    "planned again"
                )
            outcome = intent.model_copy(
                update={
                    "time": datetime.now(UTC),
                    "outcome": "applied" if applied and later is None else "failed",
                    "error": error,
                }
            )
            self.store.settle_audit(intent_id, outcome)
            log.info(
                "settled %s %s of run %s: %s",
                intent.op,
                intent.email,
                intent.run_id,
                outcome.outcome,
            )

    def _applied_later(self, intent: AuditRecord) -> str | None:
        """The run that applied the same change after `intent` was recorded, if one did."""
        assert self.store is not None
        for record in self.store.audit(email=intent.email, since=intent.time, limit=10_000):
            if (
                record.outcome == "applied"
                and record.run_id != intent.run_id
                and record.time > intent.time
                and (record.op, record.team, record.case_group, record.after)
                == (intent.op, intent.team, intent.case_group, intent.after)
            ):
                return record.run_id or "?"
        return None

    @property
    def _tracks_first_logins(self) -> bool:
        """Only jit needs to know a first login was cut short: enhanced converges anyway."""
        return self.store is not None and self.policy.mode == "jit" and not self.dry_run

    def _read_target_for(
        self, reads: list[tuple[str, str | None]], *, creating: bool
    ) -> TargetState:
        """`reads`: (email, paired account id); `creating`: a login, whose plan creates a
        user the read shows absent."""
        unique: dict[str, str | None] = {}
        for email, account_id in reads:
            unique[email] = unique.get(email) or account_id
        states = [
            self.target.read_user_state(email, creating=creating, account_id=account_id)
            for email, account_id in unique.items()
        ]
        if len(states) == 1:
            return states[0]
        users = {u.id: u for s in states for u in s.users}
        return TargetState(users=list(users.values()), teams=_merge_teams(states))

    # -- sync ----------------------------------------------------------------------------
    def sync_user(
        self, ref: UserRef, trigger: Trigger, *, triggered_by: list[str], requested_by: str
    ) -> RunReport:
        started = time.monotonic()
        plan, state, unreadable, unfinished, identity = self._plan_user(ref, trigger)
        report = self._execute(
            "user",
            plan,
            state,
            triggered_by,
            requested_by,
            unreadable,
            unfinished,
            identity,
            subject=user_subject(ref, plan),
            started=started,
        )
        appeared = _appeared(report.results)
        if not appeared:
            return report
        # The user existed after all (created meanwhile, or a stale list of who exists): what
        # was planned for a new user may be wrong for them, so plan again from a fresh read.
        log.info("run %s: %s already existed; planning again", report.run_id, sorted(appeared))
        started = time.monotonic()
        plan, state, unreadable, unfinished, identity = self._plan_user(ref, trigger)
        cause = [report.run_id] if report.run_id else triggered_by
        return self._execute(
            "user",
            plan,
            state,
            cause,
            requested_by,
            unreadable,
            unfinished,
            identity,
            subject=user_subject(ref, plan),
            started=started,
        )

    def sync_all(
        self,
        trigger: Trigger,
        *,
        triggered_by: list[str],
        requested_by: str,
        allow_removals: int | None = None,
        claim_users: bool = False,
    ) -> RunReport:
        """`claim_users` (the service's full reconcile): write to each user under that
        user's queue claim, beside the workers' reconciles of single users. Without it (the
        CLI, where no worker would take a user it leaves), every planned write is made."""
        read_at = self.store.now() if self.store is not None else 0.0
        started = time.monotonic()
        plan, state, unreadable, identity = self._plan_all(trigger, allow_removals)
        claim = None
        if claim_users and self.store is not None and not self.dry_run:
            keys = {u.email.lower(): UserRef(user_id=u.id).key for u in identity.users if u.email}
            claim = self._user_claims(self.store, keys, read_at)
        return self._execute(
            EVERYONE,
            plan,
            state,
            triggered_by,
            requested_by,
            unreadable,
            identity=identity,
            subject=EVERYONE,
            started=started,
            claim=claim,
        )

    @staticmethod
    def _user_claims(
        store: Store,
        keys: dict[str, str],
        read_at: float,
        lease_seconds: float = USER_CLAIM_LEASE,
    ) -> UserClaims:
        """A full reconcile's writes to a user happen under that user's queue claim, so
        logins and admin events go on beside it and no user is reconciled twice at once.
        Several users are claimed in one transaction, and released in one. The leases are
        renewed while the writes run (a throttled target can hold a chunk past one lease),
        so a worker never takes a user whose writes are still under way."""

        from bridge.store import EnqueueRequest

        @contextmanager
        def claim(emails: list[str]) -> Iterator[frozenset[str]]:
            email_of = {keys.get(e.lower()) or UserRef(email=e).key: e.lower() for e in emails}
            items = store.claim_users(list(email_of), read_at, lease_seconds)
            refused = [key for key in email_of if key not in items]
            if refused:
                # Their own reconcile is queued, running or began after our read: it reads
                # afresh; queueing the key makes sure one runs after whatever is running.
                store.enqueue_many(
                    [EnqueueRequest(key, "reconcile", source="full-reconcile") for key in refused]
                )
            if not items:
                yield frozenset()
                return
            done = threading.Event()
            renewing = threading.Thread(
                target=_renew_claims,
                args=(store, list(items.values()), lease_seconds, done),
                name="full-reconcile-claims",
                daemon=True,
            )
            renewing.start()
            try:
                yield frozenset(email_of[key] for key in items)
            finally:
                done.set()
                renewing.join()
                store.complete_all(list(items.values()))

        return claim

    def approve(self, run_id: str, approved_by: str) -> RunReport:
        """Apply what a held run kept back, as far as a fresh plan still wants it.

        The world may have moved since the hold: a removal is applied only if a plan made
        now still contains it, so an approval can never remove access someone regained.
        The fresh read comes first: if it fails, the approval is not used up.
        """
        if self.store is None:
            raise RuntimeError("approving a held run needs the state store")
        started = time.monotonic()
        fresh, state, unreadable, _ = self._plan_all("reconcile", allow_removals=10**9)
        held = self.store.approve_run(run_id, approved_by)
        wanted = {_identity_of_dict(op) for op in held}
        still = [op for op in fresh.operations if _identity_of(op) in wanted]
        plan = fresh.model_copy(update={"operations": still, "held": []})
        return self._execute(
            "approval",
            plan,
            state,
            [run_id],
            approved_by,
            unreadable,
            subject=EVERYONE,
            started=started,
        )

    def _execute(
        self,
        kind: str,
        plan: Plan,
        state: TargetState,
        triggered_by: list[str],
        requested_by: str,
        unreadable: dict[str, str],
        unfinished: frozenset[str] = frozenset(),
        identity: IdentityView | None = None,
        *,
        subject: str,
        started: float,
        claim: UserClaims | None = None,
    ) -> RunReport:
        run_id = None
        if self.store is not None:
            run_id = self.store.start_run(kind, plan.trigger, requested_by=requested_by)
            if kind != "user":
                # A long run: the console shows how far it got against this count. (Not for
                # a user's run: a login would pay a second commit for it.)
                self.store.note_run_progress(run_id, _planned(plan))
        cause = ",".join(triggered_by) or (run_id or "")
        if unreadable:
            log.warning(
                "run %s: %d mapped group(s) could not be read; nothing they grant is removed: %s",
                run_id,
                len(unreadable),
                "; ".join(f"{k}: {v}" for k, v in sorted(unreadable.items())),
            )
        begun_before = self._begin_first_logins(plan)
        if self.store is not None and run_id is not None and plan.held and not self.dry_run:
            # Before any write: whatever happens to the rest of the run, the hold stands and
            # can be approved.
            self.store.hold_run(
                run_id,
                [op.model_dump(mode="json", by_alias=True) for op in plan.held],
                reason=_hold_reason(plan, self.policy, run_id),
            )
        accounts = {u.email.lower(): u for u in state.users}
        if self.dry_run:
            report = RunReport(run_id, plan, "dry_run", dry_run_results(plan.operations))
        elif not plan.operations:
            report = RunReport(run_id, plan, "held" if plan.held else "no_changes")
        else:
            self.progress.update(stage="applying", planned=len(plan.operations), applied=0)
            intents: dict[int, int] = {}

            def before_send(ops: list[Operation]) -> None:
                # Write-ahead: recorded as `unknown` before the call, so no write can reach
                # the target without a record, even if this process dies during the call.
                # A batch's operations are recorded in one transaction.
                if self.store is not None and run_id is not None and ops:
                    records = [
                        _audit_record(
                            run_id, cause, OpResult(op=op, outcome="failed", **change_of(op))
                        )
                        for op in ops
                    ]
                    ids = self.store.record_audit_intents(records)
                    intents.update(zip(map(id, ops), ids, strict=True))

            def audit_now(results: list[OpResult]) -> None:
                for result in results:
                    if result.outcome == "applied":
                        self.progress.one_applied()
                # Operations never sent (the run stopped first) are planned again next time;
                # the audit records what happened to access, so they are not in it.
                sent = [result for result in results if result.outcome != "not_run"]
                if self.store is None or run_id is None or not sent:
                    return
                fresh: list[AuditRecord] = []
                settled: list[tuple[int, AuditRecord]] = []
                for result in sent:
                    record = _audit_record(run_id, cause, result)
                    intent = intents.pop(id(result.op), None)
                    if intent is None:
                        fresh.append(record)
                    else:
                        settled.append((intent, record))
                if fresh:
                    self.store.record_audit(*fresh)
                if settled:
                    self.store.settle_audits(settled)

            outcome = apply_operations(
                self.target,
                list(plan.operations),
                state,
                audit_now,
                before_send=before_send,
                should_stop=self.should_stop,
                concurrency=self.write_concurrency,
                claim=claim,
            )
            accounts = outcome.accounts
            report = RunReport(run_id, plan, _status_of(plan, outcome), outcome.results)
            report.stopped_by = outcome.stopped_by
            if outcome.stopped_by is not None:
                report.error = str(outcome.stopped_by)
            elif outcome.failed:
                report.error = "; ".join(r.error or "" for r in outcome.failed[:5])
        report.unreadable_groups = dict(unreadable)
        with paused_gc():  # pairs every user read: no cyclic GC over it (bridge.gcpause)
            self._save_pairs(identity, accounts)
        report.subject = subject
        report.duration = time.monotonic() - started
        self._finish_first_logins(plan, report.results, unfinished, begun_before)
        if self.store is not None and run_id is not None:
            # Applied operations were audited one by one as they happened (see above).
            pending = report.results if self.dry_run else []
            held = [] if self.dry_run else [OpResult(op=op, outcome="held") for op in plan.held]
            self._audit(run_id, cause, [*pending, *held])
            self.store.finish_run(run_id, report.status, report.summary())
        log_run(report, kind)
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
        if self.store is not None and records:
            self.store.record_audit_many(_audit_record(run_id, cause, r) for r in records)


def _audit_record(run_id: str, cause: str, result: OpResult) -> AuditRecord:
    from bridge.store import AuditRecord

    op = result.op
    return AuditRecord(
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


def _operation_of(record: AuditRecord) -> Operation | None:
    """The operation an audit record of a write describes (None if it cannot be rebuilt)."""
    fields: dict[str, Any] = {"op": record.op, "email": record.email}
    if record.op != "create_user":
        fields["because"] = record.because
    before, after = record.before or {}, record.after or {}
    if record.team is not None:
        fields |= {"team": record.team, "case_group": record.case_group}
    details: dict[str, dict[str, Any]] = {
        "add_membership": {"role": after.get("role")},
        "change_role": {"from": before.get("role"), "to": after.get("role")},
        "remove_membership": {"role": before.get("role")},
        "set_tenant_owner": {"value": after.get("tenant_owner")},
        "set_tenant_permissions": {
            "add": after.get("added", []),
            "remove": before.get("removed", []),
        },
        "update_profile": {"changes": after},
        "change_email": {"to": after.get("email")},
        "create_user": dict(after),
    }
    fields |= details.get(record.op, {})
    try:
        return _OPERATION.validate_python(fields)
    except ValidationError:
        log.warning("cannot rebuild %s %s from its audit record", record.op, record.email)
        return None


def _planned(plan: Plan) -> dict[str, object]:
    return {
        "status": "running",
        "operations": len(plan.operations),
        "held": len(plan.held),
        "skipped": len(plan.skipped),
    }


def _selectors_behind_removals(mapping: Mapping, plan: Plan) -> list[GroupSelector]:
    """The mapped selectors that could grant what `plan` takes away (a membership removed or
    its role changed, the owner flag or a permission revoked): the ones a per-user read must
    prove still exist before the plan may stand."""
    keys = {
        (op.team, op.case_group)
        for op in plan.operations
        if isinstance(op, RemoveMembership | ChangeRole)
    }
    found = {e.group for e in mapping.entries if (e.team, e.case_group) in keys}
    if any(isinstance(op, SetTenantOwner) and not op.value for op in plan.operations):
        found |= set(mapping.tenant_owner_groups)
    removed = {
        p for op in plan.operations if isinstance(op, SetTenantPermissions) for p in op.remove
    }
    found |= {g.group for g in mapping.tenant_permissions if removed & set(g.permissions)}
    return sorted(found, key=lambda s: s.raw)


def _appeared(results: list[OpResult]) -> set[str]:
    """Lower-cased emails whose create found the user already there."""
    return {r.op.email.lower() for r in results if r.error_type == "appeared"}


def _status_of(plan: Plan, outcome: ApplyResult) -> FinishedRunStatus:
    if outcome.interrupted:
        return "interrupted"
    if outcome.stopped_by is not None:
        return "failed" if not outcome.applied else "partial"
    if outcome.failed:
        return "partial" if outcome.applied else "failed"
    return "held" if plan.held else "succeeded"


def _hold_reason(plan: Plan, policy: Policy, run_id: str) -> str:
    removals = [op for op in plan.held if is_removal(op, policy)]
    return (
        f"{len(removals)} removals exceed the budget (max_removals={policy.max_removals}, "
        f"max_removal_fraction={policy.max_removal_fraction}); approve with "
        f"`jit-bridge approve {run_id}` or POST /api/v1/runs/{run_id}/approve"
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

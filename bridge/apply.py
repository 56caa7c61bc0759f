"""Carry out a plan's operations on a target, one call (one logical operation) each.

The plan names teams, case groups and users; the target wants ids. Names are resolved once
against the target state the plan was made from. Errors follow the connector taxonomy: a
permanent error fails that operation and the rest go on; a transient or authorisation error
stops the run (the worker retries it later with a fresh read, so nothing is half-applied
for long and nothing is applied twice).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager, suppress
from dataclasses import dataclass, field
from typing import Any, Literal, TypedDict

from bridge.model import (
    ActivateUser,
    AddMembership,
    ChangeEmail,
    ChangeRole,
    CreateUser,
    DeactivateUser,
    Operation,
    RemoveMembership,
    SetTenantOwner,
    SetTenantPermissions,
    TargetState,
    TargetUser,
    UpdateProfile,
)
from bridge.targets.base import (
    Addition,
    AlreadyExistsError,
    BadRequestError,
    NotFoundError,
    Target,
    TargetError,
    TransientError,
    UnauthorizedError,
)

LEFT_TO_NEWER_RUN = "left to this user's own reconcile (queued, running, or newer than this plan)"

Outcome = Literal["applied", "failed", "held", "dry_run", "not_run"]


@dataclass(frozen=True)
class OpResult:
    op: Operation
    outcome: Outcome
    before: dict[str, Any] = field(default_factory=dict)
    after: dict[str, Any] = field(default_factory=dict)
    error: str | None = None
    error_type: str | None = None


@dataclass
class ApplyResult:
    results: list[OpResult] = field(default_factory=list)
    stopped_by: TargetError | None = None
    #: The process began to stop: the operations not yet sent were left for the next run.
    interrupted: bool = False
    #: Every account by lower-case email once the run is over (created and renamed ones
    #: included), so the store can pair them with their Keycloak users.
    accounts: dict[str, TargetUser] = field(default_factory=dict)

    @property
    def failed(self) -> list[OpResult]:
        return [r for r in self.results if r.outcome == "failed"]

    @property
    def applied(self) -> list[OpResult]:
        return [r for r in self.results if r.outcome == "applied"]


UserClaims = Callable[[list[str]], AbstractContextManager[frozenset[str]]]
"""Holds the queue claims of users (named by email) while the writes made inside it run:
yields the lower-case emails it claimed (the others are left to their own reconciles) and
releases those claims on exit."""


class _Change(TypedDict):
    before: dict[str, Any]
    after: dict[str, Any]


class UnknownTargetObjectError(BadRequestError):
    """The plan names a team, case group or user the target does not have."""


class UserAppearedError(AlreadyExistsError):
    """The plan creates a user the target already has: someone created them after the read,
    or the read believed a stale list. Acting on the plan could change a user it never saw
    (in jit mode, an existing user must not be touched at all), so that user's operations
    stop here and the reconciler plans them again from a fresh read."""


class _Directory:
    """Name → id lookups over one target state, kept current as users are created."""

    def __init__(self, state: TargetState, names_are_ids: bool = False) -> None:
        self.names_are_ids = names_are_ids
        self.users = {u.email.lower(): u for u in state.users}
        self.teams = {t.name: t.id for t in state.teams}
        self.case_groups = {(t.name, c.name): c.id for t in state.teams for c in t.case_groups}

    def user(self, email: str) -> TargetUser:
        found = self.users.get(email.lower())
        if found is None:
            raise UnknownTargetObjectError(f"user {email} does not exist in the target")
        return found

    def place(self, team: str, case_group: str | None) -> tuple[str, str | None]:
        if self.names_are_ids:
            if case_group is None:
                return self.teams.get(team, team), None
            return self.teams.get(team, team), self.case_groups.get((team, case_group), case_group)
        team_id = self.teams.get(team)
        if team_id is None:
            raise UnknownTargetObjectError(
                f"team '{team}' does not exist in the target; create it there or fix the mapping"
            )
        if case_group is None:
            return team_id, None
        group_id = self.case_groups.get((team, case_group))
        if group_id is None:
            raise UnknownTargetObjectError(
                f"case group '{case_group}' does not exist in team '{team}'; "
                "create it there or fix the mapping"
            )
        return team_id, group_id


def dry_run_results(operations: Iterable[Operation]) -> list[OpResult]:
    """What a dry run records: every operation, none sent."""
    return [OpResult(op=op, outcome="dry_run", **change_of(op)) for op in operations]


def apply_operations(
    target: Target,
    operations: list[Operation],
    state: TargetState,
    on_results: Callable[[list[OpResult]], None] | None = None,
    *,
    before_send: Callable[[list[Operation]], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    concurrency: int = 1,
    claim: UserClaims | None = None,
) -> ApplyResult:
    """Apply a plan's operations: email changes first (the rest of the plan names those
    accounts by their new emails), then each user's in plan order, up to `concurrency`
    users at once, never two requests for one user at the same time.

    A target that adds many members to a group in one request (`batches_memberships`)
    gets every user's additions at once: first each user's create or reactivation, then
    all additions, in batches, one request after another, then each user's remaining
    operations. A transient or authorisation error stops the run: what is under way ends,
    nothing new starts, and what was never sent is `not_run`.

    `before_send` sees the operations of each request before it is sent (one, or a batch's
    additions) and `on_results` their outcomes as soon as they are known, so the audit holds
    every call made (as `unknown` if the process dies during it). `should_stop` is asked
    before each request: once true, the rest is left unsent (`not_run`) for the next run.
    With `concurrency` > 1 the callbacks are called from several threads at once (the
    store's audit writes of concurrent callers then share one transaction).

    `claim` (the service's full reconcile) is held around each user's operations, so a
    login of that user waits for those writes only, never for everyone; a user it refuses
    is left to their own reconcile (`not_run`). A target that batches additions gets them
    phase by phase under the claims of at most `members_per_request` users at a time: the
    creates, then the additions (each request's users claimed around it, so each group gets
    as many requests as without claims), then the rest; a login waits for at most one such
    chunk.
    """
    run = _Run(target, state, on_results, before_send, should_stop, concurrency, claim)
    return run.apply(operations)


_BEFORE_MEMBERSHIPS = ("create_user", "activate_user")
#: Outcomes of batched additions are handed on (audited) this many at a time.
_AUDIT_BATCH = 100


class _Run:
    def __init__(
        self,
        target: Target,
        state: TargetState,
        on_results: Callable[[list[OpResult]], None] | None,
        before_send: Callable[[list[Operation]], None] | None,
        should_stop: Callable[[], bool] | None,
        concurrency: int,
        claim: UserClaims | None = None,
    ) -> None:
        if concurrency < 1:
            raise ValueError("write concurrency must be at least 1")
        self.target = target
        self.directory = _Directory(state, target.names_are_ids)
        self.on_results = on_results
        self.before_send = before_send
        self.should_stop = should_stop
        self.concurrency = concurrency
        self.claim = claim
        self.result = ApplyResult(accounts=self.directory.users)
        self.appeared: set[str] = set()
        self._lock = threading.Lock()

    def apply(self, operations: list[Operation]) -> ApplyResult:
        renames = [op for op in operations if isinstance(op, ChangeEmail)]
        if renames:
            self._each_user([[op] for op in renames])
            operations = [op for op in operations if not isinstance(op, ChangeEmail)]
        by_user: dict[str, list[Operation]] = {}
        for op in operations:
            by_user.setdefault(op.email.lower(), []).append(op)
        per_user = list(by_user.values())
        if not self.target.batches_memberships:
            self._each_user(per_user)
        elif self.claim is None:
            self._in_phases(per_user)
        else:
            self._in_claimed_phases(per_user)
        return self.result

    def _in_phases(self, per_user: list[list[Operation]], *, claimed: bool = False) -> None:
        """Each user's create or reactivation, then every user's additions, batched, then
        each user's remaining operations. `claimed`: the caller holds the users' claims."""
        self._each_user(_heads(per_user), claimed=claimed)
        self._add_all(_additions(per_user))
        self._each_user(_tails(per_user), claimed=claimed)

    def _in_claimed_phases(self, per_user: list[list[Operation]]) -> None:
        """`_in_phases` under the users' claims, one phase at a time: the creates and
        reactivations `members_per_request` users at a time; then the additions, place by
        place (team, case group, role), up to `members_per_request` members a request, the
        users of each request claimed around it; then the remaining operations,
        `members_per_request` users at a time. So each group gets as many requests as
        without claims, and a login waits for at most one chunk (one addition request, or a
        chunk's creates). Claims are taken again for each chunk: a user whose own reconcile
        began in between is refused (its fresh plan stands), and all the user's remaining
        operations are left to it."""
        size = self.target.members_per_request
        refused: set[str] = set()
        heads = _heads(per_user)
        for start in range(0, len(heads), size):
            self._under_claims(heads[start : start + size], refused, self._each_claimed_user)
        by_place: dict[tuple[str, str, str], list[Operation]] = {}
        for op in _additions(per_user):
            by_place.setdefault((op.team, op.case_group or "", op.role), []).append(op)
        for place in sorted(by_place):
            additions = by_place[place]
            for start in range(0, len(additions), size):
                chunk = [[op] for op in additions[start : start + size]]
                self._under_claims(chunk, refused, self._add_claimed)
        tails = _tails(per_user)
        for start in range(0, len(tails), size):
            self._under_claims(tails[start : start + size], refused, self._each_claimed_user)

    def _under_claims(
        self,
        chunk: list[list[Operation]],
        refused: set[str],
        work: Callable[[list[list[Operation]]], None],
    ) -> None:
        """`work` on those per-user lists of `chunk` whose users it could claim, the claims
        held until `work` returns (its outcomes audited); the others are `not_run`, left to
        their own reconcile, and remembered in `refused` for the later phases."""
        assert self.claim is not None
        if self._stopping():
            self._not_run(op for ops in chunk for op in ops)
            return
        wanted = []
        for ops in chunk:
            if ops[0].email.lower() in refused:
                self._not_run(ops, LEFT_TO_NEWER_RUN)
            else:
                wanted.append(ops)
        if not wanted:
            return
        with self.claim(list(dict.fromkeys(ops[0].email for ops in wanted))) as claimed:
            ours = []
            for ops in wanted:
                email = ops[0].email.lower()
                if email in claimed:
                    ours.append(ops)
                else:
                    refused.add(email)
                    self._not_run(ops, LEFT_TO_NEWER_RUN)
            if ours:
                work(ours)

    def _each_claimed_user(self, per_user: list[list[Operation]]) -> None:
        self._each_user(per_user, claimed=True)

    def _add_claimed(self, per_user: list[list[Operation]]) -> None:
        self._add_all(_additions(per_user))

    # -- outcomes --------------------------------------------------------------------------
    def _settle(self, outcomes: list[OpResult]) -> None:
        if not outcomes:
            return
        with self._lock:
            self.result.results.extend(outcomes)
        if self.on_results is not None:
            self.on_results(outcomes)

    def _may_send(self, ops: list[Operation]) -> bool:
        """False once the run is stopped or stopping; else `before_send` has seen `ops`."""
        if self._stopping():
            return False
        if self.before_send is not None:
            self.before_send(ops)
        return True

    def _stopping(self) -> bool:
        """Whether the run stopped (a target error) or its process is stopping."""
        with self._lock:
            if self.result.stopped_by is not None or self.result.interrupted:
                return True
            if self.should_stop is not None and self.should_stop():
                self.result.interrupted = True
                return True
        return False

    def _stop(self, exc: TargetError) -> None:
        with self._lock:
            if self.result.stopped_by is None:
                self.result.stopped_by = exc

    def _not_run(self, ops: Iterable[Operation], why: str | None = None) -> None:
        if why is None:
            why = "stopping" if self.result.interrupted else "run stopped"
        self._settle([OpResult(op=op, outcome="not_run", error=why, **change_of(op)) for op in ops])

    # -- one user at a time, several users at once ----------------------------------------
    def _each_user(self, per_user: list[list[Operation]], *, claimed: bool = False) -> None:
        """`claimed`: the caller holds these users' claims already."""
        per_user = [ops for ops in per_user if ops]
        if self.concurrency == 1 or len(per_user) < 2:
            for ops in per_user:
                self._one_user(ops, claimed)
            return
        with ThreadPoolExecutor(self.concurrency, thread_name_prefix="apply") as pool:
            for future in [pool.submit(self._one_user, ops, claimed) for ops in per_user]:
                future.result()

    def _one_user(self, ops: list[Operation], claimed: bool) -> None:
        if self.claim is None or claimed:
            self._one_users_ops(ops)
            return
        with self.claim([ops[0].email]) as ours:
            if ops[0].email.lower() in ours:
                self._one_users_ops(ops)
            else:
                self._not_run(ops, LEFT_TO_NEWER_RUN)

    def _one_users_ops(self, ops: list[Operation]) -> None:
        for index, op in enumerate(ops):
            if op.email.lower() in self.appeared:
                self._not_run([op], "re-planned: user already existed")
                continue
            if not self._may_send([op]):
                self._not_run(ops[index:])
                return
            change = change_of(op)
            try:
                _apply_one(self.target, self.directory, op)
            except (TransientError, UnauthorizedError) as exc:
                self._stop(exc)
                self._settle([OpResult(op=op, outcome="failed", error=str(exc), **change)])
                self._not_run(ops[index + 1 :])
                return
            except UserAppearedError as exc:
                self.appeared.add(op.email.lower())
                failed = OpResult(
                    op=op, outcome="failed", error=str(exc), error_type="appeared", **change
                )
                self._settle([failed])
            except TargetError as exc:
                self._settle([OpResult(op=op, outcome="failed", error=str(exc), **change)])
            else:
                self._settle([OpResult(op=op, outcome="applied", **change)])

    # -- every user's additions, batched --------------------------------------------------
    def _add_all(self, ops: list[AddMembership]) -> None:
        additions: list[Addition] = []
        sendable: list[AddMembership] = []
        for op in ops:
            if op.email.lower() in self.appeared:
                self._not_run([op], "re-planned: user already existed")
                continue
            try:
                user = self.directory.user(op.email)
                team_id, group_id = self.directory.place(op.team, op.case_group)
            except TargetError as exc:
                self._settle([OpResult(op=op, outcome="failed", error=str(exc), **change_of(op))])
                continue
            additions.append(Addition(user, team_id, group_id, op.role))
            sendable.append(op)
        announced: set[int] = set()
        reported: set[int] = set()
        pending: list[OpResult] = []

        def sending(indexes: list[int]) -> bool:
            fresh = [i for i in indexes if i not in announced]
            announced.update(fresh)
            return self._may_send([sendable[i] for i in fresh])

        def done(index: int, error: TargetError | None) -> None:
            reported.add(index)
            op = sendable[index]
            outcome: Outcome = "applied" if error is None else "failed"
            message = None if error is None else str(error)
            pending.append(OpResult(op=op, outcome=outcome, error=message, **change_of(op)))
            if len(pending) >= _AUDIT_BATCH:
                self._settle(pending[:])
                pending.clear()

        try:
            if additions and self._may_send([]):
                self.target.add_memberships(additions, done, sending)
        except (TransientError, UnauthorizedError) as exc:
            self._stop(exc)
        finally:
            self._settle(pending)
        self._not_run(op for index, op in enumerate(sendable) if index not in reported)


def _heads(per_user: list[list[Operation]]) -> list[list[Operation]]:
    """Each user's create or reactivation (users with none left out)."""
    return [h for ops in per_user if (h := [op for op in ops if op.op in _BEFORE_MEMBERSHIPS])]


def _additions(per_user: list[list[Operation]]) -> list[AddMembership]:
    return [op for ops in per_user for op in ops if isinstance(op, AddMembership)]


def _tails(per_user: list[list[Operation]]) -> list[list[Operation]]:
    """Each user's operations made after every addition (users with none left out)."""
    return [rest for ops in per_user if (rest := [op for op in ops if _after_additions(op)])]


def _after_additions(op: Operation) -> bool:
    """Not a create, reactivation or addition."""
    return op.op not in _BEFORE_MEMBERSHIPS and op.op != "add_membership"


def _apply_one(target: Target, directory: _Directory, op: Operation) -> None:
    if isinstance(op, ChangeEmail):
        if op.to.lower() in directory.users:
            raise BadRequestError(f"cannot change {op.email} to {op.to}: that email is taken")
        changed = target.change_email(directory.user(op.email), op.to)
        del directory.users[op.email.lower()]
        directory.users[op.to.lower()] = changed
        return
    if isinstance(op, CreateUser):
        try:
            created = target.create_user(op.email, op.first_name, op.last_name, op.avatar_url)
        except AlreadyExistsError as exc:
            raise UserAppearedError(
                f"{op.email} already exists in the target although the read this plan was made "
                f"from did not show them ({exc}); their changes are planned again"
            ) from exc
        directory.users[op.email.lower()] = created
        return
    user = directory.user(op.email)
    if isinstance(op, AddMembership):
        team_id, group_id = directory.place(op.team, op.case_group)
        target.add_membership(user, team_id, group_id, op.role)
    elif isinstance(op, ChangeRole):
        team_id, group_id = directory.place(op.team, op.case_group)
        target.change_role(user, team_id, group_id, op.to_role)
    elif isinstance(op, RemoveMembership):
        team_id, group_id = directory.place(op.team, op.case_group)
        with suppress(NotFoundError):  # already gone: the desired state holds
            target.remove_membership(user, team_id, group_id)
    elif isinstance(op, SetTenantOwner):
        directory.users[user.email.lower()] = target.update_user(user, tenant_owner=op.value)
    elif isinstance(op, SetTenantPermissions):
        wanted = sorted((set(user.tenant_permissions) - set(op.remove)) | set(op.add))
        directory.users[user.email.lower()] = target.update_user(user, tenant_permissions=wanted)
    elif isinstance(op, UpdateProfile):
        directory.users[user.email.lower()] = target.update_user(
            user, first_name=op.changes.get("first_name"), last_name=op.changes.get("last_name")
        )
    elif isinstance(op, DeactivateUser):
        directory.users[user.email.lower()] = target.update_user(user, active=False)
    elif isinstance(op, ActivateUser):
        directory.users[user.email.lower()] = target.update_user(user, active=True)


def in_effect(op: Operation, state: TargetState) -> bool:
    """Whether `state` (read after the call) shows what `op` does: how the outcome of a call
    whose answer was lost (a crash) is settled."""
    if isinstance(op, ChangeEmail):
        return any(u.email.lower() == op.to.lower() for u in state.users)
    user = next((u for u in state.users if u.email.lower() == op.email.lower()), None)
    if isinstance(op, CreateUser) or user is None:
        return user is not None
    if isinstance(op, AddMembership | ChangeRole | RemoveMembership):
        role = _role_in(state, user.id, op.team, op.case_group)
        if isinstance(op, AddMembership):
            return role == op.role
        if isinstance(op, ChangeRole):
            return role == op.to_role
        return role is None
    if isinstance(op, SetTenantOwner):
        return user.tenant_owner == op.value
    if isinstance(op, SetTenantPermissions):
        held = set(user.tenant_permissions)
        return set(op.add) <= held and not set(op.remove) & held
    if isinstance(op, UpdateProfile):
        return all(getattr(user, name, None) == value for name, value in op.changes.items())
    return user.active == isinstance(op, ActivateUser)


def _role_in(state: TargetState, user_id: str, team: str, case_group: str | None) -> str | None:
    for found in state.teams:
        if found.name != team:
            continue
        members = found.members
        if case_group is not None:
            group = next((g for g in found.case_groups if g.name == case_group), None)
            members = [] if group is None else group.members
        return next((m.role for m in members if m.user_id == user_id), None)
    return None


def change_of(op: Operation) -> _Change:
    """The before/after an audit record shows for an operation (and rebuilds it from)."""
    if isinstance(op, AddMembership):
        return {"before": {}, "after": {"role": op.role}}
    if isinstance(op, ChangeRole):
        return {"before": {"role": op.from_role}, "after": {"role": op.to_role}}
    if isinstance(op, RemoveMembership):
        return {"before": {"role": op.role}, "after": {}}
    if isinstance(op, SetTenantOwner):
        return {"before": {"tenant_owner": not op.value}, "after": {"tenant_owner": op.value}}
    if isinstance(op, SetTenantPermissions):
        return {"before": {"removed": list(op.remove)}, "after": {"added": list(op.add)}}
    if isinstance(op, UpdateProfile):
        return {"before": {}, "after": dict(op.changes)}
    if isinstance(op, DeactivateUser):
        return {"before": {"active": True}, "after": {"active": False}}
    if isinstance(op, ActivateUser):
        return {"before": {"active": False}, "after": {"active": True}}
    if isinstance(op, ChangeEmail):
        return {"before": {"email": op.email}, "after": {"email": op.to}}
    return {
        "before": {},
        "after": {"first_name": op.first_name, "last_name": op.last_name},
    }

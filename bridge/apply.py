"""Carry out a plan's operations on a target, one call (one logical operation) each.

The plan names teams, case groups and users; the target wants ids. Names are resolved once
against the target state the plan was made from. Errors follow the connector taxonomy: a
permanent error fails that operation and the rest go on; a transient or authorisation error
stops the run (the worker retries it later with a fresh read, so nothing is half-applied
for long and nothing is applied twice).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from contextlib import suppress
from dataclasses import dataclass, field
from typing import Any, Literal, TypedDict

from bridge.model import (
    ActivateUser,
    AddMembership,
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
    AlreadyExistsError,
    BadRequestError,
    NotFoundError,
    Target,
    TargetError,
    TransientError,
    UnauthorizedError,
)

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

    @property
    def failed(self) -> list[OpResult]:
        return [r for r in self.results if r.outcome == "failed"]

    @property
    def applied(self) -> list[OpResult]:
        return [r for r in self.results if r.outcome == "applied"]


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
    on_result: Callable[[OpResult], None] | None = None,
    *,
    before_send: Callable[[Operation], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> ApplyResult:
    """Apply in order. `before_send` sees each operation before its call is made and
    `on_result` its outcome as soon as it is known, so the audit holds every call made
    (as `unknown` if the process dies during it). `should_stop` is asked before each call:
    once true, the rest is left unsent (`not_run`) for the next run."""
    directory = _Directory(state, target.names_are_ids)
    result = ApplyResult()

    def settle(*outcomes: OpResult) -> None:
        for outcome in outcomes:
            result.results.append(outcome)
            if on_result is not None:
                on_result(outcome)

    appeared: set[str] = set()
    for index, op in enumerate(operations):
        change = change_of(op)
        if op.email.lower() in appeared:
            settle(OpResult(op=op, outcome="not_run", error="re-planned: user already existed"))
            continue
        if should_stop is not None and should_stop():
            settle(
                *(
                    OpResult(op=rest, outcome="not_run", error="stopping", **change_of(rest))
                    for rest in operations[index:]
                )
            )
            result.interrupted = True
            return result
        if before_send is not None:
            before_send(op)
        try:
            _apply_one(target, directory, op)
        except (TransientError, UnauthorizedError) as exc:
            settle(OpResult(op=op, outcome="failed", error=str(exc), **change))
            settle(
                *(
                    OpResult(op=rest, outcome="not_run", error="run stopped", **change_of(rest))
                    for rest in operations[index + 1 :]
                )
            )
            result.stopped_by = exc
            return result
        except UserAppearedError as exc:
            appeared.add(op.email.lower())
            settle(
                OpResult(op=op, outcome="failed", error=str(exc), error_type="appeared", **change)
            )
        except TargetError as exc:
            settle(OpResult(op=op, outcome="failed", error=str(exc), **change))
        else:
            settle(OpResult(op=op, outcome="applied", **change))
    return result


def _apply_one(target: Target, directory: _Directory, op: Operation) -> None:
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
    return {
        "before": {},
        "after": {"first_name": op.first_name, "last_name": op.last_name},
    }

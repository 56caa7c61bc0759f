"""The removal budget (docs/design.md, Safety): a run that would take away too much at once is held
for approval.

Pure: it only splits a plan's operations into those applied now and those `held`. Additions
always go ahead; every removal waits once the run is over budget, so a broken group read or
a bad mapping can never strip a tenant in one go. The caller decides which runs the budget
applies to (docs/design.md, Safety: full reconciles).

Counting: each removed membership, lowered role, revoked owner flag and deactivated user
counts one; a `set_tenant_permissions` counts one per permission it removes.
"""

from __future__ import annotations

from bridge.mapping import Mapping
from bridge.model import (
    ChangeRole,
    DeactivateUser,
    Operation,
    Plan,
    RemoveMembership,
    SetTenantOwner,
    SetTenantPermissions,
    TargetState,
)
from bridge.policy import Policy
from bridge.resolve import is_downgrade

SMALL_RUN = 5
"""A run with this many removals or fewer is never held by the fraction rule."""


def is_removal(op: Operation, policy: Policy) -> bool:
    """Whether `op` takes access away (and so counts against the budget)."""
    if isinstance(op, RemoveMembership | DeactivateUser):
        return True
    if isinstance(op, ChangeRole):
        return is_downgrade(op.from_role, op.to_role, policy.role_precedence)
    if isinstance(op, SetTenantOwner):
        return not op.value
    if isinstance(op, SetTenantPermissions):
        return bool(op.remove)
    return False


def removal_count(op: Operation, policy: Policy) -> int:
    if isinstance(op, SetTenantPermissions):
        return len(op.remove)
    return 1 if is_removal(op, policy) else 0


def over_budget(
    removals: int, policy: Policy, managed_memberships: int, allow_removals: int | None
) -> bool:
    """The limit of docs/design.md, Safety. An operator's `allow_removals` replaces both rules:
    they counted."""
    if allow_removals is not None:
        return removals > allow_removals
    if removals > policy.max_removals:
        return True
    return removals > SMALL_RUN and removals > policy.max_removal_fraction * managed_memberships


def _split(op: Operation, policy: Policy) -> tuple[Operation | None, Operation | None]:
    """(the part applied now, the part held); a permission change keeps its additions."""
    if not is_removal(op, policy):
        return op, None
    if isinstance(op, SetTenantPermissions) and op.add:
        return op.model_copy(update={"remove": []}), op.model_copy(update={"add": []})
    return None, op


def apply_removal_budget(
    plan: Plan, policy: Policy, managed_memberships: int, allow_removals: int | None = None
) -> Plan:
    """`plan` unchanged when within budget; otherwise every removal moved to `held`."""
    removals = sum(removal_count(op, policy) for op in plan.operations)
    if not over_budget(removals, policy, managed_memberships, allow_removals):
        return plan
    keep: list[Operation] = []
    held: list[Operation] = list(plan.held)
    for op in plan.operations:
        now, later = _split(op, policy)
        if now is not None:
            keep.append(now)
        if later is not None:
            held.append(later)
    return plan.model_copy(update={"operations": keep, "held": held})


def count_managed_memberships(mapping: Mapping, policy: Policy, target: TargetState) -> int:
    """Memberships the bridge may remove: the base of the fraction rule.

    Every membership with `manage_teams = "all"`, only those in mapped teams with `"mapped"`;
    a protected user's memberships never count, since they are never touched.
    """
    protected = {u.id for u in target.users if policy.is_protected(u.email)}
    mapped = mapping.managed_teams()
    members: dict[tuple[str, str | None], set[str]] = {}
    for team in target.teams:
        if policy.manage_teams == "all" or team.name in mapped:
            members.setdefault((team.name, None), set()).update(m.user_id for m in team.members)
            for group in team.case_groups:
                place = members.setdefault((team.name, group.name), set())
                place.update(m.user_id for m in group.members)
    return sum(len(ids - protected) for ids in members.values())

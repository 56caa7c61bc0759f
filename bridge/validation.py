"""`validate --against-target`: can the target hold what the mapping grants?

Each target says what it can do (`Target.creates_missing_teams`, `holds_tenant_permissions`,
`holds_tenant_owners`, `name_problem`), so the answer fits the target: a team a SCIM service
will create with its first member is a note, not an error; tenant permissions for a target
that has none are an error, found here rather than at the first write.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from bridge.mapping import Mapping
from bridge.targets.base import Target


@dataclass
class TargetCheck:
    """Errors (the mapping cannot work against this target) and notes (it will, but read on)."""

    errors: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def check_against_target(mapping: Mapping, target: Target) -> TargetCheck:
    """One line per problem, each starting with the JSON pointer of the mapping entry."""
    state = target.read_state()
    teams = {t.name: {c.name for c in t.case_groups} for t in state.teams}
    check = TargetCheck()
    for entry in mapping.entries:
        pointer = f"/mappings/{entry.number - 1}"
        problem = target.name_problem(entry.team, entry.case_group, entry.role)
        if problem is not None:
            check.errors.append(f"{pointer}: {problem}")
            continue
        missing = None
        if entry.team not in teams:
            missing = f"{pointer}/team_name: team '{entry.team}' does not exist in the target"
        elif entry.case_group is not None and entry.case_group not in teams[entry.team]:
            missing = (
                f"{pointer}/case_group_name: case group '{entry.case_group}' does not exist "
                f"in team '{entry.team}'"
            )
        if missing is None:
            continue
        if target.creates_missing_teams:
            check.notes.append(f"{missing} yet; it is created with its first member")
        else:
            check.errors.append(missing)
    if not target.holds_tenant_permissions:
        check.errors += [
            f"/tenant_permission/{grant.number - 1}: the {target.name} target has no tenant "
            "permissions to grant; remove this entry"
            for grant in mapping.tenant_permissions
        ]
    if not target.holds_tenant_owners and mapping.tenant_owner_groups:
        check.errors.append(
            f"/tenant_owners_groups: the {target.name} target has no tenant owners as "
            "configured (for SCIM, set scim_owner_group)"
        )
    return check

"""`validate --against-target`: does the target have what the mapping names?"""

from __future__ import annotations

from bridge.mapping import Mapping
from bridge.targets.base import Target


def check_against_target(mapping: Mapping, target: Target) -> list[str]:
    """One line per mapping entry whose team or case group the target lacks."""
    state = target.read_state()
    teams = {t.name: {c.name for c in t.case_groups} for t in state.teams}
    problems = []
    for entry in mapping.entries:
        pointer = f"/mappings/{entry.number - 1}"
        if entry.team not in teams:
            problems.append(
                f"{pointer}/team_name: team '{entry.team}' does not exist in the target"
            )
        elif entry.case_group is not None and entry.case_group not in teams[entry.team]:
            problems.append(
                f"{pointer}/case_group_name: case group '{entry.case_group}' does not exist "
                f"in team '{entry.team}'"
            )
    return problems

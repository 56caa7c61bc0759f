"""Small builders for the pure-core tests, and a loader for the scenario folders next to it.

Each scenario folder holds `mapping.json` (Tines format, canonical keys only), `idp.json` and
`target.json` (docs/design.md, Formats snapshots), `settings.json` (Policy fields, as in the
settings TOML, plus `trigger`) and `plan.json`: the exact `Plan.to_json()` of a full plan for that
trigger, with the IdP snapshot taken as complete. CLI tests can reuse the folders offline
(`plan --all --idp-snapshot idp.json --target-snapshot target.json --mapping mapping.json`).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from bridge.mapping import GroupSelector, Mapping, MappingEntry, PermissionGrant
from bridge.model import (
    CaseGroup,
    IdentityView,
    IdpSnapshot,
    IdpUser,
    Member,
    TargetState,
    TargetUser,
    Team,
)
from bridge.policy import Policy

SCENARIOS = Path(__file__).parent

Row = tuple[str, str, str] | tuple[str, str, str, str]


def mapping(
    *rows: Row,
    owners: tuple[str, ...] = (),
    permissions: tuple[tuple[str, tuple[str, ...]], ...] = (),
) -> Mapping:
    """`mapping(("Managers", "Analytics", "TEAM_ADMIN"), ("/Ops", "IR", "VIEWER", "Tier 1"))`."""
    entries = tuple(
        MappingEntry(
            number=n,
            group=GroupSelector.parse(row[0]),
            team=row[1],
            role=row[2],
            case_group=row[3] if len(row) == 4 else None,
        )
        for n, row in enumerate(rows, start=1)
    )
    return Mapping(
        entries=entries,
        tenant_owner_groups=tuple(GroupSelector.parse(g) for g in owners),
        tenant_permissions=tuple(
            PermissionGrant(number=n, group=GroupSelector.parse(g), permissions=p)
            for n, (g, p) in enumerate(permissions, start=1)
        ),
    )


def person(name: str, *groups: str, **fields: Any) -> IdpUser:
    """A verified, enabled Keycloak user `name@example.com` in `groups`."""
    values: dict[str, Any] = {
        "id": f"kc-{name}",
        "username": name,
        "email": f"{name}@example.com",
        "email_verified": True,
        "first_name": name.title(),
        "last_name": "Example",
        "groups": list(groups),
    }
    values.update(fields)
    return IdpUser(**values)


def account(name: str, **fields: Any) -> TargetUser:
    """A target user `name@example.com` whose id is `name` (so memberships read plainly)."""
    values: dict[str, Any] = {
        "id": name,
        "email": f"{name}@example.com",
        "first_name": name.title(),
        "last_name": "Example",
    }
    values.update(fields)
    return TargetUser(**values)


def team(
    name: str,
    members: dict[str, str] | None = None,
    case_groups: dict[str, dict[str, str]] | None = None,
) -> Team:
    """`team("Analytics", {"alice": "EDITOR"}, {"Tier 1": {"alice": "VIEWER"}})`."""
    return Team(
        id=f"t-{name}",
        name=name,
        members=[Member(user_id=u, role=r) for u, r in (members or {}).items()],
        case_groups=[
            CaseGroup(
                id=f"cg-{name}-{cg}",
                name=cg,
                members=[Member(user_id=u, role=r) for u, r in cg_members.items()],
            )
            for cg, cg_members in (case_groups or {}).items()
        ],
    )


def target(*users: TargetUser, teams: tuple[Team, ...] = ()) -> TargetState:
    return TargetState(users=list(users), teams=list(teams))


def identity(*users: IdpUser, **fields: Any) -> IdentityView:
    return IdentityView(users=list(users), **fields)


def mapping_from_json(document: dict[str, Any]) -> Mapping:
    """The canonical Tines keys only; the real loader (bridge.mapping_file) does the rest."""
    return Mapping(
        entries=tuple(
            MappingEntry(
                number=n,
                group=GroupSelector.parse(e["group_name"]),
                team=e["team_name"],
                case_group=e.get("case_group_name"),
                role=e["role_name"],
            )
            for n, e in enumerate(document["mappings"], start=1)
        ),
        tenant_owner_groups=tuple(
            GroupSelector.parse(g) for g in document.get("tenant_owners_groups", [])
        ),
        tenant_permissions=tuple(
            PermissionGrant(
                number=n,
                group=GroupSelector.parse(g["group_name"]),
                permissions=tuple(g["permissions"]),
            )
            for n, g in enumerate(document.get("tenant_permission", []), start=1)
        ),
    )


def load_scenario(
    name: str,
) -> tuple[Mapping, Policy, IdentityView, TargetState, Any]:
    """(mapping, policy, identity, target, settings dict incl. `trigger`) of one scenario folder."""
    folder = SCENARIOS / name

    def read(file: str) -> Any:
        return json.loads((folder / file).read_text(encoding="utf-8"))

    settings = read("settings.json")
    policy = Policy(**{k: v for k, v in settings.items() if k != "trigger"})
    idp = IdpSnapshot.model_validate(read("idp.json"))
    return (
        mapping_from_json(read("mapping.json")),
        policy,
        IdentityView(users=idp.users, complete=True),
        TargetState.model_validate(read("target.json")),
        settings,
    )

"""A synthetic organisation: Keycloak users in nested groups, a mapping, and a target state.

Deterministic for a given (users, seed, drift), so the fake servers and the measured bridge
process can rebuild the same organisation independently.

Shape (defaults match docs/design.md, Performance: 300 mapped groups, 100 teams):

- `departments` top-level groups `/Dept00`… each with `leaves_per_department` child groups
  (`/Dept00/Team00-0`…), plus `/Administrators` (3 tenant owners).
- Every user is a direct member of one leaf of their department, and every other user of a
  second leaf elsewhere, so departments collect members through nesting.
- The mapping names every department by plain name (→ one team, VIEWER), `mapped_leaves`
  leaves (alternately by plain name and by `/path`, → a team with EDITOR or TEAM_ADMIN), and
  `Administrators` as tenant owners. Unmapped leaves grant nothing.
- The target holds every user with exactly the access the mapping grants (computed with the
  bridge's own `desired_access`), then `drift` of the users get one change each: a membership
  missing, a wrong role, or an extra membership the mapping does not grant.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass, field

from bridge.mapping import Mapping
from bridge.mapping_file import parse_mapping
from bridge.model import IdpUser
from bridge.policy import Policy
from bridge.resolve import desired_access

POLICY = Policy(mode="enhanced", manage_teams="all", require_verified_email=True)
OWNERS = 3


@dataclass(frozen=True)
class Shape:
    users: int = 10_000
    departments: int = 30
    leaves_per_department: int = 10
    mapped_leaves: int = 269
    teams: int = 100
    drift: float = 0.0
    seed: int = 11


@dataclass
class Group:
    id: str
    name: str
    path: str
    children: list[Group] = field(default_factory=list)
    members: list[str] = field(default_factory=list)


@dataclass
class Org:
    shape: Shape
    users: list[dict[str, object]]
    """Keycloak user representations (id, username, email, …)."""
    roots: list[Group]
    groups_by_id: dict[str, Group]
    user_groups: dict[str, list[str]]
    """user id → direct group paths."""
    mapping_json: dict[str, object]
    target_users: list[dict[str, object]]
    """Tines users (id, email, admin, …)."""
    team_names: dict[int, str]
    team_members: dict[int, dict[int, str]]
    """team id → Tines user id → role."""
    drifted_users: int

    @property
    def mapping(self) -> Mapping:
        return parse_mapping(json.dumps(self.mapping_json))

    def leaves(self) -> list[Group]:
        return [leaf for root in self.roots for leaf in root.children]


def build(shape: Shape) -> Org:
    rng = random.Random(shape.seed)
    roots: list[Group] = []
    groups_by_id: dict[str, Group] = {}
    for d in range(shape.departments):
        dept = Group(f"g-d{d}", f"Dept{d:02d}", f"/Dept{d:02d}")
        for leaf in range(shape.leaves_per_department):
            name = f"Team{d:02d}-{leaf}"
            dept.children.append(Group(f"g-d{d}-{leaf}", name, f"{dept.path}/{name}"))
        roots.append(dept)
    admins = Group("g-admins", "Administrators", "/Administrators")
    roots.append(admins)
    for root in roots:
        groups_by_id[root.id] = root
        for child in root.children:
            groups_by_id[child.id] = child

    leaves = [leaf for root in roots for leaf in root.children]
    users: list[dict[str, object]] = []
    user_groups: dict[str, list[str]] = {}
    for n in range(shape.users):
        uid = f"u-{n:06d}"
        users.append(
            {
                "id": uid,
                "username": f"user{n:06d}",
                "email": f"user{n:06d}@example.com",
                "emailVerified": True,
                "firstName": "User",
                "lastName": f"N{n:06d}",
                "enabled": True,
                "createdTimestamp": 1_700_000_000_000,
            }
        )
        dept = roots[n % shape.departments]
        direct = [dept.children[rng.randrange(len(dept.children))]]
        if n % 2 == 0:
            direct.append(leaves[rng.randrange(len(leaves))])
        if n < OWNERS:
            direct.append(admins)
        for group in direct:
            if uid not in group.members:
                group.members.append(uid)
        user_groups[uid] = sorted({g.path for g in direct})

    mapping_json = _mapping(shape, roots)
    org = Org(
        shape=shape,
        users=users,
        roots=roots,
        groups_by_id=groups_by_id,
        user_groups=user_groups,
        mapping_json=mapping_json,
        target_users=[],
        team_names={t + 1: f"Team {t:03d}" for t in range(shape.teams)},
        team_members={t + 1: {} for t in range(shape.teams)},
        drifted_users=0,
    )
    _fill_target(org, rng)
    return org


def _mapping(shape: Shape, roots: list[Group]) -> dict[str, object]:
    entries: list[dict[str, str]] = []
    team = 0

    def next_team() -> str:
        nonlocal team
        name = f"Team {team % shape.teams:03d}"
        team += 1
        return name

    for dept in roots[: shape.departments]:
        entries.append({"group_name": dept.name, "team_name": next_team(), "role_name": "VIEWER"})
    leaves = [leaf for dept in roots[: shape.departments] for leaf in dept.children]
    for i, leaf in enumerate(leaves[: shape.mapped_leaves]):
        selector = leaf.path if i % 2 else leaf.name
        role = "TEAM_ADMIN" if i % 7 == 0 else "EDITOR"
        entries.append({"group_name": selector, "team_name": next_team(), "role_name": role})
    return {"mappings": entries, "tenant_owners_groups": ["Administrators"]}


def idp_user(org: Org, raw: dict[str, object]) -> IdpUser:
    return IdpUser(
        id=str(raw["id"]),
        username=str(raw["username"]),
        email=str(raw["email"]),
        email_verified=True,
        first_name=str(raw["firstName"]),
        last_name=str(raw["lastName"]),
        groups=org.user_groups[str(raw["id"])],
    )


def _fill_target(org: Org, rng: random.Random) -> None:
    mapping = org.mapping
    team_ids = {name: tid for tid, name in org.team_names.items()}
    for n, raw in enumerate(org.users):
        tines_id = n + 1
        access = desired_access(mapping, POLICY, idp_user(org, raw))
        org.target_users.append(
            {
                "id": tines_id,
                "email": raw["email"],
                "first_name": raw["firstName"],
                "last_name": raw["lastName"],
                "admin": access.tenant_owner,
                "tenant_permissions": [],
                "is_active": True,
            }
        )
        for (team, _case_group), desired in access.memberships.items():
            org.team_members[team_ids[team]][tines_id] = desired.role
    drifted = rng.sample(range(OWNERS, len(org.users)), int(len(org.users) * org.shape.drift))
    for n in drifted:
        _drift(org, n + 1, rng)
    org.drifted_users = len(drifted)


def _drift(org: Org, tines_id: int, rng: random.Random) -> None:
    """One change the next reconcile must undo: an add, a role change or a removal."""
    held = [tid for tid, members in org.team_members.items() if tines_id in members]
    kind = rng.randrange(3)
    if kind == 0 and held:
        del org.team_members[rng.choice(held)][tines_id]
    elif kind == 1 and held:
        team = org.team_members[rng.choice(held)]
        team[tines_id] = "VIEWER" if team[tines_id] != "VIEWER" else "EDITOR"
    else:
        free = [tid for tid in org.team_members if tines_id not in org.team_members[tid]]
        org.team_members[rng.choice(free)][tines_id] = "VIEWER"

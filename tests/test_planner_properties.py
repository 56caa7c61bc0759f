"""Properties of the planner and the guard over random mappings, IdP users and target states."""

from __future__ import annotations

from collections import Counter
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from bridge.guard import apply_removal_budget
from bridge.mapping import GroupSelector, Mapping, MappingEntry, PermissionGrant
from bridge.model import (
    ActivateUser,
    AddMembership,
    CaseGroup,
    ChangeRole,
    CreateUser,
    DeactivateUser,
    IdentityView,
    IdpUser,
    Member,
    Operation,
    Plan,
    RemoveMembership,
    SetTenantOwner,
    SetTenantPermissions,
    TargetState,
    TargetUser,
    Team,
    Trigger,
    UpdateProfile,
)
from bridge.planner import plan
from bridge.policy import Policy
from tests.examples import examples

NAMES = ["ann", "ben", "cat", "dan", "eve", "fay"]
PATHS = ["/G1", "/G2", "/G1/Sub", "/G3/Sub"]
SELECTORS = ["G1", "/G2", "Sub", "/G1/Sub", "G3", "realm-role:auditor"]
TEAMS = ["Alpha", "Beta", "Gamma"]
CASE_GROUPS = [None, "x", "y"]
ROLES = ["TEAM_ADMIN", "EDITOR", "VIEWER", "CASE_MANAGER", "editor"]
PERMISSIONS = ["AUDIT_LOG_READ", "TUNNEL_MANAGE", "FLAGS"]

PROPERTY_SETTINGS = settings(max_examples=examples(200), deadline=None)


def email(name: str) -> str:
    return f"{name}@example.com"


@st.composite
def mappings(draw: st.DrawFn) -> Mapping:
    rows = draw(
        st.lists(
            st.tuples(
                st.sampled_from(SELECTORS),
                st.sampled_from(TEAMS),
                st.sampled_from(CASE_GROUPS),
                st.sampled_from(ROLES[:4]),
            ),
            min_size=1,
            max_size=6,
        )
    )
    owners = draw(st.lists(st.sampled_from(SELECTORS), max_size=2, unique=True))
    grants = draw(
        st.lists(
            st.tuples(
                st.sampled_from(SELECTORS),
                st.lists(st.sampled_from(PERMISSIONS), min_size=1, max_size=2, unique=True),
            ),
            max_size=2,
        )
    )
    return Mapping(
        entries=tuple(
            MappingEntry(number=n, group=GroupSelector.parse(g), team=t, case_group=c, role=r)
            for n, (g, t, c, r) in enumerate(rows, start=1)
        ),
        tenant_owner_groups=tuple(GroupSelector.parse(g) for g in owners),
        tenant_permissions=tuple(
            PermissionGrant(number=n, group=GroupSelector.parse(g), permissions=tuple(p))
            for n, (g, p) in enumerate(grants, start=1)
        ),
    )


@st.composite
def policies(draw: st.DrawFn, mode: str | None = None) -> Policy:
    return Policy(
        mode=mode or draw(st.sampled_from(["jit", "enhanced"])),
        manage_teams=draw(st.sampled_from(["all", "mapped"])),
        inherit_parent_groups=draw(st.booleans()),
        protected_users=frozenset(
            email(n) for n in draw(st.lists(st.sampled_from(NAMES), max_size=2))
        ),
        require_verified_email=draw(st.booleans()),
        on_idp_user_disabled=draw(st.sampled_from(["remove_access", "deactivate", "ignore"])),
        sync_profile=draw(st.booleans()),
    )


@st.composite
def idp_users(draw: st.DrawFn) -> list[IdpUser]:
    names = draw(st.lists(st.sampled_from(NAMES), unique=True, max_size=5))
    return [
        IdpUser(
            id=f"kc-{name}",
            username=name,
            email=email(name).upper() if draw(st.booleans()) else email(name),
            email_verified=draw(st.booleans()),
            first_name=draw(st.sampled_from([None, name, name.title()])),
            last_name=draw(st.sampled_from([None, "Ng", "Li"])),
            enabled=draw(st.booleans()),
            groups=draw(st.lists(st.sampled_from(PATHS), max_size=3, unique=True)),
            realm_roles=draw(st.lists(st.just("auditor"), max_size=1)),
        )
        for name in names
    ]


@st.composite
def target_states(draw: st.DrawFn) -> TargetState:
    names = draw(st.lists(st.sampled_from(NAMES), unique=True, max_size=5))
    users = [
        TargetUser(
            id=name,
            email=email(name),
            first_name=draw(st.sampled_from([None, name, name.title()])),
            last_name=draw(st.sampled_from([None, "Ng", "Li"])),
            tenant_owner=draw(st.booleans()),
            tenant_permissions=draw(
                st.lists(st.sampled_from(PERMISSIONS), unique=True, max_size=2)
            ),
            active=draw(st.booleans()),
        )
        for name in names
    ]

    def members() -> list[Member]:
        chosen = draw(st.lists(st.sampled_from(names), unique=True)) if names else []
        return [Member(user_id=n, role=draw(st.sampled_from(ROLES))) for n in chosen]

    teams = [
        Team(
            id=t,
            name=t,
            members=members(),
            case_groups=[
                CaseGroup(id=f"{t}/{c}", name=c, members=members())
                for c in draw(st.lists(st.sampled_from(["x", "y"]), unique=True))
            ],
        )
        for t in draw(st.lists(st.sampled_from(TEAMS), unique=True))
    ]
    return TargetState(users=users, teams=teams)


@st.composite
def identities(draw: st.DrawFn, unreadable: bool = True) -> IdentityView:
    users = draw(idp_users())
    known = {(u.email or "").lower() for u in users}
    deleted = [
        email(n)
        for n in draw(st.lists(st.sampled_from(NAMES), unique=True, max_size=2))
        if email(n) not in known
    ]
    failing = (
        draw(st.dictionaries(st.sampled_from(SELECTORS), st.just("HTTP 503"), max_size=2))
        if unreadable
        else {}
    )
    return IdentityView(
        users=users, deleted_users=deleted, unreadable_groups=failing, complete=draw(st.booleans())
    )


triggers = st.sampled_from(["login", "reconcile"])
scopes = st.one_of(
    st.none(), st.frozensets(st.sampled_from([email(n) for n in NAMES]), min_size=1, max_size=3)
)


# ------------------------------------------------------------------------------ applying


def apply_to_state(state: TargetState, operations: list[Operation]) -> TargetState:
    """What a perfect target would hold after `operations`: a small model of Tines."""
    users = {u.email: u.model_dump() for u in state.users}
    by_email = {u.email: u.id for u in state.users}
    teams = {t.name: t.model_dump() for t in state.teams}

    def members_of(op: Any) -> list[dict[str, str]]:
        team = teams.setdefault(
            op.team, {"id": op.team, "name": op.team, "members": [], "case_groups": []}
        )
        if op.case_group is None:
            return team["members"]  # type: ignore[no-any-return]
        for case_group in team["case_groups"]:
            if case_group["name"] == op.case_group:
                return case_group["members"]  # type: ignore[no-any-return]
        team["case_groups"].append({"id": op.case_group, "name": op.case_group, "members": []})
        return team["case_groups"][-1]["members"]  # type: ignore[no-any-return]

    for op in operations:
        if isinstance(op, CreateUser):
            users[op.email] = {
                "id": op.email,
                "email": op.email,
                "first_name": op.first_name,
                "last_name": op.last_name,
            }
            by_email[op.email] = op.email
            continue
        user = users[next(e for e in users if e.lower() == op.email)]
        uid = by_email[user["email"]]
        if isinstance(op, AddMembership):
            members_of(op).append({"user_id": uid, "role": op.role})
        elif isinstance(op, ChangeRole):
            for member in members_of(op):
                if member["user_id"] == uid:
                    member["role"] = op.to_role
        elif isinstance(op, RemoveMembership):
            members_of(op)[:] = [m for m in members_of(op) if m["user_id"] != uid]
        elif isinstance(op, SetTenantOwner):
            user["tenant_owner"] = op.value
        elif isinstance(op, SetTenantPermissions):
            kept = set(user.get("tenant_permissions", [])) - set(op.remove)
            user["tenant_permissions"] = sorted(kept | set(op.add))
        elif isinstance(op, UpdateProfile):
            user.update(op.changes)
        elif isinstance(op, DeactivateUser | ActivateUser):
            user["active"] = isinstance(op, ActivateUser)
    return TargetState.model_validate(
        {"users": list(users.values()), "teams": list(teams.values())}
    )


def active_owners(state: TargetState) -> set[str]:
    return {u.email.lower() for u in state.users if u.tenant_owner and u.active}


# ------------------------------------------------------------------------------ properties


@PROPERTY_SETTINGS
@given(
    mappings(),
    policies(mode="enhanced"),
    identities(unreadable=False),
    target_states(),
    triggers,
    scopes,
)
def test_enhanced_plans_converge_after_one_apply(
    rules: Mapping,
    policy: Policy,
    view: IdentityView,
    state: TargetState,
    trigger: Trigger,
    scope: frozenset[str] | None,
) -> None:
    first = plan(rules, policy, view, state, trigger, scope)
    after = apply_to_state(state, first.operations)
    assert plan(rules, policy, view, after, trigger, scope).operations == []


@PROPERTY_SETTINGS
@given(mappings(), policies(mode="jit"), identities(), target_states(), triggers, scopes)
def test_jit_never_touches_an_existing_user(
    rules: Mapping,
    policy: Policy,
    view: IdentityView,
    state: TargetState,
    trigger: Trigger,
    scope: frozenset[str] | None,
) -> None:
    existing = {u.email.lower() for u in state.users}
    result = plan(rules, policy, view, state, trigger, scope)
    assert not [op for op in result.operations if op.email in existing]
    assert trigger == "login" or result.operations == []


@PROPERTY_SETTINGS
@given(mappings(), policies(), identities(), target_states(), triggers, scopes)
def test_no_plan_touches_a_protected_user_or_leaves_the_tenant_ownerless(
    rules: Mapping,
    policy: Policy,
    view: IdentityView,
    state: TargetState,
    trigger: Trigger,
    scope: frozenset[str] | None,
) -> None:
    result = plan(rules, policy, view, state, trigger, scope)
    assert not [op for op in result.operations if policy.is_protected(op.email)]
    if active_owners(state):
        assert active_owners(apply_to_state(state, result.operations))
    assert all(op.email == op.email.lower() for op in result.operations)
    assert plan(rules, policy, view, state, trigger, scope).to_json() == result.to_json()


def atoms(operations: list[Operation]) -> Counter[str]:
    """Operations as countable pieces: a permission change splits into one piece per permission."""
    found: Counter[str] = Counter()
    for op in operations:
        if isinstance(op, SetTenantPermissions):
            found.update(f"{op.email} +{p}" for p in op.add)
            found.update(f"{op.email} -{p}" for p in op.remove)
        else:
            found[op.model_dump_json(by_alias=True)] += 1
    return found


@PROPERTY_SETTINGS
@given(
    mappings(),
    policies(mode="enhanced"),
    identities(),
    target_states(),
    triggers,
    st.integers(0, 5),
    st.floats(0, 1),
    st.integers(0, 20),
    st.one_of(st.none(), st.integers(0, 10)),
)
def test_the_guard_loses_nothing(
    rules: Mapping,
    policy: Policy,
    view: IdentityView,
    state: TargetState,
    trigger: Trigger,
    max_removals: int,
    fraction: float,
    managed: int,
    allow: int | None,
) -> None:
    policy = policy.model_copy(
        update={"max_removals": max_removals, "max_removal_fraction": fraction}
    )
    original = plan(rules, policy, view, state, trigger, None)
    guarded = apply_removal_budget(original, policy, managed, allow)
    assert atoms(guarded.operations) + atoms(guarded.held) == atoms(original.operations)
    assert guarded.skipped == original.skipped


def test_apply_to_state_models_the_target_the_properties_rely_on() -> None:
    state = TargetState(users=[TargetUser(id="1", email="ann@example.com", tenant_owner=True)])
    ops: list[Operation] = [
        CreateUser(email="ben@example.com"),
        AddMembership(email="ben@example.com", team="Alpha", case_group="x", role="EDITOR"),
        SetTenantOwner(email="ann@example.com", value=False),
        DeactivateUser(email="ann@example.com"),
    ]
    after = apply_to_state(state, ops)
    assert active_owners(after) == set()
    assert after.teams[0].case_groups[0].members == [
        Member(user_id="ben@example.com", role="EDITOR")
    ]
    assert Plan(mode="jit", trigger="login").operations == []

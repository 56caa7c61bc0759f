"""Desired access is resolved once per combination of groups and roles and shared by every
user who has it: the plans are the same as resolving each user on their own, byte for byte."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from bridge.mapping import GroupSelector, Mapping, MappingEntry, PermissionGrant
from bridge.model import IdentityView, IdpUser, Member, TargetState, TargetUser, Team, Trigger
from bridge.planner import plan
from bridge.policy import Policy
from bridge.resolve import DesiredAccessMemo, describe_source, desired_access
from tests.examples import examples

PATHS = ["/G1", "/G1/Sub", "/G3/Sub", "/G2/Sub/Deep", "/G2", "/Ops/Tier1"]
SELECTORS = [
    "G1",
    "Sub",
    "/G2/Sub",
    "Deep",
    "/G1/Sub",
    "G2",
    "Tier1",
    "realm-role:auditor",
    "client-role:app/admin",
]
TEAMS = ["Alpha", "Beta"]
ROLES = ["TEAM_ADMIN", "EDITOR", "VIEWER", "editor", "CASE_MANAGER"]


@st.composite
def mappings(draw: st.DrawFn) -> Mapping:
    rows = draw(
        st.lists(
            st.tuples(
                st.sampled_from(SELECTORS),
                st.sampled_from(TEAMS),
                st.sampled_from([None, "x"]),
                st.sampled_from(ROLES),
            ),
            min_size=1,
            max_size=8,
        )
    )
    owners = draw(st.lists(st.sampled_from(SELECTORS), max_size=2, unique=True))
    grants = draw(st.lists(st.sampled_from(SELECTORS), max_size=2))
    return Mapping(
        entries=tuple(
            MappingEntry(number=n, group=GroupSelector.parse(g), team=t, case_group=c, role=r)
            for n, (g, t, c, r) in enumerate(rows, start=1)
        ),
        tenant_owner_groups=tuple(GroupSelector.parse(g) for g in owners),
        tenant_permissions=tuple(
            PermissionGrant(number=n, group=GroupSelector.parse(g), permissions=("FLAGS",))
            for n, g in enumerate(grants, start=1)
        ),
    )


@st.composite
def crowds(draw: st.DrawFn) -> list[IdpUser]:
    """Up to 12 users sharing a few combinations that often differ in one part only (the same
    groups with other roles), each user listing its groups and roles in its own order and
    some of them twice."""
    groups = draw(
        st.lists(st.lists(st.sampled_from(PATHS), max_size=3, unique=True), min_size=1, max_size=2)
    )
    realm = draw(
        st.lists(
            st.lists(st.sampled_from(["auditor", "ops"]), max_size=2, unique=True),
            min_size=1,
            max_size=2,
        )
    )
    clients = draw(
        st.lists(
            st.dictionaries(
                st.sampled_from(["app", "crm"]),
                st.lists(st.sampled_from(["admin", "read"]), max_size=2, unique=True),
                max_size=2,
            ),
            min_size=1,
            max_size=2,
        )
    )
    users = []
    for n in range(draw(st.integers(min_value=1, max_value=12))):

        def shuffled(items: list[str]) -> list[str]:
            again = draw(st.lists(st.sampled_from(items), max_size=1)) if items else []
            return [*draw(st.permutations(items)), *again]

        users.append(
            IdpUser(
                id=f"kc-{n}",
                username=f"u{n}",
                email=f"u{n}@example.com",
                email_verified=True,
                groups=shuffled(draw(st.sampled_from(groups))),
                realm_roles=shuffled(draw(st.sampled_from(realm))),
                client_roles={
                    client: shuffled(roles)
                    for client, roles in draw(st.sampled_from(clients)).items()
                },
            )
        )
    return users


@st.composite
def targets(draw: st.DrawFn, users: list[IdpUser]) -> TargetState:
    present = [u for u in users if draw(st.booleans())]
    members = [
        Member(user_id=u.id, role=draw(st.sampled_from(ROLES)))
        for u in present
        if draw(st.booleans())
    ]
    return TargetState(
        users=[
            TargetUser(id=u.id, email=u.email or "", tenant_owner=draw(st.booleans()))
            for u in present
        ],
        teams=[Team(id="Alpha", name="Alpha", members=members)],
    )


def reference(mapping: Mapping, policy: Policy, user: IdpUser) -> dict[str, object]:
    """The rules read literally: every entry asked whether it matches, no index, no memo."""
    by_key: dict[tuple[str, str | None], list[tuple[MappingEntry, list[str]]]] = {}
    for entry in mapping.entries:
        through = entry.group.matching_groups(user, policy.inherit_parent_groups)
        if through:
            by_key.setdefault((entry.team, entry.case_group), []).append((entry, through))
    order = [r.upper() for r in policy.role_precedence]

    def rank(entry: MappingEntry) -> tuple[int, int]:
        role = entry.role.upper()
        return (order.index(role) if role in order else len(order), entry.number)

    memberships = {}
    for key, found in by_key.items():
        won = min((entry for entry, _ in found), key=rank)
        because = [
            f"{describe_source(path)} → mapping {entry.number}"
            for entry, through in found
            if entry.role.upper() == won.role.upper()
            for path in through
        ]
        lost = [
            f"mapping {e.number} ({e.role})" for e, _ in found if e.role.upper() != won.role.upper()
        ]
        if lost:
            because.append("highest role wins over " + ", ".join(lost))
        memberships[key] = (won.role, because)
    owner = [
        describe_source(path)
        for selector in mapping.tenant_owner_groups
        for path in selector.matching_groups(user, policy.inherit_parent_groups)
    ]
    return {"memberships": memberships, "owner": owner}


def as_plain(mapping: Mapping, policy: Policy, user: IdpUser) -> dict[str, object]:
    got = DesiredAccessMemo(mapping, policy)(user)
    return {
        "memberships": {k: (m.role, list(m.because)) for k, m in got.memberships.items()},
        "owner": list(got.owner_because),
    }


@settings(max_examples=examples(200), deadline=None)
@given(
    mappings(),
    st.booleans(),
    crowds().flatmap(lambda users: st.tuples(st.just(users), targets(users))),
    st.sampled_from(["login", "reconcile"]),
    st.sampled_from(["jit", "enhanced"]),
)
def test_shared_desired_access_plans_byte_for_byte_what_resolving_each_user_plans(
    rules: Mapping,
    inherit: bool,
    users_and_target: tuple[list[IdpUser], TargetState],
    trigger: Trigger,
    mode: str,
) -> None:
    users, state = users_and_target
    policy = Policy(mode=mode, inherit_parent_groups=inherit, require_verified_email=False)
    view = IdentityView(users=users, complete=True)

    shared = plan(rules, policy, view, state, trigger, None)
    alone = plan(rules, policy, view, state, trigger, None, share_desired=False)

    assert shared.to_json() == alone.to_json()
    memo = DesiredAccessMemo(rules, policy)
    for user in users:
        assert memo(user) == desired_access(rules, policy, user)
        assert as_plain(rules, policy, user) == reference(rules, policy, user)
    distinct = {
        (
            frozenset(u.groups),
            frozenset(u.realm_roles),
            frozenset((c, frozenset(r)) for c, r in u.client_roles.items() if r),
        )
        for u in users
    }
    assert len(memo) == len(distinct)


def test_users_listing_the_same_groups_in_another_order_share_one_resolution() -> None:
    rules = Mapping(
        entries=(
            MappingEntry(number=1, group=GroupSelector.parse("Sub"), team="Alpha", role="EDITOR"),
            MappingEntry(number=2, group=GroupSelector.parse("/G2"), team="Beta", role="VIEWER"),
        )
    )
    policy = Policy()
    memo = DesiredAccessMemo(rules, policy)
    first = IdpUser(id="1", groups=["/G1/Sub", "/G2/Sub/Deep", "/G3/Sub"])
    second = IdpUser(id="2", groups=["/G3/Sub", "/G1/Sub", "/G2/Sub/Deep", "/G1/Sub"])
    other = IdpUser(id="3", groups=["/G1/Sub"])

    assert memo(first) is memo(second)
    assert memo(other) is not memo(first)
    assert len(memo) == 2
    assert memo(second).memberships[("Alpha", None)].because == (
        "group /G1/Sub → mapping 1",
        "group /G2/Sub → mapping 1",
        "group /G3/Sub → mapping 1",
    )
    assert memo(other).memberships.keys() == {("Alpha", None)}

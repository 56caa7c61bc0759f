"""The two conflict rules over random mappings: `highest` ignores file order, `first_entry`
is decided by it (Tines' rule: the first matching entry in the file wins)."""

from __future__ import annotations

import random

from hypothesis import given, settings
from hypothesis import strategies as st

from bridge.mapping import Mapping, MappingEntry
from bridge.model import IdpUser
from bridge.policy import Policy
from bridge.resolve import desired_access
from tests.examples import examples
from tests.scenarios.builders import mapping, person

PATHS = ["/G1", "/G2", "/G1/Sub", "/G3/Sub"]
SELECTORS = ["G1", "/G2", "Sub", "/G1/Sub", "G3", "realm-role:auditor"]
TEAMS = ["Alpha", "Beta"]
CASE_GROUPS = [None, "x"]
LISTED_ROLES = ["TEAM_ADMIN", "EDITOR", "VIEWER"]
PROPERTY_SETTINGS = settings(max_examples=examples(300), deadline=None)

Row = tuple[str, str, str, str | None]


def rows(roles: list[str]) -> st.SearchStrategy[list[Row]]:
    return st.lists(
        st.tuples(
            st.sampled_from(SELECTORS),
            st.sampled_from(TEAMS),
            st.sampled_from(roles),
            st.sampled_from(CASE_GROUPS),
        ),
        min_size=1,
        max_size=8,
    )


def users() -> st.SearchStrategy[IdpUser]:
    return st.builds(
        lambda groups, auditor: person("ann", *groups, realm_roles=["auditor"] if auditor else []),
        st.lists(st.sampled_from(PATHS), max_size=3, unique=True),
        st.booleans(),
    )


def build(entries: list[Row]) -> Mapping:
    return mapping(*[(g, t, r, c) if c else (g, t, r) for g, t, r, c in entries])


def roles_of(rules: Mapping, policy: Policy, user: IdpUser) -> dict[tuple[str, str | None], str]:
    return {k: m.role for k, m in desired_access(rules, policy, user).memberships.items()}


def first_matching(rules: Mapping, user: IdpUser) -> dict[tuple[str, str | None], str]:
    """Tines' rule written the obvious way: walk the file, keep the first match per key."""
    found: dict[tuple[str, str | None], str] = {}
    entry: MappingEntry
    for entry in sorted(rules.entries, key=lambda e: e.number):
        if entry.group.matching_groups(user, True):
            found.setdefault((entry.team, entry.case_group), entry.role)
    return found


@PROPERTY_SETTINGS
@given(entries=rows(LISTED_ROLES), user=users(), order=st.randoms(use_true_random=False))
def test_highest_rule_does_not_depend_on_file_order(
    entries: list[Row], user: IdpUser, order: random.Random
) -> None:
    shuffled = list(entries)
    order.shuffle(shuffled)
    policy = Policy(role_conflict="highest")
    assert roles_of(build(entries), policy, user) == roles_of(build(shuffled), policy, user)


@PROPERTY_SETTINGS
@given(entries=rows([*LISTED_ROLES, "CASE_MANAGER"]), user=users())
def test_first_entry_rule_is_the_first_matching_entry_in_file_order(
    entries: list[Row], user: IdpUser
) -> None:
    policy = Policy(role_conflict="first_entry")
    rules = build(entries)
    assert roles_of(rules, policy, user) == first_matching(rules, user)
    # Reversing the file makes the last matching entry the first: order decides.
    backwards = build(entries[::-1])
    assert roles_of(backwards, policy, user) == first_matching(backwards, user)


@PROPERTY_SETTINGS
@given(entries=rows([*LISTED_ROLES, "CASE_MANAGER"]), user=users())
def test_both_rules_grant_the_same_memberships_and_differ_only_in_roles(
    entries: list[Row], user: IdpUser
) -> None:
    rules = build(entries)
    highest = desired_access(rules, Policy(role_conflict="highest"), user)
    first = desired_access(rules, Policy(role_conflict="first_entry"), user)
    assert set(highest.memberships) == set(first.memberships)
    assert (highest.tenant_owner, highest.permissions) == (first.tenant_owner, first.permissions)

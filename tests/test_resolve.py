"""Desired state and `explain`: which entry wins a team, and why (docs/design.md, Mapping)."""

from __future__ import annotations

from bridge.policy import Policy
from bridge.resolve import desired_access, explain, is_downgrade, role_rank
from tests.scenarios.builders import mapping, person

POLICY = Policy()


def test_several_groups_to_one_team_the_highest_role_wins() -> None:
    rules = mapping(
        ("Analysts", "Analytics", "VIEWER"),
        ("Managers", "Analytics", "TEAM_ADMIN"),
        ("Leads", "Analytics", "EDITOR"),
    )
    got = desired_access(rules, POLICY, person("alice", "/Analysts", "/Managers", "/Leads"))
    assert got.memberships[("Analytics", None)].role == "TEAM_ADMIN"
    assert got.memberships[("Analytics", None)].because == (
        "group /Managers → mapping 2",
        "highest role wins over mapping 1 (VIEWER), mapping 3 (EDITOR)",
    )


FIRST_ENTRY = Policy(role_conflict="first_entry")


def test_first_entry_rule_gives_the_role_of_the_first_matching_entry_in_file_order() -> None:
    rules = mapping(
        ("Analysts", "Analytics", "VIEWER"),
        ("Managers", "Analytics", "TEAM_ADMIN"),
        ("Leads", "Analytics", "EDITOR"),
    )
    user = person("alice", "/Analysts", "/Managers", "/Leads")
    got = desired_access(rules, FIRST_ENTRY, user)
    assert got.memberships[("Analytics", None)].role == "VIEWER"
    assert got.memberships[("Analytics", None)].because == (
        "group /Analysts → mapping 1",
        "first matching entry wins over mapping 2 (TEAM_ADMIN), mapping 3 (EDITOR)",
    )
    # An entry that does not match the user does not take part, however early it comes.
    later = desired_access(rules, FIRST_ENTRY, person("bob", "/Managers", "/Leads"))
    assert later.memberships[("Analytics", None)].role == "TEAM_ADMIN"


def test_first_entry_rule_applies_to_case_groups_and_leaves_owner_and_permissions_alone() -> None:
    rules = mapping(
        ("/Ops/Tier1", "IR", "VIEWER", "Tier 1"),
        ("Ops", "IR", "EDITOR", "Tier 1"),
        owners=("Administrators",),
        permissions=(("Ops", ("AUDIT_LOG_READ",)),),
    )
    user = person("alice", "/Ops/Tier1", "/Administrators")
    highest = desired_access(rules, POLICY, user)
    first = desired_access(rules, FIRST_ENTRY, user)
    assert highest.memberships[("IR", "Tier 1")].role == "EDITOR"
    assert first.memberships[("IR", "Tier 1")].role == "VIEWER"
    assert (first.tenant_owner, first.permissions) == (highest.tenant_owner, highest.permissions)


def test_first_entry_because_names_only_the_deciding_entry_even_with_equal_roles() -> None:
    rules = mapping(("Managers", "Analytics", "EDITOR"), ("Analysts", "Analytics", "EDITOR"))
    got = desired_access(rules, FIRST_ENTRY, person("alice", "/Analysts", "/Managers"))
    assert got.memberships[("Analytics", None)].because == ("group /Managers → mapping 1",)


def test_explain_says_which_rule_decided() -> None:
    rules = mapping(("Analysts", "Analytics", "VIEWER"), ("Managers", "Analytics", "TEAM_ADMIN"))
    user = person("alice", "/Analysts", "/Managers")
    (highest,) = explain(rules, POLICY, user)
    assert str(highest) == (
        "Analytics: TEAM_ADMIN — mapping 1 (Analysts → VIEWER): matched through /Analysts, "
        "lower role; mapping 2 (Managers → TEAM_ADMIN): won (highest role wins), through /Managers"
    )
    (first,) = explain(rules, FIRST_ENTRY, user)
    assert str(first) == (
        "Analytics: VIEWER — mapping 1 (Analysts → VIEWER): won (first matching entry wins), "
        "through /Analysts; mapping 2 (Managers → TEAM_ADMIN): matched through /Managers, "
        "a matching entry comes first"
    )


def test_because_names_every_entry_that_grants_the_winning_role() -> None:
    rules = mapping(
        ("Managers", "Analytics", "EDITOR"),
        ("Analysts", "Analytics", "EDITOR"),
        ("Everyone", "Analytics", "VIEWER"),
    )
    got = desired_access(rules, POLICY, person("alice", "/Analysts", "/Managers", "/Everyone"))
    assert got.memberships[("Analytics", None)].because == (
        "group /Managers → mapping 1",
        "group /Analysts → mapping 2",
        "highest role wins over mapping 3 (VIEWER)",
    )


def test_unlisted_roles_rank_below_listed_ones_and_the_first_entry_wins_among_them() -> None:
    rules = mapping(
        ("A", "Cases", "CASE_MANAGER"),
        ("B", "Cases", "WORKBENCH_USER"),
        ("C", "Other", "WORKBENCH_USER"),
        ("D", "Other", "VIEWER"),
    )
    got = desired_access(rules, POLICY, person("alice", "/A", "/B", "/C", "/D"))
    assert got.memberships[("Cases", None)].role == "CASE_MANAGER"
    assert got.memberships[("Other", None)].role == "VIEWER"


def test_role_precedence_setting_is_the_whole_order() -> None:
    policy = Policy(role_precedence=("VIEWER", "EDITOR"))
    rules = mapping(("A", "Team", "EDITOR"), ("B", "Team", "VIEWER"), ("C", "Team", "TEAM_ADMIN"))
    got = desired_access(rules, policy, person("alice", "/A", "/B", "/C"))
    assert got.memberships[("Team", None)].role == "VIEWER"


def test_lower_case_roles_rank_like_upper_case_ones() -> None:
    assert role_rank("editor", POLICY.role_precedence) == role_rank(
        "EDITOR", POLICY.role_precedence
    )
    assert not is_downgrade("VIEWER", "editor", POLICY.role_precedence)
    assert is_downgrade("TEAM_ADMIN", "viewer", POLICY.role_precedence)
    assert is_downgrade("CUSTOM_A", "CUSTOM_B", POLICY.role_precedence)


def test_nested_groups_count_for_their_parents_unless_inheritance_is_off() -> None:
    rules = mapping(("Eng", "Engineering", "VIEWER"), ("/Eng/SRE", "Ops", "EDITOR"))
    user = person("alice", "/Eng/SRE/Oncall")
    got = desired_access(rules, POLICY, user)
    assert got.memberships[("Engineering", None)].because == ("group /Eng → mapping 1",)
    assert got.memberships[("Ops", None)].role == "EDITOR"

    flat = desired_access(rules, Policy(inherit_parent_groups=False), user)
    assert flat.memberships == {}


def test_a_plain_name_matches_the_group_at_any_depth_and_a_path_only_that_path() -> None:
    rules = mapping(("SRE", "Ops", "VIEWER"), ("/SRE", "Root", "VIEWER"))
    got = desired_access(rules, POLICY, person("alice", "/Eng/SRE"))
    assert set(got.memberships) == {("Ops", None)}


def test_matching_is_case_sensitive() -> None:
    rules = mapping(("Managers", "Analytics", "EDITOR"))
    assert desired_access(rules, POLICY, person("alice", "/managers")).memberships == {}


def test_case_groups_are_separate_memberships_from_the_team() -> None:
    rules = mapping(("/Ops/Tier1", "IR", "VIEWER", "Tier 1"), ("Ops", "IR", "EDITOR"))
    got = desired_access(rules, POLICY, person("alice", "/Ops/Tier1"))
    assert got.memberships[("IR", "Tier 1")].role == "VIEWER"
    assert got.memberships[("IR", None)].role == "EDITOR"


def test_roles_as_selectors_and_owner_and_permissions() -> None:
    rules = mapping(
        ("realm-role:auditor", "Audit", "VIEWER"),
        ("client-role:tines/admin", "Audit", "TEAM_ADMIN"),
        owners=("Administrators",),
        permissions=(
            ("Auditors", ("AUDIT_LOG_READ",)),
            ("realm-role:auditor", ("AUDIT_LOG_READ", "TUNNEL_MANAGE")),
        ),
    )
    user = person(
        "alice",
        "/Auditors",
        "/Corp/Administrators",
        realm_roles=["auditor"],
        client_roles={"tines": ["admin"]},
    )
    got = desired_access(rules, POLICY, user)
    assert got.memberships[("Audit", None)].role == "TEAM_ADMIN"
    assert got.memberships[("Audit", None)].because == (
        "client-role:tines/admin → mapping 2",
        "highest role wins over mapping 1 (VIEWER)",
    )
    assert got.tenant_owner
    assert got.owner_because == ("group /Corp/Administrators",)
    assert got.permissions == {
        "AUDIT_LOG_READ": ("group /Auditors", "realm-role:auditor"),
        "TUNNEL_MANAGE": ("realm-role:auditor",),
    }


def test_a_user_in_no_mapped_group_is_granted_nothing() -> None:
    rules = mapping(("Managers", "Analytics", "EDITOR"), owners=("Admins",))
    got = desired_access(rules, POLICY, person("bob", "/Elsewhere"))
    assert (got.memberships, got.tenant_owner, got.permissions) == ({}, False, {})


def test_explain_lists_every_entry_per_membership_with_the_winner() -> None:
    rules = mapping(
        ("Managers", "Analytics", "TEAM_ADMIN"),
        ("Managers", "Incident Response", "EDITOR"),
        ("Analysts", "Analytics", "EDITOR"),
        ("/Ops/Tier1", "Incident Response", "VIEWER", "Tier 1"),
    )
    rows = explain(rules, POLICY, person("alice", "/Analysts", "/Ops/Tier1"))
    assert [(r.team, r.case_group, r.role) for r in rows] == [
        ("Analytics", None, "EDITOR"),
        ("Incident Response", None, None),
        ("Incident Response", "Tier 1", "VIEWER"),
    ]
    analytics = rows[0]
    assert [(e.number, e.matched, e.won) for e in analytics.entries] == [
        (1, False, False),
        (3, True, True),
    ]
    assert analytics.matched[0].matched_through == ("/Analysts",)
    assert [e.number for e in analytics.unmatched] == [1]
    assert [e.number for e in rows[1].unmatched] == [2]


def test_an_explanation_reads_as_one_line_per_membership() -> None:
    rules = mapping(("Managers", "Analytics", "TEAM_ADMIN"), ("Analysts", "Analytics", "EDITOR"))
    (row,) = explain(rules, POLICY, person("alice", "/Corp/Analysts"))
    assert str(row) == (
        "Analytics: EDITOR — mapping 1 (Managers → TEAM_ADMIN): no match; "
        "mapping 2 (Analysts → EDITOR): won, through /Corp/Analysts"
    )

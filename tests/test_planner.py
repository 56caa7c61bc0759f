"""Planner scenarios, from Tines' documented JIT and Enhanced JIT behaviour (docs/design.md: Modes,
Safety, Formats)."""

from __future__ import annotations

import json
import random
from typing import Any

import pytest

from bridge.model import Plan, TargetState, Trigger
from bridge.planner import plan
from bridge.policy import Policy
from tests.scenarios.builders import (
    SCENARIOS,
    account,
    identity,
    load_scenario,
    mapping,
    person,
    target,
    team,
)

JIT = Policy()
ENHANCED = Policy(mode="enhanced")

RULES = mapping(
    ("Managers", "Analytics", "TEAM_ADMIN"),
    ("Managers", "Incident Response", "EDITOR"),
    ("Analysts", "Analytics", "EDITOR"),
    ("/Ops/Tier1", "Incident Response", "VIEWER", "Tier 1"),
    owners=("Administrators",),
    permissions=(("Auditors", ("AUDIT_LOG_READ",)),),
)

TEAMS = (team("Analytics"), team("Incident Response", case_groups={"Tier 1": {}}))


def ops(result: Plan) -> list[dict[str, Any]]:
    """The plan's operations as the JSON shows them, without the free-text `because`."""
    return [
        {k: v for k, v in op.items() if k != "because"}
        for op in json.loads(result.to_json())["operations"]
    ]


def skipped(result: Plan) -> list[tuple[str, str]]:
    return [(s.email, s.reason) for s in result.skipped]


def run(
    policy: Policy,
    *users: Any,
    state: TargetState | None = None,
    trigger: Trigger = "login",
    scope: frozenset[str] | None = None,
    rules: Any = RULES,
    **view: Any,
) -> Plan:
    return plan(
        rules, policy, identity(*users, **view), state or target(teams=TEAMS), trigger, scope
    )


# ---------------------------------------------------------------------------- first login


def test_first_login_creates_the_user_with_teams_roles_owner_and_permissions() -> None:
    bob = person(
        "bob",
        "/Managers",
        "/Ops/Tier1",
        "/Administrators",
        "/Auditors",
        first_name="Bob",
        last_name="Li",
        attributes={"avatar": ["https://img.example.com/bob.png", "second"]},
    )
    result = run(JIT, bob, scope=frozenset({"bob@example.com"}))
    assert ops(result) == [
        {
            "op": "create_user",
            "email": "bob@example.com",
            "first_name": "Bob",
            "last_name": "Li",
            "avatar_url": "https://img.example.com/bob.png",
        },
        {
            "op": "add_membership",
            "email": "bob@example.com",
            "team": "Analytics",
            "case_group": None,
            "role": "TEAM_ADMIN",
        },
        {
            "op": "add_membership",
            "email": "bob@example.com",
            "team": "Incident Response",
            "case_group": None,
            "role": "EDITOR",
        },
        {
            "op": "add_membership",
            "email": "bob@example.com",
            "team": "Incident Response",
            "case_group": "Tier 1",
            "role": "VIEWER",
        },
        {"op": "set_tenant_owner", "email": "bob@example.com", "value": True},
        {
            "op": "set_tenant_permissions",
            "email": "bob@example.com",
            "add": ["AUDIT_LOG_READ"],
            "remove": [],
        },
    ]
    assert result.operations[1].because == ["group /Managers → mapping 1"]  # type: ignore[union-attr]
    assert result.skipped == []


def test_avatar_comes_from_the_configured_attribute() -> None:
    bob = person("bob", "/Analysts", attributes={"picture": ["p.png"], "avatar": ["a.png"]})
    result = run(Policy(avatar_attribute="picture"), bob)
    assert ops(result)[0]["avatar_url"] == "p.png"
    assert ops(run(JIT, person("carol", "/Analysts")))[0]["avatar_url"] is None


def test_a_user_in_no_mapped_group_is_still_created_at_login() -> None:
    assert ops(run(JIT, person("bob")))[0]["op"] == "create_user"
    assert len(run(JIT, person("bob")).operations) == 1


def test_login_matches_existing_users_by_email_case_insensitively_and_writes_lower_case() -> None:
    bob = person("bob", "/Analysts", email="Bob@Example.COM")
    state = target(account("bob", email="BOB@example.com"), teams=TEAMS)
    assert run(JIT, bob, state=state).operations == []
    created = run(JIT, bob)
    assert {op.email for op in created.operations} == {"bob@example.com"}


def test_a_mapped_team_the_target_lacks_is_still_planned() -> None:
    result = run(JIT, person("bob", "/Analysts"), state=target())
    assert ops(result)[1] == {
        "op": "add_membership",
        "email": "bob@example.com",
        "team": "Analytics",
        "case_group": None,
        "role": "EDITOR",
    }


# ---------------------------------------------------------------------------- jit never changes


def test_jit_never_changes_an_existing_user_even_when_the_mapping_changed() -> None:
    alice = person("alice", "/Managers", "/Administrators")
    state = target(
        account("alice", tenant_permissions=["TUNNEL_MANAGE"], active=False),
        teams=(team("Analytics", {"alice": "VIEWER"}), team("Hand Made", {"alice": "EDITOR"})),
    )
    policy = Policy(on_idp_user_disabled="deactivate", sync_profile=True)
    assert run(policy, alice, state=state).operations == []
    assert run(policy, person("alice", enabled=False), state=state).operations == []


def test_jit_finishes_a_first_login_cut_short_by_adding_only_what_is_missing() -> None:
    bob = person("bob", "/Managers", "/Administrators", "/Auditors")
    # Created, and one membership placed, before the run stopped; someone since gave him
    # another role in Incident Response: that is left alone.
    state = target(
        account("bob"),
        teams=(
            team("Analytics", {"bob": "TEAM_ADMIN"}),
            team("Incident Response", {"bob": "VIEWER"}, case_groups={"Tier 1": {}}),
            team("Hand Made", {"bob": "EDITOR"}),
        ),
    )
    result = plan(
        RULES,
        JIT,
        identity(bob),
        state,
        "login",
        frozenset({"bob@example.com"}),
        unfinished=frozenset({"bob@example.com"}),
    )
    assert [(o["op"], o.get("team"), o.get("value"), o.get("add")) for o in ops(result)] == [
        ("set_tenant_owner", None, True, None),
        ("set_tenant_permissions", None, None, ["AUDIT_LOG_READ"]),
    ]
    # Without the mark, jit leaves the existing user alone.
    assert run(JIT, bob, state=state).operations == []
    # The mark matters only to a login.
    reconcile = plan(
        RULES, JIT, identity(bob), state, "reconcile", None, frozenset({"bob@example.com"})
    )
    assert reconcile.operations == []


def test_jit_reconcile_plans_nothing() -> None:
    result = run(JIT, person("bob", "/Analysts"), trigger="reconcile", complete=True)
    assert result == Plan(mode="jit", trigger="reconcile")


# ---------------------------------------------------------------------------- enhanced


def test_enhanced_makes_an_existing_user_match_the_mapping() -> None:
    alice = person("alice", "/Managers")
    state = target(
        account("alice"),
        teams=(
            team("Analytics", {"alice": "EDITOR"}),
            team("Incident Response", case_groups={"Tier 1": {"alice": "VIEWER"}}),
        ),
    )
    triggers: tuple[Trigger, ...] = ("login", "reconcile")
    for trigger in triggers:
        result = run(ENHANCED, alice, state=state, trigger=trigger)
        assert ops(result) == [
            {
                "op": "change_role",
                "email": "alice@example.com",
                "team": "Analytics",
                "case_group": None,
                "from": "EDITOR",
                "to": "TEAM_ADMIN",
            },
            {
                "op": "add_membership",
                "email": "alice@example.com",
                "team": "Incident Response",
                "case_group": None,
                "role": "EDITOR",
            },
            {
                "op": "remove_membership",
                "email": "alice@example.com",
                "team": "Incident Response",
                "case_group": "Tier 1",
                "role": "VIEWER",
            },
        ]
        assert result.operations[2].because == ["no mapped group grants this"]  # type: ignore[union-attr]


def test_enhanced_is_a_no_op_when_the_target_already_matches() -> None:
    alice = person("alice", "/Analysts")
    state = target(account("alice"), teams=(team("Analytics", {"alice": "editor"}),))
    assert run(ENHANCED, alice, state=state).operations == []


def test_enhanced_reconcile_does_not_create_users_it_waits_for_their_login() -> None:
    result = run(ENHANCED, person("bob", "/Analysts"), trigger="reconcile")
    assert result.operations == []
    assert skipped(result) == [("bob@example.com", "not in target yet; created at first login")]
    assert ops(run(ENHANCED, person("bob", "/Analysts")))[0]["op"] == "create_user"


def test_removal_scope_all_reverts_hand_made_memberships_and_mapped_leaves_them() -> None:
    alice = person("alice", "/Analysts")
    state = target(
        account("alice"),
        teams=(
            team("Analytics", {"alice": "EDITOR"}, {"Side": {"alice": "VIEWER"}}),
            team("Hand Made", {"alice": "EDITOR"}, {"Inner": {"alice": "VIEWER"}}),
        ),
    )
    everything = run(ENHANCED, alice, state=state)
    assert [(o["op"], o["team"], o["case_group"]) for o in ops(everything)] == [
        ("remove_membership", "Analytics", "Side"),
        ("remove_membership", "Hand Made", None),
        ("remove_membership", "Hand Made", "Inner"),
    ]
    mapped = run(Policy(mode="enhanced", manage_teams="mapped"), alice, state=state)
    assert [(o["op"], o["team"], o["case_group"]) for o in ops(mapped)] == [
        ("remove_membership", "Analytics", "Side"),
    ]


def test_enhanced_owner_flag_follows_the_owner_groups() -> None:
    state = target(account("alice", tenant_owner=True), account("bob", tenant_owner=True))
    result = run(ENHANCED, person("alice", "/Administrators"), person("bob"), state=state)
    assert ops(result) == [{"op": "set_tenant_owner", "email": "bob@example.com", "value": False}]

    promoted = run(ENHANCED, person("carol", "/Administrators"), state=target(account("carol")))
    assert ops(promoted) == [
        {"op": "set_tenant_owner", "email": "carol@example.com", "value": True}
    ]


def test_the_owner_flag_is_left_alone_when_the_mapping_names_no_owner_group() -> None:
    rules = mapping(("Analysts", "Analytics", "EDITOR"))
    state = target(account("alice", tenant_owner=True), account("bob", tenant_owner=True))
    assert run(ENHANCED, person("alice"), person("bob"), state=state, rules=rules).operations == []


def test_enhanced_permissions_are_added_and_removed() -> None:
    state = target(account("alice", tenant_permissions=["TUNNEL_MANAGE"]))
    result = run(ENHANCED, person("alice", "/Auditors"), state=state)
    assert ops(result) == [
        {
            "op": "set_tenant_permissions",
            "email": "alice@example.com",
            "add": ["AUDIT_LOG_READ"],
            "remove": ["TUNNEL_MANAGE"],
        }
    ]
    mapped = run(
        Policy(mode="enhanced", manage_teams="mapped"), person("alice", "/Auditors"), state=state
    )
    assert ops(mapped)[0]["remove"] == []


def test_profile_is_refreshed_only_with_sync_profile_and_only_changed_fields() -> None:
    alice = person("alice", first_name="Alice", last_name="Ng-Smith")
    state = target(account("alice", first_name="Alice", last_name="Ng"))
    assert run(ENHANCED, alice, state=state).operations == []
    result = run(Policy(mode="enhanced", sync_profile=True), alice, state=state)
    assert ops(result) == [
        {"op": "update_profile", "email": "alice@example.com", "changes": {"last_name": "Ng-Smith"}}
    ]
    nameless = person("alice", first_name=None, last_name=None)
    assert run(Policy(mode="enhanced", sync_profile=True), nameless, state=state).operations == []


# ---------------------------------------------------------------------------- disabled / deleted

GONE_STATE = target(
    account("alice", tenant_owner=True, tenant_permissions=["AUDIT_LOG_READ"]),
    account("root", tenant_owner=True),
    teams=(team("Analytics", {"alice": "EDITOR"}), team("Hand Made", {"alice": "VIEWER"})),
)


@pytest.mark.parametrize(
    ("who", "reason"),
    [
        ({"users": [person("alice", "/Analysts", enabled=False)]}, "disabled in Keycloak"),
        ({"users": [], "deleted_users": ["Alice@example.com"]}, "deleted in Keycloak"),
    ],
)
def test_remove_access_strips_a_gone_user(who: dict[str, Any], reason: str) -> None:
    result = run(
        ENHANCED, *who["users"], state=GONE_STATE, deleted_users=who.get("deleted_users", [])
    )
    assert ops(result) == [
        {
            "op": "remove_membership",
            "email": "alice@example.com",
            "team": "Analytics",
            "case_group": None,
            "role": "EDITOR",
        },
        {
            "op": "remove_membership",
            "email": "alice@example.com",
            "team": "Hand Made",
            "case_group": None,
            "role": "VIEWER",
        },
        {"op": "set_tenant_owner", "email": "alice@example.com", "value": False},
        {
            "op": "set_tenant_permissions",
            "email": "alice@example.com",
            "add": [],
            "remove": ["AUDIT_LOG_READ"],
        },
    ]
    assert all(op.because == [reason] for op in result.operations)  # type: ignore[union-attr]


def test_deactivate_also_sets_the_user_inactive_and_reactivates_on_enable() -> None:
    policy = Policy(mode="enhanced", on_idp_user_disabled="deactivate")
    result = run(policy, person("alice", enabled=False), state=GONE_STATE)
    assert [o["op"] for o in ops(result)][-1] == "deactivate_user"

    state = target(account("alice", active=False), teams=(team("Analytics", {"alice": "EDITOR"}),))
    back = run(policy, person("alice", "/Analysts"), state=state)
    assert ops(back) == [{"op": "activate_user", "email": "alice@example.com"}]
    assert run(ENHANCED, person("alice", "/Analysts"), state=state).operations == []


def test_ignore_leaves_a_disabled_user_alone_and_says_so() -> None:
    policy = Policy(mode="enhanced", on_idp_user_disabled="ignore")
    result = run(policy, person("alice", enabled=False), state=GONE_STATE)
    assert result.operations == []
    assert skipped(result) == [
        ("alice@example.com", "disabled in Keycloak; on_idp_user_disabled = ignore")
    ]


def test_a_disabled_user_is_never_created() -> None:
    for policy in (JIT, ENHANCED):
        result = run(policy, person("bob", "/Analysts", enabled=False))
        assert result.operations == []
        assert skipped(result) == [("bob@example.com", "disabled in Keycloak; not created")]


def test_remove_access_in_mapped_scope_keeps_hand_made_teams() -> None:
    policy = Policy(mode="enhanced", manage_teams="mapped")
    result = run(policy, person("alice", enabled=False), state=GONE_STATE)
    assert [(o["op"], o.get("team")) for o in ops(result)] == [
        ("remove_membership", "Analytics"),
        ("set_tenant_owner", None),
        ("set_tenant_permissions", None),
    ]


# ---------------------------------------------------------------------------- who is left alone


def test_protected_users_are_never_touched_and_listed() -> None:
    policy = Policy(
        mode="enhanced",
        protected_users=frozenset({"Root@Example.com"}),
        on_idp_user_disabled="deactivate",
    )
    state = target(
        account("root", tenant_owner=True), teams=(team("Analytics", {"root": "VIEWER"}),)
    )
    for root in (person("root", "/Managers"), person("root", enabled=False)):
        result = run(policy, root, state=state)
        assert result.operations == []
        assert skipped(result) == [("root@example.com", "protected")]
    assert skipped(run(policy, person("root", "/Managers"))) == [("root@example.com", "protected")]


def test_unverified_emails_are_skipped_unless_verification_is_off() -> None:
    bob = person("bob", "/Analysts", email_verified=False)
    result = run(JIT, bob)
    assert result.operations == []
    assert skipped(result) == [("bob@example.com", "email not verified")]
    assert ops(run(Policy(require_verified_email=False), bob))[0]["op"] == "create_user"


def test_users_without_email_are_skipped_under_their_username() -> None:
    result = run(JIT, person("bob", "/Analysts", email=None), person("zed", email="  "))
    assert skipped(result) == [("(no email) bob", "no email"), ("(no email) zed", "no email")]
    assert result.operations == []


def test_users_sharing_one_email_are_all_skipped() -> None:
    twin = person("bob", "/Managers", id="kc-other", username="bob2")
    result = run(ENHANCED, person("bob", "/Analysts"), twin)
    assert result.operations == []
    assert skipped(result) == [("bob@example.com", "several Keycloak users share this email")]


def test_target_only_users_are_listed_only_when_the_read_was_complete_and_full() -> None:
    state = target(account("legacy"), teams=(team("Analytics", {"legacy": "VIEWER"}),))
    full = run(ENHANCED, state=state, trigger="reconcile", complete=True)
    assert full.operations == []
    assert skipped(full) == [("legacy@example.com", "not in Keycloak; left alone")]
    assert run(ENHANCED, state=state, trigger="reconcile").skipped == []
    one = run(ENHANCED, state=state, complete=True, scope=frozenset({"legacy@example.com"}))
    assert one.skipped == []


def test_a_per_user_plan_ignores_everyone_else() -> None:
    state = target(
        account("alice", tenant_owner=True), teams=(team("Analytics", {"alice": "VIEWER"}),)
    )
    result = run(
        Policy(mode="enhanced", protected_users=frozenset({"root@example.com"})),
        person("alice", "/Analysts"),
        person("bob", "/Analysts"),
        person("root"),
        person("nomail", email=None),
        state=state,
        scope=frozenset({"BOB@example.com"}),
        complete=True,
    )
    assert {op.email for op in result.operations} == {"bob@example.com"}
    assert result.skipped == []


# ---------------------------------------------------------------------------- last owner


def test_the_last_active_owner_is_never_revoked() -> None:
    policy = Policy(mode="enhanced", on_idp_user_disabled="deactivate")
    state = target(
        account("zoe", tenant_owner=True),
        account("amy", tenant_owner=True),
        account("old", tenant_owner=True, active=False),
        teams=(team("Analytics", {"zoe": "EDITOR", "amy": "EDITOR"}),),
    )
    result = run(policy, person("zoe", enabled=False), person("amy"), state=state)
    assert ops(result) == [
        {
            "op": "remove_membership",
            "email": "amy@example.com",
            "team": "Analytics",
            "case_group": None,
            "role": "EDITOR",
        },
        {
            "op": "remove_membership",
            "email": "zoe@example.com",
            "team": "Analytics",
            "case_group": None,
            "role": "EDITOR",
        },
        {"op": "set_tenant_owner", "email": "zoe@example.com", "value": False},
        {"op": "deactivate_user", "email": "zoe@example.com"},
    ]
    assert skipped(result) == [
        ("amy@example.com", "last tenant owner: set_tenant_owner not planned")
    ]


def test_an_owner_may_be_revoked_when_the_plan_grants_another() -> None:
    state = target(account("amy", tenant_owner=True), account("bob"))
    result = run(ENHANCED, person("amy"), person("bob", "/Administrators"), state=state)
    assert [(o["email"], o["value"]) for o in ops(result)] == [
        ("amy@example.com", False),
        ("bob@example.com", True),
    ]
    created = run(
        ENHANCED,
        person("amy"),
        person("cat", "/Administrators"),
        state=target(account("amy", tenant_owner=True)),
    )
    assert ("amy@example.com", False) in [(o["email"], o.get("value")) for o in ops(created)]


def test_a_per_user_plan_counts_owners_outside_its_scope() -> None:
    state = target(account("amy", tenant_owner=True), account("bob", tenant_owner=True))
    result = run(ENHANCED, person("amy"), state=state, scope=frozenset({"amy@example.com"}))
    assert ops(result) == [{"op": "set_tenant_owner", "email": "amy@example.com", "value": False}]


# ---------------------------------------------------------------------------- fail closed


def test_unreadable_groups_hold_removals_and_downgrades_but_not_additions() -> None:
    alice = person("alice", "/Analysts")
    state = target(
        account("alice", tenant_owner=True, tenant_permissions=["AUDIT_LOG_READ"]),
        account("zed", tenant_owner=True),
        teams=(
            team("Analytics", {"alice": "TEAM_ADMIN"}),
            team("Incident Response", {"alice": "VIEWER"}, {"Tier 1": {"alice": "VIEWER"}}),
            team("Hand Made", {"alice": "VIEWER"}),
        ),
    )
    rules = mapping(
        ("Managers", "Analytics", "TEAM_ADMIN"),
        ("Analysts", "Analytics", "EDITOR"),
        ("Analysts", "Incident Response", "EDITOR"),
        ("/Ops/Tier1", "Incident Response", "VIEWER", "Tier 1"),
        owners=("Administrators",),
        permissions=(("Auditors", ("AUDIT_LOG_READ",)),),
    )
    unreadable = {"Managers": "HTTP 503", "Administrators": "timeout", "Auditors": "page 3 missing"}
    result = run(ENHANCED, alice, state=state, rules=rules, unreadable_groups=unreadable)
    assert [(o["op"], o.get("team"), o.get("case_group")) for o in ops(result)] == [
        ("remove_membership", "Hand Made", None),
        ("change_role", "Incident Response", None),
        ("remove_membership", "Incident Response", "Tier 1"),
    ]
    reasons = skipped(result)
    assert [r for _, r in reasons] == [
        "Analytics: TEAM_ADMIN kept, mapped group Managers could not be read (HTTP 503)",
        "permission AUDIT_LOG_READ kept, mapped group Auditors could not be read (page 3 missing)",
        "tenant owner kept, mapped group Administrators could not be read (timeout)",
    ]


def test_an_unreadable_group_holds_the_removals_of_a_disabled_user_too() -> None:
    state = target(account("alice"), teams=(team("Analytics", {"alice": "EDITOR"}),))
    result = run(
        ENHANCED,
        person("alice", enabled=False),
        state=state,
        unreadable_groups={"Analysts": "HTTP 500"},
    )
    assert result.operations == []
    assert len(result.skipped) == 1


# ---------------------------------------------------------------------------- order and bytes


def _big_world() -> tuple[list[Any], TargetState]:
    users = [
        person("dana", "/Administrators"),
        person("erin", "/Auditors", "/Ops/Tier1"),
        person("carol"),
        person("bob", "/Analysts", "/Managers"),
        person("alice", "/Managers", last_name="Ng-Smith"),
        person("frank", enabled=False),
        person("gus", "/Analysts", email="Gus@Example.com"),
    ]
    state = target(
        account("alice", last_name="Ng"),
        account("carol", tenant_owner=True),
        account("dana"),
        account("erin"),
        account("frank"),
        account("hank"),
        teams=(
            team("Analytics", {"alice": "EDITOR", "carol": "VIEWER", "frank": "EDITOR"}),
            team("Incident Response", {"hank": "VIEWER"}, {"Tier 1": {"carol": "VIEWER"}}),
        ),
    )
    return users, state


def test_operations_follow_the_spec_order() -> None:
    users, state = _big_world()
    policy = Policy(
        mode="enhanced",
        sync_profile=True,
        on_idp_user_disabled="deactivate",
        protected_users=frozenset({"gus@example.com"}),
    )
    result = run(policy, *users, state=state, complete=True)
    assert [
        (o["email"].split("@")[0], o["op"], o.get("team"), o.get("case_group")) for o in ops(result)
    ] == [
        ("alice", "change_role", "Analytics", None),
        ("alice", "add_membership", "Incident Response", None),
        ("alice", "update_profile", None, None),
        ("bob", "create_user", None, None),
        ("bob", "add_membership", "Analytics", None),
        ("bob", "add_membership", "Incident Response", None),
        ("carol", "remove_membership", "Analytics", None),
        ("carol", "remove_membership", "Incident Response", "Tier 1"),
        ("carol", "set_tenant_owner", None, None),
        ("dana", "set_tenant_owner", None, None),
        ("erin", "add_membership", "Incident Response", "Tier 1"),
        ("erin", "set_tenant_permissions", None, None),
        ("frank", "remove_membership", "Analytics", None),
        ("frank", "deactivate_user", None, None),
    ]
    assert skipped(result) == [
        ("gus@example.com", "protected"),
        ("hank@example.com", "not in Keycloak; left alone"),
    ]


def test_the_same_inputs_give_byte_identical_json_whatever_the_input_order() -> None:
    users, state = _big_world()
    expected = run(ENHANCED, *users, state=state, complete=True).to_json()
    shuffle = random.Random(7)
    for _ in range(5):
        shuffle.shuffle(users)
        teams = list(state.teams)
        shuffle.shuffle(teams)
        accounts = list(state.users)
        shuffle.shuffle(accounts)
        again = run(ENHANCED, *users, state=TargetState(users=accounts, teams=teams), complete=True)
        assert again.to_json() == expected


@pytest.mark.parametrize(
    "name", sorted(p.name for p in SCENARIOS.iterdir() if (p / "plan.json").exists())
)
def test_scenario_folders_plan_exactly_their_recorded_plan(name: str) -> None:
    rules, policy, view, state, settings = load_scenario(name)
    result = plan(rules, policy, view, state, settings["trigger"], None)
    assert result.to_json() == (SCENARIOS / name / "plan.json").read_text(encoding="utf-8")

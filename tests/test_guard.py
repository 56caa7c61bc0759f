"""The removal budget (docs/design.md, Safety): over budget, additions go ahead and every removal
is held."""

from __future__ import annotations

from bridge.guard import apply_removal_budget, count_managed_memberships, is_removal
from bridge.model import (
    ActivateUser,
    AddMembership,
    ChangeRole,
    CreateUser,
    DeactivateUser,
    Operation,
    Plan,
    RemoveMembership,
    SetTenantOwner,
    SetTenantPermissions,
    UpdateProfile,
)
from bridge.policy import Policy
from tests.scenarios.builders import account, mapping, target, team

POLICY = Policy(mode="enhanced")


def removals(n: int) -> list[Operation]:
    return [
        RemoveMembership(email=f"u{i:03}@example.com", team="Analytics", role="VIEWER")
        for i in range(n)
    ]


ADD = AddMembership(email="new@example.com", team="Analytics", role="EDITOR")


def test_what_counts_as_a_removal() -> None:
    assert is_removal(RemoveMembership(email="a", team="T", role="VIEWER"), POLICY)
    assert is_removal(ChangeRole(email="a", team="T", **{"from": "EDITOR", "to": "VIEWER"}), POLICY)
    assert not is_removal(
        ChangeRole(email="a", team="T", **{"from": "VIEWER", "to": "EDITOR"}), POLICY
    )
    assert is_removal(SetTenantOwner(email="a", value=False), POLICY)
    assert not is_removal(SetTenantOwner(email="a", value=True), POLICY)
    assert is_removal(SetTenantPermissions(email="a", remove=["X"]), POLICY)
    assert not is_removal(SetTenantPermissions(email="a", add=["X"]), POLICY)
    assert is_removal(DeactivateUser(email="a"), POLICY)
    for op in (
        CreateUser(email="a"),
        ActivateUser(email="a"),
        ADD,
        UpdateProfile(email="a", changes={"last_name": "B"}),
    ):
        assert not is_removal(op, POLICY)


def test_within_budget_the_plan_is_unchanged() -> None:
    plan = Plan(mode="enhanced", trigger="reconcile", operations=[ADD, *removals(25)])
    assert apply_removal_budget(plan, POLICY, managed_memberships=1000) == plan


def test_more_than_max_removals_holds_every_removal_and_keeps_additions() -> None:
    plan = Plan(mode="enhanced", trigger="reconcile", operations=[ADD, *removals(26)])
    guarded = apply_removal_budget(plan, POLICY, managed_memberships=1000)
    assert guarded.operations == [ADD]
    assert guarded.held == removals(26)
    assert guarded.skipped == plan.skipped


def test_the_fraction_rule_holds_only_runs_of_more_than_five() -> None:
    small = Plan(mode="enhanced", trigger="reconcile", operations=removals(5))
    assert apply_removal_budget(small, POLICY, managed_memberships=10).held == []
    six = Plan(mode="enhanced", trigger="reconcile", operations=removals(6))
    assert len(apply_removal_budget(six, POLICY, managed_memberships=59).held) == 6
    assert apply_removal_budget(six, POLICY, managed_memberships=60).held == []


def test_revoked_permissions_count_one_each_and_their_additions_stay() -> None:
    mixed = SetTenantPermissions(email="a@example.com", add=["NEW"], remove=["P1", "P2"])
    plan = Plan(mode="enhanced", trigger="reconcile", operations=[mixed, *removals(24)])
    guarded = apply_removal_budget(plan, POLICY, managed_memberships=1000)
    assert guarded.operations == [SetTenantPermissions(email="a@example.com", add=["NEW"])]
    assert guarded.held[0] == SetTenantPermissions(email="a@example.com", remove=["P1", "P2"])


def test_an_operator_override_raises_the_limit_for_one_run() -> None:
    plan = Plan(mode="enhanced", trigger="reconcile", operations=removals(40))
    assert apply_removal_budget(plan, POLICY, 100, allow_removals=40) == plan
    assert len(apply_removal_budget(plan, POLICY, 100, allow_removals=39).held) == 40


def test_managed_memberships_follow_the_removal_scope_and_skip_protected_users() -> None:
    state = target(
        account("alice"),
        account("root"),
        teams=(
            team(
                "Analytics", {"alice": "EDITOR", "root": "EDITOR"}, {"Tier 1": {"alice": "VIEWER"}}
            ),
            team("Hand Made", {"alice": "VIEWER"}),
        ),
    )
    rules = mapping(("Analysts", "Analytics", "EDITOR"))
    policy = Policy(protected_users=frozenset({"root@example.com"}))
    assert count_managed_memberships(rules, policy, state) == 3
    mapped = Policy(protected_users=frozenset({"root@example.com"}), manage_teams="mapped")
    assert count_managed_memberships(rules, mapped, state) == 2

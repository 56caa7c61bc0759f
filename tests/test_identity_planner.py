"""The planner follows the stored Keycloak id ↔ account pairs (pure, no I/O)."""

from __future__ import annotations

import json

from bridge.mapping_file import parse_mapping
from bridge.model import (
    AccountPair,
    IdentityView,
    IdpUser,
    Member,
    TargetState,
    TargetUser,
    Team,
)
from bridge.planner import plan
from bridge.policy import Policy

MAPPING = parse_mapping(
    json.dumps({"mappings": [{"group_name": "/A", "team_name": "T", "role_name": "EDITOR"}]})
)
POLICY = Policy(mode="enhanced")


def user(uid: str, email: str, groups: tuple[str, ...] = ("/A",)) -> IdpUser:
    return IdpUser(id=uid, email=email, email_verified=True, groups=list(groups))


def tenant(*accounts: tuple[str, str, bool]) -> TargetState:
    """(account id, email, member of T)."""
    users = [TargetUser(id=i, email=e) for i, e, _ in accounts]
    members = [Member(user_id=i, role="EDITOR") for i, _, member in accounts if member]
    return TargetState(users=users, teams=[Team(id="t", name="T", members=members)])


def ops(result: object) -> list[tuple[str, str]]:
    return [(op.op, op.email) for op in result.operations]  # type: ignore[attr-defined]


def test_a_changed_email_renames_the_paired_account_and_plans_nothing_else() -> None:
    state = tenant(("1", "old@x.example", True))
    pair = AccountPair(user_id="k1", account_id="1", email="old@x.example")
    view = IdentityView(users=[user("k1", "New@x.example")])
    result = plan(
        MAPPING,
        POLICY,
        view,
        state,
        "login",
        frozenset({"new@x.example", "old@x.example"}),
        pairs=[pair],
        email_changes=True,
    )
    assert [op.model_dump(by_alias=True) for op in result.operations] == [
        {
            "op": "change_email",
            "email": "old@x.example",
            "to": "new@x.example",
            "because": ["email changed in Keycloak"],
        }
    ]


def test_a_new_email_another_account_has_makes_the_old_account_gone() -> None:
    state = tenant(("1", "old@x.example", True), ("2", "new@x.example", False))
    pair = AccountPair(user_id="k1", account_id="1", email="old@x.example")
    view = IdentityView(users=[user("k1", "new@x.example")])
    result = plan(MAPPING, POLICY, view, state, "reconcile", None, pairs=[pair], email_changes=True)
    assert ops(result) == [
        ("add_membership", "new@x.example"),
        ("remove_membership", "old@x.example"),
    ]


def test_a_deleted_id_reaches_only_its_paired_account() -> None:
    state = tenant(("1", "a@x.example", True), ("2", "b@x.example", True))
    pair = AccountPair(user_id="gone", account_id="2", email="b@x.example")
    view = IdentityView(deleted_ids=["gone", "never-paired"])
    scope = frozenset({"b@x.example"})
    result = plan(MAPPING, POLICY, view, state, "reconcile", scope, pairs=[pair])
    assert ops(result) == [("remove_membership", "b@x.example")]


def test_an_email_a_living_user_has_is_theirs_even_if_another_id_was_paired() -> None:
    state = tenant(("1", "a@x.example", True))
    pair = AccountPair(user_id="old-id", account_id="1", email="a@x.example")
    view = IdentityView(users=[user("new-id", "a@x.example")], complete=True)
    result = plan(MAPPING, POLICY, view, state, "reconcile", None, pairs=[pair])
    assert ops(result) == []


def test_orphans_only_in_managed_domains_and_never_protected() -> None:
    state = tenant(
        ("1", "ghost@corp.example", True),
        ("2", "boss@corp.example", True),
        ("3", "guest@partner.example", True),
    )
    policy = Policy(
        mode="enhanced",
        managed_email_domains=frozenset({"Corp.Example"}),
        protected_users=frozenset({"boss@corp.example"}),
        orphan_accounts="remove_access",
    )
    result = plan(MAPPING, policy, IdentityView(complete=True), state, "reconcile", None)
    assert result.orphans == ["ghost@corp.example"]
    assert ops(result) == [("remove_membership", "ghost@corp.example")]
    assert result.operations[0].because == ["orphan: no Keycloak user has this email"]  # type: ignore[union-attr]
    skipped = {s.email: s.reason for s in result.skipped}
    assert skipped == {
        "boss@corp.example": "protected",
        "guest@partner.example": "not in Keycloak; left alone",
    }
    assert '"orphans": [\n    "ghost@corp.example"\n  ]' in result.to_json()

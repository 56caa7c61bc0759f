"""Keycloak Organizations: `organization:ALIAS` and `organization:ALIAS/GROUP PATH` selectors.

Offline: how the selectors match and which events re-sync whom. Against the real Keycloak
(26.7, which has organization groups): the per-user and the bulk read agree, a deleted or
renamed organization fails closed on both, the least-privilege role, and an organization
membership change reaching the target through the project's listener.
"""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

import pytest

from bridge.intake.events import (
    parse_listener_event,
    parse_phasetwo_event,
    parse_rest_admin_event,
    triggers_for,
)
from bridge.keys import EVERYONE, UserRef
from bridge.mapping import Mapping
from bridge.mapping_file import parse_mapping
from bridge.model import IdentityView, Member, TargetState, TargetUser, Team
from bridge.planner import plan
from bridge.policy import Policy
from bridge.resolve import DesiredAccessMemo, desired_access
from tests.fixtures.bridge import BridgeFactory
from tests.fixtures.keycloak import KeycloakSandbox, TestKeycloak
from tests.fixtures.organizations import OrganizationSandbox, grant_realm_management
from tests.scenarios.builders import mapping, person
from tests.tines_fake import TinesFake

ENHANCED = Policy(mode="enhanced")
ORG = "11111111-2222-3333-4444-555555555555"
USER = "99999999-8888-7777-6666-555555555555"
PASSWORD = "organizations-password"

# -- matching ----------------------------------------------------------------------------


def test_an_organization_selector_matches_its_members_and_group_members() -> None:
    rules = mapping(
        ("organization:acme", "Acme", "VIEWER"),
        ("organization:acme/Sales", "Acme Sales", "EDITOR"),
        ("organization:globex", "Globex", "VIEWER"),
    )
    seller = person("ann", organizations={"acme": ["/Sales/EMEA"]})
    member = person("ben", organizations={"acme": []})
    got = desired_access(rules, ENHANCED, seller)
    assert {k[0]: m.role for k, m in got.memberships.items()} == {
        "Acme": "VIEWER",
        "Acme Sales": "EDITOR",
    }
    assert got.memberships[("Acme Sales", None)].because == ("organization:acme/Sales → mapping 2",)
    assert set(desired_access(rules, ENHANCED, member).memberships) == {("Acme", None)}
    flat = Policy(mode="enhanced", inherit_parent_groups=False)
    assert set(desired_access(rules, flat, seller).memberships) == {("Acme", None)}


def test_organization_groups_and_realm_groups_never_stand_in_for_each_other() -> None:
    rules = mapping(("organization:acme/Sales", "Org", "VIEWER"), ("/Sales", "Realm", "VIEWER"))
    in_realm_group = person("ann", "/Sales", organizations={"acme": []})
    in_org_group = person("ben", organizations={"acme": ["/Sales"]})
    other_org = person("cat", organizations={"globex": ["/Sales"]})
    assert set(desired_access(rules, ENHANCED, in_realm_group).memberships) == {("Realm", None)}
    assert set(desired_access(rules, ENHANCED, in_org_group).memberships) == {("Org", None)}
    assert desired_access(rules, ENHANCED, other_org).memberships == {}


def test_users_alike_but_for_their_organizations_are_planned_apart() -> None:
    """A full plan resolves each combination of groups, roles and organizations once; the
    organizations must be part of what makes two users alike."""
    rules = mapping(("organization:acme", "Acme", "VIEWER"), ("/Staff", "Staff", "VIEWER"))
    memo = DesiredAccessMemo(rules, ENHANCED)
    inside = person("ann", "/Staff", organizations={"acme": []})
    outside = person("ben", "/Staff")
    elsewhere = person("cat", "/Staff", organizations={"acme": ["/Sales"]})
    assert set(memo(inside).memberships) == {("Acme", None), ("Staff", None)}
    assert set(memo(outside).memberships) == {("Staff", None)}
    assert memo(elsewhere) == desired_access(rules, ENHANCED, elsewhere)
    assert len(memo) == 3


# -- events ------------------------------------------------------------------------------


def listener_admin(resource_type: str, operation: str, path: str, **extra: Any) -> Any:
    return {
        "id": str(uuid.uuid4()),
        "time": int(time.time() * 1000),
        "realm": "jit-bridge",
        "kind": "admin",
        "type": f"{resource_type}-{operation}",
        "user_id": None,
        "operation": operation,
        "resource_type": resource_type,
        "resource_path": path,
        **extra,
    }


@pytest.mark.parametrize(
    ("resource_type", "operation", "path"),
    [
        ("ORGANIZATION_MEMBERSHIP", "DELETE", f"organizations/{ORG}/members/{USER}"),
        (
            "ORGANIZATION_GROUP_MEMBERSHIP",
            "CREATE",
            f"organizations/{ORG}/groups/g1/members/{USER}",
        ),
        (
            "ORGANIZATION_GROUP_MEMBERSHIP",
            "DELETE",
            f"organizations/{ORG}/groups/g1/members/{USER}",
        ),
    ],
)
def test_an_organization_membership_event_re_syncs_the_member_it_names(
    resource_type: str, operation: str, path: str
) -> None:
    event = parse_listener_event(listener_admin(resource_type, operation, path))
    (trigger,) = triggers_for(event, "enhanced")
    assert (trigger.key, trigger.trigger) == (UserRef(user_id=USER).key, "change")
    assert triggers_for(event, "jit") == []


def test_an_added_organization_member_is_found_through_the_event_details() -> None:
    """Keycloak's path for an added member ends at `members`; its details name the user."""
    stored = {
        "id": str(uuid.uuid4()),
        "time": int(time.time() * 1000),
        "realmId": "jit-bridge",
        "operationType": "CREATE",
        "resourceType": "ORGANIZATION_MEMBERSHIP",
        "resourcePath": f"organizations/{ORG}/members",
        "details": {"email": "Ann@Example.com", "username": "ann"},
    }
    from_store = parse_rest_admin_event(stored, realm="jit-bridge")
    (trigger,) = triggers_for(from_store, "enhanced")
    assert (trigger.key, trigger.trigger) == (UserRef(email="ann@example.com").key, "change")

    phase_two = {
        **stored,
        "type": "admin.ORGANIZATION_MEMBERSHIP-CREATE",
        "realmName": "jit-bridge",
    }
    (trigger,) = triggers_for(parse_phasetwo_event(phase_two), "enhanced")
    assert trigger.key == UserRef(email="ann@example.com").key


def test_an_added_member_nothing_names_re_reads_everyone() -> None:
    body = listener_admin("ORGANIZATION_MEMBERSHIP", "CREATE", f"organizations/{ORG}/members")
    (trigger,) = triggers_for(parse_listener_event(body), "enhanced")
    assert (trigger.key, trigger.trigger) == (EVERYONE, "reconcile")


@pytest.mark.parametrize(
    ("resource_type", "operation"),
    [
        ("ORGANIZATION", "UPDATE"),
        ("ORGANIZATION", "DELETE"),
        ("ORGANIZATION_GROUP", "UPDATE"),
        ("ORGANIZATION_GROUP", "DELETE"),
    ],
)
def test_a_renamed_or_deleted_organization_or_group_re_reads_everyone(
    resource_type: str, operation: str
) -> None:
    body = listener_admin(resource_type, operation, f"organizations/{ORG}")
    (trigger,) = triggers_for(parse_listener_event(body), "enhanced")
    assert (trigger.key, trigger.trigger) == (EVERYONE, "reconcile")


def test_only_the_exact_member_segment_of_an_organization_path_names_a_user() -> None:
    for path in (
        f"organizations/{ORG}/members/{USER}/extra",
        f"organizations/{ORG}/identity-providers/members/{USER}",
        f"organizations/{ORG}/groups/g1/children/{USER}",
    ):
        body = listener_admin("ORGANIZATION_GROUP_MEMBERSHIP", "DELETE", path)
        (trigger,) = triggers_for(parse_listener_event(body), "enhanced")
        assert trigger.key == EVERYONE, path


# -- the real Keycloak -------------------------------------------------------------------


def org_mapping(alias: str) -> Mapping:
    return parse_mapping(
        json.dumps(
            {
                "mappings": [
                    {
                        "group_name": f"organization:{alias}",
                        "team_name": "Org",
                        "role_name": "VIEWER",
                    },
                    {
                        "group_name": f"organization:{alias}/Sales",
                        "team_name": "Sales",
                        "role_name": "EDITOR",
                    },
                ]
            }
        )
    )


def test_per_user_and_bulk_reads_agree_on_organizations(
    keycloak: TestKeycloak,
    keycloak_sandbox: KeycloakSandbox,
    organization_sandbox: OrganizationSandbox,
) -> None:
    alias, org_id = organization_sandbox.create("acme", groups=("/Sales/EMEA", "/Support"))
    other_alias, other_id = organization_sandbox.create("globex", groups=("/Sales",))
    _, seller = keycloak_sandbox.create_user("seller")
    _, member = keycloak_sandbox.create_user("member")
    _, outsider = keycloak_sandbox.create_user("outsider")
    for user_id in (seller, member):
        organization_sandbox.add_member(org_id, user_id)
    organization_sandbox.add_to_group(org_id, "/Sales/EMEA", seller)
    organization_sandbox.add_member(other_id, outsider)
    organization_sandbox.add_to_group(other_id, "/Sales", outsider)

    rules = org_mapping(alias)
    source = keycloak.source()
    bulk = source.read_all(rules)
    assert bulk.unreadable_groups == {}
    by_id = {u.id: u for u in bulk.users}
    assert by_id[seller].organizations == {alias: ["/Sales/EMEA"]}
    assert by_id[member].organizations == {alias: []}
    assert by_id[outsider].organizations == {}
    for user_id in (seller, member, outsider):
        one = source.read_user(UserRef(user_id=user_id), rules)
        assert one.unreadable_groups == {}
        (single,) = one.users
        assert single.organizations == by_id[user_id].organizations
        assert desired_access(rules, ENHANCED, single) == desired_access(
            rules, ENHANCED, by_id[user_id]
        )
    seller_access = desired_access(rules, ENHANCED, by_id[seller])
    assert {k[0] for k in seller_access.memberships} == {"Org", "Sales"}
    del other_alias


def member_in_target(email: str) -> TargetState:
    return TargetState(
        users=[TargetUser(id="1", email=email)],
        teams=[
            Team(id="1", name="Org", members=[Member(user_id="1", role="VIEWER")]),
            Team(id="2", name="Sales", members=[Member(user_id="1", role="EDITOR")]),
        ],
    )


def removals(identity: IdentityView, rules: Mapping, email: str) -> list[str]:
    planned = plan(rules, ENHANCED, identity, member_in_target(email), "reconcile", None)
    return [op.op for op in planned.operations if op.op == "remove_membership"]


def test_a_deleted_organization_fails_closed_on_both_paths(
    keycloak: TestKeycloak,
    keycloak_sandbox: KeycloakSandbox,
    organization_sandbox: OrganizationSandbox,
) -> None:
    alias, org_id = organization_sandbox.create("acme", groups=("/Sales",))
    username, user_id = keycloak_sandbox.create_user("seller")
    email = f"{username}@example.com"
    organization_sandbox.add_member(org_id, user_id)
    organization_sandbox.add_to_group(org_id, "/Sales", user_id)
    rules = org_mapping(alias)
    source = keycloak.source()
    assert removals(source.read_all(rules), rules, email) == []

    organization_sandbox.delete(org_id)

    for identity in (source.read_all(rules), source.read_user(UserRef(user_id=user_id), rules)):
        assert set(identity.unreadable_groups) == {
            f"organization:{alias}",
            f"organization:{alias}/Sales",
        }
        assert "does not exist" in identity.unreadable_groups[f"organization:{alias}"]
        assert removals(identity, rules, email) == []


def test_a_renamed_organization_keeps_its_alias_and_its_members_access(
    keycloak: TestKeycloak,
    keycloak_sandbox: KeycloakSandbox,
    organization_sandbox: OrganizationSandbox,
) -> None:
    """Keycloak refuses to change an alias ("Cannot change the alias"), and the alias is what
    a mapping names: renaming an organization changes nobody's access."""
    alias, org_id = organization_sandbox.create("acme", groups=("/Sales",))
    username, user_id = keycloak_sandbox.create_user("seller")
    organization_sandbox.add_member(org_id, user_id)
    organization_sandbox.add_to_group(org_id, "/Sales", user_id)
    current = organization_sandbox._call("GET", f"organizations/{org_id}")
    organization_sandbox._call("PUT", f"organizations/{org_id}", {**current, "name": "Acme 2"})
    with pytest.raises(AssertionError, match="Cannot change the alias"):
        organization_sandbox.rename(org_id, f"{alias}-renamed")

    rules = org_mapping(alias)
    source = keycloak.source()
    for identity in (source.read_all(rules), source.read_user(UserRef(user_id=user_id), rules)):
        assert identity.unreadable_groups == {}
        assert removals(identity, rules, f"{username}@example.com") == []


def test_a_deleted_organization_group_fails_closed_and_its_organization_still_counts(
    keycloak: TestKeycloak,
    keycloak_sandbox: KeycloakSandbox,
    organization_sandbox: OrganizationSandbox,
) -> None:
    alias, org_id = organization_sandbox.create("acme", groups=("/Sales",))
    username, user_id = keycloak_sandbox.create_user("seller")
    organization_sandbox.add_member(org_id, user_id)
    organization_sandbox.add_to_group(org_id, "/Sales", user_id)
    rules = org_mapping(alias)
    source = keycloak.source()
    organization_sandbox._call(
        "DELETE", f"organizations/{org_id}/groups/{organization_sandbox.group_id(org_id, '/Sales')}"
    )
    for identity in (source.read_all(rules), source.read_user(UserRef(user_id=user_id), rules)):
        assert set(identity.unreadable_groups) == {f"organization:{alias}/Sales"}
        assert removals(identity, rules, f"{username}@example.com") == []


def test_organization_selectors_need_view_organizations_and_nothing_more(
    keycloak: TestKeycloak,
    keycloak_sandbox: KeycloakSandbox,
    organization_sandbox: OrganizationSandbox,
) -> None:
    alias, org_id = organization_sandbox.create("acme", groups=("/Sales",))
    _, user_id = keycloak_sandbox.create_user("seller")
    organization_sandbox.add_member(org_id, user_id)
    client_id = f"{organization_sandbox.prefix}-reader"
    admin = keycloak.admin
    admin.create_client(
        {
            "clientId": client_id,
            "secret": "reader-secret",
            "serviceAccountsEnabled": True,
            "publicClient": False,
            "standardFlowEnabled": False,
        }
    )
    try:
        grant_realm_management(keycloak, client_id, "view-users")
        rules = org_mapping(alias)
        source = keycloak.source(client_id=client_id, client_secret="reader-secret")
        for identity in (source.read_all(rules), source.read_user(UserRef(user_id=user_id), rules)):
            reason = identity.unreadable_groups[f"organization:{alias}"]
            assert "403" in reason
            assert "view-organizations" in reason

        grant_realm_management(keycloak, client_id, "view-organizations")
        bulk = source.read_all(rules)
        assert bulk.unreadable_groups == {}
        assert {u.id: u.organizations for u in bulk.users}[user_id] == {alias: []}
        assert source.read_user(UserRef(user_id=user_id), rules).users[0].organizations == {
            alias: []
        }
    finally:
        admin.delete_client(admin.get_client_id(client_id))


def test_organization_membership_changes_reach_the_target_through_the_listener(
    bridge_service: BridgeFactory,
    tines_fake: TinesFake,
    keycloak: TestKeycloak,
    keycloak_sandbox: KeycloakSandbox,
    organization_sandbox: OrganizationSandbox,
) -> None:
    assert keycloak.listener_port is not None, "the session Keycloak must run the listener"
    alias, org_id = organization_sandbox.create("acme", groups=("/Sales",))
    tines_fake.state.add_team("Org")
    tines_fake.state.add_team("Sales")
    bridge = bridge_service(
        mapping={
            "mappings": [
                {"group_name": f"organization:{alias}", "team_name": "Org", "role_name": "VIEWER"},
                {
                    "group_name": f"organization:{alias}/Sales",
                    "team_name": "Sales",
                    "role_name": "EDITOR",
                },
            ]
        },
        tines=tines_fake,
        keycloak=keycloak,
        port=keycloak.listener_port,
        mode="enhanced",
        poll_events=False,
        reconcile_interval=0,
    )
    username, user_id = keycloak_sandbox.create_user("member", password=PASSWORD)
    email = f"{username}@example.com"
    organization_sandbox.add_member(org_id, user_id)
    keycloak.login(username, PASSWORD)
    bridge.wait_until(
        lambda: teams_of(tines_fake, email) == {"Org": "VIEWER"}, 60, f"{email} created in Org"
    )

    organization_sandbox.add_to_group(org_id, "/Sales", user_id)
    bridge.wait_until(
        lambda: teams_of(tines_fake, email) == {"Org": "VIEWER", "Sales": "EDITOR"},
        60,
        f"{email} added to Sales through ORGANIZATION_GROUP_MEMBERSHIP",
    )
    organization_sandbox.remove_member(org_id, user_id)
    bridge.wait_until(
        lambda: teams_of(tines_fake, email) == {},
        60,
        f"{email} out of every team through ORGANIZATION_MEMBERSHIP DELETE",
    )
    events = keycloak.admin.get_admin_events(
        {"resourceTypes": "ORGANIZATION_MEMBERSHIP", "operationTypes": "DELETE", "max": 100}
    )
    ids = {str(e["id"]) for e in events if user_id in str(e.get("resourcePath", ""))}
    audit = bridge.admin("GET", "audit", params={"user": email}).json()
    causes = {c for r in audit if r["op"] == "remove_membership" for c in r["trigger"].split(",")}
    assert causes & ids, f"the removals name {causes}, not the organization event {ids}"


def teams_of(tines: TinesFake, email: str) -> dict[str, str]:
    state = tines.state.export()
    user = next((u for u in state.users if u.email.lower() == email), None)
    if user is None:
        return {}
    return {t.name: m.role for t in state.teams for m in t.members if m.user_id == user.id}

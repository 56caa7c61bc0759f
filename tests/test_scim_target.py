"""The SCIM target against a real scim2-server process (one fresh tenant per test)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import requests
import responses

from bridge.model import CaseGroup, Member, TargetState, TargetUser, Team
from bridge.targets.base import (
    AlreadyExistsError,
    BadRequestError,
    DryRunRejectedError,
    TransientError,
    UnauthorizedError,
)
from bridge.targets.http import Backoff
from bridge.targets.scim import ScimTarget
from bridge.targets.scim_groups import GroupKey, GroupNaming, TemplateError
from tests.fixtures.scim import ScimServer

pytestmark = pytest.mark.scim

MakeTarget = Callable[..., ScimTarget]


@pytest.fixture
def make_target(scim_server: ScimServer) -> MakeTarget:
    def make(**options: Any) -> ScimTarget:
        options.setdefault("sleep", lambda _seconds: None)
        return ScimTarget(scim_server.url, scim_server.token, **options)

    return make


@pytest.fixture
def target(make_target: MakeTarget) -> ScimTarget:
    return make_target(owner_group="Tenant Owners")


def raw(server: ScimServer, path: str, **params: str) -> dict[str, Any]:
    """Read the server directly, bypassing the connector under test."""
    response = requests.get(
        server.url + path,
        params=params,
        headers={"Authorization": f"Bearer {server.token}"},
        timeout=5,
    )
    response.raise_for_status()
    body: dict[str, Any] = response.json()
    return body


def group_members(server: ScimServer, display_name: str) -> list[str] | None:
    """Member ids of the group with that name, None when no such group exists."""
    found = raw(server, "/Groups", filter=f'displayName eq "{display_name}"')
    if not found["totalResults"]:
        return None
    assert found["totalResults"] == 1, f"duplicate groups named {display_name!r}"
    return [member["value"] for member in found["Resources"][0].get("members", [])]


def new_user(target: ScimTarget, email: str = "alice@example.com") -> TargetUser:
    return target.create_user(email, "Alice", "Ng", None)


# -- users -----------------------------------------------------------------------------------


def test_created_user_is_found_by_email_case_insensitively(
    target: ScimTarget, scim_server: ScimServer
) -> None:
    created = target.create_user("Alice@Example.com", "Alice", "Ng", "https://img.example/a.png")

    state = target.read_user_state("alice@example.COM")

    assert state.users == [created]
    assert created == TargetUser(
        id=created.id, email="Alice@Example.com", first_name="Alice", last_name="Ng"
    )
    stored = raw(scim_server, f"/Users/{created.id}")
    # scim2-models normalises the domain of an email value.
    assert stored["emails"] == [{"value": "Alice@example.com", "type": "work", "primary": True}]
    assert stored["photos"] == [{"value": "https://img.example/a.png", "type": "photo"}]


def test_creating_a_taken_email_is_already_exists(target: ScimTarget) -> None:
    new_user(target, "alice@example.com")

    with pytest.raises(AlreadyExistsError, match="409"):
        new_user(target, "ALICE@example.com")


def test_a_quote_in_a_user_name_is_escaped_in_the_filter(
    target: ScimTarget, scim_server: ScimServer
) -> None:
    # Created directly: such a userName is not an email the connector would create.
    awkward = 'o"brien\\x@example.com'
    created = requests.post(
        scim_server.url + "/Users",
        json={"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"], "userName": awkward},
        headers={"Authorization": f"Bearer {scim_server.token}"},
        timeout=5,
    )
    created.raise_for_status()

    assert [user.id for user in target.read_user_state(awkward).users] == [created.json()["id"]]
    assert target.read_user_state("obrien@example.com").users == []


def test_an_invalid_email_is_a_bad_request(target: ScimTarget) -> None:
    with pytest.raises(BadRequestError, match="not-an-email"):
        target.create_user("not-an-email", None, None, None)
    assert target.stats.writes == 0


def test_deactivate_and_rename(target: ScimTarget, scim_server: ScimServer) -> None:
    user = new_user(target)

    updated = target.update_user(user, first_name="Al", last_name="Ng-Smith", active=False)

    stored = raw(scim_server, f"/Users/{user.id}")
    assert stored["active"] is False
    assert stored["name"] == {"givenName": "Al", "familyName": "Ng-Smith"}
    assert target.read_state().users == [updated]
    assert updated.active is False
    assert updated.last_name == "Ng-Smith"


def test_tenant_permissions_are_refused_as_scim_has_none(target: ScimTarget) -> None:
    user = new_user(target)

    with pytest.raises(BadRequestError, match="no tenant permissions"):
        target.update_user(user, tenant_permissions=["AUDIT_LOG_READ"])
    assert target.update_user(user, tenant_permissions=[]) == user


# -- memberships -----------------------------------------------------------------------------


def test_add_membership_creates_the_role_group(target: ScimTarget, scim_server: ScimServer) -> None:
    user = new_user(target)

    target.add_membership(user, "Analytics", None, "EDITOR")

    assert group_members(scim_server, "Analytics:EDITOR") == [user.id]
    assert target.read_state().teams == [
        Team(id="Analytics", name="Analytics", members=[Member(user_id=user.id, role="EDITOR")])
    ]


def test_add_membership_joins_an_existing_group(
    target: ScimTarget, scim_server: ScimServer
) -> None:
    alice, bob = new_user(target), new_user(target, "bob@example.com")

    target.add_membership(alice, "Analytics", None, "EDITOR")
    target.add_membership(bob, "Analytics", None, "EDITOR")

    assert sorted(group_members(scim_server, "Analytics:EDITOR") or []) == sorted(
        [alice.id, bob.id]
    )


def test_missing_group_is_refused_when_creating_groups_is_off(
    make_target: MakeTarget, scim_server: ScimServer
) -> None:
    target = make_target(create_groups=False)
    user = new_user(target)

    with pytest.raises(BadRequestError, match="scim_create_groups"):
        target.add_membership(user, "Analytics", None, "EDITOR")
    assert group_members(scim_server, "Analytics:EDITOR") is None


def test_case_group_membership_is_named_by_the_case_group_template(
    target: ScimTarget, scim_server: ScimServer
) -> None:
    user = new_user(target)

    target.add_membership(user, "Incident Response", "Tier 1", "VIEWER")

    assert group_members(scim_server, "Incident Response/Tier 1:VIEWER") == [user.id]
    assert target.read_state().teams == [
        Team(
            id="Incident Response",
            name="Incident Response",
            case_groups=[
                CaseGroup(
                    id="Tier 1", name="Tier 1", members=[Member(user_id=user.id, role="VIEWER")]
                )
            ],
        )
    ]


def test_change_role_moves_the_user_between_role_groups(
    target: ScimTarget, scim_server: ScimServer
) -> None:
    user = new_user(target)
    target.add_membership(user, "Analytics", None, "EDITOR")

    target.change_role(user, "Analytics", None, "TEAM_ADMIN")

    assert group_members(scim_server, "Analytics:EDITOR") == []
    assert group_members(scim_server, "Analytics:TEAM_ADMIN") == [user.id]
    assert target.read_state().teams[0].members == [Member(user_id=user.id, role="TEAM_ADMIN")]


class _FailingRemovals(requests.Session):
    """Drops the connection on every PATCH that removes a member (a network failure)."""

    def request(self, method: str | bytes, url: str | bytes, *args: Any, **kwargs: Any) -> Any:  # type: ignore[override]
        operations = (kwargs.get("json") or {}).get("Operations", [])
        if method == "PATCH" and any(op["op"] == "remove" for op in operations):
            raise requests.ConnectionError("connection reset")
        return super().request(method, url, *args, **kwargs)


def test_change_role_grants_before_revoking(
    make_target: MakeTarget, scim_server: ScimServer
) -> None:
    healthy = make_target()
    user = new_user(healthy)
    healthy.add_membership(user, "Analytics", None, "EDITOR")
    failing = make_target(session=_FailingRemovals())

    with pytest.raises(TransientError):
        failing.change_role(user, "Analytics", None, "TEAM_ADMIN")

    # Interrupted half-way the user holds both roles, never neither, and the read says so,
    # so the next reconcile plans the change again.
    assert group_members(scim_server, "Analytics:EDITOR") == [user.id]
    assert group_members(scim_server, "Analytics:TEAM_ADMIN") == [user.id]
    members = healthy.read_state().teams[0].members
    assert members == [Member(user_id=user.id, role="EDITOR+TEAM_ADMIN")]

    healthy.change_role(user, "Analytics", None, "TEAM_ADMIN")
    assert healthy.read_state().teams[0].members == [Member(user_id=user.id, role="TEAM_ADMIN")]


def test_remove_membership_leaves_every_role_group_of_that_team(
    target: ScimTarget, scim_server: ScimServer
) -> None:
    user = new_user(target)
    target.add_membership(user, "Analytics", None, "EDITOR")
    target.add_membership(user, "Analytics", None, "VIEWER")
    target.add_membership(user, "Analytics", "Tier 1", "VIEWER")

    target.remove_membership(user, "Analytics", None)

    assert group_members(scim_server, "Analytics:EDITOR") == []
    assert group_members(scim_server, "Analytics:VIEWER") == []
    assert group_members(scim_server, "Analytics/Tier 1:VIEWER") == [user.id]
    writes = target.stats.writes
    target.remove_membership(user, "Analytics", None)
    assert target.stats.writes == writes, "removing a non-member must not write"


def test_a_role_group_deleted_behind_our_back_is_created_again(
    target: ScimTarget, scim_server: ScimServer
) -> None:
    alice, bob = new_user(target), new_user(target, "bob@example.com")
    target.add_membership(alice, "Analytics", None, "EDITOR")
    group_id = raw(scim_server, "/Groups", filter='displayName eq "Analytics:EDITOR"')["Resources"][
        0
    ]["id"]
    requests.delete(
        f"{scim_server.url}/Groups/{group_id}",
        headers={"Authorization": f"Bearer {scim_server.token}"},
        timeout=5,
    ).raise_for_status()

    target.add_membership(bob, "Analytics", None, "EDITOR")

    assert group_members(scim_server, "Analytics:EDITOR") == [bob.id]


@responses.activate
def test_without_a_member_filter_the_groups_are_read_in_full() -> None:
    base = "https://scim.example/v2"
    listed = {
        "schemas": ["urn:ietf:params:scim:api:messages:2.0:ListResponse"],
        "totalResults": 2,
        "Resources": [
            {
                "schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"],
                "id": "g1",
                "displayName": "Analytics:EDITOR",
                "members": [{"value": "u1"}],
            },
            {
                "schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"],
                "id": "g2",
                "displayName": "Analytics:VIEWER",
                "members": [{"value": "u2"}],
            },
        ],
    }
    refused = {
        "schemas": ["urn:ietf:params:scim:api:messages:2.0:Error"],
        "status": "400",
        "scimType": "invalidFilter",
    }
    member_filter = responses.matchers.query_param_matcher(
        {"filter": 'members.value eq "u1"', "startIndex": "1", "count": "100"}
    )
    responses.get(f"{base}/Groups", status=400, json=refused, match=[member_filter])
    responses.get(f"{base}/Groups", json=listed, content_type="application/scim+json")
    removal = responses.patch(f"{base}/Groups/g1", status=204)
    target = ScimTarget(base, "token", sleep=lambda _seconds: None)

    target.remove_membership(TargetUser(id="u1", email="u1@example.com"), "Analytics", None)

    assert removal.call_count == 1
    assert len(responses.calls) == 3


def test_owner_flag_is_membership_of_the_owner_group(
    target: ScimTarget, scim_server: ScimServer
) -> None:
    alice, bob = new_user(target), new_user(target, "bob@example.com")

    target.update_user(alice, tenant_owner=True)

    assert group_members(scim_server, "Tenant Owners") == [alice.id]
    state = target.read_state()
    assert [(user.email, user.tenant_owner) for user in state.users] == [
        ("alice@example.com", True),
        ("bob@example.com", False),
    ]
    assert state.teams == [], "the owner group is not a team"
    # Bob's view lists Alice too, so the last-owner protection can count owners.
    assert [user.email for user in target.read_user_state("bob@example.com").users] == [
        "alice@example.com",
        "bob@example.com",
    ]

    target.update_user(alice, tenant_owner=False)
    assert group_members(scim_server, "Tenant Owners") == []
    assert not any(user.tenant_owner for user in target.read_state().users)
    assert bob.tenant_owner is False


def test_owner_flag_needs_an_owner_group(make_target: MakeTarget) -> None:
    target = make_target()
    user = new_user(target)

    with pytest.raises(BadRequestError, match="scim_owner_group"):
        target.update_user(user, tenant_owner=True)


# -- reads -----------------------------------------------------------------------------------


def _populate(target: ScimTarget) -> tuple[TargetUser, TargetUser]:
    alice, bob = new_user(target), new_user(target, "bob@example.com")
    target.add_membership(alice, "Analytics", None, "TEAM_ADMIN")
    target.add_membership(bob, "Analytics", None, "EDITOR")
    target.add_membership(bob, "Équipe Sécurité", None, "VIEWER")
    target.add_membership(alice, "Équipe Sécurité", "Tier 1", "EDITOR")
    target.update_user(alice, tenant_owner=True)
    return alice, bob


def test_read_state_reflects_users_teams_case_groups_and_owners(
    target: ScimTarget, scim_server: ScimServer
) -> None:
    alice, bob = _populate(target)
    # A group that is not ours is ignored.
    requests.post(
        scim_server.url + "/Groups",
        json={
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"],
            "displayName": "Everyone",
        },
        headers={"Authorization": f"Bearer {scim_server.token}"},
        timeout=5,
    ).raise_for_status()

    assert target.read_state() == TargetState(
        users=[alice.model_copy(update={"tenant_owner": True}), bob],
        teams=[
            Team(
                id="Analytics",
                name="Analytics",
                members=sorted(
                    [
                        Member(user_id=alice.id, role="TEAM_ADMIN"),
                        Member(user_id=bob.id, role="EDITOR"),
                    ],
                    key=lambda member: member.user_id,
                ),
            ),
            Team(
                id="Équipe Sécurité",
                name="Équipe Sécurité",
                members=[Member(user_id=bob.id, role="VIEWER")],
                case_groups=[
                    CaseGroup(
                        id="Tier 1",
                        name="Tier 1",
                        members=[Member(user_id=alice.id, role="EDITOR")],
                    )
                ],
            ),
        ],
    )


def test_read_user_state_lists_every_team_but_only_that_users_memberships(
    target: ScimTarget,
) -> None:
    alice, bob = _populate(target)

    state = target.read_user_state("bob@example.com")

    assert state.users == [alice.model_copy(update={"tenant_owner": True}), bob]
    assert state.teams == [
        Team(id="Analytics", name="Analytics", members=[Member(user_id=bob.id, role="EDITOR")]),
        Team(
            id="Équipe Sécurité",
            name="Équipe Sécurité",
            members=[Member(user_id=bob.id, role="VIEWER")],
            case_groups=[CaseGroup(id="Tier 1", name="Tier 1")],
        ),
    ]
    assert target.read_user_state("nobody@example.com").users == [
        alice.model_copy(update={"tenant_owner": True})
    ]


def test_a_second_identical_round_changes_nothing(
    target: ScimTarget, scim_server: ScimServer
) -> None:
    alice, bob = _populate(target)
    target.change_role(bob, "Analytics", None, "TEAM_ADMIN")
    target.remove_membership(bob, "Équipe Sécurité", None)
    first = target.read_state()

    target.add_membership(alice, "Analytics", None, "TEAM_ADMIN")
    target.add_membership(alice, "Équipe Sécurité", "Tier 1", "EDITOR")
    target.update_user(alice, tenant_owner=True)
    target.change_role(bob, "Analytics", None, "TEAM_ADMIN")
    target.remove_membership(bob, "Équipe Sécurité", None)

    assert target.read_state() == first
    assert sorted(group_members(scim_server, "Analytics:TEAM_ADMIN") or []) == sorted(
        [alice.id, bob.id]
    )
    assert group_members(scim_server, "Tenant Owners") == [alice.id]


def test_read_state_pages_through_more_users_than_one_page(make_target: MakeTarget) -> None:
    target = make_target(page_size=2)
    users = [new_user(target, f"user{index}@example.com") for index in range(5)]
    for user in users:
        target.add_membership(user, "Analytics", None, "VIEWER")
    target.add_membership(users[0], "Ops", None, "EDITOR")
    target.add_membership(users[1], "Support", None, "EDITOR")
    reads = target.stats.reads

    state = target.read_state()

    assert [user.email for user in state.users] == [f"user{i}@example.com" for i in range(5)]
    assert [team.name for team in state.teams] == ["Analytics", "Ops", "Support"]
    assert len(state.teams[0].members) == 5
    # Users: pages of 2, 2, 1; groups: pages of 2, 1 — requests grow with pages, not users.
    assert target.stats.reads - reads == 5


# -- safety and failures ---------------------------------------------------------------------


def test_dry_run_sends_no_writes(make_target: MakeTarget) -> None:
    live = make_target(owner_group="Tenant Owners")
    user = new_user(live)
    live.add_membership(user, "Analytics", None, "EDITOR")
    before = live.read_state()
    dry = make_target(owner_group="Tenant Owners", dry_run=True)

    attempts: list[Callable[[], object]] = [
        lambda: dry.create_user("bob@example.com", "Bob", "Li", None),
        lambda: dry.add_membership(user, "Analytics", None, "VIEWER"),
        lambda: dry.change_role(user, "Analytics", None, "TEAM_ADMIN"),
        lambda: dry.remove_membership(user, "Analytics", None),
        lambda: dry.update_user(user, active=False),
        lambda: dry.update_user(user, tenant_owner=True),
    ]
    for attempt in attempts:
        with pytest.raises(DryRunRejectedError):
            attempt()

    assert dry.stats.writes == 0
    assert dry.read_state() == before
    assert live.read_state() == before


def test_a_wrong_token_is_unauthorized_and_never_shown(scim_server: ScimServer) -> None:
    token = "wrong-token-value"
    target = ScimTarget(scim_server.url, token, sleep=lambda _seconds: None)

    with pytest.raises(UnauthorizedError) as caught:
        target.read_state()

    assert "401" in str(caught.value)
    assert target.stats.reads == 1, "a bad token is not retried"
    assert token not in str(caught.value)
    assert token not in repr(target)
    assert scim_server.token not in repr(ScimTarget(scim_server.url, scim_server.token))


def _unused_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def test_an_unreachable_server_is_transient_after_bounded_retries() -> None:
    waits: list[float] = []
    target = ScimTarget(
        f"http://127.0.0.1:{_unused_port()}/v2",
        "token",
        sleep=waits.append,
        backoff=Backoff(base=0.5, jitter=0.0),
    )

    with pytest.raises(TransientError, match="after 4 attempts"):
        target.read_user_state("alice@example.com")

    assert waits == [0.5, 1.0, 2.0]
    assert (target.stats.reads, target.stats.retries) == (1, 3)


@responses.activate
def test_retry_after_is_honoured_then_the_request_succeeds() -> None:
    url = "https://scim.example/v2/Users"
    empty = {
        "schemas": ["urn:ietf:params:scim:api:messages:2.0:ListResponse"],
        "totalResults": 0,
        "Resources": [],
    }
    responses.get(url, status=429, headers={"Retry-After": "7"})
    responses.get(url, json=empty, content_type="application/scim+json")
    responses.get(
        "https://scim.example/v2/Groups", json=empty, content_type="application/scim+json"
    )
    waits: list[float] = []
    target = ScimTarget("https://scim.example/v2", "token", sleep=waits.append)

    assert target.read_state() == TargetState()
    assert waits == [7.0]


@responses.activate
def test_a_long_retry_after_is_handed_to_the_queue_instead_of_waited_for() -> None:
    responses.get("https://scim.example/v2/Users", status=503, headers={"Retry-After": "600"})
    waits: list[float] = []
    target = ScimTarget("https://scim.example/v2", "token", sleep=waits.append)

    with pytest.raises(TransientError) as caught:
        target.read_state()

    assert caught.value.retry_after == 600.0
    assert waits == []


# -- group naming ----------------------------------------------------------------------------


def test_group_names_round_trip_with_spaces_and_unicode() -> None:
    naming = GroupNaming("{team}:{role}", "{team}/{case_group}:{role}")
    for key in [
        GroupKey("Incident Response", None, "EDITOR"),
        GroupKey("Équipe Sécurité 🚨", "Niveau 1", "VIEWER"),
        GroupKey("Analytics", "Tier 1", "TEAM_ADMIN"),
    ]:
        assert naming.parse(naming.group_name(key)) == key
    assert naming.parse("Everyone") is None
    assert naming.parse("a:b:c") is None


def test_a_name_holding_a_separator_is_refused_clearly() -> None:
    naming = GroupNaming("{team}:{role}", "{team}/{case_group}:{role}")

    with pytest.raises(BadRequestError, match=r"team 'Ops/Tier 1' contains '/'"):
        naming.group_name(GroupKey("Ops/Tier 1", None, "EDITOR"))


def test_a_custom_template_with_a_prefix() -> None:
    naming = GroupNaming("app-{team}--{role}", "app-{team}--{case_group}--{role}")
    key = GroupKey("app team", "Tier 1", "VIEWER")

    assert naming.group_name(key) == "app-app team--Tier 1--VIEWER"
    assert naming.parse("app-app team--Tier 1--VIEWER") == key
    assert naming.parse("app-Analytics--EDITOR") == GroupKey("Analytics", None, "EDITOR")


@pytest.mark.parametrize(
    "template",
    ["{team}{role}", "{team}:{rol}", "{team}", "{team}:{role}:{team}", "{team:{role}"],
)
def test_an_ambiguous_or_broken_template_is_refused(template: str) -> None:
    with pytest.raises(TemplateError, match="template"):
        GroupNaming(template, "{team}/{case_group}:{role}")


def test_ping_is_one_read_and_refuses_a_wrong_token(scim_server: ScimServer) -> None:
    good = ScimTarget(scim_server.url, scim_server.token)
    good.ping()
    assert (good.stats.reads, good.stats.writes) == (1, 0)
    bad = ScimTarget(scim_server.url, "wrong-token-value", sleep=lambda _seconds: None)
    with pytest.raises(UnauthorizedError):
        bad.ping()


def test_an_email_change_keeps_the_account_and_its_groups(
    target: ScimTarget, scim_server: ScimServer
) -> None:
    user = target.create_user("gina@example.com", "Gina", "Ng", None)
    target.add_membership(user, "Analytics", None, "EDITOR")

    changed = target.change_email(user, "gina.ng@example.com")

    assert changed.id == user.id
    assert raw(scim_server, f"/Users/{user.id}")["userName"] == "gina.ng@example.com"
    assert [e["value"] for e in raw(scim_server, f"/Users/{user.id}")["emails"]] == [
        "gina.ng@example.com"
    ]
    state = target.read_user_state("gina.ng@example.com")
    assert [u.id for u in state.users] == [user.id]
    assert {t.name: [m.role for m in t.members] for t in state.teams} == {"Analytics": ["EDITOR"]}
    assert target.read_user_state("gina@example.com").users == []


def test_a_paired_account_is_read_by_its_id_when_the_email_misses(target: ScimTarget) -> None:
    user = target.create_user("hal@example.com", "Hal", None, None)
    state = target.read_user_state("hal.new@example.com", account_id=user.id)
    assert [(u.id, u.email) for u in state.users] == [(user.id, "hal@example.com")]

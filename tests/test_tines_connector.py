"""TinesTarget call by call, against recorded Tines answers (shapes from reference/tines.md §4)."""

from __future__ import annotations

import json
from typing import Any

import pytest
import responses
from responses import matchers

from bridge.model import CaseGroup, Member, TargetState, TargetUser, Team
from bridge.targets.base import (
    AlreadyExistsError,
    BadRequestError,
    DryRunRejectedError,
    NotFoundError,
    TransientError,
    UnauthorizedError,
)
from bridge.targets.http import Backoff
from bridge.targets.tines import TinesTarget, UserLookup, tines_http
from bridge.targets.tines_users import KnownEmails

TENANT = "https://tenant.example"
API = TENANT + "/api/v1/"
KEY = "tines-key-abc"
ALICE = TargetUser(id="17", email="alice@example.com")


def target(
    user_lookup: UserLookup = "auto", known_emails: KnownEmails | None = None, **options: Any
) -> TinesTarget:
    http = tines_http(
        TENANT, KEY, sleep=lambda _: None, backoff=Backoff(jitter=0.0), max_retries=2, **options
    )
    return TinesTarget(TENANT, KEY, http=http, user_lookup=user_lookup, known_emails=known_emails)


def meta(page: int, pages: int) -> dict[str, Any]:
    nxt = page + 1 if page < pages else None
    return {
        "current_page": f"{API}x?page={page}",
        "previous_page": None if page == 1 else f"{API}x?page={page - 1}",
        "next_page": None if nxt is None else f"{API}x?page={nxt}",
        "next_page_number": nxt,
        "per_page": 500,
        "pages": pages,
        "count": 0,
    }


def page_of(**params: str) -> Any:
    return matchers.query_param_matcher(params, strict_match=False)


def user_json(uid: int, email: str, **fields: Any) -> dict[str, Any]:
    return {
        "id": uid,
        "scim_uid": None,
        "email": email,
        "admin": False,
        "tenant_permissions": [],
        "is_active": True,
        "first_name": None,
        "last_name": None,
        **fields,
    }


def member_json(uid: int, role: str) -> dict[str, Any]:
    return {"id": uid, "email": f"u{uid}@example.com", "is_admin": False, "role": role}


ROOT = user_json(18, "root@example.com", admin=True, tenant_permissions=["AUDIT_LOG_READ"])


def body_of(call_index: int) -> Any:
    return json.loads(responses.calls[call_index].request.body or b"null")


# -- reads ------------------------------------------------------------------------------


@responses.activate
def test_read_state_maps_users_teams_case_groups_and_members() -> None:
    responses.get(
        API + "admin/users",
        match=[page_of(page="1", per_page="500")],
        json={
            "admin/users": [
                user_json(17, "alice@example.com", first_name="Alice", last_name="Ng"),
                user_json(
                    18, "root@example.com", admin=True, tenant_permissions=["AUDIT_LOG_READ"]
                ),
                user_json(19, "gone@example.com", is_active=False),
            ],
            "meta": meta(1, 1),
        },
    )
    responses.get(
        API + "teams",
        match=[page_of(scope="standard", page="1", per_page="500")],
        json={
            "teams": [{"id": 3, "name": "Analytics", "groups": [{"id": 9, "name": "Tier 1"}]}],
            "meta": meta(1, 1),
        },
    )
    responses.get(
        API + "teams/3/members", json={"members": [member_json(17, "EDITOR")], "meta": meta(1, 1)}
    )
    responses.get(
        API + "teams/9/members", json={"members": [member_json(17, "VIEWER")], "meta": meta(1, 1)}
    )

    state = target().read_state()

    assert state == TargetState(
        users=[
            TargetUser(id="17", email="alice@example.com", first_name="Alice", last_name="Ng"),
            TargetUser(
                id="18",
                email="root@example.com",
                tenant_owner=True,
                tenant_permissions=["AUDIT_LOG_READ"],
            ),
            TargetUser(id="19", email="gone@example.com", active=False),
        ],
        teams=[
            Team(
                id="3",
                name="Analytics",
                members=[Member(user_id="17", role="EDITOR")],
                case_groups=[
                    CaseGroup(id="9", name="Tier 1", members=[Member(user_id="17", role="VIEWER")])
                ],
            )
        ],
    )
    assert all(c.request.headers["Authorization"] == f"Bearer {KEY}" for c in responses.calls)


def stub_teams(teams: list[dict[str, Any]]) -> None:
    responses.get(API + "teams", json={"teams": teams, "meta": meta(1, 1)})


def stub_users_pages(pages: list[list[dict[str, Any]]], **params: str) -> None:
    for number, users in enumerate(pages, start=1):
        responses.get(
            API + "admin/users",
            match=[page_of(page=str(number), **params)],
            json={"admin/users": users, "meta": meta(number, len(pages))},
        )


@responses.activate
def test_read_state_follows_next_page_number_through_every_page() -> None:
    stub_users_pages([[user_json(n, f"u{n}@example.com")] for n in (1, 2, 3)])
    stub_teams([])
    state = target().read_state()
    assert [u.id for u in state.users] == ["1", "2", "3"]


@responses.activate
def test_pagination_follows_next_page_when_the_number_is_missing() -> None:
    first = meta(1, 2) | {"next_page_number": None, "next_page": f"{API}admin/users?page=2"}
    responses.get(
        API + "admin/users",
        match=[page_of(page="1")],
        json={"admin/users": [user_json(1, "a@example.com")], "meta": first},
    )
    responses.get(
        API + "admin/users",
        match=[page_of(page="2")],
        json={"admin/users": [user_json(2, "b@example.com")], "meta": meta(2, 2)},
    )
    stub_teams([])
    assert [u.id for u in target().read_state().users] == ["1", "2"]


@responses.activate
def test_a_list_without_meta_is_one_page() -> None:
    responses.get(API + "admin/users", json={"admin/users": [user_json(1, "a@example.com")]})
    responses.get(API + "teams", json={"teams": []})
    assert len(target().read_state().users) == 1
    assert len(responses.calls) == 2


@responses.activate
def test_members_as_a_bare_array_are_paged_until_a_short_page() -> None:
    stub_users_pages([[]])
    stub_teams([{"id": 3, "name": "Analytics", "groups": []}])
    full = [member_json(n, "VIEWER") for n in range(1, 501)]
    responses.get(API + "teams/3/members", match=[page_of(page="1")], json=full)
    responses.get(
        API + "teams/3/members", match=[page_of(page="2")], json=[member_json(501, "EDITOR")]
    )
    members = target().read_state().teams[0].members
    assert len(members) == 501
    assert members[-1] == Member(user_id="501", role="EDITOR")


@responses.activate
def test_pagination_that_goes_backwards_is_refused() -> None:
    responses.get(
        API + "admin/users",
        json={"admin/users": [], "meta": meta(1, 2) | {"next_page_number": 1}},
    )
    with pytest.raises(BadRequestError, match="back to page 1"):
        target().read_state()


@responses.activate
def test_an_answer_of_the_wrong_shape_is_refused_with_a_hint() -> None:
    responses.get(API + "admin/users", json={"users": []})
    with pytest.raises(BadRequestError, match="expected a JSON list under 'admin/users'"):
        target().read_state()


def stub_owners(owners: list[dict[str, Any]]) -> None:
    responses.get(
        API + "admin/users",
        match=[page_of(filter="TENANT_OWNER")],
        json={"admin/users": owners, "meta": meta(1, 1)},
    )


def admin_users_calls() -> list[str]:
    return [c.request.url or "" for c in responses.calls if "/admin/users" in (c.request.url or "")]


ALICE_WITH_MEMBERSHIPS = user_json(
    17,
    "Alice@Example.com",
    team_memberships=[{"team_id": 3, "team_name": "Analytics", "role": "EDITOR"}],
)
TEAMS = [
    {"id": 3, "name": "Analytics", "groups": [{"id": 9, "name": "Tier 1"}]},
    {"id": 4, "name": "Incident Response", "groups": []},
]
ALICE_TEAMS = [
    Team(
        id="3",
        name="Analytics",
        members=[Member(user_id="17", role="EDITOR")],
        case_groups=[
            CaseGroup(id="9", name="Tier 1", members=[Member(user_id="17", role="VIEWER")])
        ],
    ),
    Team(id="4", name="Incident Response"),
]


def stub_tier_1_members() -> None:
    responses.get(
        API + "teams/9/members",
        json={"members": [member_json(1, "TEAM_ADMIN"), member_json(17, "VIEWER")]},
    )


@responses.activate
def test_read_user_state_gets_the_user_by_email_in_one_admin_users_call() -> None:
    responses.get(
        API + "admin/users/alice@example.COM",
        match=[page_of(include="team_memberships")],
        json=ALICE_WITH_MEMBERSHIPS,
    )
    stub_teams(TEAMS)
    stub_tier_1_members()

    state = target().read_user_state("alice@example.COM")

    assert [u.id for u in state.users] == ["17"]
    assert state.teams == ALICE_TEAMS
    # one admin/users request: no listing, and no owner list for a user who is not an owner
    assert len(admin_users_calls()) == 1


@responses.activate
def test_an_email_is_escaped_in_the_path() -> None:
    responses.get(
        API + "admin/users/a%2Fb%3Fc@example.com",
        json=user_json(5, "a/b?c@example.com", team_memberships=[]),
    )
    stub_teams([])
    state = target().read_user_state("a/b?c@example.com")
    assert [u.id for u in state.users] == ["5"]


@responses.activate
def test_read_user_state_of_an_unknown_email_is_a_404_and_bare_teams() -> None:
    responses.get(API + "admin/users/new@example.com", status=404, json={"error": "Not found"})
    stub_teams([{"id": 3, "name": "Analytics", "groups": [{"id": 9, "name": "Tier 1"}]}])

    state = target().read_user_state("new@example.com")

    assert state.users == []
    assert state.teams == [
        Team(id="3", name="Analytics", case_groups=[CaseGroup(id="9", name="Tier 1")])
    ]
    assert len(admin_users_calls()) == 1
    assert not any("/members" in (c.request.url or "") for c in responses.calls)


@responses.activate
def test_a_tenant_owner_comes_with_every_owner_for_the_last_owner_rule() -> None:
    root = user_json(1, "root@example.com", admin=True)
    responses.get(API + "admin/users/root@example.com", json={**root, "team_memberships": []})
    stub_owners([root, user_json(2, "other-owner@example.com", admin=True)])
    stub_teams([])
    state = target().read_user_state("root@example.com")
    assert [u.email for u in state.users] == ["other-owner@example.com", "root@example.com"]


@responses.activate
def test_listing_lookup_finds_the_user_by_email_and_keeps_only_their_memberships() -> None:
    root = user_json(1, "root@example.com", admin=True)
    stub_users_pages(
        [[root], [ALICE_WITH_MEMBERSHIPS], [user_json(20, "late@example.com")]],
        include="team_memberships",
    )
    stub_teams(TEAMS)
    stub_tier_1_members()

    state = target(user_lookup="list").read_user_state("alice@example.COM")

    assert [u.id for u in state.users] == ["17"]
    assert state.teams == ALICE_TEAMS
    # the listing stops at the page holding the user
    assert not any("page=3" in (c.request.url or "") for c in responses.calls)


@responses.activate
def test_a_listing_that_reaches_the_end_remembers_who_exists() -> None:
    stub_users_pages([[user_json(1, "root@example.com", admin=True)]], include="team_memberships")
    stub_teams([])
    tines = target(user_lookup="list")

    assert tines.read_user_state("new@example.com", creating=True).users == []
    assert tines.read_user_state("another-new@example.com", creating=True).users == []

    # the second unknown email costs no admin/users request: the first search saw everyone
    assert len(admin_users_calls()) == 1


@responses.activate
def test_after_a_full_read_a_first_login_costs_no_admin_users_read() -> None:
    stub_users_pages([[user_json(1, "root@example.com", admin=True)]])
    stub_teams([])
    responses.get(API + "admin/users/root@example.com", json=user_json(1, "root@example.com"))
    now = [0.0]
    tines = target(known_emails=KnownEmails(max_age=600, clock=lambda: now[0]))
    tines.read_state()
    responses.calls.reset()

    assert tines.read_user_state("new@example.com", creating=True).users == []
    assert admin_users_calls() == []
    # an email the listing had is still looked up (its memberships are needed)
    assert [u.id for u in tines.read_user_state("root@example.com", creating=True).users] == ["1"]
    assert len(admin_users_calls()) == 1

    # past its age the listing proves nothing: ask Tines again
    now[0] = 601
    responses.get(API + "admin/users/new@example.com", status=404, json={"error": "Not found"})
    assert tines.read_user_state("new@example.com", creating=True).users == []
    assert len(admin_users_calls()) == 2


@responses.activate
def test_a_read_that_will_not_create_asks_tines_even_when_the_listing_lacks_the_user() -> None:
    # Added by hand after the listing: only Tines can say they now exist. A read for an
    # admin event or a reconcile must see them, or their removals would be missed.
    stub_users_pages([[user_json(1, "root@example.com")]])
    stub_teams([])
    responses.get(
        API + "admin/users/late@example.com",
        json=ALICE_WITH_MEMBERSHIPS | {"id": 33, "email": "late@example.com"},
    )
    tines = target()
    tines.read_state()
    responses.calls.reset()

    assert [u.id for u in tines.read_user_state("late@example.com").users] == ["33"]


@responses.activate
def test_refresh_caches_lists_every_email_so_a_first_login_needs_no_read() -> None:
    stub_users_pages([[user_json(1, "root@example.com")], [user_json(2, "bob@example.com")]])
    stub_teams([])
    tines = target()
    tines.refresh_caches()
    assert len(admin_users_calls()) == 2  # one request per 500 users
    responses.calls.reset()
    assert tines.read_user_state("new@example.com", creating=True).users == []
    assert admin_users_calls() == []


@responses.activate
def test_auto_lookup_falls_back_to_listing_when_tines_refuses_an_email_for_an_id() -> None:
    responses.get(
        API + "admin/users/alice@example.com", status=400, json={"error": "id must be an integer"}
    )
    stub_users_pages([[ALICE_WITH_MEMBERSHIPS]], include="team_memberships")
    stub_teams([])
    tines = target()

    assert [u.id for u in tines.read_user_state("alice@example.com").users] == ["17"]
    assert tines.user_lookup == "list"
    assert [u.id for u in tines.read_user_state("alice@example.com").users] == ["17"]
    by_email = [u for u in admin_users_calls() if "/admin/users/" in u]
    assert len(by_email) == 1  # not asked again


@responses.activate
def test_auto_lookup_falls_back_when_tines_answers_for_another_user() -> None:
    responses.get(API + "admin/users/alice@example.com", json=user_json(1, "root@example.com"))
    stub_users_pages([[ALICE_WITH_MEMBERSHIPS]], include="team_memberships")
    stub_teams([])
    tines = target()
    assert [u.id for u in tines.read_user_state("alice@example.com").users] == ["17"]
    assert tines.user_lookup == "list"


@responses.activate
def test_forced_email_lookup_reports_a_refusal_instead_of_listing() -> None:
    responses.get(API + "admin/users/alice@example.com", status=400, json={"error": "bad id"})
    with pytest.raises(BadRequestError, match="was refused"):
        target(user_lookup="email").read_user_state("alice@example.com")
    assert not any("page=" in u for u in admin_users_calls())


@responses.activate
def test_a_tenant_that_answers_404_to_every_email_is_noticed_at_the_first_taken_create() -> None:
    # An older tenant: the lookup by email is a 404 even for a user it has.
    responses.get(API + "admin/users/alice@example.com", status=404, json={"error": "Not found"})
    responses.post(API + "admin/users", status=422, json={"error": "Email has already been taken"})
    stub_users_pages([[ALICE_WITH_MEMBERSHIPS]], include="team_memberships")
    stub_teams([])
    tines = target()

    assert tines.read_user_state("alice@example.com").users == []
    with pytest.raises(AlreadyExistsError):
        tines.create_user("alice@example.com", None, None, None)

    assert tines.user_lookup == "list"
    assert [u.id for u in tines.read_user_state("alice@example.com").users] == ["17"]


@responses.activate
def test_a_taken_create_after_a_real_404_keeps_the_email_lookup() -> None:
    # A race: the user appeared between the lookup and the create. The lookup works.
    responses.get(API + "admin/users/alice@example.com", status=404, json={"error": "Not found"})
    responses.get(API + "admin/users/alice@example.com", json=ALICE_WITH_MEMBERSHIPS)
    responses.post(API + "admin/users", status=422, json={"error": "Email has already been taken"})
    stub_teams([])
    tines = target()
    assert tines.read_user_state("alice@example.com").users == []
    with pytest.raises(AlreadyExistsError):
        tines.create_user("alice@example.com", None, None, None)
    assert tines.user_lookup == "auto"


@responses.activate
def test_read_user_state_reads_team_members_when_tines_omits_team_memberships() -> None:
    responses.get(API + "admin/users/alice@example.com", json=user_json(17, "alice@example.com"))
    stub_teams([{"id": 3, "name": "Analytics", "groups": []}])
    responses.get(
        API + "teams/3/members",
        json={"members": [member_json(5, "VIEWER"), member_json(17, "EDITOR")]},
    )
    state = target().read_user_state("alice@example.com")
    assert state.teams == [
        Team(id="3", name="Analytics", members=[Member(user_id="17", role="EDITOR")])
    ]


# -- writes -----------------------------------------------------------------------------


@responses.activate
def test_create_user_posts_the_profile_without_the_avatar() -> None:
    responses.post(
        API + "admin/users",
        json=user_json(30, "bob@example.com", first_name="Bob"),
    )
    created = target().create_user("bob@example.com", "Bob", None, "https://img.example/b.png")
    assert created == TargetUser(id="30", email="bob@example.com", first_name="Bob")
    assert body_of(0) == {"email": "bob@example.com", "first_name": "Bob"}


@responses.activate
def test_create_user_of_a_taken_email_is_already_exists() -> None:
    responses.post(API + "admin/users", status=422, json={"error": "Email has already been taken"})
    with pytest.raises(AlreadyExistsError):
        target().create_user("alice@example.com", None, None, None)


@responses.activate
def test_update_user_sends_only_the_given_fields_in_tines_names() -> None:
    responses.put(
        API + "admin/users/17",
        json=user_json(17, "alice@example.com", admin=True, is_active=False),
    )
    updated = target().update_user(ALICE, tenant_owner=True, active=False)
    assert body_of(0) == {"admin": True, "is_active": False}
    assert updated.tenant_owner is True
    assert updated.active is False


@responses.activate
def test_update_user_sends_permissions_and_names() -> None:
    responses.put(API + "admin/users/17", json=user_json(17, "alice@example.com"))
    target().update_user(ALICE, first_name="Al", last_name="Ng", tenant_permissions=[])
    assert body_of(0) == {"first_name": "Al", "last_name": "Ng", "tenant_permissions": []}


def test_update_user_with_nothing_to_change_makes_no_call() -> None:
    with responses.RequestsMock():
        assert target().update_user(ALICE) == ALICE


@responses.activate
@pytest.mark.parametrize(("case_group", "container"), [(None, "3"), ("9", "9")])
def test_add_membership_invites_by_user_id_into_the_team_or_case_group(
    case_group: str | None, container: str
) -> None:
    responses.post(API + f"teams/{container}/invite_member", json=member_json(17, "EDITOR"))
    target().add_membership(ALICE, "3", case_group, "EDITOR")
    assert body_of(0) == {"user_id": 17, "role": "EDITOR"}


ALREADY = {"error": "User is already a member of this team"}


@responses.activate
def test_add_membership_of_an_existing_member_with_that_role_succeeds_after_a_reread() -> None:
    responses.post(API + "teams/3/invite_member", status=422, json=ALREADY)
    responses.get(API + "teams/3/members", json={"members": [member_json(17, "EDITOR")]})
    target().add_membership(ALICE, "3", None, "EDITOR")
    assert [c.request.method for c in responses.calls] == ["POST", "GET"]


@responses.activate
def test_add_membership_of_an_existing_member_with_another_role_changes_the_role() -> None:
    responses.post(API + "teams/3/invite_member", status=422, json=ALREADY)
    responses.get(API + "teams/3/members", json={"members": [member_json(17, "VIEWER")]})
    responses.post(API + "teams/3/remove_member", json={"deleted_id": 17})
    responses.post(API + "teams/3/invite_member", json=member_json(17, "EDITOR"))
    target().add_membership(ALICE, "3", None, "EDITOR")
    paths = [(c.request.method, c.request.path_url.split("?")[0]) for c in responses.calls]
    assert paths == [
        ("POST", "/api/v1/teams/3/invite_member"),
        ("GET", "/api/v1/teams/3/members"),
        ("POST", "/api/v1/teams/3/remove_member"),
        ("POST", "/api/v1/teams/3/invite_member"),
    ]
    assert body_of(3) == {"user_id": 17, "role": "EDITOR"}


@responses.activate
def test_add_membership_conflict_without_membership_is_raised() -> None:
    responses.post(API + "teams/3/invite_member", status=422, json=ALREADY)
    responses.get(API + "teams/3/members", json={"members": []})
    with pytest.raises(AlreadyExistsError):
        target().add_membership(ALICE, "3", None, "EDITOR")


@responses.activate
def test_change_role_is_one_invite_when_tines_applies_the_new_role() -> None:
    responses.post(API + "teams/3/invite_member", json=member_json(17, "TEAM_ADMIN"))
    target().change_role(ALICE, "3", None, "TEAM_ADMIN")
    assert len(responses.calls) == 1
    assert body_of(0) == {"user_id": 17, "role": "TEAM_ADMIN"}


@responses.activate
@pytest.mark.parametrize(
    "first_answer",
    [
        {"status": 422, "json": ALREADY},
        {"status": 200, "json": member_json(17, "VIEWER")},  # accepted, old role kept
    ],
)
def test_change_role_removes_and_reinvites_when_the_invite_does_not_apply(
    first_answer: dict[str, Any],
) -> None:
    responses.post(API + "teams/9/invite_member", **first_answer)
    responses.post(API + "teams/9/remove_member", json={"deleted_id": 17})
    responses.post(API + "teams/9/invite_member", json=member_json(17, "TEAM_ADMIN"))
    target().change_role(ALICE, "3", "9", "TEAM_ADMIN")
    assert [c.request.path_url for c in responses.calls] == [
        "/api/v1/teams/9/invite_member",
        "/api/v1/teams/9/remove_member",
        "/api/v1/teams/9/invite_member",
    ]
    assert body_of(1) == {"user_id": 17}
    assert body_of(2) == {"user_id": 17, "role": "TEAM_ADMIN"}


@responses.activate
def test_remove_membership_posts_the_user_id() -> None:
    responses.post(API + "teams/3/remove_member", json={"deleted_id": 17})
    target().remove_membership(ALICE, "3", None)
    assert body_of(0) == {"user_id": 17}


@responses.activate
@pytest.mark.parametrize(
    ("status", "error"),
    [(404, "User is not a member of this team"), (422, "user is not a member")],
)
def test_removing_a_non_member_is_success(status: int, error: str) -> None:
    responses.post(API + "teams/9/remove_member", status=status, json={"error": error})
    target().remove_membership(ALICE, "3", "9")
    assert len(responses.calls) == 1


@responses.activate
def test_a_refused_removal_is_reported() -> None:
    responses.post(
        API + "teams/3/remove_member",
        status=422,
        json={"error": "Cannot remove the last member of a team"},
    )
    with pytest.raises(BadRequestError, match="last member"):
        target().remove_membership(ALICE, "3", None)


# -- errors and dry run ------------------------------------------------------------------


@responses.activate
def test_a_bad_key_is_unauthorized_without_retries_or_the_key_in_the_message() -> None:
    responses.get(API + "admin/users", status=401, json={"error": "Unauthorized"})
    with pytest.raises(UnauthorizedError) as caught:
        target().read_state()
    assert KEY not in str(caught.value)
    assert len(responses.calls) == 1


@responses.activate
def test_persistent_server_errors_surface_as_transient() -> None:
    responses.get(API + "admin/users", status=502)
    with pytest.raises(TransientError):
        target().read_state()
    assert len(responses.calls) == 3


@responses.activate
def test_a_missing_user_on_update_is_not_found() -> None:
    responses.put(API + "admin/users/17", status=404, json={"error": "User 17 not found"})
    with pytest.raises(NotFoundError, match="User 17 not found"):
        target().update_user(ALICE, active=False)


@responses.activate
def test_a_dry_run_target_reads_but_sends_no_write() -> None:
    stub_users_pages([[user_json(17, "alice@example.com")]])
    stub_teams([])
    dry = TinesTarget(TENANT, KEY, dry_run=True)
    assert len(dry.read_state().users) == 1
    for write in (
        lambda: dry.create_user("b@example.com", None, None, None),
        lambda: dry.update_user(ALICE, active=False),
        lambda: dry.add_membership(ALICE, "3", None, "VIEWER"),
        lambda: dry.change_role(ALICE, "3", None, "EDITOR"),
        lambda: dry.remove_membership(ALICE, "3", "9"),
    ):
        with pytest.raises(DryRunRejectedError):
            write()
    assert all(c.request.method == "GET" for c in responses.calls)


def test_repr_never_shows_the_key() -> None:
    assert KEY not in repr(TinesTarget(TENANT, KEY))


@responses.activate
def test_ping_is_one_small_admin_users_read() -> None:
    responses.get(
        "https://tenant.example/api/v1/admin/users",
        json={"admin/users": [], "meta": {"next_page_number": None}},
    )
    TinesTarget("https://tenant.example", "key").ping()
    assert len(responses.calls) == 1
    assert "per_page=1" in (responses.calls[0].request.url or "")


@responses.activate
def test_ping_with_a_wrong_key_is_unauthorised() -> None:
    responses.get("https://tenant.example/api/v1/admin/users", status=401, json={"error": "no"})
    with pytest.raises(UnauthorizedError):
        TinesTarget("https://tenant.example", "key").ping()

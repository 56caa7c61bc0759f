"""TinesTarget against the Tines fake over real HTTP: round trips, faults, dry run, and the
fake's own documented shapes."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import requests

from bridge.model import CaseGroup, Member, TargetState, TargetUser, Team
from bridge.targets.base import (
    AlreadyExistsError,
    DryRunRejectedError,
    TransientError,
    UnauthorizedError,
)
from bridge.targets.http import Backoff
from bridge.targets.tines import TinesTarget, UserLookup, tines_http
from tests.tines_fake import TinesFake

SEED = TargetState(
    users=[
        TargetUser(id="17", email="alice@example.com", first_name="Alice", last_name="Ng"),
        TargetUser(id="18", email="root@example.com", tenant_owner=True),
        TargetUser(
            id="19", email="erin@example.com", tenant_permissions=["AUDIT_LOG_READ"], active=False
        ),
    ],
    teams=[
        Team(
            id="3",
            name="Analytics",
            members=[Member(user_id="17", role="EDITOR"), Member(user_id="18", role="TEAM_ADMIN")],
            case_groups=[
                CaseGroup(id="9", name="Tier 1", members=[Member(user_id="17", role="VIEWER")]),
                CaseGroup(id="10", name="Tier 2"),
            ],
        ),
        Team(id="4", name="Incident Response", members=[Member(user_id="19", role="VIEWER")]),
    ],
)


class Sleeps(list[float]):
    def __call__(self, seconds: float) -> None:
        self.append(seconds)


def connect(fake: TinesFake, sleeps: Sleeps | None = None, **options: Any) -> TinesTarget:
    http = tines_http(
        fake.url,
        fake.api_key,
        sleep=sleeps if sleeps is not None else Sleeps(),
        backoff=Backoff(jitter=0.0),
        **options,
    )
    return TinesTarget(fake.url, fake.api_key, http=http)


@pytest.fixture
def seeded(tines_fake: TinesFake) -> TinesFake:
    tines_fake.state.load(SEED)
    return tines_fake


def test_read_state_of_a_seeded_fake_equals_the_seed(seeded: TinesFake) -> None:
    assert connect(seeded).read_state() == SEED


def test_read_state_pages_through_large_lists(tines_fake: TinesFake) -> None:
    users = [TargetUser(id=str(n), email=f"user{n}@example.com") for n in range(1, 1202)]
    big = TargetState(
        users=users,
        teams=[
            Team(
                id="5000",
                name="Everyone",
                members=[Member(user_id=u.id, role="VIEWER") for u in users],
            )
        ],
    )
    tines_fake.state.load(big)
    target = connect(tines_fake)
    assert target.read_state() == big
    # 3 pages of users, 1 of teams, 3 of members: proportional to pages, not users
    assert target.http.stats.reads == 7


@pytest.mark.parametrize("lookup", ["email", "list"])
def test_read_user_state_holds_the_user_and_their_memberships_only(
    seeded: TinesFake, lookup: UserLookup
) -> None:
    target = connect(seeded)
    target.user_lookup = lookup
    state = target.read_user_state("ALICE@example.com")
    assert [u.email for u in state.users] == ["alice@example.com"]
    analytics = state.teams[0]
    assert analytics.members == [Member(user_id="17", role="EDITOR")]
    assert analytics.case_groups[0].members == [Member(user_id="17", role="VIEWER")]
    assert state.teams[1] == Team(id="4", name="Incident Response")


@pytest.mark.parametrize("lookup", ["email", "list"])
def test_an_owner_s_read_holds_every_owner(seeded: TinesFake, lookup: UserLookup) -> None:
    target = connect(seeded)
    target.user_lookup = lookup
    state = target.read_user_state("root@example.com")
    assert [(u.email, u.tenant_owner) for u in state.users] == [("root@example.com", True)]
    seeded.state.add_user("second-owner@example.com", admin=True)
    state = target.read_user_state("root@example.com")
    assert [u.email for u in state.users] == ["root@example.com", "second-owner@example.com"]


@pytest.mark.parametrize("existing_member", ["update", "reject"])
def test_create_add_change_remove_round_trip(seeded: TinesFake, existing_member: str) -> None:
    seeded.existing_member = existing_member
    target = connect(seeded)

    bob = target.create_user("bob@example.com", "Bob", "Li", avatar_url=None)
    target.add_membership(bob, "3", None, "VIEWER")
    target.add_membership(bob, "3", "10", "EDITOR")
    target.change_role(bob, "3", None, "TEAM_ADMIN")
    target.change_role(bob, "3", "10", "VIEWER")
    target.update_user(bob, tenant_owner=True, tenant_permissions=["TUNNEL_MANAGE"])
    target.remove_membership(bob, "3", "10")

    state = target.read_user_state("bob@example.com")
    stored = next(u for u in state.users if u.email == "bob@example.com")
    assert (stored.first_name, stored.last_name, stored.tenant_owner) == ("Bob", "Li", True)
    assert stored.tenant_permissions == ["TUNNEL_MANAGE"]
    assert state.teams[0].members == [Member(user_id=bob.id, role="TEAM_ADMIN")]
    assert state.teams[0].case_groups[1].members == []

    target.remove_membership(bob, "3", None)
    target.remove_membership(bob, "3", None)  # not a member any more: still success
    assert seeded.state.role("3", bob.id) is None


@pytest.mark.parametrize("existing_member", ["update", "reject"])
def test_adding_an_existing_membership_again_changes_nothing(
    seeded: TinesFake, existing_member: str
) -> None:
    seeded.existing_member = existing_member
    alice = TargetUser(id="17", email="alice@example.com")
    connect(seeded).add_membership(alice, "3", "9", "VIEWER")
    assert seeded.state.export() == SEED
    assert [r.path for r in seeded.writes()] == ["/api/v1/teams/9/invite_member"]


@pytest.mark.parametrize("existing_member", ["update", "reject"])
def test_adding_an_existing_member_with_a_new_role_changes_the_role(
    seeded: TinesFake, existing_member: str
) -> None:
    seeded.existing_member = existing_member
    alice = TargetUser(id="17", email="alice@example.com")
    connect(seeded).add_membership(alice, "3", None, "TEAM_ADMIN")
    assert seeded.state.role("3", "17") == "TEAM_ADMIN"


def test_creating_a_taken_email_is_already_exists(seeded: TinesFake) -> None:
    with pytest.raises(AlreadyExistsError, match="already been taken"):
        connect(seeded).create_user("Alice@Example.com", None, None, None)


@pytest.mark.parametrize("retry_after", [None, 2])
def test_a_429_burst_converges_without_duplicate_writes(
    seeded: TinesFake, retry_after: int | None
) -> None:
    sleeps = Sleeps()
    target = connect(seeded, sleeps)
    alice = TargetUser(id="17", email="alice@example.com")
    seeded.fail_next(3, status=429, retry_after=retry_after, path_prefix="teams")

    target.add_membership(alice, "4", None, "EDITOR")

    assert seeded.state.role("4", "17") == "EDITOR"
    assert [(r.path, r.status) for r in seeded.writes()] == [
        ("/api/v1/teams/4/invite_member", 429),
        ("/api/v1/teams/4/invite_member", 429),
        ("/api/v1/teams/4/invite_member", 429),
        ("/api/v1/teams/4/invite_member", 200),
    ]
    assert len(seeded.applied_writes()) == 1
    assert sleeps == ([0.5, 1.0, 2.0] if retry_after is None else [2.0, 2.0, 2.0])


def test_rate_limiting_on_admin_users_does_not_touch_other_paths(seeded: TinesFake) -> None:
    seeded.fail_next(2, status=429, path_prefix="admin/users")
    assert connect(seeded).read_state() == SEED
    statuses = [(r.path, r.status) for r in seeded.requests]
    assert statuses[:3] == [("/api/v1/admin/users", 429)] * 2 + [("/api/v1/admin/users", 200)]
    assert all(status == 200 for _, status in statuses[3:])


def test_server_errors_are_retried_until_the_read_succeeds(seeded: TinesFake) -> None:
    seeded.fail_next(2, status=503)
    seeded.fail_next(1, status=500, path_prefix="teams/9")
    assert connect(seeded).read_state() == SEED


def test_a_target_that_keeps_failing_gives_a_transient_error_and_changes_nothing(
    seeded: TinesFake,
) -> None:
    seeded.fail_next(10, status=502)
    with pytest.raises(TransientError, match="HTTP 502 after 3 attempts"):
        connect(seeded, max_retries=2).create_user("bob@example.com", None, None, None)
    assert seeded.applied_writes() == []
    assert seeded.state.export() == SEED


def test_connection_resets_are_retried_and_write_once(seeded: TinesFake) -> None:
    seeded.reset_connections(2)
    sleeps = Sleeps()
    bob = connect(seeded, sleeps).create_user("bob@example.com", "Bob", None, None)
    assert sleeps == [0.5, 1.0]
    assert [u.email for u in seeded.state.export().users].count("bob@example.com") == 1
    assert bob.id in {u.id for u in seeded.state.export().users}
    assert len(seeded.applied_writes()) == 1


def test_a_slow_target_times_out_into_a_transient_error(seeded: TinesFake) -> None:
    seeded.slow(0.5)
    with pytest.raises(TransientError, match="Timeout"):
        connect(seeded, timeout=0.1, max_retries=1).read_state()


def test_dry_run_reads_but_sends_no_write(seeded: TinesFake) -> None:
    dry = TinesTarget(seeded.url, seeded.api_key, dry_run=True)
    alice = TargetUser(id="17", email="alice@example.com")
    assert dry.read_state() == SEED
    for write in (
        lambda: dry.create_user("bob@example.com", None, None, None),
        lambda: dry.update_user(alice, tenant_owner=True),
        lambda: dry.add_membership(alice, "4", None, "VIEWER"),
        lambda: dry.change_role(alice, "3", None, "TEAM_ADMIN"),
        lambda: dry.remove_membership(alice, "3", "9"),
    ):
        with pytest.raises(DryRunRejectedError):
            write()
    assert seeded.writes() == []
    assert seeded.state.export() == SEED


def test_a_wrong_key_is_unauthorized_at_once(seeded: TinesFake) -> None:
    target = TinesTarget(seeded.url, "wrong-key-42")
    with pytest.raises(UnauthorizedError) as caught:
        target.read_state()
    assert "wrong-key-42" not in str(caught.value)
    assert len(seeded.requests) == 1


# -- the fake itself follows the documented shapes ----------------------------------------


def get(fake: TinesFake, path: str, **params: Any) -> requests.Response:
    return requests.get(
        f"{fake.url}/api/v1/{path}",
        params=params,
        headers={"Authorization": f"Bearer {fake.api_key}"},
        timeout=5,
    )


def post(fake: TinesFake, path: str, body: Any) -> requests.Response:
    return requests.post(
        f"{fake.url}/api/v1/{path}",
        json=body,
        headers={"Authorization": f"Bearer {fake.api_key}"},
        timeout=5,
    )


def test_the_fake_pages_with_documented_meta(seeded: TinesFake) -> None:
    first = get(seeded, "admin/users", per_page=2).json()
    assert [u["email"] for u in first["admin/users"]] == ["alice@example.com", "root@example.com"]
    meta = first["meta"]
    assert meta["next_page_number"] == 2
    assert meta["previous_page"] is None
    assert (meta["per_page"], meta["pages"], meta["count"]) == (2, 2, 3)
    assert meta["next_page"].startswith(f"{seeded.url}/api/v1/admin/users?")
    last = get(seeded, "admin/users", per_page=2, page=2).json()["meta"]
    assert (last["next_page"], last["next_page_number"]) == (None, None)
    assert last["previous_page"] is not None
    assert get(seeded, "teams", per_page=10_000).json()["meta"]["per_page"] == 500


def test_the_fake_answers_teams_groups_and_owner_filters(seeded: TinesFake) -> None:
    personal = seeded.state.add_team("alice's team", personal=True)
    standard = get(seeded, "teams").json()["teams"]
    assert standard[0] == {
        "id": 3,
        "name": "Analytics",
        "groups": [{"id": 9, "name": "Tier 1"}, {"id": 10, "name": "Tier 2"}],
    }
    assert personal not in [t["id"] for t in standard]
    assert personal in [t["id"] for t in get(seeded, "teams", scope="all").json()["teams"]]
    assert get(seeded, "teams/9").json()["name"] == "Tier 1"
    owners = get(seeded, "admin/users", filter="TENANT_OWNER").json()["admin/users"]
    assert [u["email"] for u in owners] == ["root@example.com"]
    with_teams = get(seeded, "admin/users", include="team_memberships").json()["admin/users"]
    assert with_teams[0]["team_memberships"] == [
        {"team_id": 3, "team_name": "Analytics", "role": "EDITOR"}
    ]


def test_the_fake_invites_and_removes_as_documented(seeded: TinesFake) -> None:
    invited = post(seeded, "teams/4/invite_member", {"email": "new@example.com", "role": "EDITOR"})
    assert invited.json()["role"] == "EDITOR"
    assert {"id", "email", "is_admin", "invitation_accepted"} <= invited.json().keys()
    both = post(seeded, "teams/4/invite_member", {"email": "x@example.com", "user_id": 17})
    assert both.status_code == 422
    removed = post(seeded, "teams/4/remove_member", {"user_id": invited.json()["id"]})
    assert removed.json() == {"deleted_id": invited.json()["id"]}
    deleted = requests.delete(
        f"{seeded.url}/api/v1/admin/users/19",
        headers={"Authorization": f"Bearer {seeded.api_key}"},
        timeout=5,
    )
    assert (deleted.status_code, deleted.content) == (204, b"")


def test_the_fake_runs_standalone_from_a_seed_file(tmp_path: Path) -> None:
    seed = tmp_path / "target.json"
    seed.write_text(SEED.model_dump_json())
    process = subprocess.Popen(
        [sys.executable, "-m", "tests.tines_fake", "--port", "0", "--api-key", "K", "--seed", seed],
        stdout=subprocess.PIPE,
        text=True,
        cwd=Path(__file__).parent.parent,
    )
    try:
        assert process.stdout is not None
        banner = process.stdout.readline()
        url = banner.split("listening on ")[1].split()[0]
        assert TinesTarget(url, "K").read_state() == SEED
    finally:
        process.terminate()
        process.wait(timeout=10)

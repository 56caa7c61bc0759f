"""A full reconcile's bulk reads at scale (issue 18): records built from what a reader has
already checked (`trusted`) are the records validation gives, a malformed answer still fails
with the reader's message, the projection keeps what it kept, requests' environment is
honoured though read once, and Keycloak and the target are read at the same time."""

from __future__ import annotations

import json
import threading
from typing import Any

import pytest
import requests
import responses

from bridge.httpenv import settle_environment
from bridge.keys import UserRef
from bridge.mapping import Mapping
from bridge.mapping_file import parse_mapping
from bridge.model import (
    AccountPair,
    IdentityView,
    IdpSnapshot,
    IdpUser,
    Member,
    TargetState,
    TargetUser,
)
from bridge.policy import Policy
from bridge.reconcile import Reconciler
from bridge.sources.base import SnapshotSource, SourceError
from bridge.sources.keycloak import KeycloakSource
from bridge.targets.base import BadRequestError, TargetError
from bridge.targets.snapshot import SnapshotTarget
from bridge.targets.tines import TinesTarget, tines_http
from tests.test_safety_support import MAPPING, idp_user

# -- trusted records ----------------------------------------------------------------------

ALICE = {
    "id": "id-alice",
    "username": "alice",
    "email": "alice@example.com",
    "email_verified": True,
    "first_name": "Alice",
    "last_name": None,
    "enabled": True,
    "attributes": {"avatar": ["a.png"]},
    "groups": ["/Analysts"],
    "realm_roles": ["auditor"],
    "client_roles": {"app": ["admin"]},
    "organizations": {},
}


@pytest.mark.parametrize(
    ("record", "values"),
    [
        (IdpUser, ALICE),
        (IdpUser, dict(reversed(ALICE.items()))),  # any order of keywords
        (
            TargetUser,
            {
                "id": "17",
                "email": "a@example.com",
                "first_name": None,
                "last_name": "Ng",
                "tenant_owner": True,
                "tenant_permissions": ["AUDIT_LOG_READ"],
                "active": False,
            },
        ),
        (Member, {"user_id": "17", "role": "EDITOR"}),
        (AccountPair, {"user_id": "id-a", "account_id": "17", "email": "a@example.com"}),
    ],
)
def test_a_trusted_record_is_the_validated_record(record: Any, values: dict[str, Any]) -> None:
    validated = record(**values)
    trusted = record.trusted(**values)
    assert trusted == validated
    assert trusted.model_dump_json() == validated.model_dump_json()
    assert trusted.model_fields_set == validated.model_fields_set
    if record.model_config.get("frozen"):
        with pytest.raises(Exception, match="frozen"):
            trusted.id = "x"


def test_a_trusted_record_needs_every_field() -> None:
    with pytest.raises(TypeError, match="exactly the fields"):
        Member.trusted(user_id="17")
    with pytest.raises(TypeError, match="exactly the fields"):
        Member.trusted(user_id="17", role="EDITOR", team="x")


# -- malformed answers still fail at the boundary ------------------------------------------

KEYCLOAK = "https://keycloak.example"


def keycloak_users(*users: dict[str, Any]) -> KeycloakSource:
    responses.post(
        f"{KEYCLOAK}/realms/corp/protocol/openid-connect/token",
        json={"access_token": "t", "expires_in": 300, "token_type": "Bearer"},
    )
    responses.get(f"{KEYCLOAK}/admin/realms/corp/users", json=list(users))
    return KeycloakSource(KEYCLOAK, "corp", "jit-bridge", "secret")


@responses.activate
def test_a_keycloak_user_with_a_malformed_field_fails_the_read_saying_which() -> None:
    source = keycloak_users({"id": "u1", "username": "alice", "email": ["a@example.com"]})
    with pytest.raises(SourceError, match="malformed user record: 'email' is a list"):
        source.read_all(Mapping(entries=()))


@responses.activate
def test_a_bulk_read_gives_each_user_as_a_validated_record_would() -> None:
    source = keycloak_users(
        {
            "id": "u1",
            "username": "alice",
            "email": "alice@example.com",
            "emailVerified": True,
            "firstName": "Alice",
            "enabled": True,
            "attributes": {"avatar": ["a.png"], "n": [1]},
            "createdTimestamp": 1700000000000,
        },
        {"id": "svc", "username": "service-account-x", "serviceAccountClientId": "x"},
    )
    view = source.read_all(Mapping(entries=()))
    assert view.complete
    assert view.users == [
        IdpUser(
            id="u1",
            username="alice",
            email="alice@example.com",
            email_verified=True,
            first_name="Alice",
            attributes={"avatar": ["a.png"], "n": ["1"]},
        )
    ]


TENANT = "https://tenant.example"


@responses.activate
def test_a_tines_user_with_a_malformed_field_fails_the_read_saying_where() -> None:
    responses.get(
        f"{TENANT}/api/v1/admin/users",
        json={"admin/users": [{"id": 17, "email": None}], "meta": {"next_page_number": None}},
    )
    responses.get(f"{TENANT}/api/v1/teams", json={"teams": [], "meta": {}})
    http = tines_http(TENANT, "key", sleep=lambda _: None, max_retries=0)
    with pytest.raises(
        BadRequestError, match=r"admin/users: malformed user .*'email' is a NoneType"
    ):
        TinesTarget(TENANT, "key", http=http).read_state()


@responses.activate
def test_a_tines_member_without_a_role_fails_the_read_saying_where() -> None:
    responses.get(f"{TENANT}/api/v1/admin/users", json={"admin/users": [], "meta": {}})
    responses.get(f"{TENANT}/api/v1/teams", json={"teams": [{"id": 3, "name": "A"}], "meta": {}})
    responses.get(f"{TENANT}/api/v1/teams/3/members", json={"members": [{"id": 17}]})
    http = tines_http(TENANT, "key", sleep=lambda _: None, max_retries=0)
    with pytest.raises(BadRequestError, match="teams/3/members: malformed member"):
        TinesTarget(TENANT, "key", http=http).read_state()


# -- projection ---------------------------------------------------------------------------


def test_projection_keeps_a_user_already_cut_to_the_mapping_and_cuts_the_rest() -> None:
    mapping = parse_mapping(json.dumps(MAPPING))
    seen = IdpUser.model_validate(idp_user("alice", "/Analysts", "/Ops/Tier1"))
    assert mapping.project(seen) == seen
    wider = IdpUser.model_validate(idp_user("bob", "/Unmapped", "/Analysts", "/Zed"))
    assert mapping.project(wider).groups == ["/Analysts"]
    assert mapping.project(wider).model_dump(exclude={"groups"}) == wider.model_dump(
        exclude={"groups"}
    )


# -- requests' environment, read once ------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    ["https://keycloak.example/admin/realms/x/users", "https://internal.example/api/v1/teams"],
)
def test_a_settled_session_uses_the_proxy_and_ca_bundle_of_the_environment(
    monkeypatch: pytest.MonkeyPatch, url: str
) -> None:
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.example:3128")
    monkeypatch.setenv("NO_PROXY", "internal.example")
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", "/etc/ssl/corp-ca.pem")
    plain, settled = requests.Session(), requests.Session()
    settle_environment(settled)
    for _ in range(2):  # the second answer comes from what the first worked out
        calls: list[tuple[Any, ...]] = [
            ({}, None, True, None),
            ({}, None, False, None),
            (None, True, None, None),
        ]
        for args in calls:
            assert settled.merge_environment_settings(url, *args) == (
                plain.merge_environment_settings(url, *args)
            )
    proxies = settled.merge_environment_settings(url, {}, None, True, None)["proxies"]
    expected = None if "internal" in url else "http://proxy.example:3128"
    assert proxies.get("https") == expected
    assert settled.merge_environment_settings(url, {}, None, True, None)["verify"] == (
        "/etc/ssl/corp-ca.pem"
    )


# -- Keycloak beside the target --------------------------------------------------------------


class _Source(SnapshotSource):
    def __init__(self, target_read: threading.Event, fail: bool = False) -> None:
        super().__init__(IdpSnapshot.model_validate({"users": [idp_user("alice", "/Analysts")]}))
        self.target_read = target_read
        self.fail = fail

    def read_all(self, mapping: Mapping) -> IdentityView:
        # Returns only once the target has been read: a reconcile that read them one after
        # the other would never get there.
        if not self.target_read.wait(timeout=60):
            raise AssertionError("the target was not read while Keycloak was")
        if self.fail:
            raise SourceError("Keycloak is down")
        return super().read_all(mapping)

    def read_user(self, ref: UserRef, mapping: Mapping) -> IdentityView:
        raise AssertionError("not a per-user read")


class _Target(SnapshotTarget):
    def __init__(self, target_read: threading.Event, fail: bool = False) -> None:
        super().__init__(TargetState())
        self.target_read = target_read
        self.fail = fail
        self.finished = False

    def read_state(self) -> TargetState:
        self.target_read.set()
        try:
            if self.fail:
                raise TargetError("Tines is down")
            return super().read_state()
        finally:
            self.finished = True


def reconciler(source: _Source, target: _Target) -> Reconciler:
    return Reconciler(
        policy=Policy(mode="enhanced"),
        mapping=lambda: parse_mapping(json.dumps(MAPPING)),
        source=source,
        target=target,
    )


def test_a_full_reconcile_reads_keycloak_and_the_target_at_the_same_time() -> None:
    event = threading.Event()
    plan, _state = reconciler(_Source(event), _Target(event)).plan_all("reconcile")
    assert plan.skipped[0].email == "alice@example.com"  # read, planned: not in Tines yet


def test_when_both_reads_fail_keycloak_s_error_is_raised_after_the_target_read_ends() -> None:
    event = threading.Event()
    target = _Target(event, fail=True)
    with pytest.raises(SourceError, match="Keycloak is down"):
        reconciler(_Source(event, fail=True), target).plan_all("reconcile")
    assert target.finished


def test_a_failed_target_read_fails_the_reconcile() -> None:
    event = threading.Event()
    with pytest.raises(TargetError, match="Tines is down"):
        reconciler(_Source(event), _Target(event, fail=True)).plan_all("reconcile")

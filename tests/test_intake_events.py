"""Keycloak events in three formats become one shape, and the shape decides the triggers."""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from typing import Any

import pytest

from bridge.intake.events import (
    EventError,
    KeycloakEvent,
    TriggerRequest,
    enqueue_triggers,
    parse_listener_event,
    parse_phasetwo_event,
    parse_rest_admin_event,
    parse_rest_user_event,
    triggers_for,
    user_id_from_path,
)

USER_ID = "8d2f6c1e-1111-4222-8333-944455556666"
GROUP_ID = "aa11bb22-3333-4444-5555-666677778888"


@dataclass
class FakeQueue:
    """In-memory stand-in for the store's durable queue (same contract): one entry per key,
    later triggers merge into it, a repeated event id is a duplicate. `fail` makes every
    call raise, like a database that is down."""

    entries: dict[str, set[str]] = field(default_factory=dict)
    event_ids: set[str] = field(default_factory=set)
    calls: list[dict[str, Any]] = field(default_factory=list)
    fail: bool = False

    def enqueue(
        self,
        key: str,
        trigger: str,
        *,
        event_id: str | None = None,
        source: str | None = None,
        email_hint: str | None = None,
    ) -> str:
        if self.fail:
            raise RuntimeError("database is locked")
        self.calls.append(
            {
                "key": key,
                "trigger": trigger,
                "event_id": event_id,
                "source": source,
                "email_hint": email_hint,
            }
        )
        if event_id is not None and event_id in self.event_ids:
            return "duplicate"
        if event_id is not None:
            self.event_ids.add(event_id)
        if key in self.entries:
            self.entries[key].add(trigger)
            return "merged"
        self.entries[key] = {trigger}
        return "queued"


def listener_body(**overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "id": "ev-1",
        "time": 1767225600123,
        "realm": "demo",
        "kind": "user",
        "type": "LOGIN",
        "user_id": USER_ID,
        "operation": None,
        "resource_type": None,
        "resource_path": None,
    }
    body.update(overrides)
    return body


def listener_admin_body(
    resource_type: str, operation: str, path: str, **overrides: Any
) -> dict[str, Any]:
    admin = {
        "kind": "admin",
        "type": resource_type,
        "user_id": None,
        "operation": operation,
        "resource_type": resource_type,
        "resource_path": path,
    }
    return listener_body(**(admin | overrides))


# --------------------------------------------------------------------------------------
# The project's own listener


def test_listener_login_names_the_user() -> None:
    event = parse_listener_event(listener_body())

    assert event == KeycloakEvent(
        id="ev-1", time_ms=1767225600123, realm="demo", kind="user", type="LOGIN", user_id=USER_ID
    )


def test_listener_admin_event_takes_the_subject_from_the_path_not_the_acting_admin() -> None:
    body = listener_admin_body(
        "GROUP_MEMBERSHIP", "CREATE", f"users/{USER_ID}/groups/{GROUP_ID}", user_id="the-admin"
    )

    event = parse_listener_event(body)

    assert (event.kind, event.type, event.user_id) == ("admin", "GROUP_MEMBERSHIP-CREATE", USER_ID)


@pytest.mark.parametrize(
    ("change", "field_name"),
    [
        ({"id": None}, "id"),
        ({"id": ""}, "id"),
        ({"time": "1767225600123"}, "time"),
        ({"time": 1.5}, "time"),
        ({"time": True}, "time"),
        ({"time": -1}, "time"),
        ({"realm": 7}, "realm"),
        ({"kind": "system"}, "kind"),
        ({"kind": None}, "kind"),
        ({"type": None}, "type"),
        ({"user_id": 42}, "user_id"),
        ({"user_id": "a b"}, "user_id"),
        ({"user_id": ".."}, "user_id"),
        ({"email": ["x@example.com"]}, "email"),
    ],
)
def test_listener_body_errors_name_the_field(change: dict[str, Any], field_name: str) -> None:
    with pytest.raises(EventError) as raised:
        parse_listener_event(listener_body(**change))

    assert raised.value.field == field_name
    assert str(raised.value).startswith(f"{field_name}: ")


@pytest.mark.parametrize(
    ("change", "field_name"),
    [
        ({"operation": None}, "operation"),
        ({"resource_type": ""}, "resource_type"),
        ({"resource_path": 3}, "resource_path"),
        ({"resource_path": "users//groups/x"}, "resource_path"),
    ],
)
def test_listener_admin_body_errors_name_the_field(change: dict[str, Any], field_name: str) -> None:
    body = listener_admin_body("USER", "UPDATE", f"users/{USER_ID}") | change

    with pytest.raises(EventError) as raised:
        parse_listener_event(body)

    assert raised.value.field == field_name


@pytest.mark.parametrize("body", [[], "LOGIN", None, 3])
def test_a_body_that_is_not_an_object_is_refused(body: Any) -> None:
    with pytest.raises(EventError, match="body: must be a JSON object"):
        parse_listener_event(body)


def test_listener_tolerates_keys_it_does_not_know() -> None:
    event = parse_listener_event(listener_body(client_id="web", details={"x": "y"}))

    assert event.user_id == USER_ID


# --------------------------------------------------------------------------------------
# Phase Two keycloak-events


def phasetwo_access(**overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "uid": "delivery-1",
        "id": "kc-event-1",
        "time": 1767225600123,
        "type": "access.LOGIN",
        "realmId": "6f1c",
        "realmName": "demo",
        "authDetails": {
            "realmId": "demo",
            "clientId": "tines",
            "userId": USER_ID,
            "ipAddress": "10.0.0.1",
            "username": "jürgen",
            "sessionId": "s-1",
        },
        "details": {
            "auth_method": "openid-connect",
            "username": "jürgen",
            "email": "Jürgen@Example.com",
        },
    }
    body.update(overrides)
    return body


def test_phasetwo_login_reads_the_user_from_auth_details() -> None:
    event = parse_phasetwo_event(phasetwo_access())

    assert event == KeycloakEvent(
        id="kc-event-1",
        time_ms=1767225600123,
        realm="demo",
        kind="user",
        type="LOGIN",
        user_id=USER_ID,
        email_hint="Jürgen@Example.com",
        session_id="s-1",
    )


def test_phasetwo_event_without_keycloak_id_falls_back_to_the_delivery_uid() -> None:
    body = phasetwo_access()
    del body["id"]

    assert parse_phasetwo_event(body).id == "delivery-1"


def test_phasetwo_membership_event_with_unicode_group_representation() -> None:
    group = {"id": GROUP_ID, "name": "Ops/Tier 1 — Zürich ✓", "path": "/Ops/Tier 1 — Zürich ✓"}
    body = {
        "uid": "delivery-2",
        "id": "kc-admin-1",
        "time": 1767225600999,
        "type": "admin.GROUP_MEMBERSHIP-CREATE",
        "realmName": "demo",
        "authDetails": {"realmId": "master", "userId": "the-admin"},
        "resourceType": "GROUP_MEMBERSHIP",
        "operationType": "CREATE",
        "resourcePath": f"users/{USER_ID}/groups/{GROUP_ID}",
        "representation": json.dumps(group, ensure_ascii=False),
        "details": {"username": "zoë", "email": "zoe@example.com"},
    }

    event = parse_phasetwo_event(body)

    assert (event.kind, event.resource_type, event.operation) == (
        "admin",
        "GROUP_MEMBERSHIP",
        "CREATE",
    )
    assert event.user_id == USER_ID
    assert event.email_hint == "zoe@example.com"


def test_phasetwo_admin_type_alone_is_enough() -> None:
    body = {"id": "a", "time": 1, "type": "admin.USER-DELETE", "resourcePath": f"users/{USER_ID}"}

    event = parse_phasetwo_event(body)

    assert (event.resource_type, event.operation, event.user_id) == ("USER", "DELETE", USER_ID)


def test_phasetwo_system_events_parse_and_trigger_nothing() -> None:
    event = parse_phasetwo_event({"id": "s", "time": 1, "type": "system.REALM_CREATED"})

    assert event.kind == "system"
    assert triggers_for(event, "enhanced") == []


@pytest.mark.parametrize(
    ("change", "field_name"),
    [
        ({"type": None}, "type"),
        ({"type": "LOGIN"}, "type"),
        ({"type": "admin.GROUP_MEMBERSHIP"}, "type"),
        ({"time": "now"}, "time"),
        ({"authDetails": "x"}, "authDetails"),
        ({"authDetails": {"userId": 5}}, "authDetails.userId"),
        ({"details": []}, "details"),
        ({"realmName": {}}, "realmName"),
    ],
)
def test_phasetwo_errors_name_the_field(change: dict[str, Any], field_name: str) -> None:
    with pytest.raises(EventError) as raised:
        parse_phasetwo_event(phasetwo_access() | change)

    assert raised.value.field == field_name


# --------------------------------------------------------------------------------------
# Keycloak's REST representations (the poller's input)


def test_rest_user_event() -> None:
    raw = {
        "id": "e-1",
        "time": 1767225600123,
        "type": "IDENTITY_PROVIDER_FIRST_LOGIN",
        "realmId": "6f1c",
        "clientId": "tines",
        "userId": USER_ID,
        "sessionId": "s-9",
        "ipAddress": "10.0.0.1",
        "details": {"username": "ann@example.com", "identity_provider": "google"},
    }

    event = parse_rest_user_event(raw, realm="demo")

    assert (event.realm, event.type, event.user_id) == (
        "demo",
        "IDENTITY_PROVIDER_FIRST_LOGIN",
        USER_ID,
    )
    assert event.email_hint == "ann@example.com"


def test_rest_user_delete_takes_the_email_hint_from_the_representation_string() -> None:
    raw = {
        "id": "a-1",
        "time": 5,
        "realmId": "6f1c",
        "authDetails": {
            "realmId": "master",
            "clientId": "c0ffee",
            "userId": "admin",
            "ipAddress": "::1",
        },
        "operationType": "DELETE",
        "resourceType": "USER",
        "resourcePath": f"users/{USER_ID}",
        "representation": json.dumps({"id": USER_ID, "email": "gone@example.com"}),
    }

    event = parse_rest_admin_event(raw, realm="demo")

    assert event.user_id == USER_ID
    assert event.email_hint == "gone@example.com"


def test_a_group_representation_is_never_taken_for_the_users_email() -> None:
    raw = {
        "time": 5,
        "operationType": "CREATE",
        "resourceType": "GROUP_MEMBERSHIP",
        "resourcePath": f"users/{USER_ID}/groups/{GROUP_ID}",
        "representation": json.dumps({"name": "x", "email": "group-list@example.com"}),
    }

    assert parse_rest_admin_event(raw, realm="demo").email_hint is None


@pytest.mark.parametrize(
    ("raw", "field_name"),
    [
        ({"time": 1, "resourceType": "USER"}, "operationType"),
        ({"time": 1, "operationType": "UPDATE", "resourceType": 3}, "resourceType"),
        ({"operationType": "UPDATE", "resourceType": "USER"}, "time"),
        (
            {"time": 1, "operationType": "UPDATE", "resourceType": "USER", "authDetails": []},
            "authDetails",
        ),
    ],
)
def test_rest_admin_event_errors_name_the_field(raw: dict[str, Any], field_name: str) -> None:
    with pytest.raises(EventError) as raised:
        parse_rest_admin_event(raw, realm="demo")

    assert raised.value.field == field_name


def test_rest_user_event_needs_a_type() -> None:
    with pytest.raises(EventError, match="type: is required"):
        parse_rest_user_event({"time": 1, "userId": USER_ID}, realm="demo")


def test_events_without_an_id_get_a_stable_key_from_time_type_user_and_session() -> None:
    raw = {"time": 7, "type": "LOGIN", "userId": USER_ID, "sessionId": "s-1"}

    first = parse_rest_user_event(raw, realm="demo").dedupe_key
    again = parse_rest_user_event(dict(raw), realm="demo").dedupe_key
    other_session = parse_rest_user_event(raw | {"sessionId": "s-2"}, realm="demo").dedupe_key

    assert first == again
    assert first != other_session


# --------------------------------------------------------------------------------------
# Resource paths


@pytest.mark.parametrize(
    ("path", "user_id"),
    [
        (f"users/{USER_ID}", USER_ID),
        (f"/users/{USER_ID}/groups/{GROUP_ID}", USER_ID),
        ("users/jürgen-ü✓/groups/Zürich%2FWest", "jürgen-ü✓"),
        ("users/imported:42/role-mappings/realm", "imported:42"),
        (f"groups/{GROUP_ID}", None),
        (f"groups/{GROUP_ID}/users/{USER_ID}", None),
        ("users", None),
        ("users/", None),
        (None, None),
    ],
)
def test_user_id_is_the_segment_after_users(path: str | None, user_id: str | None) -> None:
    assert user_id_from_path(path) == user_id


def test_json_escaped_slashes_in_a_path_are_ordinary_slashes() -> None:
    body = json.loads(
        '{"id":"x","time":1,"realm":"d","kind":"admin","operation":"CREATE",'
        '"resource_type":"GROUP_MEMBERSHIP","resource_path":"users\\/u-1\\/groups\\/g\\/1"}'
    )

    assert parse_listener_event(body).user_id == "u-1"


# --------------------------------------------------------------------------------------
# Triggers


def _event(kind: str, **fields: Any) -> KeycloakEvent:
    base: dict[str, Any] = {"id": "e", "time_ms": 1, "realm": "demo", "kind": kind, "type": ""}
    return KeycloakEvent(**(base | fields))


def _admin(resource_type: str, operation: str, path: str) -> KeycloakEvent:
    return _event(
        "admin",
        type=f"{resource_type}-{operation}",
        resource_type=resource_type,
        operation=operation,
        resource_path=path,
        user_id=user_id_from_path(path),
    )


USER_KEY = f"id:{USER_ID}"


@pytest.mark.parametrize("mode", ["jit", "enhanced"])
@pytest.mark.parametrize(
    "event_type", ["LOGIN", "IDENTITY_PROVIDER_LOGIN", "IDENTITY_PROVIDER_FIRST_LOGIN", "REGISTER"]
)
def test_logins_trigger_a_login_in_both_modes(mode: Any, event_type: str) -> None:
    event = _event("user", type=event_type, user_id=USER_ID)

    assert triggers_for(event, mode) == [TriggerRequest(USER_KEY, "login")]


@pytest.mark.parametrize("event_type", ["LOGIN_ERROR", "LOGOUT", "CODE_TO_TOKEN", "CLIENT_LOGIN"])
def test_other_user_events_are_ignored(event_type: str) -> None:
    assert triggers_for(_event("user", type=event_type, user_id=USER_ID), "enhanced") == []


@pytest.mark.parametrize(
    ("event", "expected"),
    [
        (
            _admin("GROUP_MEMBERSHIP", "CREATE", f"users/{USER_ID}/groups/g"),
            [TriggerRequest(USER_KEY, "change")],
        ),
        (
            _admin("GROUP_MEMBERSHIP", "DELETE", f"users/{USER_ID}/groups/g"),
            [TriggerRequest(USER_KEY, "change")],
        ),
        (_admin("USER", "UPDATE", f"users/{USER_ID}"), [TriggerRequest(USER_KEY, "change")]),
        (_admin("USER", "DELETE", f"users/{USER_ID}"), [TriggerRequest(USER_KEY, "change")]),
        (_admin("GROUP", "UPDATE", "groups/g"), [TriggerRequest("all", "reconcile")]),
        (_admin("GROUP", "DELETE", "groups/g"), [TriggerRequest("all", "reconcile")]),
        (_admin("GROUP", "CREATE", "groups/g"), []),
        (_admin("USER", "CREATE", f"users/{USER_ID}"), []),
        (_admin("REALM_ROLE_MAPPING", "CREATE", f"users/{USER_ID}/role-mappings/realm"), []),
        (_admin("CLIENT", "UPDATE", "clients/c"), []),
    ],
)
def test_admin_events_trigger_only_in_enhanced_mode(
    event: KeycloakEvent, expected: list[TriggerRequest]
) -> None:
    assert triggers_for(event, "enhanced") == expected
    assert triggers_for(event, "jit") == []


def test_email_hint_flows_into_the_trigger() -> None:
    event = replace(_admin("USER", "DELETE", f"users/{USER_ID}"), email_hint="a@b.c")

    assert triggers_for(event, "enhanced") == [TriggerRequest(USER_KEY, "change", "a@b.c")]


def test_a_login_known_only_by_email_is_keyed_by_email() -> None:
    event = _event("user", type="LOGIN", email_hint="Ann@Example.com")

    assert triggers_for(event, "jit") == [
        TriggerRequest("email:ann@example.com", "login", "Ann@Example.com")
    ]


def test_a_login_that_names_nobody_is_an_error() -> None:
    with pytest.raises(EventError, match="user_id: a LOGIN event must name the user"):
        triggers_for(_event("user", type="LOGIN"), "jit")


def test_a_membership_change_outside_users_is_an_error_in_enhanced_mode() -> None:
    event = _admin("GROUP_MEMBERSHIP", "CREATE", f"groups/{GROUP_ID}")

    with pytest.raises(EventError) as raised:
        triggers_for(event, "enhanced")

    assert raised.value.field == "resource_path"


def test_enqueue_reports_queued_merged_and_duplicates() -> None:
    queue = FakeQueue()
    login = _event("user", type="LOGIN", user_id=USER_ID)

    first = enqueue_triggers(queue, login, triggers_for(login, "jit"), source="test")
    replay = enqueue_triggers(queue, login, triggers_for(login, "jit"), source="test")
    other = replace(login, id="e2")
    merged = enqueue_triggers(queue, other, triggers_for(other, "jit"), source="test")

    assert (first.queued, replay.all_duplicates, merged.merged) == (1, True, 1)
    assert queue.entries == {USER_KEY: {"login"}}

"""Properties of the intake under arbitrary input: no 5xx, nothing queued without a valid
signature, and parsers that either return an event or say which field is wrong."""

from __future__ import annotations

import hashlib
import hmac
import json
from typing import Any

from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from bridge.intake.events import (
    EventError,
    KeycloakEvent,
    TriggerRequest,
    parse_listener_event,
    parse_phasetwo_event,
    parse_rest_admin_event,
    parse_rest_user_event,
    triggers_for,
)
from bridge.intake.signatures import sign_jit_bridge
from tests.examples import examples
from tests.test_webhook import NOW, SECRET, Bridge

json_scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text()
json_values = st.recursive(
    json_scalars,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)
ids = (
    st.text(min_size=1, max_size=40)
    | st.text("abcdef0123456789-:üß✓%", min_size=1, max_size=36)
    | st.sampled_from(["u-1", "ü✓", "..", "a b", "a/b"])
)
paths = st.text(max_size=40) | st.builds(
    lambda user, rest: f"users/{user}{rest}",
    ids,
    st.sampled_from(["", "/groups/g", "/groups/Zürich%2FOps"]),
)
field_values = json_values | ids | paths | st.integers(min_value=0, max_value=2**63)

# Event-shaped objects: the right keys with arbitrary values, plus anything else.
LISTENER_FIELDS = (
    "id",
    "time",
    "realm",
    "kind",
    "type",
    "user_id",
    "operation",
    "resource_type",
    "resource_path",
)
listener_events = st.fixed_dictionaries({}, optional=dict.fromkeys(LISTENER_FIELDS, field_values))
# Nearly valid bodies: a well-formed event with at most one field replaced or dropped, so the
# properties also cover the paths that parse and queue.
well_formed_listener_events = st.fixed_dictionaries(
    {
        "id": ids,
        "time": st.integers(min_value=0, max_value=2**53),
        "realm": st.text(min_size=1, max_size=20),
        "kind": st.sampled_from(["user", "admin"]),
        "type": st.sampled_from(["LOGIN", "REGISTER", "LOGIN_ERROR", "GROUP_MEMBERSHIP", "USER"]),
        "user_id": st.none() | ids,
        "operation": st.sampled_from(["CREATE", "UPDATE", "DELETE", "ACTION"]),
        "resource_type": st.sampled_from(["GROUP_MEMBERSHIP", "USER", "GROUP", "CLIENT"]),
        "resource_path": paths,
    }
)


@st.composite
def mutated(draw: st.DrawFn, events: st.SearchStrategy[dict[str, Any]]) -> dict[str, Any]:
    body = dict(draw(events))
    name = draw(st.none() | st.sampled_from(sorted(body)))
    if name is not None:
        if draw(st.booleans()):
            del body[name]
        else:
            body[name] = draw(field_values)
    return body


kinds = st.sampled_from(["user", "admin", "system", "", "USER"])
listener_events = st.builds(lambda d, k: d | {"kind": k}, listener_events, kinds) | listener_events
phasetwo_events = st.fixed_dictionaries(
    {},
    optional={
        "id": field_values,
        "uid": field_values,
        "time": field_values,
        "type": st.sampled_from(
            ["access.LOGIN", "admin.GROUP_MEMBERSHIP-CREATE", "admin.GROUP-DELETE", "x"]
        )
        | st.text(max_size=30),
        "realmName": field_values,
        "authDetails": st.fixed_dictionaries(
            {}, optional={"userId": field_values, "username": field_values}
        )
        | json_values,
        "details": st.dictionaries(st.sampled_from(["email", "username"]), field_values)
        | json_values,
        "resourcePath": field_values,
        "resourceType": field_values,
        "operationType": field_values,
        "representation": field_values,
    },
)
rest_events = st.fixed_dictionaries(
    {},
    optional={
        "id": field_values,
        "time": field_values,
        "type": st.sampled_from(["LOGIN", "REGISTER", "LOGOUT"]) | field_values,
        "userId": field_values,
        "sessionId": field_values,
        "details": json_values,
        "operationType": st.sampled_from(["CREATE", "UPDATE", "DELETE"]) | field_values,
        "resourceType": st.sampled_from(["USER", "GROUP", "GROUP_MEMBERSHIP"]) | field_values,
        "resourcePath": field_values,
        "representation": field_values,
        "authDetails": json_values,
    },
)


def _parsed(parse: Any, body: Any) -> KeycloakEvent | EventError:
    try:
        return parse(body)  # type: ignore[no-any-return]
    except EventError as error:
        return error


def _triggers(event: KeycloakEvent, mode: Any) -> list[TriggerRequest] | EventError:
    try:
        return triggers_for(event, mode)
    except EventError as error:
        return error


def _check(parse: Any, body: Any) -> None:
    outcome = _parsed(parse, body)
    if isinstance(outcome, EventError):
        event("parse: refused")
        assert outcome.field
        assert str(outcome).startswith(f"{outcome.field}: ")
        return
    assert isinstance(outcome, KeycloakEvent)
    for mode in ("jit", "enhanced"):
        triggers = _triggers(outcome, mode)
        if isinstance(triggers, EventError):
            assert triggers.field in {"user_id", "resource_path"}
            continue
        event(f"{mode}: {len(triggers)} trigger(s)")
        assert all(t.key == "all" or t.key.startswith(("id:", "email:")) for t in triggers)
        if mode == "jit":
            assert all(t.trigger == "login" for t in triggers)


@settings(max_examples=examples(800), deadline=None)
@given(
    body=json_values
    | listener_events
    | mutated(well_formed_listener_events)
    | phasetwo_events
    | rest_events
)
def test_parsers_return_an_event_or_name_the_field(body: Any) -> None:
    _check(parse_listener_event, body)
    _check(parse_phasetwo_event, body)
    _check(lambda b: parse_rest_user_event(b, realm="demo"), body)
    _check(lambda b: parse_rest_admin_event(b, realm="demo"), body)


BRIDGE = Bridge()


def _body(value: Any) -> bytes:
    return json.dumps(value, ensure_ascii=False).encode()


bodies = (
    st.binary(max_size=300)
    | listener_events.map(_body)
    | mutated(well_formed_listener_events).map(_body)
    | mutated(well_formed_listener_events).map(_body)
    | phasetwo_events.map(_body)
    | json_values.map(_body)
    | st.just(b"")
)
signatures = st.sampled_from(
    ["none", "listener", "phasetwo", "listener-stale", "wrong-secret", "garbage"]
)
headers_text = st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=80)


def _headers(body: bytes, kind: str, garbage: str) -> tuple[dict[str, str], bool]:
    """Headers for one signature choice, and whether the signature is valid."""
    if kind == "listener":
        return {"X-JIT-Bridge-Signature": sign_jit_bridge(body, SECRET, NOW)}, True
    if kind == "phasetwo":
        return {
            "X-Keycloak-Signature": hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
        }, True
    if kind == "listener-stale":
        return {"X-JIT-Bridge-Signature": sign_jit_bridge(body, SECRET, NOW - 301)}, False
    if kind == "wrong-secret":
        return {"X-JIT-Bridge-Signature": sign_jit_bridge(body, SECRET + "x", NOW)}, False
    if kind == "garbage":
        return {"X-JIT-Bridge-Signature": garbage, "X-Keycloak-Signature": garbage}, False
    return {}, False


@settings(max_examples=examples(400), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    body=bodies,
    signature=signatures,
    garbage=headers_text,
    content_type=st.sampled_from(
        ["application/json", "application/json; charset=utf-8", "text/plain", ""]
    ),
    mode=st.sampled_from(["jit", "enhanced"]),
)
def test_webhook_never_fails_and_never_queues_without_a_valid_signature(
    body: bytes, signature: str, garbage: str, content_type: str, mode: Any
) -> None:
    BRIDGE.queue.calls.clear()
    BRIDGE.queue.event_ids.clear()
    BRIDGE.mode = mode
    headers, valid = _headers(body, signature, garbage)

    response = BRIDGE.post_raw(body, headers, content_type=content_type)

    event(f"{signature}: {response.status_code}")
    assert response.status_code < 500
    assert response.status_code in {202, 400, 401, 415}
    if not valid:
        assert BRIDGE.queue.calls == []
        assert response.status_code != 202
    if response.status_code != 202:
        assert BRIDGE.queue.calls == []
    elif BRIDGE.queue.calls:
        assert response.json()["queued"] == len(BRIDGE.queue.calls)
    else:
        assert response.json()["ignored"] is True

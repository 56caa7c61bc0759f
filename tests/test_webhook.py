"""POST /webhooks/keycloak through FastAPI, and the two signature formats it accepts."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import time
from collections import Counter
from collections.abc import Iterator, MutableMapping
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from bridge.intake.signatures import (
    SignatureError,
    sign_jit_bridge,
    verify_jit_bridge_signature,
    verify_phasetwo_signature,
)
from bridge.intake.webhook import (
    MAX_BODY_BYTES,
    WEBHOOK_PATH,
    WebhookFastPath,
    webhook_handler,
    webhook_router,
)
from bridge.model import Mode
from bridge.server import create_app
from bridge.service import Service
from bridge.settings import Settings
from tests.test_intake_events import (
    GROUP_ID,
    USER_ID,
    FakeQueue,
    listener_admin_body,
    listener_body,
)
from tests.tines_fake import TinesFake

SECRET = "whsec-test-7f3a"
#: The secret SECRET replaces, while a rotation lasts (`webhook_secret_previous`).
PREVIOUS = "whsec-old-91c2"
NOW = 1_767_225_600
VECTOR = (
    Path(__file__).parent.parent
    / "deploy/keycloak-provider/src/test/resources/signature-vector.json"
)


def _hex(secret: str, message: bytes) -> str:
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


# --------------------------------------------------------------------------------------
# Signatures


def test_own_signature_round_trip() -> None:
    body = b'{"id":"1"}'

    verify_jit_bridge_signature(sign_jit_bridge(body, SECRET, NOW), body, SECRET, now=NOW)


def test_signature_matches_the_java_listener_vector() -> None:
    vector = json.loads(VECTOR.read_text(encoding="utf-8"))
    body = vector["body"].encode()
    assert body == base64.b64decode(vector["body_base64"])

    assert sign_jit_bridge(body, vector["secret"], vector["timestamp"]) == vector["header"]
    verify_jit_bridge_signature(
        vector["header"], body, vector["secret"], now=vector["timestamp"] + 10
    )


@pytest.mark.parametrize(
    ("header", "body", "secret"),
    [
        (sign_jit_bridge(b"{}", "other-secret", NOW), b"{}", SECRET),
        (sign_jit_bridge(b'{"a":1}', SECRET, NOW), b'{"a":2}', SECRET),
        (
            sign_jit_bridge(b"{}", SECRET, NOW + 1).replace(f"t={NOW + 1}", f"t={NOW}"),
            b"{}",
            SECRET,
        ),
    ],
    ids=["wrong-secret", "tampered-body", "tampered-timestamp"],
)
def test_own_signature_refuses_a_mismatch(header: str, body: bytes, secret: str) -> None:
    with pytest.raises(SignatureError, match="does not match"):
        verify_jit_bridge_signature(header, body, secret, now=NOW)


@pytest.mark.parametrize("offset", [-301, 301, -86_400, 10**9])
def test_own_signature_refuses_old_and_future_timestamps(offset: int) -> None:
    header = sign_jit_bridge(b"{}", SECRET, NOW + offset)

    with pytest.raises(SignatureError, match="300 s"):
        verify_jit_bridge_signature(header, b"{}", SECRET, now=NOW)


@pytest.mark.parametrize("offset", [-300, 0, 300])
def test_own_signature_accepts_timestamps_within_the_tolerance(offset: int) -> None:
    verify_jit_bridge_signature(
        sign_jit_bridge(b"{}", SECRET, NOW + offset), b"{}", SECRET, now=NOW
    )


GOOD_MAC = _hex(SECRET, f"{NOW}.{{}}".encode())


@pytest.mark.parametrize(
    "header",
    [
        None,
        "",
        "garbage",
        f"v1={GOOD_MAC}",
        f"t={NOW}",
        f"t={NOW},t={NOW},v1={GOOD_MAC}",
        f"t=abc,v1={GOOD_MAC}",
        f"t=-{NOW},v1={GOOD_MAC}",
        f"t={NOW},v1=zz",
        f"t={NOW},v1={GOOD_MAC[:-1]}",
        f"t={NOW};v1={GOOD_MAC}",
        "t=" + "9" * 3000 + f",v1={GOOD_MAC}",
    ],
)
def test_own_signature_refuses_malformed_headers(header: str | None) -> None:
    with pytest.raises(SignatureError):
        verify_jit_bridge_signature(header, b"{}", SECRET, now=NOW)


def test_secret_rotation_accepts_any_listed_v1() -> None:
    body = b'{"id":"1"}'
    old = sign_jit_bridge(body, "old-secret", NOW)
    new = sign_jit_bridge(body, "new-secret", NOW)
    both = f"{old},v1={new.split('v1=')[1]}"

    verify_jit_bridge_signature(both, body, "new-secret", now=NOW)
    verify_jit_bridge_signature(both, body, "old-secret", now=NOW)
    with pytest.raises(SignatureError):
        verify_jit_bridge_signature(both, body, "third-secret", now=NOW)


@pytest.mark.parametrize(
    ("signed_with", "by_previous"), [(SECRET, False), (PREVIOUS, True)], ids=["new", "previous"]
)
def test_with_a_previous_secret_both_formats_accept_either_and_say_which(
    signed_with: str, by_previous: bool
) -> None:
    body = b'{"id":"1"}'
    own = sign_jit_bridge(body, signed_with, NOW)

    assert verify_jit_bridge_signature(own, body, SECRET, NOW, previous=PREVIOUS) is by_previous
    assert (
        verify_phasetwo_signature(_hex(signed_with, body), body, SECRET, previous=PREVIOUS)
        is by_previous
    )


def test_with_a_previous_secret_a_third_secret_is_still_refused() -> None:
    body = b'{"id":"1"}'

    with pytest.raises(SignatureError, match="does not match"):
        verify_jit_bridge_signature(
            sign_jit_bridge(body, "third-secret", NOW), body, SECRET, NOW, previous=PREVIOUS
        )
    with pytest.raises(SignatureError, match="does not match"):
        verify_phasetwo_signature(_hex("third-secret", body), body, SECRET, previous=PREVIOUS)


def test_a_header_signed_with_both_secrets_counts_as_the_new_one() -> None:
    body = b'{"id":"1"}'
    old = sign_jit_bridge(body, PREVIOUS, NOW)
    new = sign_jit_bridge(body, SECRET, NOW)
    for header in (f"{old},v1={new.split('v1=')[1]}", f"{new},v1={old.split('v1=')[1]}"):
        assert verify_jit_bridge_signature(header, body, SECRET, NOW, previous=PREVIOUS) is False


def test_without_a_previous_secret_the_old_one_is_refused() -> None:
    body = b'{"id":"1"}'

    assert (
        verify_jit_bridge_signature(sign_jit_bridge(body, SECRET, NOW), body, SECRET, NOW) is False
    )
    with pytest.raises(SignatureError):
        verify_jit_bridge_signature(sign_jit_bridge(body, PREVIOUS, NOW), body, SECRET, NOW)
    with pytest.raises(SignatureError):
        verify_phasetwo_signature(_hex(PREVIOUS, body), body, SECRET)


def test_unknown_signature_schemes_are_skipped() -> None:
    header = sign_jit_bridge(b"{}", SECRET, NOW) + ",v0=whatever"

    verify_jit_bridge_signature(header, b"{}", SECRET, now=NOW)


def test_refusals_never_echo_the_secret_or_the_expected_mac() -> None:
    expected = [_hex(key, f"{NOW}.{{}}".encode()) for key in (SECRET, PREVIOUS)]
    expected += [_hex(key, b"{}") for key in (SECRET, PREVIOUS)]
    refusals = []
    for previous in (None, PREVIOUS):
        with pytest.raises(SignatureError) as own:
            verify_jit_bridge_signature(
                f"t={NOW},v1={'0' * 64}", b"{}", SECRET, NOW, previous=previous
            )
        with pytest.raises(SignatureError) as phasetwo:
            verify_phasetwo_signature("0" * 64, b"{}", SECRET, previous=previous)
        refusals += [str(own.value), str(phasetwo.value)]

    for refusal in refusals:
        assert SECRET not in refusal
        assert PREVIOUS not in refusal
        assert not any(mac in refusal for mac in expected)


def test_an_empty_secret_refuses_everything() -> None:
    with pytest.raises(SignatureError, match="no webhook secret"):
        verify_jit_bridge_signature(sign_jit_bridge(b"{}", "", NOW), b"{}", "", now=NOW)
    with pytest.raises(SignatureError, match="no webhook secret"):
        verify_phasetwo_signature(_hex("", b"{}"), b"{}", "")


def test_phasetwo_signature() -> None:
    body = b'{"type":"access.LOGIN"}'

    verify_phasetwo_signature(_hex(SECRET, body), body, SECRET)
    verify_phasetwo_signature(_hex(SECRET, body).upper(), body, SECRET)


@pytest.mark.parametrize(
    "header",
    [
        None,
        "",
        "sha256=" + _hex(SECRET, b"{}"),
        _hex("other", b"{}"),
        _hex(SECRET, b"{ }"),
        "zz" * 32,
    ],
)
def test_phasetwo_signature_refusals(header: str | None) -> None:
    with pytest.raises(SignatureError):
        verify_phasetwo_signature(header, b"{}", SECRET)


# --------------------------------------------------------------------------------------
# The endpoint


class Clock:
    def __init__(self) -> None:
        self.now = float(NOW)

    def __call__(self) -> float:
        return self.now


class CountingMetrics:
    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()
        self.previous_secret = 0

    def webhook(self, result: str) -> None:
        self.counts[result] += 1

    def webhook_previous_secret(self) -> None:
        self.previous_secret += 1


class Bridge:
    """The webhook mounted in an app, with its queue, clock, mode and metrics in reach."""

    def __init__(
        self,
        *,
        sink_in_thread: bool = False,
        fast_path: bool = False,
        realm: str | None = None,
        previous_secret: str | None = None,
    ) -> None:
        self.queue = FakeQueue()
        self.clock = Clock()
        self.mode: Mode = "enhanced"
        self.metrics = CountingMetrics()
        options: dict[str, Any] = {
            "secret": SECRET,
            "previous_secret": previous_secret,
            "mode_provider": lambda: self.mode,
            "clock": self.clock,
            "metrics": self.metrics,
            "sink_in_thread": sink_in_thread,
            "realm": realm,
        }
        app = FastAPI()
        if fast_path:
            # How the service mounts it: in front of FastAPI, which serves everything else.
            app.get("/healthz")(lambda: {"status": "alive"})
            self.app: Any = WebhookFastPath(app, webhook_handler(self.queue, **options))
        else:
            app.include_router(webhook_router(self.queue, **options))
            self.app = app
        self.client = TestClient(self.app)

    def post_listener(
        self, event: dict[str, Any], *, signed_at: float | None = None, secret: str = SECRET
    ) -> Any:
        body = json.dumps(event, ensure_ascii=False).encode()
        signature = sign_jit_bridge(
            body, secret, int(signed_at if signed_at is not None else self.clock.now)
        )
        return self.post_raw(body, {"X-JIT-Bridge-Signature": signature})

    def post_phasetwo(self, event: dict[str, Any], *, secret: str = SECRET) -> Any:
        body = json.dumps(event).encode()
        return self.post_raw(body, {"X-Keycloak-Signature": _hex(secret, body)})

    def post_raw(
        self, body: Any, headers: dict[str, str], content_type: str = "application/json"
    ) -> Any:
        return self.client.post(
            WEBHOOK_PATH, content=body, headers={"Content-Type": content_type, **headers}
        )


@pytest.fixture(
    params=[(False, False), (True, False), (True, True)],
    ids=["sink-on-loop", "sink-in-thread", "fast-path"],
)
def bridge(request: pytest.FixtureRequest) -> Bridge:
    in_thread, fast_path = request.param
    return Bridge(sink_in_thread=in_thread, fast_path=fast_path)


def phasetwo_membership(realm_name: str, **overrides: Any) -> dict[str, Any]:
    """A signed-format Phase Two admin event (reference/keycloak.md §5.1), as the real jar
    sends it: `realmName` is the realm's name, `authDetails.realmId` the acting admin's."""
    return {
        "uid": "delivery-9",
        "id": f"kc-{realm_name}-1",
        "time": 1767225600123,
        "type": "admin.GROUP_MEMBERSHIP-CREATE",
        "realmId": f"id-of-{realm_name}",
        "realmName": realm_name,
        "authDetails": {"realmId": "master", "userId": "admin-1"},
        "details": {"email": "alice@example.com", "username": "alice"},
        "resourceType": "GROUP_MEMBERSHIP",
        "operationType": "CREATE",
        "resourcePath": f"users/{USER_ID}/groups/{GROUP_ID}",
        **overrides,
    }


@pytest.mark.parametrize("fast_path", [False, True], ids=["router", "fast-path"])
def test_an_event_for_another_realm_is_ignored_in_both_formats(fast_path: bool) -> None:
    bridge = Bridge(sink_in_thread=True, fast_path=fast_path, realm="jit-bridge")
    foreign = [
        bridge.post_listener(listener_body(realm="p2other")),
        bridge.post_listener(
            listener_admin_body(
                "GROUP_MEMBERSHIP", "CREATE", f"users/{USER_ID}/groups/{GROUP_ID}", realm="p2other"
            )
        ),
        bridge.post_phasetwo(phasetwo_membership("p2other")),
        # No realmName: the realm id decides, and it is not this realm's.
        bridge.post_phasetwo(
            {k: v for k, v in phasetwo_membership("p2other").items() if k != "realmName"}
        ),
    ]
    for response in foreign:
        assert response.status_code == 202
        assert response.json()["ignored"] is True
    assert bridge.queue.entries == {}

    own = bridge.post_phasetwo(phasetwo_membership("jit-bridge"))
    assert own.status_code == 202
    assert own.json() == {"queued": 1, "merged": 0}
    assert set(bridge.queue.entries) == {f"id:{USER_ID}"}


def test_the_fast_path_leaves_every_other_request_to_the_app() -> None:
    bridge = Bridge(sink_in_thread=True, fast_path=True)
    assert bridge.client.get("/healthz").json() == {"status": "alive"}
    assert bridge.client.get(WEBHOOK_PATH).status_code in (404, 405)
    assert bridge.queue.entries == {}


def test_a_signed_login_is_queued_before_the_202(bridge: Bridge) -> None:
    response = bridge.post_listener(listener_body())

    assert response.status_code == 202
    assert response.json() == {"queued": 1, "merged": 0}
    assert bridge.queue.calls == [
        {
            "key": f"id:{USER_ID}",
            "trigger": "login",
            "event_id": "ev-1",
            "source": "webhook:jit-bridge",
            "email_hint": None,
        }
    ]
    assert bridge.metrics.counts == {"queued": 1}


def test_a_second_event_for_a_waiting_user_is_merged(bridge: Bridge) -> None:
    bridge.post_listener(listener_body())

    response = bridge.post_listener(listener_body(id="ev-2"))

    assert response.json() == {"queued": 1, "merged": 1}
    assert bridge.queue.entries == {f"id:{USER_ID}": {"login"}}


def test_a_redelivered_event_is_a_duplicate(bridge: Bridge) -> None:
    bridge.post_listener(listener_body())

    response = bridge.post_listener(listener_body())

    assert (response.status_code, response.json()) == (202, {"duplicate": True, "queued": 0})
    assert bridge.metrics.counts == {"queued": 1, "duplicate": 1}


def test_a_phasetwo_membership_change_queues_that_user(bridge: Bridge) -> None:
    event = {
        "uid": "d-1",
        "id": "kc-1",
        "time": 1,
        "type": "admin.GROUP_MEMBERSHIP-DELETE",
        "realmName": "demo",
        "resourcePath": f"users/{USER_ID}/groups/{GROUP_ID}",
        "representation": json.dumps({"name": "Zürich/Ops ✓", "path": "/Zürich/Ops ✓"}),
    }

    response = bridge.post_phasetwo(event)

    assert response.status_code == 202
    assert bridge.queue.entries == {f"id:{USER_ID}": {"change"}}
    assert bridge.queue.calls[0]["source"] == "webhook:phasetwo"


def test_a_group_rename_queues_a_full_reconcile(bridge: Bridge) -> None:
    response = bridge.post_listener(listener_admin_body("GROUP", "UPDATE", f"groups/{GROUP_ID}"))

    assert response.status_code == 202
    assert bridge.queue.entries == {"all": {"reconcile"}}


def test_unicode_and_slashes_in_names_and_paths(bridge: Bridge) -> None:
    event = listener_admin_body(
        "GROUP_MEMBERSHIP",
        "CREATE",
        "users/jürgen-✓/groups/Ops%2FTier 1",
        realm='Zürich "west"/eu ✓',
    )

    response = bridge.post_listener(event)

    assert response.status_code == 202
    assert bridge.queue.entries == {"id:jürgen-✓": {"change"}}


@pytest.mark.parametrize(
    "event",
    [
        listener_body(type="LOGIN_ERROR", user_id=None),
        listener_body(type="LOGOUT"),
        listener_admin_body("CLIENT", "UPDATE", "clients/c-1"),
        listener_admin_body("SOME_FUTURE_TYPE", "ACTION", "whatever/ü/✓"),
    ],
    ids=["login-error", "logout", "client-update", "unknown-admin-type"],
)
def test_events_that_trigger_nothing_are_ignored(bridge: Bridge, event: dict[str, Any]) -> None:
    response = bridge.post_listener(event)

    assert response.status_code == 202
    assert response.json()["ignored"] is True
    assert bridge.queue.calls == []
    assert bridge.metrics.counts == {"ignored": 1}


def test_admin_events_are_ignored_in_jit_mode(bridge: Bridge) -> None:
    bridge.mode = "jit"

    response = bridge.post_listener(listener_admin_body("USER", "DELETE", f"users/{USER_ID}"))

    assert response.json()["ignored"] is True
    assert bridge.queue.calls == []


def test_an_unknown_phasetwo_type_is_ignored(bridge: Bridge) -> None:
    response = bridge.post_phasetwo({"id": "s", "time": 1, "type": "system.SOMETHING_NEW"})

    assert (response.status_code, response.json()["ignored"]) == (202, True)


def test_missing_signature_is_401(bridge: Bridge) -> None:
    response = bridge.post_raw(json.dumps(listener_body()).encode(), {})

    assert response.status_code == 401
    assert "missing signature" in response.json()["error"]
    assert bridge.queue.calls == []


def test_wrong_signature_is_401(bridge: Bridge) -> None:
    body = json.dumps(listener_body()).encode()

    own = bridge.post_raw(body, {"X-JIT-Bridge-Signature": sign_jit_bridge(body, "guess", NOW)})
    phasetwo = bridge.post_raw(body, {"X-Keycloak-Signature": _hex("guess", body)})

    assert (own.status_code, phasetwo.status_code) == (401, 401)
    assert SECRET not in own.text + phasetwo.text
    assert bridge.queue.calls == []
    assert bridge.metrics.counts == {"signature": 2}


@pytest.mark.parametrize("fast_path", [False, True], ids=["router", "fast-path"])
def test_during_a_rotation_both_secrets_are_accepted_and_only_the_previous_is_counted(
    fast_path: bool,
) -> None:
    bridge = Bridge(sink_in_thread=True, fast_path=fast_path, previous_secret=PREVIOUS)

    answers = [
        bridge.post_listener(listener_body(id="old-1"), secret=PREVIOUS),
        bridge.post_phasetwo(phasetwo_membership("demo", id="old-2"), secret=PREVIOUS),
        bridge.post_listener(listener_body(id="new-1")),
        bridge.post_phasetwo(phasetwo_membership("demo", id="new-2")),
    ]
    third = [
        bridge.post_listener(listener_body(id="third-1"), secret="third-secret"),
        bridge.post_phasetwo(phasetwo_membership("demo", id="third-2"), secret="third-secret"),
    ]

    assert [a.status_code for a in answers] == [202, 202, 202, 202]
    assert [a.status_code for a in third] == [401, 401]
    for refused in third:
        assert "does not match" in refused.json()["error"]
        assert SECRET not in refused.text
        assert PREVIOUS not in refused.text
    assert [c["event_id"] for c in bridge.queue.calls] == ["old-1", "old-2", "new-1", "new-2"]
    assert bridge.metrics.counts == {"queued": 4, "signature": 2}
    assert bridge.metrics.previous_secret == 2


def test_previous_secret_deliveries_are_logged_at_most_every_five_minutes(
    caplog: pytest.LogCaptureFixture,
) -> None:
    bridge = Bridge(previous_secret=PREVIOUS)
    caplog.set_level("INFO", logger="bridge.intake.webhook")

    def previous_secret_lines() -> list[str]:
        return [
            r.getMessage() for r in caplog.records if "webhook_secret_previous" in r.getMessage()
        ]

    for number in range(3):
        bridge.post_listener(listener_body(id=f"ev-{number}"), secret=PREVIOUS)
    bridge.post_listener(listener_body(id="ev-new"))
    assert len(previous_secret_lines()) == 1
    assert "the sender still uses the old secret" in previous_secret_lines()[0]

    bridge.clock.now += 299
    bridge.post_listener(listener_body(id="ev-3"), secret=PREVIOUS)
    assert len(previous_secret_lines()) == 1

    bridge.clock.now += 1
    bridge.post_listener(listener_body(id="ev-4"), secret=PREVIOUS)
    assert len(previous_secret_lines()) == 2
    assert previous_secret_lines()[1].startswith(
        "webhook: 4 more deliveries signed with webhook_secret_previous"
    )
    assert bridge.metrics.previous_secret == 5
    assert all(PREVIOUS not in r.getMessage() for r in caplog.records)


def test_the_service_shows_previous_secret_deliveries_on_its_metrics(
    tmp_path: Path, tines_fake: TinesFake
) -> None:
    """The app `jit-bridge run` serves, with both secrets set: deliveries signed with either
    are queued, a third secret is refused, and /metrics counts the old secret's alone."""
    mapping = tmp_path / "mapping.json"
    mapping.write_text(
        json.dumps(
            {"mappings": [{"group_name": "/Ops", "team_name": "Ops", "role_name": "EDITOR"}]}
        ),
        encoding="utf-8",
    )
    settings = Settings(
        mode="enhanced",
        mapping_file=mapping,
        database_url=f"sqlite:///{tmp_path / 'state.db'}",
        tines_url=tines_fake.url,
        tines_api_key=tines_fake.api_key,
        # Never asked: no worker runs, and the webhook does not read Keycloak.
        keycloak_url="http://127.0.0.1:9",
        keycloak_realm="demo",
        keycloak_client_id="jit-bridge",
        keycloak_client_secret="unused",
        webhook_secret=SECRET,
        webhook_secret_previous=PREVIOUS,
    )
    service = Service.build(settings)
    client = TestClient(create_app(service.context))

    def deliver(event_id: str, secret: str) -> int:
        body = json.dumps(listener_body(id=event_id, user_id=f"user-{event_id}")).encode()
        signature = sign_jit_bridge(body, secret, int(time.time()))
        headers = {"Content-Type": "application/json", "X-JIT-Bridge-Signature": signature}
        return client.post(WEBHOOK_PATH, content=body, headers=headers).status_code

    def previous_secret_total() -> float:
        families = text_string_to_metric_families(client.get("/metrics").text)
        wanted = [f for f in families if f.name == "jit_bridge_webhook_previous_secret"]
        assert len(wanted) == 1
        return sum(sample.value for sample in wanted[0].samples)

    try:
        assert previous_secret_total() == 0
        assert [deliver("a", PREVIOUS), deliver("b", PREVIOUS), deliver("c", SECRET)] == [202] * 3
        assert deliver("d", "third-secret") == 401
        assert previous_secret_total() == 2
        # The sender has switched: only new-secret deliveries, and the counter stands still.
        assert [deliver("e", SECRET), deliver("f", SECRET)] == [202, 202]
        assert previous_secret_total() == 2
        assert service.store.queue_depth() == 5
    finally:
        service.stop()


def test_a_replayed_request_is_refused_after_the_tolerance(bridge: Bridge) -> None:
    body = json.dumps(listener_body()).encode()
    headers = {"X-JIT-Bridge-Signature": sign_jit_bridge(body, SECRET, NOW)}
    assert bridge.post_raw(body, headers).status_code == 202

    bridge.clock.now = NOW + 301
    replay = bridge.post_raw(body, headers)

    assert replay.status_code == 401
    assert "300 s" in replay.json()["error"]
    assert len(bridge.queue.calls) == 1


def test_a_phasetwo_body_under_the_listener_header_is_refused_as_malformed(bridge: Bridge) -> None:
    body = json.dumps({"id": "x", "time": 1, "type": "access.LOGIN"}).encode()

    response = bridge.post_raw(body, {"X-JIT-Bridge-Signature": sign_jit_bridge(body, SECRET, NOW)})

    assert response.status_code == 400
    assert "kind: is required" in response.json()["error"]


@pytest.mark.parametrize("body", [b"{not json", b"", b"\xff\xfe\x00", b"[" * 100_000])
def test_signed_bad_json_is_400(bridge: Bridge, body: bytes) -> None:
    response = bridge.post_raw(body, {"X-JIT-Bridge-Signature": sign_jit_bridge(body, SECRET, NOW)})

    assert response.status_code == 400
    assert "JSON" in response.json()["error"]
    assert bridge.queue.calls == []


@pytest.mark.parametrize(
    ("event", "field_name"),
    [
        (listener_body(time="yesterday"), "time"),
        (listener_body(kind="robot"), "kind"),
        (listener_body(user_id=None), "user_id"),
        (listener_admin_body("USER", "UPDATE", "users//x"), "resource_path"),
        (listener_admin_body("GROUP_MEMBERSHIP", "CREATE", f"groups/{GROUP_ID}"), "resource_path"),
    ],
)
def test_an_invalid_event_is_400_naming_the_field(
    bridge: Bridge, event: dict[str, Any], field_name: str
) -> None:
    response = bridge.post_listener(event)

    assert response.status_code == 400
    assert f"{field_name}: " in response.json()["error"]
    assert bridge.queue.calls == []


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded", ""])
def test_a_body_that_is_not_json_is_415(bridge: Bridge, content_type: str) -> None:
    body = json.dumps(listener_body()).encode()
    headers = {"X-JIT-Bridge-Signature": sign_jit_bridge(body, SECRET, NOW)}

    response = bridge.post_raw(body, headers, content_type=content_type)

    assert response.status_code == 415
    assert bridge.queue.calls == []


def test_json_with_a_charset_parameter_is_accepted(bridge: Bridge) -> None:
    body = json.dumps(listener_body()).encode()
    headers = {"X-JIT-Bridge-Signature": sign_jit_bridge(body, SECRET, NOW)}

    response = bridge.post_raw(body, headers, content_type="Application/JSON; charset=utf-8")

    assert response.status_code == 202


def test_an_oversized_body_is_413(bridge: Bridge) -> None:
    body = b'{"pad":"' + b"x" * MAX_BODY_BYTES + b'"}'
    headers = {"X-JIT-Bridge-Signature": sign_jit_bridge(body, SECRET, NOW)}

    response = bridge.post_raw(body, headers)

    assert response.status_code == 413
    assert bridge.metrics.counts == {"too_large": 1}


def test_a_body_of_exactly_the_limit_is_read(bridge: Bridge) -> None:
    prefix = json.dumps(listener_body())[:-1].encode() + b',"pad":"'
    body = prefix + b"x" * (MAX_BODY_BYTES - len(prefix) - 2) + b'"}'
    assert len(body) == MAX_BODY_BYTES

    response = bridge.post_raw(body, {"X-JIT-Bridge-Signature": sign_jit_bridge(body, SECRET, NOW)})

    assert response.status_code == 202


def test_an_oversized_chunked_body_without_content_length_is_413(bridge: Bridge) -> None:
    def chunks() -> Iterator[bytes]:
        for _ in range(40):
            yield b" " * 16_384

    response = bridge.post_raw(chunks(), {"X-JIT-Bridge-Signature": f"t={NOW},v1={'0' * 64}"})

    assert response.status_code == 413


def test_a_lying_sender_is_cut_off_near_the_limit(bridge: Bridge) -> None:
    """Content-Length says 10 bytes, the stream never ends: the handler stops reading soon
    after 256 KiB instead of buffering everything."""
    chunk = b" " * 65_536
    delivered = 0
    sent: list[MutableMapping[str, Any]] = []

    async def receive() -> dict[str, Any]:
        nonlocal delivered
        delivered += len(chunk)
        return {"type": "http.request", "body": chunk, "more_body": delivered < 50_000_000}

    async def send(message: MutableMapping[str, Any]) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": WEBHOOK_PATH,
        "raw_path": WEBHOOK_PATH.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [(b"content-type", b"application/json"), (b"content-length", b"10")],
        "client": ("127.0.0.1", 1),
        "server": ("127.0.0.1", 80),
    }

    asyncio.run(bridge.app(scope, receive, send))

    assert sent[0]["status"] == 413
    assert delivered <= MAX_BODY_BYTES + len(chunk)
    assert bridge.queue.calls == []


def test_a_content_length_that_is_not_a_number_is_400(bridge: Bridge) -> None:
    body = json.dumps(listener_body()).encode()
    headers = {
        "X-JIT-Bridge-Signature": sign_jit_bridge(body, SECRET, NOW),
        "Content-Length": "12abc",
    }

    response = bridge.post_raw(body, headers)

    assert response.status_code == 400


def test_a_failing_queue_is_503_and_never_202(bridge: Bridge) -> None:
    bridge.queue.fail = True

    response = bridge.post_listener(listener_body())

    assert response.status_code == 503
    assert "queued" not in response.json()
    assert response.headers["Retry-After"] == "5"
    assert bridge.queue.entries == {}
    assert bridge.metrics.counts == {"unavailable": 1}


def test_the_sender_retry_after_a_queue_failure_is_queued(bridge: Bridge) -> None:
    bridge.queue.fail = True
    bridge.post_listener(listener_body())
    bridge.queue.fail = False

    response = bridge.post_listener(listener_body())

    assert response.json() == {"queued": 1, "merged": 0}


def test_the_router_refuses_to_start_without_a_secret() -> None:
    with pytest.raises(ValueError, match="webhook_secret"):
        webhook_router(FakeQueue(), secret="", mode_provider=lambda: "jit")

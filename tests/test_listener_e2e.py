"""The Keycloak event listener path end to end (docs/design.md: Triggers, Listener, Webhook and
admin API), with event-store polling off.

The session Keycloak runs the project's listener jar and posts every forwarded event to
127.0.0.1:<keycloak.listener_port>/webhooks/keycloak. Each test runs `jit-bridge run` on that
port with `poll_events = false` and `reconcile_interval = 0` (unless the test is about the
schedule), so a change that reaches the Tines fake can only have come through the listener;
the audit record's `trigger` names the Keycloak event id to prove it.

Fixture order matters: `bridge_service` is requested before `keycloak_sandbox`, so the
sandbox is cleaned up while the bridge still listens and the listener is not left retrying
the clean-up events into the next test.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import socket
import time
import uuid
from typing import Any

import httpx

from bridge.model import Member, TargetState, TargetUser, Team
from tests.fixtures.bridge import BridgeFactory, BridgeProcess
from tests.fixtures.keycloak import KeycloakSandbox, TestKeycloak
from tests.tines_fake import TinesFake

TEAM = "Analytics"
ROLE = "EDITOR"
PASSWORD = "listener-e2e-password"
#: Generous: the listener may be backing off (up to 8 s with max-attempts=6) when a test starts.
DELIVERY_TIMEOUT = 60.0


# -- helpers -----------------------------------------------------------------------------


def listener_bridge(
    start: BridgeFactory,
    keycloak: TestKeycloak,
    tines: TinesFake,
    group_path: str,
    **settings: Any,
) -> BridgeProcess:
    """The bridge on the listener's port, with only the sandbox group mapped."""
    assert keycloak.listener_port is not None, "the session Keycloak must run the listener"
    tines.state.add_team(TEAM)
    mapping = {"mappings": [{"group_name": group_path, "team_name": TEAM, "role_name": ROLE}]}
    options: dict[str, Any] = {"poll_events": False, "reconcile_interval": 0, **settings}
    return start(
        mapping=mapping, tines=tines, keycloak=keycloak, port=keycloak.listener_port, **options
    )


def team_role(tines: TinesFake, email: str) -> str | None:
    """The user's role in TEAM in the fake, or None (no such user, or not a member)."""
    state = tines.state.export()
    user = next((u for u in state.users if u.email.lower() == email), None)
    team = next((t for t in state.teams if t.name == TEAM), None)
    if user is None or team is None:
        return None
    return next((m.role for m in team.members if m.user_id == user.id), None)


def preload_member(tines: TinesFake, email: str) -> None:
    """The fake tenant already has `email` in TEAM with ROLE (an earlier login gave it)."""
    tines.state.load(
        TargetState(
            users=[TargetUser(id="1", email=email, first_name="Test", last_name="User")],
            teams=[Team(id="1", name=TEAM, members=[Member(user_id="1", role=ROLE)])],
        )
    )


def audit_triggers(bridge: BridgeProcess, email: str, op: str) -> set[str]:
    """Every cause named in the audit records of `op` for `email`."""
    answer = bridge.admin("GET", "audit", params={"user": email})
    answer.raise_for_status()
    return {
        cause
        for record in answer.json()
        if record["op"] == op
        for cause in record["trigger"].split(",")
    }


def login_event_ids(keycloak: TestKeycloak, user_id: str) -> set[str]:
    """Ids of the LOGIN events Keycloak stored for the user (the listener sends the same id)."""
    events = keycloak.admin.get_events({"user": user_id, "type": "LOGIN", "max": 100})
    return {str(e["id"]) for e in events}


def membership_event_ids(keycloak: TestKeycloak, user_id: str, operation: str) -> set[str]:
    events = keycloak.admin.get_admin_events(
        {"resourceTypes": "GROUP_MEMBERSHIP", "operationTypes": operation, "max": 100}
    )
    return {str(e["id"]) for e in events if user_id in str(e.get("resourcePath", ""))}


def nothing_listens(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) != 0


def signed(body: bytes, secret: str, t: int) -> dict[str, str]:
    mac = hmac.new(secret.encode(), f"{t}.".encode() + body, hashlib.sha256).hexdigest()
    return {"Content-Type": "application/json", "X-JIT-Bridge-Signature": f"t={t},v1={mac}"}


def login_event(keycloak: TestKeycloak, user_id: str) -> tuple[str, bytes]:
    """A listener body (docs/design.md, Listener) for a LOGIN of `user_id`; returns (event id, raw
    body)."""
    event_id = str(uuid.uuid4())
    body = {
        "id": event_id,
        "time": int(time.time() * 1000),
        "realm": keycloak.realm,
        "kind": "user",
        "type": "LOGIN",
        "user_id": user_id,
        "operation": None,
        "resource_type": None,
        "resource_path": None,
    }
    return event_id, json.dumps(body).encode()


def post_webhook(bridge: BridgeProcess, body: bytes, headers: dict[str, str]) -> int:
    return httpx.post(
        f"{bridge.url}/webhooks/keycloak", content=body, headers=headers, timeout=10
    ).status_code


# -- tests -------------------------------------------------------------------------------


def test_login_of_a_new_user_reaches_the_target_through_the_listener(
    bridge_service: BridgeFactory,
    tines_fake: TinesFake,
    keycloak: TestKeycloak,
    keycloak_sandbox: KeycloakSandbox,
) -> None:
    group = keycloak_sandbox.create_group("/Analysts")
    bridge = listener_bridge(bridge_service, keycloak, tines_fake, group)
    username, user_id = keycloak_sandbox.create_user("newcomer", password=PASSWORD, groups=(group,))
    email = f"{username}@example.com"

    keycloak.login(username, PASSWORD)

    bridge.wait_until(
        lambda: team_role(tines_fake, email) == ROLE, DELIVERY_TIMEOUT, f"{email} in {TEAM}"
    )
    created = bridge.wait_until(
        lambda: audit_triggers(bridge, email, "create_user"), what="create_user audit"
    )
    assert created & login_event_ids(keycloak, user_id), (
        f"the audit trigger {created} names no LOGIN event of {username}"
    )
    # The listener speaks plain HTTP/1.1: no h2c upgrade for the server to warn about.
    assert "Unsupported upgrade request" not in bridge.log()
    assert " WARNING " not in bridge.log()


def test_enhanced_group_removal_syncs_without_a_login(
    bridge_service: BridgeFactory,
    tines_fake: TinesFake,
    keycloak: TestKeycloak,
    keycloak_sandbox: KeycloakSandbox,
) -> None:
    group = keycloak_sandbox.create_group("/Analysts")
    bridge = listener_bridge(bridge_service, keycloak, tines_fake, group, mode="enhanced")
    username, user_id = keycloak_sandbox.create_user("leaver", groups=(group,))
    email = f"{username}@example.com"
    preload_member(tines_fake, email)

    keycloak.admin.group_user_remove(user_id, keycloak.group_id(group))

    bridge.wait_until(
        lambda: team_role(tines_fake, email) is None, DELIVERY_TIMEOUT, f"{email} out of {TEAM}"
    )
    removed = bridge.wait_until(
        lambda: audit_triggers(bridge, email, "remove_membership"), what="removal audit"
    )
    assert removed & membership_event_ids(keycloak, user_id, "DELETE")
    assert login_event_ids(keycloak, user_id) == set()


def test_bad_signature_and_stale_timestamp_are_refused_and_queue_nothing(
    bridge_service: BridgeFactory,
    tines_fake: TinesFake,
    keycloak: TestKeycloak,
    keycloak_sandbox: KeycloakSandbox,
) -> None:
    group = keycloak_sandbox.create_group("/Analysts")
    bridge = listener_bridge(bridge_service, keycloak, tines_fake, group)
    username, user_id = keycloak_sandbox.create_user("forged", groups=(group,))
    email = f"{username}@example.com"
    secret = keycloak.listener_secret
    assert secret is not None
    depth_before = bridge.status()["queue_depth"]
    event_id, body = login_event(keycloak, user_id)
    now = int(time.time())

    wrong_secret = post_webhook(bridge, body, signed(body, "not-the-listener-secret", now))
    too_old = post_webhook(bridge, body, signed(body, secret, now - 301))

    assert (wrong_secret, too_old) == (401, 401)
    assert bridge.status()["queue_depth"] == depth_before
    assert tines_fake.applied_writes() == []
    # The very same event, correctly signed and fresh, is accepted and acted on: the two
    # refusals were about the signature alone.
    assert post_webhook(bridge, body, signed(body, secret, int(time.time()))) == 202
    bridge.wait_until(lambda: team_role(tines_fake, email) == ROLE, what=f"{email} in {TEAM}")
    assert audit_triggers(bridge, email, "create_user") == {event_id}


def test_login_while_the_bridge_is_down_is_delivered_by_the_listener_retries(
    bridge_service: BridgeFactory,
    tines_fake: TinesFake,
    keycloak: TestKeycloak,
    keycloak_sandbox: KeycloakSandbox,
) -> None:
    group = keycloak_sandbox.create_group("/Analysts")
    bridge = listener_bridge(bridge_service, keycloak, tines_fake, group)
    username, user_id = keycloak_sandbox.create_user("patient", password=PASSWORD, groups=(group,))
    email = f"{username}@example.com"
    bridge.stop()
    assert keycloak.listener_port is not None
    assert nothing_listens(keycloak.listener_port)

    token = keycloak.login(username, PASSWORD)
    assert token.get("access_token"), "the login must succeed while the bridge is down"

    # Back within the retry window (attempts about 0.5, 1.5, 3.5, 7.5, 15.5 s after the
    # login): one of the listener's retries finds it.
    bridge.start()
    bridge.wait_until(
        lambda: team_role(tines_fake, email) == ROLE, DELIVERY_TIMEOUT, f"{email} in {TEAM}"
    )
    assert audit_triggers(bridge, email, "create_user") & login_event_ids(keycloak, user_id)


def test_change_whose_event_is_lost_is_healed_by_the_scheduled_reconcile(
    bridge_service: BridgeFactory,
    tines_fake: TinesFake,
    keycloak: TestKeycloak,
    keycloak_sandbox: KeycloakSandbox,
) -> None:
    """A group removal made while the bridge is down, whose listener event never arrives.

    Waiting for the listener to give up is not bounded in a shared session: its one delivery
    thread may still be retrying earlier events, which delays ours by up to 15.5 s each. So the
    loss is made certain instead: the bridge comes back with a rotated webhook secret, and any
    delivery the listener still attempts is refused with 401, which it never retries (the same
    end state as "gave up after max-attempts"). Only the schedule can then heal the user.
    """
    group = keycloak_sandbox.create_group("/Analysts")
    bridge = listener_bridge(
        bridge_service, keycloak, tines_fake, group, mode="enhanced", reconcile_interval=2
    )
    username, user_id = keycloak_sandbox.create_user("forgotten", groups=(group,))
    email = f"{username}@example.com"
    preload_member(tines_fake, email)
    bridge.stop()
    assert keycloak.listener_port is not None
    assert nothing_listens(keycloak.listener_port)

    keycloak.admin.group_user_remove(user_id, keycloak.group_id(group))
    bridge.settings["JIT_BRIDGE_WEBHOOK_SECRET"] = "rotated-" + uuid.uuid4().hex
    bridge.start()

    bridge.wait_until(
        lambda: team_role(tines_fake, email) is None, DELIVERY_TIMEOUT, f"{email} out of {TEAM}"
    )
    removed = audit_triggers(bridge, email, "remove_membership")
    assert removed == {"queue:reconcile"}
    assert not removed & membership_event_ids(keycloak, user_id, "DELETE")

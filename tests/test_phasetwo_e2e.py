"""Phase Two's keycloak-events webhooks, from the real extension, end to end.

The session's second Keycloak (tests/fixtures/phasetwo.py) runs the pinned keycloak-events jar
on Java 21+. Each test points a webhook of the extension at `jit-bridge run` (event-store
polling and the schedule off, so whatever reaches the Tines fake came through Phase Two's
deliveries) and removes it afterwards.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from bridge.model import Member, TargetState, TargetUser, Team
from tests.fixtures.bridge import BridgeFactory, BridgeProcess, free_port
from tests.fixtures.keycloak import KeycloakSandbox
from tests.fixtures.phasetwo import PhaseTwoKeycloak
from tests.tines_fake import TinesFake

TEAM = "Analytics"
ROLE = "EDITOR"
PASSWORD = "phase-two-password"
SECRET = "phase-two-shared-secret"
#: What SECRET is rotated to (docs/operations.md, Rotating secrets).
NEW_SECRET = "phase-two-rotated-secret"
#: Phase Two delivers after Keycloak's commit, within a second; its retries back off 5-fold from
#: 0.5 s (0.5, 2.5, 12.5, 62.5 s), so a healed delivery can take a minute and more.
DELIVERY = 60.0
RETRY = 150.0


@pytest.fixture
def sandbox(phasetwo_keycloak: PhaseTwoKeycloak) -> Iterator[KeycloakSandbox]:
    box = KeycloakSandbox(phasetwo_keycloak.keycloak)
    try:
        yield box
    finally:
        box.cleanup()


def start_bridge(
    start: BridgeFactory,
    p2: PhaseTwoKeycloak,
    tines: TinesFake,
    group: str,
    *,
    bridge_secret: str = SECRET,
    webhook_secret: str = SECRET,
    realm: str | None = None,
    event_types: tuple[str, ...] = ("*",),
    **settings: str,
) -> tuple[BridgeProcess, str]:
    """The bridge (with `settings` besides), and a webhook of `realm` (default: the
    bridge's) to it for `event_types`; (bridge, hook id)."""
    tines.state.add_team(TEAM)
    port = free_port()
    bridge = start(
        mapping={"mappings": [{"group_name": group, "team_name": TEAM, "role_name": ROLE}]},
        tines=tines,
        keycloak=p2.keycloak,
        port=port,
        webhook_secret=bridge_secret,
        mode="enhanced",
        poll_events=False,
        reconcile_interval=0,
        **settings,
    )
    url = f"http://127.0.0.1:{port}/webhooks/keycloak"
    return bridge, p2.webhook(realm or p2.keycloak.realm, url, webhook_secret, event_types)


def team_role(tines: TinesFake, email: str) -> str | None:
    state = tines.state.export()
    user = next((u for u in state.users if u.email.lower() == email), None)
    team = next((t for t in state.teams if t.name == TEAM), None)
    if user is None or team is None:
        return None
    return next((m.role for m in team.members if m.user_id == user.id), None)


def webhook_results(bridge: BridgeProcess) -> dict[str, float]:
    """`jit_bridge_webhook_requests_total` by result, from /metrics."""
    text = httpx.get(f"{bridge.url}/metrics", timeout=5).text
    return {
        result: float(value)
        for result, value in re.findall(
            r'^jit_bridge_webhook_requests_total\{result="([^"]+)"\} (\S+)$', text, re.MULTILINE
        )
    }


def previous_secret_total(bridge: BridgeProcess) -> float:
    """`jit_bridge_webhook_previous_secret_total`, from /metrics."""
    text = httpx.get(f"{bridge.url}/metrics", timeout=5).text
    found = re.search(r"^jit_bridge_webhook_previous_secret_total (\S+)$", text, re.MULTILINE)
    assert found, "no jit_bridge_webhook_previous_secret_total on /metrics"
    return float(found.group(1))


def audited(bridge: BridgeProcess, email: str, op: str) -> list[dict[str, object]]:
    answer = bridge.admin("GET", "audit", params={"user": email})
    answer.raise_for_status()
    return [r for r in answer.json() if r["op"] == op and r.get("outcome") != "planned"]


def test_login_group_changes_and_deletion_reach_the_target_through_phase_two(
    bridge_service: BridgeFactory,
    tines_fake: TinesFake,
    phasetwo_keycloak: PhaseTwoKeycloak,
    sandbox: KeycloakSandbox,
) -> None:
    p2 = phasetwo_keycloak
    group = sandbox.create_group("/Analysts")
    bridge, hook = start_bridge(bridge_service, p2, tines_fake, group)
    try:
        username, user_id = sandbox.create_user("p2user", password=PASSWORD, groups=(group,))
        email = f"{username}@example.com"

        p2.keycloak.login(username, PASSWORD)
        bridge.wait_until(lambda: team_role(tines_fake, email) == ROLE, DELIVERY, "login")

        p2.keycloak.admin.group_user_remove(user_id, p2.keycloak.group_id(group))
        bridge.wait_until(lambda: team_role(tines_fake, email) is None, DELIVERY, "removal")

        p2.keycloak.admin.group_user_add(user_id, p2.keycloak.group_id(group))
        bridge.wait_until(lambda: team_role(tines_fake, email) == ROLE, DELIVERY, "addition")

        p2.keycloak.admin.delete_user(user_id)
        bridge.wait_until(lambda: team_role(tines_fake, email) is None, DELIVERY, "deletion")

        results = webhook_results(bridge)
        assert results.get("signature", 0) == 0, results
        assert results.get("queued", 0) >= 4, results
    finally:
        p2.delete_webhook(p2.keycloak.realm, hook)


def test_a_wrong_secret_is_refused_and_the_retry_after_the_fix_is_processed_once(
    bridge_service: BridgeFactory,
    tines_fake: TinesFake,
    phasetwo_keycloak: PhaseTwoKeycloak,
    sandbox: KeycloakSandbox,
) -> None:
    """The bridge was given a wrong secret: each delivery is refused (401) and changes nothing,
    and Phase Two retries it. Phase Two signs a retry as it signed the first try, and drops a
    delivery whose connection is refused, so the operator fixes the bridge's secret and
    restarts it between two retries; the next retry gets through and is processed once."""
    p2 = phasetwo_keycloak
    group = sandbox.create_group("/Analysts")
    username, _ = sandbox.create_user("retried", password=PASSWORD, groups=(group,))
    email = f"{username}@example.com"
    # The webhook is made after the user and hears only logins, so the login is the only
    # delivery being retried (with every type, the bridge's own CLIENT_LOGINs and their retries
    # add 401s, and the restart can fall on the login's next retry, which is then dropped).
    bridge, hook = start_bridge(
        bridge_service,
        p2,
        tines_fake,
        group,
        bridge_secret="not-" + SECRET,
        event_types=("access.LOGIN",),
    )
    try:
        p2.keycloak.login(username, PASSWORD)
        # Tries at about 0, 0.5, 3 and 15 s; the next comes 30 to 95 s after the fourth.
        bridge.wait_until(
            lambda: webhook_results(bridge).get("signature", 0) >= 4, DELIVERY, "four 401s"
        )
        assert team_role(tines_fake, email) is None
        assert webhook_results(bridge).get("queued", 0) == 0

        bridge.settings["JIT_BRIDGE_WEBHOOK_SECRET"] = SECRET
        bridge.restart()
        bridge.wait_until(lambda: team_role(tines_fake, email) == ROLE, RETRY, "the retry")
        assert len(audited(bridge, email, "create_user")) == 1
        assert len(audited(bridge, email, "add_membership")) == 1
    finally:
        p2.delete_webhook(p2.keycloak.realm, hook)


def test_the_documented_secret_rotation_refuses_no_delivery(
    bridge_service: BridgeFactory,
    tines_fake: TinesFake,
    phasetwo_keycloak: PhaseTwoKeycloak,
    sandbox: KeycloakSandbox,
) -> None:
    """docs/operations.md, Rotating secrets, with the real extension: the bridge holds the new
    secret and the old one as webhook_secret_previous while the webhook still signs with the
    old one; the webhook is switched; the old secret is removed. Every login gets through
    with no 401, and jit_bridge_webhook_previous_secret_total counts the old secret's only."""
    p2 = phasetwo_keycloak
    realm = p2.keycloak.realm
    group = sandbox.create_group("/Analysts")
    users = [
        sandbox.create_user(name, password=PASSWORD, groups=(group,))[0]
        for name in ("rotation-old", "rotation-new", "rotation-done")
    ]

    def provisioned(username: str, what: str) -> None:
        p2.keycloak.login(username, PASSWORD)
        email = f"{username}@example.com"
        bridge.wait_until(lambda: team_role(tines_fake, email) == ROLE, DELIVERY, what)

    # Step 1 done: the bridge has both secrets, the webhook (logins only: no other delivery
    # to count) still signs with the old one.
    bridge, hook = start_bridge(
        bridge_service,
        p2,
        tines_fake,
        group,
        bridge_secret=NEW_SECRET,
        webhook_secret=SECRET,
        event_types=("access.LOGIN",),
        webhook_secret_previous=SECRET,
    )
    try:
        provisioned(users[0], "a login signed with the old secret")
        assert previous_secret_total(bridge) == 1

        # Step 2: the webhook signs with the new secret; step 3: the counter stands still.
        listed = next(h for h in p2.call("GET", f"realms/{realm}/webhooks") if h["id"] == hook)
        p2.call("PUT", f"realms/{realm}/webhooks/{hook}", {**listed, "secret": NEW_SECRET})
        provisioned(users[1], "a login signed with the new secret")
        assert previous_secret_total(bridge) == 1
        assert webhook_results(bridge).get("signature", 0) == 0

        # Step 4: the old secret removed, the bridge restarted.
        del bridge.settings["JIT_BRIDGE_WEBHOOK_SECRET_PREVIOUS"]
        bridge.restart()
        provisioned(users[2], "a login after the old secret was removed")
        assert previous_secret_total(bridge) == 0
        assert webhook_results(bridge).get("signature", 0) == 0
    finally:
        p2.delete_webhook(realm, hook)


def test_the_event_store_poller_works_beside_the_extension(
    bridge_service: BridgeFactory,
    tines_fake: TinesFake,
    phasetwo_keycloak: PhaseTwoKeycloak,
    sandbox: KeycloakSandbox,
) -> None:
    """With --spi-events-store--provider=jpa the extension's second events store does not
    stop Keycloak's: a bridge that only polls sees the login."""
    p2 = phasetwo_keycloak
    group = sandbox.create_group("/Analysts")
    username, _ = sandbox.create_user("polled", password=PASSWORD, groups=(group,))
    email = f"{username}@example.com"
    tines_fake.state.add_team(TEAM)
    bridge = bridge_service(
        mapping={"mappings": [{"group_name": group, "team_name": TEAM, "role_name": ROLE}]},
        tines=tines_fake,
        keycloak=p2.keycloak,
        mode="enhanced",
        poll_events=True,
        poll_interval=1,
        reconcile_interval=0,
    )
    p2.keycloak.login(username, PASSWORD)
    bridge.wait_until(lambda: team_role(tines_fake, email) == ROLE, DELIVERY, "a polled login")
    assert bridge.admin("GET", "status").json()["failing"] == {}
    assert webhook_results(bridge) == {}


def test_an_event_from_another_realm_changes_nothing(
    bridge_service: BridgeFactory,
    tines_fake: TinesFake,
    phasetwo_keycloak: PhaseTwoKeycloak,
) -> None:
    """`p2other` has its own alice@example.com; its signed events reach the bridge (the same
    secret) and must be ignored: the bridge's realm alice keeps her access."""
    p2 = phasetwo_keycloak
    email = "alice@example.com"
    tines_fake.state.load(
        TargetState(
            users=[TargetUser(id="1", email=email, first_name="Alice", last_name="Ng")],
            teams=[Team(id="1", name=TEAM, members=[Member(user_id="1", role=ROLE)])],
        )
    )
    bridge, hook = start_bridge(bridge_service, p2, tines_fake, "/Managers", realm=p2.other_realm)
    try:
        admin = p2.keycloak.admin
        admin.change_current_realm(p2.other_realm)
        try:
            other_alice = admin.get_user_id("alice")
            group = admin.get_group_by_path("/Analysts")["id"]
            admin.group_user_add(other_alice, group)
            admin.group_user_remove(other_alice, group)
            admin.update_user(other_alice, {"email": "alice.other@example.com"})
        finally:
            admin.change_current_realm(p2.keycloak.realm)

        bridge.wait_until(
            lambda: webhook_results(bridge).get("ignored", 0) >= 3, DELIVERY, "ignored events"
        )
        results = webhook_results(bridge)
        assert results.get("queued", 0) == 0, results
        assert team_role(tines_fake, email) == ROLE
        assert bridge.admin("GET", "status").json()["queue_depth"] == 0
    finally:
        p2.delete_webhook(p2.other_realm, hook)


@pytest.mark.slow
@pytest.mark.bridge_process  # `jit-bridge run`, started here from what init wrote
def test_init_sets_up_phase_twos_webhook_and_undo_takes_it_back(
    phasetwo_keycloak: PhaseTwoKeycloak, tmp_path: Path, tines_fake: TinesFake
) -> None:
    """`jit-bridge init --events phasetwo` (the setup docs/phase-two.md leads with) on a realm
    with nothing configured: the webhook, the extension's listener, a provisioned login
    through them, and `--undo` leaves the realm as it was."""
    from tests.test_init import (
        ADMIN,
        ADMIN_PASSWORD,
        MAPPING,
        FreshRealm,
        InitFiles,
        add_user,
        changed,
        grant,
        init_args,
        jit_bridge,
        tines_role,
    )

    keycloak = phasetwo_keycloak.keycloak
    tines_fake.state.add_team("Analytics")
    name = "p2init-" + uuid.uuid4().hex[:8]
    keycloak.admin.create_realm({"realm": name, "enabled": True}, skip_exists=False)
    realm = FreshRealm(keycloak, name)
    try:
        realm.raw(
            "POST",
            "/clients",
            {
                "clientId": "login",
                "publicClient": True,
                "directAccessGrantsEnabled": True,
                "standardFlowEnabled": False,
            },
        )
        realm.raw("POST", "/groups", {"name": "Analysts"})
        add_user(realm, ADMIN, [], password=ADMIN_PASSWORD)
        grant(realm, ADMIN, ["realm-admin"])
        email = add_user(realm, "ann", ["/Analysts"])
        before = realm.state()
        files = InitFiles(
            tmp_path, tmp_path / "mapping.json", tmp_path / "admin-password", tmp_path / "key"
        )
        files.mapping.write_text(json.dumps(MAPPING), encoding="utf-8")
        files.admin_password.write_text(ADMIN_PASSWORD, encoding="utf-8")
        files.tines_key.write_text(tines_fake.api_key, encoding="utf-8")
        port = free_port()
        url = f"http://127.0.0.1:{port}/webhooks/keycloak"
        args = init_args(
            realm,
            files,
            tines_fake,
            "--listen",
            f"127.0.0.1:{port}",
            "--events",
            "phasetwo",
            "--webhook-url",
            url,
            "--mode",
            "enhanced",
        )
        done = jit_bridge(files.workdir, *args)
        assert done.returncode == 0, done.stdout + done.stderr
        hooks = phasetwo_keycloak.call("GET", f"realms/{name}/webhooks")
        assert [h["url"] for h in hooks] == [url]
        listeners = realm.raw("GET", "/events/config")["eventsListeners"]
        assert "ext-event-webhook" in listeners
        again = jit_bridge(files.workdir, *args)
        assert again.returncode == 0, again.stdout + again.stderr
        assert "nothing to change" in again.stdout

        bridge = BridgeProcess(
            settings={"JIT_BRIDGE_SETTINGS": str(files.settings_dir / "bridge.toml")},
            workdir=files.workdir,
            port=port,
        )
        try:
            bridge.start()
            realm.login("ann")
            bridge.wait_until(
                lambda: tines_role(tines_fake, email, "Analytics") == "EDITOR",
                DELIVERY,
                "ann provisioned through Phase Two's webhook",
            )
            assert webhook_results(bridge).get("queued", 0) >= 1
        finally:
            bridge.kill()

        undone = jit_bridge(
            files.workdir,
            "init",
            "--undo",
            "--non-interactive",
            "--admin-password-file",
            str(files.admin_password),
        )
        assert undone.returncode == 0, undone.stdout + undone.stderr
        assert phasetwo_keycloak.call("GET", f"realms/{name}/webhooks") == []
        assert changed(before, realm.state()) == {}
    finally:
        keycloak.admin.connection.raw_delete(f"admin/realms/{name}")

"""`jit-bridge run` end to end: the real service process, the real Keycloak with the project's
event listener, and the Tines fake as the target.

Each test asserts what an operator would see: the users and memberships in the target, the
audit log (`jit-bridge audit`) and the admin API. Tests that want the listener's deliveries
run the bridge on `keycloak.listener_port`; they run one after another.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import httpx

from bridge.model import Member, TargetState, TargetUser, Team
from tests.fixtures.bridge import BridgeFactory, BridgeProcess, free_port
from tests.fixtures.keycloak import KeycloakSandbox, TestKeycloak
from tests.tines_fake import TinesFake

TEAMS = ("Analytics", "Incident Response")


def sandbox_mapping(analysts: str, managers: str | None = None) -> dict[str, Any]:
    """Only sandbox groups are mapped, so events for the realm's seeded users (from other
    tests) can never grant anyone a membership here."""
    entries = [{"group_name": analysts, "team_name": "Analytics", "role_name": "EDITOR"}]
    if managers:
        entries += [
            {"group_name": managers, "team_name": "Analytics", "role_name": "TEAM_ADMIN"},
            {"group_name": managers, "team_name": "Incident Response", "role_name": "EDITOR"},
        ]
    return {"mappings": entries}


def tenant(tines: TinesFake) -> TinesFake:
    for team in TEAMS:
        tines.state.add_team(team)
    return tines


def memberships(tines: TinesFake, email: str) -> dict[str, str] | None:
    """team → role for the target user with `email`; None when the user does not exist."""
    state = tines.state.export()
    user = next((u for u in state.users if u.email.lower() == email.lower()), None)
    if user is None:
        return None
    return {t.name: m.role for t in state.teams for m in t.members if m.user_id == user.id}


def has_access(tines: TinesFake, email: str, wanted: dict[str, str]) -> Callable[[], bool]:
    return lambda: memberships(tines, email) == wanted


def metric(bridge: BridgeProcess, name: str, **labels: str) -> float:
    """The value of one series on /metrics (0 when it is absent)."""
    wanted = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    pattern = re.compile(rf"^{re.escape(name)}(\{{(?P<labels>[^}}]*)\}})? (?P<value>\S+)$")
    total = 0.0
    for line in bridge.get("/metrics").text.splitlines():
        found = pattern.match(line)
        if found and _same_labels(found.group("labels") or "", wanted):
            total += float(found.group("value"))
    return total


def _same_labels(given: str, wanted: str) -> bool:
    return all(part in given.split(",") for part in wanted.split(",") if part)


def runs_done(bridge: BridgeProcess) -> float:
    return metric(bridge, "jit_bridge_runs_total")


def login(keycloak: TestKeycloak, username: str) -> None:
    keycloak.login(username, f"{username}-pw")


def new_user(sandbox: KeycloakSandbox, base: str, *groups: str) -> tuple[str, str]:
    """A sandbox user in `groups`, with a password; returns (username, email)."""
    username = sandbox.name(base)
    sandbox.create_user(
        base,
        email=f"{username}@example.com",
        first_name=base.capitalize(),
        last_name="Tester",
        password=f"{username}-pw",
        groups=groups,
    )
    return username, f"{username}@example.com"


def applied(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [r for r in records if r["outcome"] == "applied"]


def ops_of(records: list[dict[str, Any]]) -> list[tuple[str, str | None, str]]:
    return sorted((r["op"], r["team"], r["outcome"]) for r in records)


def admin_users_reads(fake: TinesFake) -> list[str]:
    """GETs on admin/users other than readiness probes (`per_page=1`)."""
    return [
        r.path
        for r in fake.requests
        if r.method == "GET" and "/admin/users" in r.path and r.query.get("per_page") != "1"
    ]


# ------------------------------------------------------------------------------------------
# 1. jit mode through the listener webhook


def test_jit_login_creates_user_with_team_and_role_once(
    keycloak: TestKeycloak,
    keycloak_sandbox: KeycloakSandbox,
    tines_fake: TinesFake,
    bridge_service: BridgeFactory,
) -> None:
    # The bridge listens before the sandbox is made, so the listener never has to retry.
    analysts = f"/{keycloak_sandbox.prefix}/Analysts"
    bridge = bridge_service(
        mapping=sandbox_mapping(analysts),
        tines=tenant(tines_fake),
        keycloak=keycloak,
        port=keycloak.listener_port,
        mode="jit",
    )
    keycloak_sandbox.create_group("/Analysts")
    username, email = new_user(keycloak_sandbox, "jit", analysts)
    # At start the bridge lists Tines' users once, so first logins need not look them up.
    bridge.wait_until(lambda: admin_users_reads(tines_fake), what="the bridge's user listing")
    tines_fake.clear_log()

    login(keycloak, username)

    assert bridge.wait_until(lambda: memberships(tines_fake, email), what="the user in Tines") == {
        "Analytics": "EDITOR"
    }
    # One request against admin/users' 500/minute limit: the create.
    assert admin_users_reads(tines_fake) == []
    assert [r.method for r in tines_fake.requests if r.path.endswith("/admin/users")] == ["POST"]
    bridge.wait_until(lambda: len(bridge.audit(email)) == 2, what="two audit records")
    created = bridge.audit(email)
    assert ops_of(created) == [
        ("add_membership", "Analytics", "applied"),
        ("create_user", None, "applied"),
    ]
    # Caused by the listener's event (its id), not by a poll, schedule or the admin API.
    assert all(r["trigger"] and not r["trigger"].startswith("queue:") for r in created)
    assert metric(bridge, "jit_bridge_webhook_requests_total", result="queued") >= 1

    before = runs_done(bridge)
    login(keycloak, username)
    bridge.wait_until(lambda: runs_done(bridge) > before and bridge.idle(), what="second login")

    assert memberships(tines_fake, email) == {"Analytics": "EDITOR"}
    assert ops_of(bridge.audit(email)) == ops_of(created)
    assert bridge.cli_audit(email) == bridge.audit(email)  # what `jit-bridge audit` shows


# ------------------------------------------------------------------------------------------
# 2. enhanced mode through the listener webhook


def test_enhanced_group_removal_syncs_without_login_and_login_resyncs(
    keycloak: TestKeycloak,
    keycloak_sandbox: KeycloakSandbox,
    tines_fake: TinesFake,
    bridge_service: BridgeFactory,
) -> None:
    analysts = f"/{keycloak_sandbox.prefix}/Analysts"
    managers = f"/{keycloak_sandbox.prefix}/Managers"
    drifted_email = f"{keycloak_sandbox.name('drift')}@example.com"
    # `drifted` already exists in Tines, with a team their groups do not grant.
    tines_fake.state.load(
        TargetState(
            users=[TargetUser(id="1", email=drifted_email)],
            teams=[
                Team(id="1", name="Analytics", members=[Member(user_id="1", role="EDITOR")]),
                Team(
                    id="2", name="Incident Response", members=[Member(user_id="1", role="EDITOR")]
                ),
            ],
        )
    )
    bridge = bridge_service(
        mapping=sandbox_mapping(analysts, managers),
        tines=tines_fake,
        keycloak=keycloak,
        port=keycloak.listener_port,
        mode="enhanced",
        # A full reconcile (a late GROUP DELETE from another test's cleanup triggers one)
        # holds every removal, so only the login itself can take the drifted team away.
        max_removals=0,
    )
    keycloak_sandbox.create_group("/Analysts")
    keycloak_sandbox.create_group("/Managers")
    drifted, _ = new_user(keycloak_sandbox, "drift", analysts)
    lead, lead_email = new_user(keycloak_sandbox, "lead", analysts, managers)
    login(keycloak, lead)
    lead_access = {"Analytics": "TEAM_ADMIN", "Incident Response": "EDITOR"}
    bridge.wait_until(lambda: memberships(tines_fake, lead_email) == lead_access, what="lead")

    keycloak.remove_from_group(lead, managers)  # an admin event; nobody logs in

    bridge.wait_until(
        lambda: memberships(tines_fake, lead_email) == {"Analytics": "EDITOR"},
        what="the group removal to reach Tines",
    )
    changes = [r for r in applied(bridge.audit(lead_email)) if r["op"] != "create_user"]
    assert ops_of(changes) == [
        ("add_membership", "Analytics", "applied"),
        ("add_membership", "Incident Response", "applied"),
        ("change_role", "Analytics", "applied"),
        ("remove_membership", "Incident Response", "applied"),
    ]

    # Everything Keycloak sent so far is handled, and nothing took the team away.
    bridge.wait_until(bridge.idle, what="the queue to empty")
    assert memberships(tines_fake, drifted_email) == {
        "Analytics": "EDITOR",
        "Incident Response": "EDITOR",
    }
    assert applied(bridge.audit(drifted_email)) == []

    login(keycloak, drifted)

    bridge.wait_until(
        lambda: memberships(tines_fake, drifted_email) == {"Analytics": "EDITOR"},
        what="the login to re-sync the drifted user",
    )
    assert ops_of(applied(bridge.audit(drifted_email))) == [
        ("remove_membership", "Incident Response", "applied"),
    ]


# ------------------------------------------------------------------------------------------
# 3. no listener: Keycloak's event store is polled


def test_poller_alone_syncs_logins_and_group_removals(
    keycloak: TestKeycloak,
    keycloak_sandbox: KeycloakSandbox,
    tines_fake: TinesFake,
    bridge_service: BridgeFactory,
) -> None:
    analysts = keycloak_sandbox.create_group("/Analysts")
    managers = keycloak_sandbox.create_group("/Managers")
    username, email = new_user(keycloak_sandbox, "polled", analysts, managers)
    listener_port = keycloak.listener_port
    port = free_port()
    while port == listener_port:
        port = free_port()
    bridge = bridge_service(
        mapping=sandbox_mapping(analysts, managers),
        tines=tenant(tines_fake),
        keycloak=keycloak,
        port=port,
        mode="enhanced",
        poll_events=True,
        poll_interval=1,
    )

    login(keycloak, username)
    bridge.wait_until(
        lambda: (
            memberships(tines_fake, email)
            == {"Analytics": "TEAM_ADMIN", "Incident Response": "EDITOR"}
        ),
        what="the polled login to create the user",
    )
    keycloak.remove_from_group(username, managers)
    bridge.wait_until(
        lambda: memberships(tines_fake, email) == {"Analytics": "EDITOR"},
        what="the polled group removal",
    )
    # (Failed once in CI with 0 after both changes had reached the target: the log says how.)
    polled = metric(bridge, "jit_bridge_events_polled_total")
    assert polled >= 2, f"events polled: {polled}\n{bridge.log()[-6000:]}"
    assert metric(bridge, "jit_bridge_webhook_requests_total") == 0
    assert "keycloak" not in bridge.status()["failing"]


# ------------------------------------------------------------------------------------------
# 4. a crash loses nothing and repeats nothing


def drain_faults(tines: TinesFake) -> None:
    """Use up the injected failures with harmless reads, so the tenant answers again."""
    headers = {"Authorization": f"Bearer {tines.api_key}"}
    for _ in range(1000):
        if httpx.get(f"{tines.url}/api/v1/teams", headers=headers).status_code != 503:
            return
    raise AssertionError("the Tines fake still fails after 1000 reads")


def test_work_queued_before_a_crash_is_applied_once_after_restart(
    keycloak: TestKeycloak,
    keycloak_sandbox: KeycloakSandbox,
    tines_fake: TinesFake,
    bridge_service: BridgeFactory,
) -> None:
    analysts = keycloak_sandbox.create_group("/Analysts")
    emails = [new_user(keycloak_sandbox, f"crash{i}", analysts)[1] for i in range(3)]
    bridge = bridge_service(
        mapping=sandbox_mapping(analysts),
        tines=tenant(tines_fake),
        keycloak=keycloak,
        mode="enhanced",
    )
    tines_fake.fail_next(300, status=503)  # the tenant is down for now
    for email in emails:
        assert bridge.admin("POST", "sync", {"user": email}).status_code == 202
    assert bridge.admin("POST", "sync", {"all": True}).status_code == 202
    bridge.wait_until(
        lambda: metric(bridge, "jit_bridge_queue_retries_total") >= 1,
        what="a failed attempt against the unavailable tenant",
    )

    bridge.kill()
    assert tines_fake.applied_writes() == []
    drain_faults(tines_fake)
    bridge.start()

    for email in emails:
        bridge.wait_until(
            has_access(tines_fake, email, {"Analytics": "EDITOR"}),
            timeout=60,
            what=f"{email} in Tines after the restart",
        )
    bridge.wait_until(bridge.idle, timeout=60, what="the queue to empty")
    for email in emails:
        # A write the kill cut short is settled from the next read: `failed` when a later run
        # had to make the change itself. Each change is applied once.
        applied = [op for op in ops_of(bridge.audit(email)) if op[2] != "failed"]
        assert applied == [
            ("add_membership", "Analytics", "applied"),
            ("create_user", None, "applied"),
        ]
    writes = [(w.method, w.path.split("/")[-1]) for w in tines_fake.applied_writes()]
    assert sorted(writes) == [("POST", "invite_member")] * 3 + [("POST", "users")] * 3
    full_runs = [r for r in bridge.status()["recent_runs"] if r["kind"] == "all"]
    assert any(r["status"] in ("no_changes", "succeeded") for r in full_runs)


# ------------------------------------------------------------------------------------------
# 5. Keycloak unreachable: fail closed


def test_unreachable_keycloak_removes_nothing_and_reports_why(
    keycloak: TestKeycloak, tines_fake: TinesFake, bridge_service: BridgeFactory
) -> None:
    members = [Member(user_id=str(i), role="EDITOR") for i in (1, 2, 3)]
    tines_fake.state.load(
        TargetState(
            users=[TargetUser(id=str(i), email=f"kept{i}@example.com") for i in (1, 2, 3)],
            teams=[Team(id="1", name="Analytics", members=members)],
        )
    )
    before = tines_fake.state.export()
    bridge = bridge_service(
        mapping=sandbox_mapping("/nobody-here"),
        tines=tines_fake,
        keycloak=keycloak,
        keycloak_url=f"http://127.0.0.1:{free_port()}",  # nothing listens there
        mode="enhanced",
    )

    assert bridge.admin("POST", "sync", {"all": True}).status_code == 202

    def failed_full_run() -> dict[str, Any] | None:
        runs = bridge.status()["recent_runs"]
        return next((r for r in runs if r["kind"] == "all" and r["status"] == "failed"), None)

    run = bridge.wait_until(failed_full_run, what="the full reconcile to fail")
    assert "Keycloak" in run["summary"]["error"]
    status = bridge.status()
    assert "cannot reach Keycloak" in status["failing"]["keycloak"]
    assert tines_fake.state.export() == before
    assert tines_fake.applied_writes() == []
    assert metric(bridge, "jit_bridge_keycloak_read_failures_total") >= 1
    assert metric(bridge, "jit_bridge_runs_total", kind="all", status="failed") >= 1
    ready = bridge.get("/readyz")
    assert ready.status_code == 503
    assert ready.json()["checks"]["store"] == "ok"
    assert ready.json()["checks"]["target"] == "ok"
    assert "cannot reach Keycloak" in ready.json()["checks"]["keycloak"]


# ------------------------------------------------------------------------------------------
# 6. health, readiness, metrics


def test_health_readiness_and_metrics(
    keycloak: TestKeycloak, tines_fake: TinesFake, bridge_service: BridgeFactory
) -> None:
    bridge = bridge_service(
        mapping=sandbox_mapping("/nobody-here"), tines=tenant(tines_fake), keycloak=keycloak
    )

    assert bridge.get("/healthz").json() == {"status": "alive"}
    ready = bridge.get("/readyz")
    assert ready.status_code == 200
    assert ready.json() == {
        "ready": True,
        "checks": {"store": "ok", "keycloak": "ok", "target": "ok"},
    }
    text = bridge.get("/metrics").text
    for series in (
        "jit_bridge_queue_depth gauge",
        "jit_bridge_held_runs gauge",
        "jit_bridge_runs_total counter",
        "jit_bridge_keycloak_read_failures_total counter",
    ):
        assert f"# TYPE {series}" in text
    assert "jit_bridge_queue_depth 0.0" in text

    tines_fake.fail_next(1, status=401)  # the target refuses our key once
    refused = bridge.get("/readyz")
    assert refused.status_code == 503
    assert refused.json()["checks"]["target"].startswith("failing: UnauthorizedError")
    assert bridge.get("/readyz").status_code == 200

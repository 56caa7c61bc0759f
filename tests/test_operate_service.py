"""Operating the running service: what its log says, what `/metrics` and `status` show, and what
`jit-bridge status`, `runs` and `queue` print beside it.

Each test runs the real `jit-bridge run` (tests/fixtures/bridge.py) against the session
Keycloak and the Tines fake, and looks only at what an operator can see: the process's
output, its HTTP endpoints, and other `jit-bridge` commands on the same store.
"""

from __future__ import annotations

import json
import re
import time
from typing import Any

from bridge.model import Member, TargetState, TargetUser, Team
from tests.fixtures.bridge import BridgeFactory, BridgeProcess, free_port
from tests.fixtures.keycloak import KeycloakSandbox, TestKeycloak
from tests.tines_fake import TinesFake

TEXT_LINE = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} (DEBUG|INFO|WARNING|ERROR) \S+: ")


def analysts(group: str) -> dict[str, Any]:
    return {"mappings": [{"group_name": group, "team_name": "Analytics", "role_name": "EDITOR"}]}


def metric(bridge: BridgeProcess, name: str, **labels: str) -> float | None:
    """The value of one series on /metrics, or None when it is absent."""
    wanted = {f'{k}="{v}"' for k, v in labels.items()}
    for line in bridge.get("/metrics").text.splitlines():
        found = re.match(rf"^{re.escape(name)}(?:\{{([^}}]*)\}})? (\S+)$", line)
        if found and wanted <= set((found.group(1) or "").split(",")) - {""}:
            return float(found.group(2))
    return None


def log_lines(bridge: BridgeProcess) -> list[str]:
    return [line for line in bridge.log().splitlines() if line and not line.startswith("--- ")]


def audited(bridge: BridgeProcess, email: str, op: str, outcome: str) -> bool:
    return any(r["op"] == op and r["outcome"] == outcome for r in bridge.audit(email))


def test_the_log_tells_runs_failures_holds_and_skipped_users_in_one_format(
    bridge_service: BridgeFactory,
    tines_fake: TinesFake,
    keycloak: TestKeycloak,
    keycloak_sandbox: KeycloakSandbox,
) -> None:
    group = keycloak_sandbox.create_group("/Analysts")
    ana, _ = keycloak_sandbox.create_user("ana", groups=(group,))
    una, _ = keycloak_sandbox.create_user("una", groups=(group,), email_verified=False)
    fay, _ = keycloak_sandbox.create_user("fay", groups=(group,))
    leaver, _ = keycloak_sandbox.create_user("leaver")
    ana, una, fay, leaver = (f"{name}@example.com" for name in (ana, una, fay, leaver))
    tines_fake.state.load(
        TargetState(
            users=[TargetUser(id="1", email=leaver, first_name="Lea", last_name="Ver")],
            teams=[Team(id="1", name="Analytics", members=[Member(user_id="1", role="EDITOR")])],
        )
    )
    bridge = bridge_service(
        mapping={
            "mappings": [{"group_name": group, "team_name": "Analytics", "role_name": "EDITOR"}]
        },
        tines=tines_fake,
        keycloak=keycloak,
        mode="enhanced",
        max_removals=0,
    )

    assert bridge.admin("POST", "sync", {"user": ana}).status_code == 202
    bridge.wait_until(lambda: audited(bridge, ana, "add_membership", "applied"), what="ana")
    assert bridge.admin("POST", "sync", {"user": una}).status_code == 202
    tines_fake.fail_next(1, status=422, path_prefix="teams/1/invite_member")
    assert bridge.admin("POST", "sync", {"user": fay}).status_code == 202
    bridge.wait_until(lambda: audited(bridge, fay, "add_membership", "failed"), what="fay")
    assert bridge.admin("POST", "sync", {"all": True}).status_code == 202
    held = bridge.wait_until(lambda: bridge.admin("GET", "status").json()["held_runs"])
    held_id = held[0]["id"]
    bridge.wait_until(lambda: f"jit-bridge approve {held_id}" in bridge.log(), what="hold line")

    log = log_lines(bridge)
    text = "\n".join(log)
    assert re.search(
        rf" INFO bridge\.runs: run \S+ user login for {re.escape(ana)}: succeeded; "
        r"2 applied, 0 failed, 0 held, 0 skipped in \d+\.\d\d s$",
        text,
        re.MULTILINE,
    ), text
    assert re.search(
        rf" INFO bridge\.runs: run \S+: skipped {re.escape(una)}: email not verified$",
        text,
        re.MULTILINE,
    ), text
    assert re.search(
        rf" WARNING bridge\.runs: run \S+: add_membership {re.escape(fay)} in Analytics failed: ",
        text,
    ), text
    assert (
        f" WARNING bridge.runs: run {held_id}: 1 operation(s) held by the removal budget; "
        f"review them, then run: jit-bridge approve {held_id}"
    ) in text
    assert re.search(
        rf" INFO bridge\.runs: run {held_id} all reconcile for everyone: held; "
        r"\d+ applied, 0 failed, 1 held, \d+ skipped in \d+\.\d\d s$",
        text,
        re.MULTILINE,
    ), text
    # One format for every line, uvicorn's included; the scheduler's ticks stay out of INFO.
    assert [line for line in log if not TEXT_LINE.match(line)] == []
    assert any(" INFO uvicorn.error: Application startup complete." in line for line in log)
    assert not any("apscheduler" in line or "Running job" in line for line in log)

    runs = bridge.cli("runs", "--held")
    assert runs.returncode == 0, runs.stderr
    assert runs.stdout.splitlines()[0].startswith(f"{held_id} ")
    assert f"approve with: jit-bridge approve {held_id}" in runs.stdout

    status = bridge.cli("status")
    assert status.returncode == 0, status.stdout + status.stderr
    lines = status.stdout.splitlines()
    assert lines[0] == "health: ok (store, keycloak, target)"
    assert "queue: 0 waiting, 0 in progress" in lines
    assert any(line.startswith("last full reconcile: ") and held_id in line for line in lines)
    assert "held runs: 1" in lines
    assert "orphans: 0" in lines

    api = bridge.status()
    assert api["last_full_reconcile"]["id"] == held_id
    assert api["queue"] == {"waiting": 0, "in_progress": 0, "oldest_waiting_seconds": None}

    assert (metric(bridge, "jit_bridge_run_duration_seconds_count", trigger="login") or 0) >= 3
    assert (metric(bridge, "jit_bridge_run_duration_seconds_count", trigger="reconcile") or 0) >= 1
    assert metric(bridge, "jit_bridge_failures_total", kind="operation") == 1
    last = metric(bridge, "jit_bridge_last_full_reconcile_timestamp_seconds")
    assert last is not None
    assert abs(last - time.time()) < 600
    assert metric(bridge, "jit_bridge_held_runs") == 1
    assert metric(bridge, "jit_bridge_orphan_accounts") == 0
    assert metric(bridge, "jit_bridge_queue_waiting") == 0
    assert metric(bridge, "jit_bridge_queue_in_progress") == 0
    assert metric(bridge, "jit_bridge_queue_oldest_waiting_seconds") == 0
    assert "_created" not in bridge.get("/metrics").text


def test_json_logs_are_one_object_per_line_with_the_run_in_fields(
    bridge_service: BridgeFactory,
    tines_fake: TinesFake,
    keycloak: TestKeycloak,
    keycloak_sandbox: KeycloakSandbox,
) -> None:
    group = keycloak_sandbox.create_group("/Analysts")
    username, _ = keycloak_sandbox.create_user("jay", groups=(group,))
    email = f"{username}@example.com"
    tines_fake.state.add_team("Analytics")
    bridge = bridge_service(
        mapping={
            "mappings": [{"group_name": group, "team_name": "Analytics", "role_name": "EDITOR"}]
        },
        tines=tines_fake,
        keycloak=keycloak,
        mode="enhanced",
        log_format="json",
    )

    assert bridge.admin("POST", "sync", {"user": email}).status_code == 202
    bridge.wait_until(lambda: audited(bridge, email, "add_membership", "applied"), what="sync")
    bridge.wait_until(lambda: '"logger": "bridge.runs"' in bridge.log(), what="the run line")

    entries: list[dict[str, Any]] = [json.loads(line) for line in log_lines(bridge)]
    assert all({"time", "level", "logger", "message"} <= set(e) for e in entries)
    assert any(e["logger"] == "uvicorn.error" for e in entries)
    [run] = [e for e in entries if e["logger"] == "bridge.runs"]
    assert run["level"] == "INFO"
    assert (run["kind"], run["trigger"], run["subject"], run["status"]) == (
        "user",
        "login",
        email,
        "succeeded",
    )
    assert (run["applied"], run["failed"], run["held"], run["skipped"]) == (2, 0, 0, 0)
    assert run["duration_seconds"] >= 0
    assert run["run_id"] in run["message"]
    by_run = bridge.admin("GET", "audit", params={"run": run["run_id"]}).json()
    assert {(r["email"], r["op"], r["dry_run"]) for r in by_run} == {
        (email, "create_user", False),
        (email, "add_membership", False),
    }

    # A full reconcile shows how far it has got while it runs (a slow target keeps it reading
    # long enough to look: Keycloak's users are counted while the target is still being read),
    # and nothing once it is over.
    assert bridge.status()["full_reconcile_in_progress"] is None
    tines_fake.slow(1.0)
    assert bridge.admin("POST", "sync", {"all": True}).status_code == 202

    def reading_the_target() -> dict[str, Any] | None:
        running = bridge.status()["full_reconcile_in_progress"]
        reading = running and running["stage"] == "reading Keycloak and the target"
        return running if reading and running["users_read"] is not None else None

    running = bridge.wait_until(reading_the_target, what="the full reconcile's progress")
    assert running["users_read"] >= 1
    tines_fake.slow(0)
    bridge.wait_until(
        lambda: bridge.status()["full_reconcile_in_progress"] is None, what="the end of it"
    )


def test_work_waiting_on_an_unreachable_keycloak_shows_in_queue_status_and_metrics(
    bridge_service: BridgeFactory, tines_fake: TinesFake, keycloak: TestKeycloak
) -> None:
    tines_fake.state.add_team("Analytics")
    bridge = bridge_service(
        mapping={
            "mappings": [{"group_name": "/x", "team_name": "Analytics", "role_name": "EDITOR"}]
        },
        tines=tines_fake,
        keycloak=keycloak,
        keycloak_url=f"http://127.0.0.1:{free_port()}",
    )

    assert bridge.admin("POST", "sync", {"user": "someone@example.com"}).status_code == 202

    def waiting_for_a_while() -> bool:
        age = metric(bridge, "jit_bridge_queue_oldest_waiting_seconds") or 0
        return metric(bridge, "jit_bridge_queue_waiting") == 1 and age > 0

    bridge.wait_until(waiting_for_a_while, what="the user to wait in the queue")
    assert (metric(bridge, "jit_bridge_failures_total", kind="keycloak_read") or 0) >= 1
    assert (metric(bridge, "jit_bridge_run_duration_seconds_count", trigger="login") or 0) >= 1

    def queue_listing() -> str | None:
        shown = bridge.cli("queue").stdout
        return shown if "Keycloak read failed" in shown else None

    listing = bridge.wait_until(queue_listing, what="`jit-bridge queue` to show the failure")
    assert re.search(r"^queue: [01] waiting", listing, re.MULTILINE), listing
    assert "email:someone@example.com login " in listing

    status = bridge.cli("status")
    assert status.returncode == 1, "a failing dependency makes `status` exit 1"
    assert status.stdout.splitlines()[0] == "health: FAILING"
    assert re.search(r"^  keycloak: failing: ", status.stdout, re.MULTILINE), status.stdout

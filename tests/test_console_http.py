"""The web console's sign-in, session cookie and CSRF protection, over plain HTTP.

The app is the one `jit-bridge run` serves, built by `Service.build` from real parts: a SQLite
store, the session Keycloak and the Tines fake. The browser tests (test_console_browser.py)
show the pages working; these show what a browser cannot: the cookie's flags, and that a
request without the session or its CSRF token changes nothing.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from bridge.model import Member, TargetState, TargetUser, Team
from bridge.progress import RunProgress
from bridge.server import create_app
from bridge.service import Service
from bridge.settings import Settings
from bridge.store import AuditRecord
from bridge.ui.session import SESSION_COOKIE, SessionKeeper
from tests.fixtures.keycloak import KeycloakSandbox, TestKeycloak
from tests.tines_fake import TinesFake

TOKEN = "console-test-token"
MANAGERS_MAPPING = {
    "mappings": [{"group_name": "/Managers", "team_name": "Analytics", "role_name": "TEAM_ADMIN"}]
}
ACTIVE_USERS = ("alice", "bob", "carol", "dana", "erin", "frank")

Console = Callable[..., tuple[TestClient, Service]]


@pytest.fixture
def console(tmp_path: Path, keycloak: TestKeycloak, tines_fake: TinesFake) -> Iterator[Console]:
    services: list[Service] = []

    def build(
        mapping: dict[str, Any] = MANAGERS_MAPPING,
        *,
        admin_token: str | None = TOKEN,
        base_url: str = "http://testserver",
    ) -> tuple[TestClient, Service]:
        mapping_file = tmp_path / "mapping.json"
        mapping_file.write_text(json.dumps(mapping), encoding="utf-8")
        settings = Settings(
            mode="enhanced",
            mapping_file=mapping_file,
            database_url=f"sqlite:///{tmp_path / 'state.db'}",
            tines_url=tines_fake.url,
            tines_api_key=tines_fake.api_key,
            keycloak_url=keycloak.url,
            keycloak_realm=keycloak.realm,
            keycloak_client_id=keycloak.client_id,
            keycloak_client_secret=keycloak.client_secret,
            admin_token=admin_token,
        )
        service = Service.build(settings)
        services.append(service)
        client = TestClient(create_app(service.context), base_url=base_url, follow_redirects=False)
        return client, service

    try:
        yield build
    finally:
        for service in services:
            service.stop()


def sign_in(client: TestClient, token: str = TOKEN) -> Any:
    form = client.get("/ui/login")
    nonce = re.search(r'name="nonce" value="([^"]+)"', form.text)
    assert nonce is not None
    return client.post("/ui/login", data={"token": token, "nonce": nonce[1], "next": "/ui"})


def csrf_of(page: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', page)
    assert found is not None, "the page has no form with a CSRF token"
    return found[1]


def set_cookie_headers(response: Any, name: str) -> list[str]:
    return [h for h in response.headers.get_list("set-cookie") if h.startswith(f"{name}=")]


def held_run(keycloak_sandbox: KeycloakSandbox, tines: TinesFake, console: Console) -> Any:
    """A console whose last full reconcile held six removals (everyone leaves Analytics)."""
    empty_group = keycloak_sandbox.create_group("/Nobody")
    users = [TargetUser(id=str(i), email=f"{n}@example.com") for i, n in enumerate(ACTIVE_USERS, 1)]
    members = [Member(user_id=u.id, role="EDITOR") for u in users]
    tines.state.load(
        TargetState(users=users, teams=[Team(id="1", name="Analytics", members=members)])
    )
    client, service = console(
        {"mappings": [{"group_name": empty_group, "team_name": "Analytics", "role_name": "EDITOR"}]}
    )
    report = service.context.reconciler().sync_all("reconcile", triggered_by=[], requested_by="t")
    assert report.status == "held"
    return client, service, report.run_id


def test_pages_send_a_stranger_to_sign_in(console: Console) -> None:
    client, _ = console()

    for path in ("/ui", "/ui/runs", "/ui/user?email=alice@example.com", "/ui/mapping"):
        answer = client.get(path)
        assert answer.status_code == 303, path
        assert answer.headers["location"].startswith("/ui/login?next=%2Fui")


def test_sign_in_sets_an_httponly_strict_cookie_for_the_console_only(console: Console) -> None:
    client, _ = console()

    answer = sign_in(client)

    assert answer.status_code == 303
    assert answer.headers["location"] == "/ui"
    [cookie] = set_cookie_headers(answer, SESSION_COOKIE)
    flags = [part.strip().lower() for part in cookie.split(";")]
    assert "httponly" in flags
    assert "samesite=strict" in flags
    assert "path=/ui" in flags
    assert "secure" not in flags  # served over plain HTTP here; see the HTTPS test
    overview = client.get("/ui")
    assert overview.status_code == 200
    assert "Overview" in overview.text
    assert "frame-ancestors 'none'" in overview.headers["content-security-policy"]
    assert overview.headers["cache-control"] == "no-store"


def test_the_cookie_is_secure_when_the_console_is_served_over_https(console: Console) -> None:
    client, _ = console(base_url="https://testserver")

    answer = sign_in(client)

    [cookie] = set_cookie_headers(answer, SESSION_COOKIE)
    assert "secure" in [part.strip().lower() for part in cookie.split(";")]


@pytest.mark.parametrize("wrong", ["", "console-test-toke", "console-test-token ", "x" * 5000])
def test_a_wrong_token_signs_nobody_in(console: Console, wrong: str) -> None:
    client, _ = console()

    answer = sign_in(client, wrong)

    assert answer.status_code == 401
    assert "not the admin token" in answer.text
    assert set_cookie_headers(answer, SESSION_COOKIE) == []
    assert client.get("/ui").status_code == 303


def test_sign_in_refuses_a_form_not_from_its_own_page(console: Console) -> None:
    client, _ = console()

    # No nonce cookie: the form was posted from elsewhere.
    forged = client.post("/ui/login", data={"token": TOKEN, "nonce": "made-up"})
    client.get("/ui/login")
    foreign = client.post(
        "/ui/login",
        data={"token": TOKEN, "nonce": client.cookies.get("jit_bridge_login") or ""},
        headers={"Origin": "https://evil.example"},
    )

    assert forged.status_code == foreign.status_code == 403
    assert set_cookie_headers(forged, SESSION_COOKIE) == []
    assert set_cookie_headers(foreign, SESSION_COOKIE) == []


def test_sign_in_never_sends_the_browser_to_another_site(console: Console) -> None:
    client, _ = console()
    client.get("/ui/login")
    nonce = client.cookies.get("jit_bridge_login") or ""

    answer = client.post(
        "/ui/login", data={"token": TOKEN, "nonce": nonce, "next": "https://evil.example/ui"}
    )

    assert answer.headers["location"] == "/ui"


def test_a_forged_or_expired_cookie_is_not_a_session(console: Console) -> None:
    client, _ = console()
    keeper = SessionKeeper(TOKEN)
    other = SessionKeeper("another-token")
    expired = SessionKeeper(TOKEN, clock=lambda: 1_000_000.0)

    for cookie in (other.issue(), expired.issue(), keeper.issue() + "0", "garbage"):
        client.cookies.set(SESSION_COOKIE, cookie, path="/ui")
        assert client.get("/ui").status_code == 303
    client.cookies.set(SESSION_COOKIE, keeper.issue(), path="/ui")
    assert client.get("/ui").status_code == 200


def test_approve_without_the_csrf_token_changes_nothing(
    console: Console, keycloak_sandbox: KeycloakSandbox, tines_fake: TinesFake
) -> None:
    client, service, run_id = held_run(keycloak_sandbox, tines_fake, console)
    sign_in(client)
    page = client.get("/ui/runs")
    assert run_id in page.text
    token = csrf_of(page.text)

    missing = client.post(f"/ui/runs/{run_id}/approve", data={})
    wrong = client.post(f"/ui/runs/{run_id}/approve", data={"csrf": token[:-1] + "0"})
    foreign = client.post(
        f"/ui/runs/{run_id}/approve",
        data={"csrf": token},
        headers={"Origin": "https://evil.example"},
    )

    assert missing.status_code == wrong.status_code == foreign.status_code == 403
    assert "Reload the page" in missing.text
    assert tines_fake.applied_writes() == []
    run = service.store.get_run(run_id)
    assert run is not None
    assert run.status == "held"

    approved = client.post(f"/ui/runs/{run_id}/approve", data={"csrf": token})

    assert approved.status_code == 303
    assert len(tines_fake.applied_writes()) == len(ACTIVE_USERS)
    run = service.store.get_run(run_id)
    assert run is not None
    assert (run.status, run.approved_by) == ("approved", "console")
    after = client.get("/ui/runs")
    assert f"Approved run {run_id}" in after.text
    assert "No run is waiting for approval" in after.text


def test_a_form_posted_without_a_session_is_refused(
    console: Console, keycloak_sandbox: KeycloakSandbox, tines_fake: TinesFake
) -> None:
    client, service, run_id = held_run(keycloak_sandbox, tines_fake, console)

    answer = client.post(f"/ui/runs/{run_id}/approve", data={"csrf": "anything"})

    assert answer.status_code == 401
    assert tines_fake.applied_writes() == []
    assert service.store.list_runs(status="held")[0].id == run_id


def test_sign_out_ends_the_session(console: Console) -> None:
    client, _ = console()
    sign_in(client)
    cookie = client.cookies.get(SESSION_COOKIE)
    assert cookie
    token = csrf_of(client.get("/ui").text)

    out = client.post("/ui/logout", data={"csrf": token})

    assert out.status_code == 303
    assert out.headers["location"] == "/ui/login"
    [cleared] = set_cookie_headers(out, SESSION_COOKIE)
    assert "max-age=0" in cleared.lower()
    # The old cookie, replayed, no longer signs anyone in.
    client.cookies.set(SESSION_COOKIE, cookie, path="/ui")
    assert client.get("/ui").status_code == 303


def test_a_bad_mapping_upload_is_refused_with_its_pointers(console: Console) -> None:
    client, service = console()
    sign_in(client)
    token = csrf_of(client.get("/ui/mapping").text)
    bad = {
        "mappings": [{"group_name": "/Managers", "team_name": "Analytics", "rol_name": "EDITOR"}],
        "tenant_owner_groupz": ["Administrators"],
    }

    answer = client.post(
        "/ui/mapping/preview",
        data={"csrf": token},
        files={"mapping_file": ("mapping.json", json.dumps(bad), "application/json")},
    )

    assert answer.status_code == 422
    assert "/mappings/0/rol_name" in answer.text
    assert "/tenant_owner_groupz" in answer.text
    huge = client.post(
        "/ui/mapping/preview",
        data={"csrf": token},
        files={"mapping_file": ("mapping.json", b" " * (1024 * 1024) + b"{}", "application/json")},
    )
    assert "the mapping is larger than 1024 KiB" in huge.text
    assert [v.version for v in service.store.mapping_versions()] == [1]


def test_the_console_is_off_without_an_admin_token(console: Console) -> None:
    client, _ = console(admin_token=None)

    page = client.get("/ui")
    login = client.post("/ui/login", data={"token": "", "nonce": ""})

    assert page.status_code == login.status_code == 503
    assert "admin_token" in page.text


def test_the_overview_shows_how_far_a_running_full_reconcile_got(console: Console) -> None:
    client, service = console()
    store = service.store
    store.enqueue("all", "reconcile", source="schedule")
    claim = store.claim("worker-1")
    assert claim is not None
    sign_in(client)
    assert (
        "A full reconcile is reading Keycloak and the target (worker-1)" in client.get("/ui").text
    )
    run_id = store.start_run("all", "reconcile", requested_by="schedule")
    store.note_run_progress(run_id, {"operations": 5, "held": 0, "skipped": 0})
    store.record_audit(
        *(
            AuditRecord(
                run_id=run_id,
                trigger=run_id,
                email=f"{name}@example.com",
                op="add_membership",
                team="Analytics",
                outcome=outcome,
            )
            for name, outcome in (("alice", "applied"), ("bob", "applied"), ("carol", "failed"))
        )
    )

    running = client.get("/ui").text

    assert run_id in running
    assert re.search(r"<strong>3</strong> of <strong>5</strong> operations done", running)
    assert "1 failed" in running
    assert "2 applied" in running
    store.finish_run(run_id, "partial", {"operations": 5, "status": "partial"})
    store.note_run_progress(run_id, {"operations": 99})  # too late: the run is over
    store.complete(claim)
    finished = store.get_run(run_id)
    assert finished is not None
    assert finished.summary == {"operations": 5, "status": "partial"}
    assert "None running." in client.get("/ui").text


def test_the_overview_shows_the_stage_of_a_full_reconcile_in_this_process(
    console: Console,
) -> None:
    client, service = console()
    progress = RunProgress(stage="applying", users_read=8, target_users=6, planned=10, applied=4)
    service.context.full_reconcile = lambda: progress
    sign_in(client)

    page = client.get("/ui").text

    assert "In this process: <strong>applying</strong> · 8 Keycloak users read" in page
    assert "6 target users read · 4 of 10 operations applied" in page
    assert '<progress max="10" value="4">' in page

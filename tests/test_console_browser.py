"""The web console in a real browser: Debian's Chromium, headless, driven by Playwright.

Each test starts the real service (`jit-bridge run`, a subprocess) against the session
Keycloak and the Tines fake, and uses the console as an operator would, with JavaScript
turned off (every page must work without it) in a laptop-sized window.

Screenshots of each page go to $JIT_BRIDGE_CONSOLE_SCREENSHOTS when set (`make screenshots`
writes docs/console/), else to the test's temporary directory.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright

from bridge.model import Member, TargetState, TargetUser, Team
from tests.fixtures.bridge import ADMIN_TOKEN, BridgeFactory, BridgeProcess
from tests.fixtures.keycloak import KeycloakSandbox, TestKeycloak
from tests.tines_fake import TinesFake

CHROMIUM = "/usr/bin/chromium"
LAPTOP = {"width": 1366, "height": 768}
MANAGERS_MAPPING = {
    "mappings": [{"group_name": "/Managers", "team_name": "Analytics", "role_name": "TEAM_ADMIN"}]
}
ACTIVE_USERS = ("alice", "bob", "carol", "dana", "erin", "frank")

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, headless=True)
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    context = browser.new_context(viewport=LAPTOP, java_script_enabled=False)
    try:
        yield context.new_page()
    finally:
        context.close()


@pytest.fixture
def shots(tmp_path: Path) -> Path:
    chosen = os.environ.get("JIT_BRIDGE_CONSOLE_SCREENSHOTS")
    folder = Path(chosen) if chosen else tmp_path / "screenshots"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def sign_in(page: Page, bridge: BridgeProcess, token: str = ADMIN_TOKEN) -> None:
    page.goto(f"{bridge.url}/ui")
    page.get_by_label("Admin token").fill(token)
    page.get_by_role("button", name="Sign in").click()


def start(
    bridge_service: BridgeFactory,
    tines: TinesFake,
    keycloak: TestKeycloak,
    mapping: dict[str, Any] = MANAGERS_MAPPING,
    **settings: Any,
) -> BridgeProcess:
    settings.setdefault("mode", "enhanced")
    return bridge_service(mapping=mapping, tines=tines, keycloak=keycloak, **settings)


def test_sign_in_shows_the_overview_and_sign_out_ends_it(
    page: Page,
    bridge_service: BridgeFactory,
    tines_fake: TinesFake,
    keycloak: TestKeycloak,
    shots: Path,
) -> None:
    tines_fake.state.add_team("Analytics")
    bridge = start(bridge_service, tines_fake, keycloak)
    assert bridge.cli("sync", "--user", "alice@example.com").returncode == 0

    sign_in(page, bridge, "not-the-token")
    expect(page.get_by_role("alert")).to_contain_text("not the admin token")
    page.screenshot(path=shots / "login.png")
    page.get_by_label("Admin token").fill(ADMIN_TOKEN)
    page.get_by_role("button", name="Sign in").click()

    expect(page).to_have_url(f"{bridge.url}/ui")
    expect(page.get_by_role("heading", name="Overview")).to_be_visible()
    health = page.locator("section", has=page.get_by_role("heading", name="Health"))
    expect(health).to_contain_text("ready")
    expect(health.get_by_role("row", name="keycloak")).to_contain_text("ok")
    expect(health.get_by_role("row", name="target")).to_contain_text("ok")
    runs = page.locator("section", has=page.get_by_role("heading", name="Recent runs"))
    expect(runs).to_contain_text("succeeded")
    expect(page.get_by_role("row", name="mapping version")).to_contain_text("1")
    page.screenshot(path=shots / "overview.png", full_page=True)

    page.get_by_role("button", name="Sign out").click()

    expect(page.get_by_role("heading", name="Sign in to the console")).to_be_visible()
    page.goto(f"{bridge.url}/ui/runs")
    expect(page.get_by_role("heading", name="Sign in to the console")).to_be_visible()


def test_an_operator_finds_a_held_run_and_approves_it(
    page: Page,
    bridge_service: BridgeFactory,
    tines_fake: TinesFake,
    keycloak: TestKeycloak,
    keycloak_sandbox: KeycloakSandbox,
    shots: Path,
) -> None:
    nobody = keycloak_sandbox.create_group("/Nobody")
    analytics_with_everyone(tines_fake)
    bridge = start(
        bridge_service,
        tines_fake,
        keycloak,
        {"mappings": [{"group_name": nobody, "team_name": "Analytics", "role_name": "EDITOR"}]},
    )
    held = bridge.cli("sync", "--all")
    assert held.returncode == 3, held.stderr
    run_id = bridge.status()["held_runs"][0]["id"]
    assert tines_fake.applied_writes() == []

    sign_in(page, bridge)
    page.get_by_role("link", name="Held runs").click()

    run = page.locator(f"#run-{run_id}")
    expect(run).to_contain_text("removals exceed the budget")
    expect(run.get_by_role("row")).to_have_count(1 + len(ACTIVE_USERS))
    expect(run.get_by_role("row", name="alice@example.com")).to_contain_text("remove_membership")
    page.screenshot(path=shots / "held-runs.png", full_page=True)

    run.get_by_role("button", name="Approve 6 held operation(s)").click()

    expect(page.get_by_role("status")).to_contain_text(f"Approved run {run_id}")
    expect(page.get_by_role("status")).to_contain_text("succeeded")
    expect(page.get_by_text("No run is waiting for approval")).to_be_visible()
    assert tines_fake.state.export().teams[0].members == []
    approved = [r for r in bridge.audit() if r["outcome"] == "applied"]
    assert len(approved) == len(ACTIVE_USERS)


def test_a_bad_mapping_shows_its_pointers_and_a_good_one_its_impact_before_it_applies(
    page: Page,
    bridge_service: BridgeFactory,
    tines_fake: TinesFake,
    keycloak: TestKeycloak,
    tmp_path: Path,
    shots: Path,
) -> None:
    analytics_with_everyone(tines_fake)
    bridge = start(bridge_service, tines_fake, keycloak)
    bad = tmp_path / "bad-mapping.json"
    bad.write_text(
        json.dumps(
            {
                "mappings": [
                    {"group_name": "/Managers", "team_name": "Analytics", "rol_name": "EDITOR"},
                    {"group_name": "", "team_name": "Analytics", "role_name": "EDITOR"},
                ],
                "tenant_owner_groupz": ["Administrators"],
            }
        ),
        encoding="utf-8",
    )
    sign_in(page, bridge)
    page.get_by_role("link", name="Mapping").click()
    expect(page.locator("p.lead")).to_have_text("Version 1 is in force.")

    page.get_by_label("Mapping file (JSON)").set_input_files(bad)
    page.get_by_role("button", name="Check and preview impact").click()

    problems = page.get_by_role("alert")
    expect(problems).to_contain_text("This mapping was refused")
    expect(problems.get_by_role("row", name="/mappings/0/rol_name")).to_contain_text("rol_name")
    expect(problems.get_by_role("row", name="/tenant_owner_groupz")).to_be_visible()
    expect(problems.get_by_role("row", name="/mappings/1/group_name")).to_be_visible()
    page.screenshot(path=shots / "mapping-errors.png", full_page=True)
    assert bridge.admin("GET", "mapping").json()["version"] == 1

    analysts = {
        "mappings": [
            {"group_name": "/Managers", "team_name": "Analytics", "role_name": "TEAM_ADMIN"},
            {"group_name": "Analysts", "team_name": "Analytics", "role_name": "VIEWER"},
        ]
    }
    page.get_by_label("or the mapping's text").fill(json.dumps(analysts, indent=2))
    page.get_by_role("button", name="Check and preview impact").click()

    expect(page.get_by_role("heading", name="Impact of the new mapping")).to_be_visible()
    changes = page.locator("table.ops").first
    expect(changes.get_by_role("row", name="bob@example.com")).to_contain_text("EDITOR → VIEWER")
    expect(changes.get_by_role("row", name="alice@example.com")).to_contain_text(
        "EDITOR → TEAM_ADMIN"
    )
    expect(changes.get_by_role("row", name="frank@example.com")).to_contain_text(
        "remove_membership"
    )
    page.screenshot(path=shots / "mapping-preview.png", full_page=True)
    assert bridge.admin("GET", "mapping").json()["version"] == 1  # a preview stores nothing
    assert tines_fake.writes() == []

    page.get_by_role("button", name="Apply this mapping").click()

    expect(page.get_by_role("status")).to_have_text(
        "Mapping version 2 is in force; a full reconcile is queued."
    )
    expect(page.locator("p.lead")).to_have_text("Version 2 is in force.")
    assert bridge.admin("GET", "mapping").json()["mapping"] == analysts
    page.screenshot(path=shots / "mapping.png", full_page=True)


def test_an_operator_looks_up_a_user(
    page: Page,
    bridge_service: BridgeFactory,
    tines_fake: TinesFake,
    keycloak: TestKeycloak,
    shots: Path,
) -> None:
    tines_fake.state.add_team("Analytics")
    tines_fake.state.add_team("Incident Response")
    mapping = {
        "mappings": [
            {"group_name": "/Managers", "team_name": "Analytics", "role_name": "TEAM_ADMIN"},
            {"group_name": "Analysts", "team_name": "Analytics", "role_name": "EDITOR"},
            {"group_name": "Analysts", "team_name": "Incident Response", "role_name": "VIEWER"},
        ]
    }
    bridge = start(bridge_service, tines_fake, keycloak, mapping)
    assert bridge.cli("sync", "--user", "alice@example.com").returncode == 0
    sign_in(page, bridge)
    page.get_by_role("link", name="User").click()

    page.get_by_label("Email").fill("alice@example.com")
    page.get_by_role("button", name="Look up").click()

    why = page.locator("section", has=page.get_by_role("heading", name="Why: the mapping"))
    analytics = why.get_by_role("row", name="Analytics")
    expect(analytics).to_contain_text("TEAM_ADMIN")
    expect(analytics).to_contain_text("won, through")
    plan = page.locator("section", has=page.get_by_role("heading", name="Live plan"))
    expect(plan).to_contain_text("Nothing to change")
    history = page.locator("section", has=page.get_by_role("heading", name="Audit history"))
    expect(history.get_by_role("row", name="add_membership")).to_contain_text("applied")
    page.screenshot(path=shots / "user.png", full_page=True)

    page.get_by_label("Email").fill("nobody-here@example.com")
    page.get_by_role("button", name="Look up").click()
    expect(page.get_by_text("Keycloak has no user with this email")).to_be_visible()


def test_the_orphans_page_lists_accounts_no_keycloak_user_has(
    page: Page,
    bridge_service: BridgeFactory,
    tines_fake: TinesFake,
    keycloak: TestKeycloak,
    shots: Path,
) -> None:
    analytics_with_everyone(tines_fake, extra=("ghost@example.com", "gone@example.com"))
    bridge = start(
        bridge_service,
        tines_fake,
        keycloak,
        managed_email_domains=["example.com"],
        orphan_accounts="remove_access",
        max_removals=0,
    )
    assert bridge.cli("sync", "--all").returncode == 3  # the orphans' removals are held
    sign_in(page, bridge)

    page.get_by_role("link", name="Orphans").click()

    last = page.locator("section", has=page.get_by_role("heading", name="last full reconcile"))
    expect(last).to_contain_text("found 2 orphan account(s)")
    expect(last.get_by_role("listitem")).to_have_text(["ghost@example.com", "gone@example.com"])
    page.get_by_role("button", name="Read live now").click()
    now = page.locator("section", has=page.get_by_role("heading", name="Now"))
    expect(now).to_contain_text("2 orphan account(s)")
    expect(now.get_by_role("listitem")).to_have_text(["ghost@example.com", "gone@example.com"])
    expect(now.get_by_role("row", name="ghost@example.com")).to_contain_text("remove_membership")
    expect(page.locator("p.lead")).to_contain_text("removes their access")
    page.screenshot(path=shots / "orphans.png", full_page=True)


def analytics_with_everyone(tines: TinesFake, extra: tuple[str, ...] = ()) -> None:
    """Tines has every active realm user (and the `extra` emails) as an EDITOR of Analytics."""
    emails = [f"{n}@example.com" for n in ACTIVE_USERS] + list(extra)
    users = [TargetUser(id=str(i), email=email) for i, email in enumerate(emails, 1)]
    members = [Member(user_id=u.id, role="EDITOR") for u in users]
    tines.state.load(
        TargetState(users=users, teams=[Team(id="1", name="Analytics", members=members)])
    )

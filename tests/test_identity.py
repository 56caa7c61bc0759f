"""Access follows the Keycloak identity, on every path, against the real Keycloak.

Each test drives the real reconcile path (Keycloak's admin API → plan → the Tines fake or
scim2-server → the store) the way a login, an admin event or the schedule does: client
roles at first and later logins, a renamed or deleted mapped group at a login, an email
change, a user deleted while no bridge ran, orphans, and a tenant without email lookup.
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import pytest

from bridge.keys import UserRef
from bridge.mapping_file import parse_mapping
from bridge.model import Mode
from bridge.policy import Policy
from bridge.reconcile import Reconciler, RunReport
from bridge.store import Store
from bridge.targets.tines import TinesTarget
from tests.fixtures.keycloak import KeycloakSandbox, TestKeycloak
from tests.tines_fake import TinesFake


def rules(*entries: tuple[str, str, str]) -> Any:
    return parse_mapping(
        json.dumps(
            {"mappings": [{"group_name": g, "team_name": t, "role_name": r} for g, t, r in entries]}
        )
    )


class Deployment:
    """One bridge: the real Keycloak, a Tines fake, a SQLite store that outlives runs."""

    def __init__(self, keycloak: TestKeycloak, tines: TinesFake, tmp_path: Path) -> None:
        self.keycloak = keycloak
        self.tines = tines
        self.store = Store.open(f"sqlite:///{tmp_path / 'state.db'}")
        self.store.upgrade()

    def bridge(self, mapping: Any, target: TinesTarget | None = None, **policy: Any) -> Reconciler:
        return Reconciler(
            policy=Policy(**{"mode": "enhanced", **policy}),
            mapping=lambda: mapping,
            source=self.keycloak.source(),
            target=target or TinesTarget(self.tines.url, self.tines.api_key),
            store=self.store,
        )

    def login(self, bridge: Reconciler, username: str) -> RunReport:
        ref = UserRef(user_id=self.keycloak.user_id(username))
        return bridge.sync_user(ref, "login", triggered_by=["ev"], requested_by="test")

    def accounts(self) -> dict[str, dict[str, str]]:
        """email → {team: role} for every account of the tenant."""
        state = self.tines.state.export()
        return {
            u.email: {t.name: m.role for t in state.teams for m in t.members if m.user_id == u.id}
            for u in state.users
        }


@pytest.fixture
def deployment(keycloak: TestKeycloak, tines_fake: TinesFake, tmp_path: Path) -> Deployment:
    return Deployment(keycloak, tines_fake, tmp_path)


# -- one read contract: client roles at every login ----------------------------------------


@pytest.mark.parametrize("mode", ["jit", "enhanced"])
def test_client_roles_grant_at_first_login_and_stay_at_later_logins(
    deployment: Deployment, mode: Mode
) -> None:
    """dana holds tines/admin directly; bob and frank hold tines/viewer through /Ops/Tier1.
    Nothing configures the source: the mapping alone makes the per-user read see them."""
    deployment.tines.state.add_team("Platform")
    mapping = rules(
        ("client-role:tines/admin", "Platform", "TEAM_ADMIN"),
        ("client-role:tines/viewer", "Platform", "VIEWER"),
    )
    bridge = deployment.bridge(mapping, mode=mode)
    expected = {
        "dana@example.com": {"Platform": "TEAM_ADMIN"},
        "bob@example.com": {"Platform": "VIEWER"},
        "frank@example.com": {"Platform": "VIEWER"},
    }
    for name in ("dana", "bob", "frank"):
        assert deployment.login(bridge, name).status == "succeeded"
    assert deployment.accounts() == expected
    for name in ("dana", "bob", "frank"):
        report = deployment.login(bridge, name)
        assert report.status == "no_changes", report.plan.to_json()
    full = bridge.sync_all("reconcile", triggered_by=[], requested_by="test")
    assert full.status == "no_changes", full.plan.to_json()
    for name in ("dana", "bob", "frank"):
        assert deployment.login(bridge, name).status == "no_changes"
    assert deployment.accounts() == expected


# -- fail closed on the login path ------------------------------------------------------


@pytest.mark.parametrize("selector_kind", ["path", "name"])
@pytest.mark.parametrize("change", ["rename", "delete"])
def test_a_renamed_or_deleted_mapped_group_removes_nothing_at_a_login(
    deployment: Deployment, keycloak_sandbox: KeycloakSandbox, selector_kind: str, change: str
) -> None:
    squad = keycloak_sandbox.name("squad")
    path = keycloak_sandbox.create_group(f"/{squad}")
    username, _ = keycloak_sandbox.create_user("member")
    deployment.keycloak.add_to_group(username, path)
    deployment.tines.state.add_team("Analytics")
    selector = path if selector_kind == "path" else squad
    bridge = deployment.bridge(rules((selector, "Analytics", "EDITOR")))
    assert deployment.login(bridge, username).status == "succeeded"
    email = f"{username}@example.com"
    assert deployment.accounts()[email] == {"Analytics": "EDITOR"}

    group_id = deployment.keycloak.group_id(path)
    if change == "rename":
        deployment.keycloak.admin.update_group(group_id, {"name": f"{squad}-renamed"})
    else:
        deployment.keycloak.admin.delete_group(group_id)

    report = deployment.login(bridge, username)
    assert report.status == "no_changes", report.plan.to_json()
    assert selector in report.unreadable_groups
    assert any("could not be read" in s.reason for s in report.plan.skipped)
    assert deployment.accounts()[email] == {"Analytics": "EDITOR"}
    # The admin event path and the CLI take the same road (a user reconcile):
    event = deployment.keycloak.user_id(username)
    by_event = bridge.sync_user(
        UserRef(user_id=event), "reconcile", triggered_by=["admin-ev"], requested_by="queue"
    )
    assert by_event.status == "no_changes"
    by_cli = bridge.sync_user(
        UserRef(email=email), "reconcile", triggered_by=[], requested_by="cli"
    )
    assert by_cli.status == "no_changes"
    assert deployment.accounts()[email] == {"Analytics": "EDITOR"}


# -- email change ---------------------------------------------------------------------


@pytest.mark.parametrize("noticed_by", ["login", "full reconcile"])
def test_an_email_change_keeps_one_account_with_the_access(
    deployment: Deployment, keycloak_sandbox: KeycloakSandbox, noticed_by: str
) -> None:
    path = keycloak_sandbox.create_group("/Analysts")
    username, user_id = keycloak_sandbox.create_user("mover")
    deployment.keycloak.add_to_group(username, path)
    deployment.tines.state.add_team("Analytics")
    bridge = deployment.bridge(rules((path, "Analytics", "EDITOR")))
    old, new = f"{username}@example.com", f"{username}.ng@example.com"
    assert deployment.login(bridge, username).status == "succeeded"

    deployment.keycloak.admin.update_user(user_id, {"email": new})
    if noticed_by == "login":
        report = deployment.login(bridge, username)
    else:
        report = bridge.sync_all("reconcile", triggered_by=[], requested_by="schedule")
    assert report.status == "succeeded", report.plan.to_json()
    ops = [op.model_dump(by_alias=True) for op in report.plan.operations]
    assert {"op": "change_email", "email": old, "to": new} in [
        {k: o[k] for k in ("op", "email", "to")} for o in ops if o["op"] == "change_email"
    ]
    assert deployment.accounts() == {new: {"Analytics": "EDITOR"}}
    [record] = [r for r in deployment.store.audit(email=old) if r.op == "change_email"]
    assert (record.before, record.after, record.outcome) == (
        {"email": old},
        {"email": new},
        "applied",
    )

    # Later removals reach the one account.
    deployment.keycloak.remove_from_group(username, path)
    assert deployment.login(bridge, username).status == "succeeded"
    assert deployment.accounts() == {new: {}}


def test_where_the_target_cannot_change_an_email_the_old_account_loses_its_access(
    deployment: Deployment, keycloak_sandbox: KeycloakSandbox
) -> None:
    class FixedEmails(TinesTarget):
        supports_email_change = False

    path = keycloak_sandbox.create_group("/Analysts")
    username, user_id = keycloak_sandbox.create_user("mover")
    deployment.keycloak.add_to_group(username, path)
    deployment.tines.state.add_team("Analytics")
    target = FixedEmails(deployment.tines.url, deployment.tines.api_key)
    bridge = deployment.bridge(rules((path, "Analytics", "EDITOR")), target=target)
    old, new = f"{username}@example.com", f"{username}.ng@example.com"
    assert deployment.login(bridge, username).status == "succeeded"

    deployment.keycloak.admin.update_user(user_id, {"email": new})
    report = deployment.login(bridge, username)
    assert report.status == "succeeded", report.plan.to_json()
    # The old account is handled as deleted; the new email is provisioned at this login.
    assert deployment.accounts() == {old: {}, new: {"Analytics": "EDITOR"}}
    [removal] = [r for r in deployment.store.audit(email=old) if r.op == "remove_membership"]
    assert "email changed in Keycloak" in removal.because[0]
    full = bridge.sync_all("reconcile", triggered_by=[], requested_by="schedule")
    assert full.status == "no_changes", full.plan.to_json()


# -- deletion without an event --------------------------------------------------------


def test_a_user_deleted_while_no_bridge_ran_loses_access_at_the_next_full_reconcile(
    deployment: Deployment, keycloak_sandbox: KeycloakSandbox
) -> None:
    path = keycloak_sandbox.create_group("/Analysts")
    leaver, _ = keycloak_sandbox.create_user("leaver")
    stayer, _ = keycloak_sandbox.create_user("stayer")
    for name in (leaver, stayer):
        deployment.keycloak.add_to_group(name, path)
    deployment.tines.state.add_team("Analytics")
    bridge = deployment.bridge(rules((path, "Analytics", "EDITOR")))
    for name in (leaver, stayer):
        assert deployment.login(bridge, name).status == "succeeded"

    deployment.keycloak.delete_user(leaver)  # the bridge is not running: no event
    report = bridge.sync_all("reconcile", triggered_by=[], requested_by="schedule")
    assert report.status == "succeeded", report.plan.to_json()
    assert deployment.accounts() == {
        f"{leaver}@example.com": {},
        f"{stayer}@example.com": {"Analytics": "EDITOR"},
    }
    [removal] = [
        r
        for r in deployment.store.audit(email=f"{leaver}@example.com")
        if r.op == "remove_membership"
    ]
    assert removal.because == ["deleted in Keycloak"]


def test_an_existing_installation_is_paired_by_email_at_its_first_full_reconcile(
    deployment: Deployment, keycloak_sandbox: KeycloakSandbox
) -> None:
    """Accounts made before the bridge kept pairs (or by hand) are paired by email at the
    first full reconcile; a later deletion then reaches them without any event."""
    path = keycloak_sandbox.create_group("/Analysts")
    username, _ = keycloak_sandbox.create_user("veteran")
    deployment.keycloak.add_to_group(username, path)
    team = deployment.tines.state.add_team("Analytics")
    account = deployment.tines.state.add_user(f"{username}@example.com")
    deployment.tines.state.containers[team].members[account] = "EDITOR"
    bridge = deployment.bridge(rules((path, "Analytics", "EDITOR")))
    assert bridge.sync_all("reconcile", triggered_by=[], requested_by="t").status == "no_changes"

    deployment.keycloak.delete_user(username)
    report = bridge.sync_all("reconcile", triggered_by=[], requested_by="schedule")
    assert report.status == "succeeded", report.plan.to_json()
    assert deployment.accounts() == {f"{username}@example.com": {}}


def test_an_event_for_an_unknown_user_id_never_reaches_an_account_by_its_email(
    deployment: Deployment, keycloak_sandbox: KeycloakSandbox
) -> None:
    """The forged or foreign event of the issue: a user id this realm does not know, with a
    real user's email in the payload. Nothing of the payload decides; alice keeps access."""
    path = keycloak_sandbox.create_group("/Analysts")
    username, _ = keycloak_sandbox.create_user("alice")
    deployment.keycloak.add_to_group(username, path)
    deployment.tines.state.add_team("Analytics")
    bridge = deployment.bridge(rules((path, "Analytics", "EDITOR")))
    assert deployment.login(bridge, username).status == "succeeded"

    stranger = UserRef(user_id=str(uuid.uuid4()), email=f"{username}@example.com")
    report = bridge.sync_user(stranger, "reconcile", triggered_by=["p2"], requested_by="queue")
    assert report.status == "no_changes", report.plan.to_json()
    assert deployment.accounts() == {f"{username}@example.com": {"Analytics": "EDITOR"}}


# -- orphans ----------------------------------------------------------------------------


def test_orphans_are_reported_then_lose_access_under_the_setting(
    deployment: Deployment, keycloak_sandbox: KeycloakSandbox
) -> None:
    domain = f"{keycloak_sandbox.prefix}.example.org"
    team = deployment.tines.state.add_team("Analytics")
    for email in (f"ghost@{domain}", f"boss@{domain}", "partner@elsewhere.example.net"):
        account = deployment.tines.state.add_user(email)
        deployment.tines.state.containers[team].members[account] = "EDITOR"
    mapping = rules(("/Analysts", "Analytics", "EDITOR"))
    settings: dict[str, Any] = {
        "managed_email_domains": frozenset({domain}),
        "protected_users": {f"boss@{domain}"},
    }

    reporting = deployment.bridge(mapping, **settings)
    report = reporting.sync_all("reconcile", triggered_by=[], requested_by="schedule")
    assert report.plan.orphans == [f"ghost@{domain}"]
    assert report.summary()["orphans"] == 1
    assert report.status == "no_changes", report.plan.to_json()
    skipped = {s.email: s.reason for s in report.plan.skipped}
    assert skipped["partner@elsewhere.example.net"] == "not in Keycloak; left alone"
    assert skipped[f"boss@{domain}"] == "protected"
    assert all(roles == {"Analytics": "EDITOR"} for roles in deployment.accounts().values())

    removing = deployment.bridge(mapping, orphan_accounts="remove_access", **settings)
    report = removing.sync_all("reconcile", triggered_by=[], requested_by="schedule")
    assert report.status == "succeeded", report.plan.to_json()
    assert deployment.accounts() == {
        f"ghost@{domain}": {},
        f"boss@{domain}": {"Analytics": "EDITOR"},
        "partner@elsewhere.example.net": {"Analytics": "EDITOR"},
    }


def test_a_mass_orphan_removal_is_held_by_the_budget(
    deployment: Deployment, keycloak_sandbox: KeycloakSandbox
) -> None:
    domain = f"{keycloak_sandbox.prefix}.example.org"
    team = deployment.tines.state.add_team("Analytics")
    for n in range(30):
        account = deployment.tines.state.add_user(f"gone{n:02d}@{domain}")
        deployment.tines.state.containers[team].members[account] = "EDITOR"
    bridge = deployment.bridge(
        rules(("/Analysts", "Analytics", "EDITOR")),
        managed_email_domains=frozenset({domain}),
        orphan_accounts="remove_access",
    )
    report = bridge.sync_all("reconcile", triggered_by=[], requested_by="schedule")
    assert report.status == "held"
    assert len(report.plan.held) == 30
    assert len(report.plan.orphans) == 30
    assert all(roles == {"Analytics": "EDITOR"} for roles in deployment.accounts().values())


# -- a tenant without email lookup ---------------------------------------------------------


def test_a_paired_users_removal_goes_through_on_a_tenant_without_email_lookup(
    keycloak: TestKeycloak, keycloak_sandbox: KeycloakSandbox, tmp_path: Path
) -> None:
    tines = TinesFake(api_key="old-tenant", email_lookup=False).start()
    try:
        deployment = Deployment(keycloak, tines, tmp_path)
        path = keycloak_sandbox.create_group("/Analysts")
        username, _ = keycloak_sandbox.create_user("newbie")
        keycloak.add_to_group(username, path)
        tines.state.add_team("Analytics")
        bridge = deployment.bridge(rules((path, "Analytics", "EDITOR")))
        assert deployment.login(bridge, username).status == "succeeded"
        assert deployment.accounts() == {f"{username}@example.com": {"Analytics": "EDITOR"}}

        keycloak.remove_from_group(username, path)
        fresh = deployment.bridge(rules((path, "Analytics", "EDITOR")))  # a new process
        report = fresh.sync_user(
            UserRef(user_id=keycloak.user_id(username)),
            "reconcile",
            triggered_by=["admin-ev"],
            requested_by="queue",
        )
        assert report.status == "succeeded", report.plan.to_json()
        assert deployment.accounts() == {f"{username}@example.com": {}}
    finally:
        tines.stop()

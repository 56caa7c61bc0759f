"""`jit-bridge run` end to end: the real service process, the real Keycloak with the project's
event listener, and the Tines fake as the target.

Each test asserts what an operator would see: the users and memberships in the target, the
audit log (`jit-bridge audit`) and the admin API. Tests that want the listener's deliveries
run the bridge on `keycloak.listener_port`; they run one after another.
"""

from __future__ import annotations

import re
from typing import Any

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


def ops_of(records: list[dict[str, Any]]) -> list[tuple[str, str | None, str]]:
    return sorted((r["op"], r["team"], r["outcome"]) for r in records)


# ------------------------------------------------------------------------------------------
# 1. jit mode through the listener webhook


def test_jit_login_creates_user_with_team_and_role_once(
    keycloak: TestKeycloak,
    keycloak_sandbox: KeycloakSandbox,
    tines_fake: TinesFake,
    bridge_service: BridgeFactory,
) -> None:
    analysts = keycloak_sandbox.create_group("/Analysts")
    username, email = new_user(keycloak_sandbox, "jit", analysts)
    bridge = bridge_service(
        mapping=sandbox_mapping(analysts),
        tines=tenant(tines_fake),
        keycloak=keycloak,
        port=keycloak.listener_port,
        mode="jit",
    )

    login(keycloak, username)

    assert bridge.wait_until(lambda: memberships(tines_fake, email), what="the user in Tines") == {
        "Analytics": "EDITOR"
    }
    created = bridge.wait_until(lambda: len(bridge.audit(email)) == 2 and bridge.audit(email))
    assert ops_of(created) == [
        ("add_membership", "Analytics", "applied"),
        ("create_user", None, "applied"),
    ]
    assert all(r["trigger"] != "" for r in created)

    before = runs_done(bridge)
    login(keycloak, username)
    bridge.wait_until(lambda: runs_done(bridge) > before and bridge.idle(), what="second login")

    assert memberships(tines_fake, email) == {"Analytics": "EDITOR"}
    assert ops_of(bridge.audit(email)) == ops_of(created)

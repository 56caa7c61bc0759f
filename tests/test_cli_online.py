"""The online forms of the commands: they read the real Keycloak and the target live."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bridge.cli import main
from bridge.model import IdpSnapshot, TargetState
from bridge.packaged import EXAMPLE_MAPPING
from tests.fixtures.keycloak import TestKeycloak
from tests.tines_fake.server import TinesFake

EXAMPLE = EXAMPLE_MAPPING


@pytest.fixture
def env(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, tines_fake: TinesFake, keycloak: TestKeycloak
) -> Path:
    import os

    for name in list(os.environ):
        if name.startswith("JIT_BRIDGE_"):
            monkeypatch.delenv(name)
    settings = {
        "JIT_BRIDGE_MODE": "enhanced",
        "JIT_BRIDGE_TINES_URL": tines_fake.url,
        "JIT_BRIDGE_TINES_API_KEY": tines_fake.api_key,
        "JIT_BRIDGE_KEYCLOAK_URL": keycloak.url,
        "JIT_BRIDGE_KEYCLOAK_REALM": keycloak.realm,
        "JIT_BRIDGE_KEYCLOAK_CLIENT_ID": keycloak.client_id,
        "JIT_BRIDGE_KEYCLOAK_CLIENT_SECRET": keycloak.client_secret,
        "JIT_BRIDGE_DATABASE_URL": f"sqlite:///{tmp_path / 'state.db'}",
        "JIT_BRIDGE_MAPPING_FILE": str(EXAMPLE),
    }
    for name, value in settings.items():
        monkeypatch.setenv(name, value)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def seed_teams(fake: TinesFake) -> None:
    analytics = fake.state.add_team("Analytics")
    fake.state.add_team("Incident Response")
    assert analytics


def test_validate_against_target_names_missing_teams_and_case_groups(
    env: Path, tines_fake: TinesFake, capsys: pytest.CaptureFixture[str]
) -> None:
    tines_fake.state.add_team("Analytics")
    assert main(["validate", str(EXAMPLE), "--against-target"]) == 2
    err = capsys.readouterr().err
    assert "/mappings/1/team_name: team 'Incident Response' does not exist" in err
    response = tines_fake.state.add_team("Incident Response")
    assert main(["validate", str(EXAMPLE), "--against-target"]) == 2
    assert "case group 'Tier 1' does not exist in team 'Incident Response'" in (
        capsys.readouterr().err
    )
    tines_fake.state.add_case_group(response, "Tier 1")
    assert main(["validate", str(EXAMPLE), "--against-target"]) == 0
    assert tines_fake.writes() == []


def test_snapshot_target_writes_the_snapshot_format(env: Path, tines_fake: TinesFake) -> None:
    team = tines_fake.state.add_team("Analytics")
    user = tines_fake.state.add_user("x@example.com", first_name="X")
    tines_fake.state.load(
        TargetState.model_validate(
            {
                "users": [{"id": str(user), "email": "x@example.com", "first_name": "X"}],
                "teams": [
                    {
                        "id": str(team),
                        "name": "Analytics",
                        "members": [{"user_id": str(user), "role": "EDITOR"}],
                    }
                ],
            }
        )
    )
    out = env / "target.json"
    assert main(["snapshot", "target", "-o", str(out)]) == 0
    state = TargetState.model_validate_json(out.read_text())
    assert state.teams[0].members[0].role == "EDITOR"
    assert state.users[0].email == "x@example.com"


def test_snapshot_idp_reads_keycloak_in_the_snapshot_format(env: Path) -> None:
    out = env / "idp.json"
    assert main(["snapshot", "idp", "-o", str(out)]) == 0
    users = {u.username: u for u in IdpSnapshot.model_validate_json(out.read_text()).users}
    assert "/Managers" in users["alice"].groups
    assert users["alice"].email == "alice@example.com"
    assert users["heidi"].enabled is False


def test_online_plan_and_explain_for_one_user(
    env: Path, tines_fake: TinesFake, capsys: pytest.CaptureFixture[str]
) -> None:
    seed_teams(tines_fake)
    assert main(["plan", "--user", "alice@example.com", "--json"]) == 0
    plan = json.loads(capsys.readouterr().out)
    ops = {(op["op"], op.get("team"), op.get("role")) for op in plan["operations"]}
    assert ("create_user", None, None) in ops
    assert ("add_membership", "Analytics", "TEAM_ADMIN") in ops
    assert tines_fake.writes() == []

    assert main(["explain", "--user", "alice@example.com"]) == 0
    out = capsys.readouterr().out
    assert "alice@example.com" in out
    assert "Analytics" in out
    assert "/Managers" in out


def test_keycloak_unreachable_is_a_clear_failure(
    env: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("JIT_BRIDGE_KEYCLOAK_URL", "http://127.0.0.1:9")
    assert main(["plan", "--all"]) == 1
    err = capsys.readouterr().err
    assert "SourceError" in err
    assert "Traceback" not in err

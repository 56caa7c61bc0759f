"""`jit-bridge validate MAPPING --against-target` judges a mapping by what the target can do."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
import requests

from bridge.cli import main
from tests.fixtures.scim import ScimServer
from tests.tines_fake.server import TinesFake


def write_mapping(tmp_path: Path, mapping: dict[str, Any]) -> Path:
    path = tmp_path / "mapping.json"
    path.write_text(json.dumps(mapping), encoding="utf-8")
    return path


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> pytest.MonkeyPatch:
    for name in list(os.environ):
        if name.startswith("JIT_BRIDGE_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    return monkeypatch


def scim_env(env: pytest.MonkeyPatch, scim: ScimServer, **extra: str) -> None:
    env.setenv("JIT_BRIDGE_TARGET", "scim")
    env.setenv("JIT_BRIDGE_SCIM_URL", scim.url)
    env.setenv("JIT_BRIDGE_SCIM_TOKEN", scim.token)
    for name, value in extra.items():
        env.setenv(f"JIT_BRIDGE_{name.upper()}", value)


def scim_groups(scim: ScimServer) -> list[str]:
    answer = requests.get(
        f"{scim.url}/Groups", headers={"Authorization": f"Bearer {scim.token}"}, timeout=10
    )
    answer.raise_for_status()
    return [g["displayName"] for g in answer.json().get("Resources", [])]


def test_a_fresh_scim_tenant_that_creates_groups_passes_with_notes(
    clean_env: pytest.MonkeyPatch,
    tmp_path: Path,
    scim_server: ScimServer,
    capsys: pytest.CaptureFixture[str],
) -> None:
    scim_env(clean_env, scim_server)
    mapping = write_mapping(
        tmp_path,
        {"mappings": [{"group_name": "Analysts", "team_name": "Analytics", "role_name": "EDITOR"}]},
    )

    assert main(["validate", str(mapping), "--against-target"]) == 0

    out = capsys.readouterr().out
    assert "note: /mappings/0/team_name: team 'Analytics' does not exist" in out
    assert "created with its first member" in out
    assert scim_groups(scim_server) == [], "validate must not create anything"


def test_a_scim_tenant_that_does_not_create_groups_fails_on_a_missing_team(
    clean_env: pytest.MonkeyPatch,
    tmp_path: Path,
    scim_server: ScimServer,
    capsys: pytest.CaptureFixture[str],
) -> None:
    scim_env(clean_env, scim_server, scim_create_groups="false")
    mapping = write_mapping(
        tmp_path,
        {"mappings": [{"group_name": "Analysts", "team_name": "Analytics", "role_name": "EDITOR"}]},
    )

    assert main(["validate", str(mapping), "--against-target"]) == 2

    err = capsys.readouterr().err
    assert "/mappings/0/team_name: team 'Analytics' does not exist in the target" in err


def test_tenant_permissions_and_owners_a_scim_target_cannot_hold_are_errors(
    clean_env: pytest.MonkeyPatch,
    tmp_path: Path,
    scim_server: ScimServer,
    capsys: pytest.CaptureFixture[str],
) -> None:
    scim_env(clean_env, scim_server)
    mapping = write_mapping(
        tmp_path,
        {
            "mappings": [
                {"group_name": "Analysts", "team_name": "Analytics", "role_name": "EDITOR"}
            ],
            "tenant_owners_groups": ["Administrators"],
            "tenant_permission": [{"group_name": "Auditors", "permissions": ["AUDIT_LOG_READ"]}],
        },
    )

    assert main(["validate", str(mapping), "--against-target"]) == 2

    err = capsys.readouterr().err
    assert "/tenant_permission/0: the scim target has no tenant permissions" in err
    assert "/tenant_owners_groups: the scim target has no tenant owners" in err
    assert "scim_owner_group" in err


def test_a_team_name_holding_a_separator_of_the_group_template_is_an_error(
    clean_env: pytest.MonkeyPatch,
    tmp_path: Path,
    scim_server: ScimServer,
    capsys: pytest.CaptureFixture[str],
) -> None:
    scim_env(clean_env, scim_server, scim_owner_group="Owners")
    mapping = write_mapping(
        tmp_path,
        {
            "mappings": [
                {"group_name": "Ops", "team_name": "Ops: Tier 1", "role_name": "VIEWER"},
                {"group_name": "Analysts", "team_name": "Analytics", "role_name": "EDITOR"},
            ],
            "tenant_owners_groups": ["Administrators"],
        },
    )

    assert main(["validate", str(mapping), "--against-target"]) == 2

    err = capsys.readouterr().err.splitlines()
    assert any(
        line.endswith(
            "/mappings/0: team 'Ops: Tier 1' contains ':', a separator of the SCIM group "
            "templates '{team}:{role}' / '{team}/{case_group}:{role}', so its group name "
            "could not be read back; rename the team or choose templates with other separators"
        )
        for line in err
    ), err
    assert not any("/mappings/1" in line for line in err), err
    assert not any("tenant_owners_groups" in line for line in err), err


def test_tines_tenant_missing_a_team_is_an_error_and_permissions_are_fine(
    clean_env: pytest.MonkeyPatch,
    tmp_path: Path,
    tines_fake: TinesFake,
    capsys: pytest.CaptureFixture[str],
) -> None:
    clean_env.setenv("JIT_BRIDGE_TINES_URL", tines_fake.url)
    clean_env.setenv("JIT_BRIDGE_TINES_API_KEY", tines_fake.api_key)
    tines_fake.state.add_team("Analytics")
    mapping = write_mapping(
        tmp_path,
        {
            "mappings": [
                {"group_name": "Analysts", "team_name": "Analytics", "role_name": "EDITOR"},
                {"group_name": "Ops", "team_name": "Ops: Tier 1", "role_name": "VIEWER"},
            ],
            "tenant_permission": [{"group_name": "Auditors", "permissions": ["AUDIT_LOG_READ"]}],
        },
    )

    assert main(["validate", str(mapping), "--against-target"]) == 2

    err = capsys.readouterr().err
    assert "/mappings/1/team_name: team 'Ops: Tier 1' does not exist in the target" in err
    assert "tenant_permission" not in err
    tines_fake.state.add_team("Ops: Tier 1")
    assert main(["validate", str(mapping), "--against-target"]) == 0
    assert "the tines target can hold everything the mapping grants" in capsys.readouterr().out

"""The offline commands (docs/design.md: Command line, Formats): `plan` from snapshots, `validate`,
`explain`.

Each scenario folder under tests/scenarios holds a mapping, an IdP snapshot, a target snapshot,
the settings and the exact plan docs/design.md, Modes calls for; the CLI must print that plan byte
for byte.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from bridge.cli import main
from bridge.packaged import EXAMPLE_MAPPING

SCENARIOS = Path(__file__).parent / "scenarios"
BAD_MAPPINGS = Path(__file__).parent / "data" / "mappings" / "bad"


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import os

    for name in list(os.environ):
        if name.startswith("JIT_BRIDGE_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)


def toml_settings(tmp_path: Path, settings: dict[str, Any]) -> Path:
    lines = []
    for key, value in settings.items():
        if key == "trigger":
            continue
        lines.append(f"{key} = {json.dumps(value)}")
    path = tmp_path / "settings.toml"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def scenario_args(name: str, tmp_path: Path) -> tuple[list[str], dict[str, Any]]:
    folder = SCENARIOS / name
    settings = json.loads((folder / "settings.json").read_text(encoding="utf-8"))
    args = [
        "--idp-snapshot",
        str(folder / "idp.json"),
        "--target-snapshot",
        str(folder / "target.json"),
        "--mapping",
        str(folder / "mapping.json"),
        "--settings",
        str(toml_settings(tmp_path, settings)),
    ]
    return args, settings


@pytest.mark.parametrize(
    "name", sorted(p.name for p in SCENARIOS.iterdir() if p.is_dir() and (p / "plan.json").exists())
)
def test_offline_plan_prints_the_recorded_plan(
    name: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args, settings = scenario_args(name, tmp_path)
    # The recorded plans are the planner's; the removal budget is exercised on its own below.
    code = main(
        [
            "plan",
            "--all",
            "--trigger",
            settings["trigger"],
            "--allow-removals",
            "1000",
            "--json",
            *args,
        ]
    )
    assert code == 0
    expected = (SCENARIOS / name / "plan.json").read_text(encoding="utf-8")
    assert capsys.readouterr().out == expected + "\n"


def test_detailed_exitcode_is_4_with_changes_and_0_without(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args, _ = scenario_args("enhanced-reconcile", tmp_path)
    assert main(["plan", "--all", "--detailed-exitcode", *args]) == 4
    # In jit mode a reconcile trigger plans nothing (docs/design.md, Command line).
    args, _ = scenario_args("jit-first-login", tmp_path)
    assert main(["plan", "--all", "--trigger", "reconcile", "--detailed-exitcode", *args]) == 0
    assert "no changes" in capsys.readouterr().out


def test_plan_for_one_user_only_touches_that_user(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args, _ = scenario_args("enhanced-reconcile", tmp_path)
    everyone = ["--all", "--trigger", "login", "--allow-removals", "1000"]
    full = json.loads(_plan_json([*everyone, *args], capsys))
    someone = full["operations"][0]["email"]
    mine = json.loads(_plan_json(["--user", someone.upper(), *args], capsys))
    assert mine["operations"]
    assert {op["email"] for op in mine["operations"]} == {someone}
    assert mine["trigger"] == "login"
    assert mine["operations"] == [op for op in full["operations"] if op["email"] == someone]


def test_a_full_plan_over_the_removal_budget_shows_the_removals_held(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args, settings = scenario_args("enhanced-reconcile", tmp_path)
    strict = toml_settings(tmp_path, {**settings, "max_removals": 0})
    args[-1] = str(strict)
    assert main(["plan", "--all", "--json", *args]) == 0
    held = json.loads(capsys.readouterr().out)
    recorded = json.loads((SCENARIOS / "enhanced-reconcile" / "plan.json").read_text())
    removals = [op for op in recorded["operations"] if op["op"] == "remove_membership"]
    assert removals
    assert all(op in held["held"] for op in removals)
    assert not [op for op in held["operations"] if op["op"] == "remove_membership"]


def test_human_plan_names_the_reason_for_each_change(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args, _ = scenario_args("jit-first-login", tmp_path)
    assert main(["plan", "--all", "--trigger", "login", *args]) == 0
    out = capsys.readouterr().out
    assert "create_user bob@example.com" in out
    assert "group /Managers → mapping 1" in out


def test_target_snapshot_without_idp_snapshot_is_a_usage_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = SCENARIOS / "jit-first-login"
    code = main(
        [
            "plan",
            "--all",
            "--target-snapshot",
            str(folder / "target.json"),
            "--mapping",
            str(folder / "mapping.json"),
        ]
    )
    assert code == 2
    assert "--idp-snapshot" in capsys.readouterr().err


def test_a_malformed_snapshot_is_refused_with_where(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args, _ = scenario_args("jit-first-login", tmp_path)
    broken = tmp_path / "idp.json"
    broken.write_text('{"users": [{"id": "1", "emial": "x@example.com"}]}', encoding="utf-8")
    args[1] = str(broken)
    assert main(["plan", "--all", *args]) == 2
    err = capsys.readouterr().err
    assert "/users/0/emial" in err
    assert "Traceback" not in err


def test_validate_accepts_the_example_and_refuses_a_bad_mapping(
    capsys: pytest.CaptureFixture[str],
) -> None:
    example = EXAMPLE_MAPPING
    assert main(["validate", str(example)]) == 0
    assert "valid (4 mapping entries" in capsys.readouterr().out
    bad = tmp = BAD_MAPPINGS
    files = sorted(tmp.iterdir())
    assert files, "the bad-mapping corpus is missing"
    for path in files:
        assert main(["validate", str(path)]) == 2, path.name
        err = capsys.readouterr().err
        assert str(bad) in err or path.name in err
        assert "Traceback" not in err


def test_explain_says_which_entry_wins(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    args, _ = scenario_args("jit-first-login", tmp_path)
    idp, mapping = args[1], args[5]
    code = main(
        ["explain", "--user", "bob@example.com", "--idp-snapshot", idp, "--mapping", mapping]
    )
    assert code == 0
    out = capsys.readouterr().out
    assert "bob@example.com" in out
    assert "Analytics" in out
    assert "mapping 1" in out or "entry 1" in out


def _plan_json(extra: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    assert main(["plan", "--json", *extra]) == 0
    return capsys.readouterr().out


def test_jit_mode_never_changes_existing_users_when_the_mapping_changes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = SCENARIOS / "enhanced-reconcile"
    args, settings = scenario_args("enhanced-reconcile", tmp_path)
    args[-1] = str(toml_settings(tmp_path, {**settings, "mode": "jit"}))
    existing = {
        u["email"].lower()
        for u in json.loads((folder / "target.json").read_text(encoding="utf-8"))["users"]
    }
    plan = json.loads(_plan_json(["--all", "--trigger", "login", *args], capsys))
    touched = {op["email"] for op in plan["operations"]} | {op["email"] for op in plan["held"]}
    assert touched, "someone new should be created at first login"
    assert not touched & existing
    assert {op["op"] for op in plan["operations"]} <= {
        "create_user",
        "add_membership",
        "set_tenant_owner",
        "set_tenant_permissions",
    }


def test_a_legacy_mapping_plans_exactly_like_its_modern_twin(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    legacy = tmp_path / "legacy.json"
    legacy.write_text(
        json.dumps(
            {
                "group_attribute_name": "Group",
                "mappings": [
                    {"sso_group": "Managers", "team_name": "Analytics", "role_name": "team_admin"},
                    {
                        "sso_group": "Managers",
                        "team_name": "Incident Response",
                        "role_name": "editor",
                    },
                    {"sso_group": "Analysts", "team_name": "Analytics", "role_name": "editor"},
                    {
                        "sso_group": "/Ops/Tier1",
                        "team_name": "Incident Response",
                        "case_group_name": "Tier 1",
                        "role_name": "viewer",
                    },
                ],
                "tenant_owners_group": "Administrators",
                "tenant_permissions": [
                    {"group_name": "Auditors", "permissions": ["AUDIT_LOG_READ"]}
                ],
            }
        ),
        encoding="utf-8",
    )
    args, _ = scenario_args("jit-first-login", tmp_path)
    args[5] = str(legacy)
    out = _plan_json(["--all", "--trigger", "login", *args], capsys)
    assert out == (SCENARIOS / "jit-first-login" / "plan.json").read_text(encoding="utf-8") + "\n"

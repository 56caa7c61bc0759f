"""`sync` drives the real CLI against the Tines fake over HTTP: it converges, a second sync only
reads, a dry run sends no write, and every applied operation lands in the audit log."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from bridge.cli import main
from bridge.model import TargetState
from tests.tines_fake.server import TinesFake

SCENARIO = Path(__file__).parent / "scenarios" / "enhanced-reconcile"
FIRST_LOGIN = Path(__file__).parent / "scenarios" / "jit-first-login"


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, tines_fake: TinesFake) -> Path:
    import os

    for name in list(os.environ):
        if name.startswith("JIT_BRIDGE_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("JIT_BRIDGE_TINES_URL", tines_fake.url)
    monkeypatch.setenv("JIT_BRIDGE_TINES_API_KEY", tines_fake.api_key)
    monkeypatch.setenv("JIT_BRIDGE_DATABASE_URL", f"sqlite:///{tmp_path / 'state.db'}")
    monkeypatch.chdir(tmp_path)
    return tmp_path


def settings_file(folder: Path, tmp_path: Path, **extra: Any) -> Path:
    settings = json.loads((folder / "settings.json").read_text(encoding="utf-8"))
    settings.pop("trigger", None)
    settings.update(extra)
    path = tmp_path / "settings.toml"
    path.write_text("".join(f"{k} = {json.dumps(v)}\n" for k, v in settings.items()))
    return path


def common(folder: Path, tmp_path: Path, **extra: Any) -> list[str]:
    return [
        "--idp-snapshot",
        str(folder / "idp.json"),
        "--mapping",
        str(folder / "mapping.json"),
        "--settings",
        str(settings_file(folder, tmp_path, **extra)),
    ]


def seed(fake: TinesFake, folder: Path) -> None:
    fake.state.load(TargetState.model_validate_json((folder / "target.json").read_text()))


def replan(
    fake: TinesFake, folder: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> Any:
    snapshot = tmp_path / "after.json"
    snapshot.write_text(fake.state.export().model_dump_json())
    capsys.readouterr()
    args = [*common(folder, tmp_path), "--target-snapshot", str(snapshot)]
    assert main(["plan", "--all", "--allow-removals", "1000", "--json", *args]) == 0
    return json.loads(capsys.readouterr().out)


def test_full_sync_converges_and_a_second_sync_only_reads(
    env: Path, tines_fake: TinesFake, capsys: pytest.CaptureFixture[str]
) -> None:
    seed(tines_fake, SCENARIO)
    args = common(SCENARIO, env)
    assert main(["sync", "--all", "--allow-removals", "1000", *args]) == 0
    applied = len(tines_fake.applied_writes())
    assert applied > 0
    assert replan(tines_fake, SCENARIO, env, capsys)["operations"] == []

    tines_fake.clear_log()
    assert main(["sync", "--all", *args]) == 0
    assert tines_fake.writes() == []
    assert "no changes" in capsys.readouterr().out


def test_each_planned_operation_is_one_logical_write(
    env: Path, tines_fake: TinesFake, capsys: pytest.CaptureFixture[str]
) -> None:
    seed(tines_fake, SCENARIO)
    args = common(SCENARIO, env)
    capsys.readouterr()
    snapshot = env / "before.json"
    snapshot.write_text((SCENARIO / "target.json").read_text())
    main(
        [
            "plan",
            "--all",
            "--allow-removals",
            "1000",
            "--json",
            *args,
            "--target-snapshot",
            str(snapshot),
        ]
    )
    planned = json.loads(capsys.readouterr().out)["operations"]
    assert main(["sync", "--all", "--allow-removals", "1000", *args]) == 0
    # Role changes may take two calls on Tines (remove, then invite); nothing else does.
    writes = len(tines_fake.applied_writes())
    changes = sum(1 for op in planned if op["op"] == "change_role")
    assert len(planned) <= writes <= len(planned) + changes


def test_dry_run_sends_no_write_and_audits_what_it_would_do(
    env: Path, tines_fake: TinesFake, capsys: pytest.CaptureFixture[str]
) -> None:
    seed(tines_fake, SCENARIO)
    before = tines_fake.state.export()
    args = common(SCENARIO, env)
    assert main(["sync", "--all", "--dry-run", "--allow-removals", "1000", *args]) == 0
    assert tines_fake.writes() == []
    assert tines_fake.state.export() == before
    capsys.readouterr()
    assert main(["audit", "--json", "--settings", args[-1]]) == 0
    records = json.loads(capsys.readouterr().out)
    assert records
    assert {r["outcome"] for r in records} == {"dry_run"}


def test_dry_run_setting_is_enforced_even_for_plain_sync(
    env: Path, tines_fake: TinesFake, capsys: pytest.CaptureFixture[str]
) -> None:
    seed(tines_fake, SCENARIO)
    args = common(SCENARIO, env, dry_run=True)
    assert main(["sync", "--all", "--allow-removals", "1000", *args]) == 0
    assert tines_fake.writes() == []


def test_first_login_creates_the_user_and_the_audit_says_why(
    env: Path, tines_fake: TinesFake, capsys: pytest.CaptureFixture[str]
) -> None:
    seed(tines_fake, FIRST_LOGIN)
    args = common(FIRST_LOGIN, env)
    assert main(["sync", "--user", "bob@example.com", *args]) == 0
    state = tines_fake.state.export()
    bob = next(u for u in state.users if u.email.lower() == "bob@example.com")
    assert bob.first_name == "Bob"
    teams = {t.name: {m.user_id: m.role for m in t.members} for t in state.teams}
    assert teams["Analytics"][bob.id] == "TEAM_ADMIN"
    assert teams["Incident Response"][bob.id] == "EDITOR"

    tines_fake.clear_log()
    assert main(["sync", "--user", "bob@example.com", *args]) == 0
    assert tines_fake.writes() == []

    capsys.readouterr()
    assert main(["audit", "--user", "Bob@Example.com", "--json", "--settings", args[-1]]) == 0
    records = json.loads(capsys.readouterr().out)
    ops = [(r["op"], r["team"], r["outcome"]) for r in records]
    assert ("create_user", None, "applied") in ops
    assert ("add_membership", "Analytics", "applied") in ops
    membership = next(r for r in records if r["team"] == "Analytics")
    assert membership["because"] == ["group /Managers → mapping 1"]
    assert membership["after"] == {"role": "TEAM_ADMIN"}
    assert membership["run_id"]


def test_unknown_team_fails_that_operation_and_reports_it(
    env: Path, tines_fake: TinesFake, capsys: pytest.CaptureFixture[str]
) -> None:
    seed(tines_fake, FIRST_LOGIN)
    state = tines_fake.state.export()
    tines_fake.state.load(
        TargetState(users=state.users, teams=[t for t in state.teams if t.name != "Analytics"])
    )
    args = common(FIRST_LOGIN, env)
    assert main(["sync", "--user", "bob@example.com", *args]) == 1
    err = capsys.readouterr().err
    assert "team 'Analytics' does not exist in the target" in err
    # Everything else for bob was still applied.
    after = tines_fake.state.export()
    assert any(u.email.lower() == "bob@example.com" for u in after.users)

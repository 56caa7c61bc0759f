"""The commands an operator steers with, through `main()` and the installed `jit-bridge`:
`--version`, help on every flag, `runs`, `audit`, `plan --all`'s summary and progress line,
warnings about unknown variables, and the exit codes of `run` for a bad start.

The identity side comes from an IdP snapshot file and the target is the Tines fake, so no
Keycloak is needed: these are about what the operator sees, not where the data came from.
"""

from __future__ import annotations

import json
import os
import pty
import re
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from bridge.cli import main
from bridge.model import Member, TargetState, TargetUser, Team
from tests.tines_fake.server import TinesFake

COMMANDS = [
    "run",
    "config",
    "validate",
    "plan",
    "sync",
    "explain",
    "snapshot",
    "audit",
    "approve",
    "status",
    "runs",
    "queue",
    "init",
]
MAPPING = {
    "mappings": [{"group_name": "Analysts", "team_name": "Analytics", "role_name": "EDITOR"}]
}


def idp_user(name: str, *, verified: bool = True, groups: tuple[str, ...] = ("/Analysts",)) -> Any:
    return {
        "id": f"kc-{name}",
        "username": name,
        "email": f"{name}@example.com",
        "email_verified": verified,
        "first_name": name.title(),
        "last_name": "Test",
        "enabled": True,
        "attributes": {},
        "groups": list(groups),
        "realm_roles": [],
        "client_roles": {},
    }


@pytest.fixture
def workdir(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, tines_fake: TinesFake) -> Path:
    """Settings for the Tines fake and a SQLite store, enhanced mode, no removal allowed
    without approval. The IdP snapshot has alice and erin in /Analysts, dave (unverified
    email) and bob, who is in no group; Tines has only bob, in Analytics."""
    for name in list(os.environ):
        if name.startswith("JIT_BRIDGE_"):
            monkeypatch.delenv(name)
    env = {
        "JIT_BRIDGE_MODE": "enhanced",
        "JIT_BRIDGE_TINES_URL": tines_fake.url,
        "JIT_BRIDGE_TINES_API_KEY": tines_fake.api_key,
        "JIT_BRIDGE_DATABASE_URL": f"sqlite:///{tmp_path / 'state.db'}",
        "JIT_BRIDGE_MAPPING_FILE": str(tmp_path / "mapping.json"),
        "JIT_BRIDGE_MAX_REMOVALS": "0",
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    (tmp_path / "mapping.json").write_text(json.dumps(MAPPING))
    users = [
        idp_user("alice"),
        idp_user("bob", groups=()),
        idp_user("dave", verified=False),
        idp_user("erin"),
    ]
    (tmp_path / "idp.json").write_text(json.dumps({"users": users}))
    bob = TargetUser(id="1", email="bob@example.com", first_name="Bob", last_name="Test")
    team = Team(id="1", name="Analytics", members=[Member(user_id="1", role="EDITOR")])
    tines_fake.state.load(TargetState(users=[bob], teams=[team]))
    monkeypatch.chdir(tmp_path)
    return tmp_path


def jit_bridge(*args: str, stderr: Any = subprocess.PIPE, env: Any = None) -> Any:
    script = Path(sys.executable).parent / "jit-bridge"
    return subprocess.run(
        [str(script), *args],
        stdout=subprocess.PIPE,
        stderr=stderr,
        text=True,
        timeout=120,
        check=False,
        env=env,
    )


def options_without_help(help_text: str) -> list[str]:
    """Options in an argparse help text whose description is empty."""
    lines = help_text.splitlines()
    missing = []
    for index, line in enumerate(lines):
        found = re.match(r"^  (-{1,2}[\w-]+(?:[ ,][^ ].*?)?)(?: {2,}(\S.*))?$", line)
        if not found or line.startswith("  -h, --help"):
            continue
        following = lines[index + 1] if index + 1 < len(lines) else ""
        described = found.group(2) or re.match(r"^ {10,}\S", following)
        if not described:
            missing.append(found.group(1))
    return missing


def test_version_and_help_text_on_every_flag(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as version:
        main(["--version"])
    assert version.value.code == 0
    assert capsys.readouterr().out.strip() == "jit-bridge 0.1.0"

    texts = {}
    for command in [None, *COMMANDS]:
        with pytest.raises(SystemExit) as shown:
            main([command, "--help"] if command else ["--help"])
        assert shown.value.code == 0
        texts[command] = capsys.readouterr().out
    for command, text in texts.items():
        assert options_without_help(text) == [], f"`{command} --help`:\n{text}"
        assert "SPEC" not in text, f"`{command} --help` cites a document"
        assert "§" not in text, f"`{command} --help` cites a document"
    assert "3 removals held" in " ".join(texts[None].split())
    assert "--limit N" in texts["audit"]
    assert "--run RUN_ID" in texts["audit"]
    assert "--held" in texts["runs"]


def test_runs_show_who_how_it_ended_counts_and_duration(
    workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    snapshot = ["--idp-snapshot", str(workdir / "idp.json")]
    assert main(["sync", "--user", "alice@example.com", *snapshot]) == 0
    assert main(["sync", "--all", *snapshot]) == 3  # bob's removal is over the budget
    capsys.readouterr()

    assert main(["runs"]) == 0
    lines = capsys.readouterr().out.splitlines()
    everyone = next(line for line in lines if " everyone " in line)
    assert re.search(
        r" reconcile +everyone held: 0 applied, 0 failed, 1 held, 2 skipped, \d+\.\d\d s$",
        everyone,
    ), everyone
    held_id = everyone.split()[0]
    assert f"    approve with: jit-bridge approve {held_id}" in lines
    alice = next(line for line in lines if "alice@example.com" in line)
    assert re.search(r" login +alice@example.com succeeded: 2 applied, 0 failed", alice), alice

    assert main(["runs", "--held"]) == 0
    held = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in held if not line.startswith(" ")] == [held_id]

    assert main(["runs", "--limit", "1", "--json"]) == 0
    [newest] = json.loads(capsys.readouterr().out)
    assert newest["id"] == held_id
    assert (newest["who"], newest["status"], newest["held"], newest["skipped"]) == (
        "everyone",
        "held",
        1,
        2,
    )
    assert newest["duration_seconds"] >= 0


def test_audit_filters_by_run_user_and_time_limits_and_marks_dry_runs(
    workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    snapshot = ["--idp-snapshot", str(workdir / "idp.json")]
    assert main(["sync", "--user", "alice@example.com", *snapshot]) == 0
    assert main(["sync", "--user", "erin@example.com", "--dry-run", *snapshot]) == 0
    capsys.readouterr()
    assert main(["runs", "--json"]) == 0
    runs = json.loads(capsys.readouterr().out)
    dry = next(r for r in runs if r["status"] == "dry_run")

    assert main(["audit", "--run", dry["id"], "--json"]) == 0
    records = json.loads(capsys.readouterr().out)
    assert {(r["email"], r["op"], r["dry_run"]) for r in records} == {
        ("erin@example.com", "create_user", True),
        ("erin@example.com", "add_membership", True),
    }

    assert main(["audit", "--user", "ERIN@example.com"]) == 0
    text = capsys.readouterr().out.splitlines()
    assert len(text) == 2
    assert all(" DRY RUN  erin@example.com " in line for line in text), text
    assert main(["audit", "--user", "alice@example.com", "--json"]) == 0
    assert {r["dry_run"] for r in json.loads(capsys.readouterr().out)} == {False}

    assert main(["audit", "--limit", "1"]) == 0
    shown = capsys.readouterr()
    assert len(shown.out.splitlines()) == 1
    assert "showing the newest 1 records; older ones exist" in shown.err

    assert main(["audit", "--since", "2999-01-01T00:00"]) == 0
    assert capsys.readouterr().out.strip() == "no audit records"
    with pytest.raises(SystemExit) as bad:
        main(["audit", "--limit", "0"])
    assert bad.value.code == 2
    assert "expected a whole number of at least 1" in capsys.readouterr().err


def test_plan_all_counts_users_left_for_their_first_login_and_held_operations(
    workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    snapshot = ["--idp-snapshot", str(workdir / "idp.json")]

    assert main(["plan", "--all", *snapshot]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "mode enhanced, trigger reconcile: 0 operation(s), 1 held for approval"
    assert (
        "  - 2 user(s) not in the target yet, created at their first login "
        "(--verbose lists them)" in out
    )
    assert "  - skipped dave@example.com: email not verified" in out
    assert not any("alice@example.com" in line for line in out)

    assert main(["plan", "--all", "--verbose", *snapshot]) == 0
    verbose = capsys.readouterr().out
    assert "skipped alice@example.com: not in target yet" in verbose
    assert "skipped erin@example.com: not in target yet" in verbose
    assert "user(s) not in the target yet" not in verbose


def test_progress_is_shown_on_a_terminal_and_never_on_a_pipe(workdir: Path) -> None:
    target = workdir / "target.json"
    assert jit_bridge("snapshot", "target", "-o", str(target)).returncode == 0
    args = ["plan", "--all", "--idp-snapshot", "idp.json", "--target-snapshot", str(target)]

    piped = jit_bridge(*args)
    assert piped.returncode == 0
    assert piped.stderr == ""

    leader, follower = pty.openpty()
    try:
        on_terminal = jit_bridge(*args, stderr=follower)
        os.close(follower)
        shown = b""
        while True:
            try:
                chunk = os.read(leader, 4096)
            except OSError:
                break
            if not chunk:
                break
            shown += chunk
    finally:
        os.close(leader)
    assert on_terminal.returncode == 0
    assert on_terminal.stdout == piped.stdout
    text = shown.decode()
    assert "4 Keycloak users read" in text
    assert "1 target users read" in text
    assert "operations planned" in text


def test_unknown_jit_bridge_variables_are_warned_about(
    workdir: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("JIT_BRIDGE_MAX_REMOVAL", "5")
    monkeypatch.setenv("JIT_BRIDGE_COLOUR", "blue")

    assert main(["config"]) == 0

    err = capsys.readouterr().err
    assert (
        "environment variable JIT_BRIDGE_MAX_REMOVAL is not a jit-bridge setting; "
        "did you mean JIT_BRIDGE_MAX_REMOVALS?" in err
    )
    assert "environment variable JIT_BRIDGE_COLOUR is not a jit-bridge setting" in err
    assert "JIT_BRIDGE_TINES_URL" not in err


def test_run_with_a_missing_or_bad_mapping_exits_2_with_the_problem_and_no_traceback(
    workdir: Path,
) -> None:
    env = {
        **os.environ,
        "JIT_BRIDGE_MAPPING_FILE": str(workdir / "missing.json"),
        "JIT_BRIDGE_LISTEN": f"127.0.0.1:{free_port()}",
    }
    missing = jit_bridge("run", env=env)
    assert missing.returncode == 2
    assert missing.stderr.splitlines() == [
        f"jit-bridge: {workdir / 'missing.json'}: cannot read the mapping file: "
        "No such file or directory; check the path (setting mapping_file, or --mapping)"
    ]

    (workdir / "bad.json").write_text('{"mappings": [{"group_name": "A", "team_name": "T"}]}')
    bad = jit_bridge("run", env={**env, "JIT_BRIDGE_MAPPING_FILE": str(workdir / "bad.json")})
    assert bad.returncode == 2
    assert "Traceback" not in bad.stderr
    assert (
        bad.stderr.splitlines()
        == [f"jit-bridge: {workdir / 'bad.json'}: /mappings/0/role_name: required key missing"]
        or "/mappings/0" in bad.stderr
    )


def test_run_on_a_busy_port_exits_1_with_one_line(workdir: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        env = {**os.environ, "JIT_BRIDGE_LISTEN": f"127.0.0.1:{port}"}

        busy = jit_bridge("run", env=env)

    assert busy.returncode == 1
    assert busy.stderr.splitlines() == [
        f"jit-bridge: cannot listen on 127.0.0.1:{port} (listen): Address already in use; "
        "is another jit-bridge already running there?"
    ]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port

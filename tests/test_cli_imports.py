"""Offline commands load only what they use: `--help` and a `plan` from snapshots start
without the web server, the database layer or any HTTP client (their imports were most of
the command's start-up time)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.test_cli_plan import SCENARIOS, scenario_args

#: Top-level packages an offline command must not load.
SERVICE_STACK = {
    "sqlalchemy",
    "alembic",
    "psycopg",
    "fastapi",
    "starlette",
    "uvicorn",
    "apscheduler",
    "prometheus_client",
    "requests",
    "keycloak",
    "scim2_client",
    "bridge.store",
    "bridge.server",
    "bridge.service",
}

#: Runs the command in a fresh interpreter, then reports the modules it loaded on stderr.
RUN = """
import json, sys
from bridge.cli import main
try:
    code = main(sys.argv[1:])
except SystemExit as exc:
    code = exc.code
sys.stdout.flush()
print(json.dumps({"code": code, "modules": sorted(sys.modules)}), file=sys.stderr)
"""


def loaded_by(args: list[str]) -> tuple[int, str, set[str]]:
    """Exit code, output and the service-stack modules the command loaded."""
    done = subprocess.run(
        [sys.executable, "-c", RUN, *args], capture_output=True, text=True, check=False
    )
    report = json.loads(done.stderr.strip().splitlines()[-1])
    modules = set(report["modules"])
    unwanted = {m for m in modules if m.split(".")[0] in SERVICE_STACK}
    unwanted |= {m for m in modules if any(m.startswith(p + ".") or m == p for p in SERVICE_STACK)}
    return report["code"], done.stdout, unwanted


def test_an_offline_plan_loads_neither_the_database_nor_the_web_stack(tmp_path: Path) -> None:
    args, _ = scenario_args("enhanced-reconcile", tmp_path)

    code, out, unwanted = loaded_by(
        ["plan", "--all", "--trigger", "reconcile", "--allow-removals", "1000", "--json", *args]
    )

    assert code in (0, 4)
    expected = (SCENARIOS / "enhanced-reconcile" / "plan.json").read_text(encoding="utf-8")
    assert out == expected + "\n"
    assert unwanted == set()


def test_help_loads_nothing_beyond_the_command_line(tmp_path: Path) -> None:
    code, out, unwanted = loaded_by(["--help"])

    assert code == 0
    assert "plan" in out
    assert unwanted == set()


def test_a_store_error_is_still_reported_as_one(tmp_path: Path) -> None:
    """Store errors are recognised without importing the store up front."""
    settings = tmp_path / "settings.toml"
    settings.write_text(f'database_url = "sqlite:///{tmp_path}/missing/dir/x.db"\n')
    done = subprocess.run(
        [sys.executable, "-m", "bridge.cli", "--settings", str(settings), "audit"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 1
    assert "the state store (database_url) is unusable" in done.stderr


def test_the_packaged_file_commands_load_nothing_beyond_the_command_line(tmp_path: Path) -> None:
    for args, expected in (
        (["keycloak-provider", "install", str(tmp_path / "missing")], 2),  # no jar needed
        (["example-mapping", "-o", str(tmp_path / "mapping.json")], 0),
        (["mapping-schema"], 0),
    ):
        code, _, unwanted = loaded_by(args)

        assert code == expected, args
        assert unwanted == set(), args

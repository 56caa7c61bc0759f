"""`make demo` end to end: the script a newcomer runs first must work and leave nothing behind.

It starts its own Keycloak through the harness (30-80 s, more on a loaded machine), a
scim2-server and `jit-bridge run`, so this is one slow test that checks everything at once.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
DEMO = REPO / "deploy" / "demo" / "demo.py"
TABLE_HEADING = "SCIM server now (user x team -> role):"
#: Generous: a cold Keycloak start on a busy two-core machine takes over three minutes.
DEMO_TIMEOUT = 900
MARKER = "DEMO_TEST_RUN_MARKER"

# The demo starts Keycloak, scim2-server and the bridge itself, not through fixtures.
pytestmark = [pytest.mark.keycloak, pytest.mark.scim, pytest.mark.bridge_process]


def run_demo(marker: str) -> subprocess.CompletedProcess[str]:
    # Not JIT_BRIDGE_*: the demo keeps the caller's JIT_BRIDGE_* settings from its children.
    env = {**os.environ, MARKER: marker}
    process = subprocess.Popen(
        [sys.executable, str(DEMO)],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        out, err = process.communicate(timeout=DEMO_TIMEOUT)
    except subprocess.TimeoutExpired:
        process.send_signal(signal.SIGTERM)  # the demo cleans up on SIGTERM as on Ctrl-C
        out, err = process.communicate(timeout=120)
        pytest.fail(f"the demo did not finish within {DEMO_TIMEOUT} s:\n{out}\n{err}")
    return subprocess.CompletedProcess(process.args, process.returncode, out, err)


def tables(output: str) -> list[dict[str, dict[str, str]]]:
    """Every printed role table as {email: {team: role}}, in order; '-' cells left out."""
    found = []
    for block in output.split(TABLE_HEADING)[1:]:
        lines = block.strip("\n").splitlines()
        rows: dict[str, dict[str, str]] = {}
        if lines and lines[0].strip().startswith("user"):
            header = re.split(r"\s{2,}", lines[0].strip())
            for line in lines[2:]:
                if not line.strip():
                    break
                cells = re.split(r"\s{2,}", line.strip())
                rows[cells[0]] = {
                    team: role
                    for team, role in zip(header[1:], cells[1:], strict=True)
                    if role != "-"
                }
        found.append(rows)
    return found


def processes_with(marker: str) -> list[str]:
    """Command lines of live processes whose environment carries the marker: every process
    the demo started (Keycloak, scim2-server, jit-bridge) inherits it."""
    left = []
    needle = f"{MARKER}={marker}".encode()
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            if needle in (proc / "environ").read_bytes().split(b"\0"):
                left.append((proc / "cmdline").read_bytes().replace(b"\0", b" ").decode())
        except OSError:
            continue  # gone meanwhile, or not ours to read
    return left


@pytest.mark.slow
def test_demo_shows_access_following_keycloak_and_cleans_up() -> None:
    marker = uuid.uuid4().hex
    done = run_demo(marker)

    assert done.returncode == 0, f"demo failed:\n{done.stdout}\n{done.stderr}"
    steps = tables(done.stdout)
    assert len(steps) == 6, done.stdout  # before anything, then after each of 5 steps
    assert steps[0] == {}
    after_logins, after_group_change = steps[3], steps[4]
    assert after_logins == {
        "alice@example.com": {
            "Analytics": "TEAM_ADMIN",
            "Incident Response": "EDITOR",
            "Platform": "EDITOR",
        },
        "bob@example.com": {"Analytics": "EDITOR", "Incident Response / Tier 1": "VIEWER"},
        "carol@example.com": {
            "Analytics": "EDITOR",
            "Incident Response": "VIEWER",
            "Platform": "EDITOR",
        },
    }
    # Taking bob out of /Analysts removed his Analytics role, and nothing else changed.
    assert after_group_change == {
        **after_logins,
        "bob@example.com": {"Incident Response / Tier 1": "VIEWER"},
    }
    assert re.search(r"bob@example\.com remove_membership Analytics", done.stdout)
    # Joining an organization's group through Keycloak Organizations gave its team.
    assert steps[5] == {
        **after_group_change,
        "alice@example.com": {
            **after_logins["alice@example.com"],
            "Customer Support": "EDITOR",
        },
    }
    assert "Where to go next" in done.stdout

    assert processes_with(marker) == []
    workdir = re.search(r"temporary files: (\S+)", done.stdout)
    assert workdir is not None
    assert not Path(workdir.group(1)).exists()

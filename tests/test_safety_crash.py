"""Crash safety (docs/design.md: Flow, Settings and state): a `jit-bridge sync --all` killed with
SIGKILL in the middle of its writes leaves nothing a rerun cannot fix, and the audit log shows
every operation that reached the target exactly once, across both runs."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.test_safety_support import Deployment, idp_user, make_deployment
from tests.tines_fake import TinesFake
from tests.waiting import wait_until

NEWCOMERS = [f"user{n:02d}" for n in range(12)]


def wait_for(condition: Callable[[], bool], what: str, limit: float = 60.0) -> None:
    wait_until(condition, limit, what, interval=0.02)


def invited_emails(fake: TinesFake) -> list[str]:
    emails = {u.id: u.email for u in fake.state.export().users}
    return [
        emails[str(r.body["user_id"])]
        for r in fake.applied_writes()
        if r.path.endswith("invite_member")
    ]


@pytest.fixture
def deployment(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, tines_fake: TinesFake
) -> Deployment:
    # One write in flight, so the kill below lands on a known one (with write_concurrency
    # users at once, any of several writes could be the one under way).
    deployment = make_deployment(monkeypatch, tmp_path, tines_fake, write_concurrency=1)
    tines_fake.state.add_team("Analytics")
    tines_fake.state.add_team("Ops")
    for name in NEWCOMERS:
        tines_fake.state.add_user(f"{name}@example.com")
    deployment.set_idp([idp_user(n, "/Analysts") for n in NEWCOMERS])
    return deployment


def test_kill_during_a_full_reconcile_then_rerun_converges_with_each_op_audited_once(
    deployment: Deployment, capsys: pytest.CaptureFixture[str]
) -> None:
    fake = deployment.tines
    fake.slow(0.2)
    command = [sys.executable, "-m", "bridge.cli", "sync", "--all"]
    command += ["--idp-snapshot", str(deployment.idp), "--settings", str(deployment.settings)]
    process = subprocess.Popen(
        command, cwd=deployment.root, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    try:
        wait_for(lambda: len(invited_emails(fake)) >= 4, "four applied writes")
        # Kill while the next write is inside the target (the fake is sleeping on it), and
        # make that write fail there, so it is certainly not applied: the rerun owns it.
        seen = len(fake.requests)
        wait_for(lambda: len(fake.requests) > seen, "the next request")
        fake.fail_next(1, status=503)
        os.kill(process.pid, signal.SIGKILL)
        process.wait(30)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == -signal.SIGKILL
    in_flight = fake.requests[-1]
    wait_for(lambda: in_flight.status is not None, "the fake to settle the orphaned request")
    assert in_flight.status == 503
    applied_before_kill = invited_emails(fake)
    assert 4 <= len(applied_before_kill) < len(NEWCOMERS)

    fake.slow(0)
    code, _, err = deployment.cli(
        "sync", "--all", "--idp-snapshot", str(deployment.idp), capsys=capsys
    )
    assert code == 0, err
    wanted = {f"{n}@example.com" for n in NEWCOMERS}
    assert set(deployment.team_members("Analytics")) == wanted
    assert sorted(invited_emails(fake)) == sorted(wanted)  # nothing sent twice

    code, out, _ = deployment.cli("audit", "--json", capsys=capsys)
    assert code == 0
    applied = [r["email"] for r in json.loads(out) if r["outcome"] == "applied"]
    assert sorted(applied) == sorted(wanted)  # every applied write once, killed run included
    runs = {r["run_id"] for r in json.loads(out) if r["email"] in applied_before_kill}
    assert len(runs) == 1  # those came from the killed run

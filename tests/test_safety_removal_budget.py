"""The removal budget through the CLI (docs/design.md: Safety, Command line): an over-budget full
reconcile applies its additions, holds its removals (exit 3), shows them in `audit`, and applies
them only on
`approve` (exit 0); the hold outlives the process; a second approval is refused (exit 2); an
approval never takes away access that came back meanwhile."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from bridge.mapping_file import parse_mapping
from bridge.reconcile import Reconciler
from bridge.settings import load_settings
from bridge.sources.base import SnapshotSource
from bridge.store.errors import RunAlreadyApprovedError
from bridge.targets.tines import TinesTarget
from bridge.wiring import read_idp_snapshot
from tests.test_safety_support import MAPPING, Deployment, idp_user, make_deployment, seed_tenant
from tests.tines_fake import TinesFake

LEAVERS = ["ann", "ben", "cat", "dan"]


@pytest.fixture
def deployment(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, tines_fake: TinesFake
) -> Deployment:
    """Four analysts in the tenant who all left the group in Keycloak, and a newcomer."""
    deployment = make_deployment(monkeypatch, tmp_path, tines_fake, max_removals=2)
    seed_tenant(tines_fake, {"Analytics": LEAVERS})
    tines_fake.state.add_user("eve@example.com")
    deployment.set_idp([*(idp_user(n) for n in LEAVERS), idp_user("eve", "/Analysts")])
    return deployment


def held_run(deployment: Deployment, capsys: pytest.CaptureFixture[str]) -> str:
    code, out, err = deployment.cli(
        "sync", "--all", "--idp-snapshot", str(deployment.idp), capsys=capsys
    )
    assert code == 3, err
    match = re.search(r"jit-bridge approve (\S+)", out)
    assert match, out
    return match.group(1)


def test_over_budget_sync_adds_now_and_holds_every_removal(
    deployment: Deployment, capsys: pytest.CaptureFixture[str]
) -> None:
    run_id = held_run(deployment, capsys)
    members = deployment.team_members("Analytics")
    assert members["eve@example.com"] == "EDITOR"  # the addition went ahead
    assert {f"{n}@example.com" for n in LEAVERS} <= set(members)  # no removal sent
    assert not [w for w in deployment.tines.writes() if w.path.endswith("remove_member")]

    code, out, _ = deployment.cli("audit", "--json", capsys=capsys)
    assert code == 0
    held = [r for r in json.loads(out) if r["outcome"] == "held"]
    assert sorted(r["email"] for r in held) == [f"{n}@example.com" for n in LEAVERS]
    assert {r["op"] for r in held} == {"remove_membership"}
    assert {r["run_id"] for r in held} == {run_id}


def test_approve_applies_the_held_removals_once_and_refuses_a_second_time(
    deployment: Deployment, capsys: pytest.CaptureFixture[str]
) -> None:
    run_id = held_run(deployment, capsys)
    code, _, err = deployment.cli(
        "approve", run_id, "--idp-snapshot", str(deployment.idp), capsys=capsys
    )
    assert code == 0, err
    assert set(deployment.team_members("Analytics")) == {"eve@example.com"}
    removals = [w for w in deployment.tines.applied_writes() if w.path.endswith("remove_member")]
    assert len(removals) == len(LEAVERS)

    code, _, err = deployment.cli(
        "approve", run_id, "--idp-snapshot", str(deployment.idp), capsys=capsys
    )
    assert code == 2
    assert f"run {run_id} was already approved" in err
    assert "Traceback" not in err
    removals = [w for w in deployment.tines.applied_writes() if w.path.endswith("remove_member")]
    assert len(removals) == len(LEAVERS)


def test_approving_an_unknown_run_is_a_usage_error(
    deployment: Deployment, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = deployment.cli(
        "approve", "no-such-run", "--idp-snapshot", str(deployment.idp), capsys=capsys
    )
    assert code == 2
    assert "no-such-run" in err
    assert "Traceback" not in err


def test_the_hold_survives_a_restart_of_the_store(
    deployment: Deployment, capsys: pytest.CaptureFixture[str]
) -> None:
    run_id = held_run(deployment, capsys)
    restarted = deployment.store()
    try:
        run = restarted.get_run(run_id)
        assert run is not None
        assert run.status == "held"
        assert sorted(op["email"] for op in run.held_operations or []) == [
            f"{n}@example.com" for n in LEAVERS
        ]
    finally:
        restarted.close()


def test_an_approval_never_removes_access_regained_meanwhile(
    deployment: Deployment, capsys: pytest.CaptureFixture[str]
) -> None:
    run_id = held_run(deployment, capsys)
    # ann is back in Analysts before anyone approves: her removal must not happen.
    deployment.set_idp(
        [
            idp_user("ann", "/Analysts"),
            *(idp_user(n) for n in LEAVERS[1:]),
            idp_user("eve", "/Analysts"),
        ]
    )
    settings = load_settings(deployment.settings)
    store = deployment.store()
    try:
        reconciler = Reconciler(
            policy=settings.policy,
            mapping=lambda: parse_mapping(json.dumps(MAPPING)),
            source=SnapshotSource(read_idp_snapshot(deployment.idp)),
            target=TinesTarget(deployment.tines.url, deployment.tines.api_key),
            store=store,
        )
        report = reconciler.approve(run_id, approved_by="test")
        assert report.status == "succeeded"
        assert sorted(op.email for op in report.plan.operations) == [
            f"{n}@example.com" for n in LEAVERS[1:]
        ]
        with pytest.raises(RunAlreadyApprovedError):
            reconciler.approve(run_id, approved_by="test")
    finally:
        store.close()
    assert set(deployment.team_members("Analytics")) == {"ann@example.com", "eve@example.com"}


def test_a_failed_read_does_not_use_up_the_approval(
    deployment: Deployment, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    run_id = held_run(deployment, capsys)
    deployment.tines.fail_next(50, status=503)
    code, _, err = deployment.cli(
        "approve", run_id, "--idp-snapshot", str(deployment.idp), capsys=capsys
    )
    assert code == 1
    assert "Traceback" not in err
    assert {f"{n}@example.com" for n in LEAVERS} <= set(deployment.team_members("Analytics"))
    deployment.tines.fail_next(0)
    deployment.tines._faults.clear()
    code, _, err = deployment.cli(
        "approve", run_id, "--idp-snapshot", str(deployment.idp), capsys=capsys
    )
    assert code == 0, err
    assert set(deployment.team_members("Analytics")) == {"eve@example.com"}

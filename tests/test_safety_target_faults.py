"""Target faults (docs/design.md, Safety): bursts of 429 (with and without Retry-After), 5xx,
connection resets and slow answers are retried a bounded number of times with backoff and converge
without a duplicated side effect; 401/403 stop the run at once, with no retry storm."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from bridge.health import Health
from bridge.mapping_file import parse_mapping
from bridge.metrics import Metrics
from bridge.model import IdpSnapshot
from bridge.policy import Policy
from bridge.reconcile import Reconciler
from bridge.sources.base import SnapshotSource
from bridge.store import Store
from bridge.targets.base import UnauthorizedError
from bridge.targets.http import Backoff
from bridge.targets.tines import TinesTarget, tines_http
from bridge.worker import WorkerPool
from tests.test_safety_support import MAPPING, idp_user, seed_tenant
from tests.tines_fake import TinesFake

NEWCOMERS = ["amy", "bob", "cy"]


class Waits:
    """Records the backoff the client asks for instead of sleeping; may run a hook."""

    def __init__(self) -> None:
        self.asked: list[float] = []
        self.hook: Callable[[], None] = lambda: None

    def __call__(self, seconds: float) -> None:
        self.asked.append(seconds)
        self.hook()


def reconciler(
    fake: TinesFake, waits: Waits, api_key: str | None = None, **http: float
) -> Reconciler:
    users = [idp_user(n, "/Analysts") for n in NEWCOMERS]
    client = tines_http(
        fake.url,
        api_key or fake.api_key,
        sleep=waits,
        max_retries=4,
        backoff=Backoff(base=0.5, cap=30.0),
        timeout=http.get("timeout", 10.0),
    )
    return Reconciler(
        policy=Policy(mode="enhanced"),
        mapping=lambda: parse_mapping(json.dumps(MAPPING)),
        source=SnapshotSource(IdpSnapshot.model_validate({"users": users})),
        target=TinesTarget(fake.url, "unused", http=client),
    )


@pytest.fixture
def fake(tines_fake: TinesFake) -> TinesFake:
    seed_tenant(tines_fake, {"Analytics": ["old"]})
    for name in NEWCOMERS:
        tines_fake.state.add_user(f"{name}@example.com")
    return tines_fake


def invites(fake: TinesFake) -> list[int]:
    return [r.body["user_id"] for r in fake.applied_writes() if r.path.endswith("invite_member")]


def converged(fake: TinesFake) -> bool:
    state = fake.state.export()
    emails = {u.id: u.email for u in state.users}
    [team] = [t for t in state.teams if t.name == "Analytics"]
    # `old` exists only in the target: never touched (docs/design.md, Modes)
    wanted = {f"{n}@example.com" for n in [*NEWCOMERS, "old"]}
    return {emails[m.user_id] for m in team.members} == wanted


def test_429_burst_with_retry_after_is_waited_out_and_applied_once(fake: TinesFake) -> None:
    waits = Waits()
    fake.fail_next(3, status=429, retry_after=7, path_prefix="teams")
    report = reconciler(fake, waits).sync_all("reconcile", triggered_by=[], requested_by="t")
    assert report.status == "succeeded"
    assert waits.asked == [7.0, 7.0, 7.0]
    assert converged(fake)
    assert sorted(invites(fake)) == sorted(set(invites(fake)))  # each user invited once
    assert len([r for r in fake.requests if r.status == 429]) == 3


def test_429_burst_without_retry_after_backs_off_exponentially(fake: TinesFake) -> None:
    waits = Waits()
    fake.fail_next(4, status=429, path_prefix="teams/1/invite_member")
    report = reconciler(fake, waits).sync_all("reconcile", triggered_by=[], requested_by="t")
    assert report.status == "succeeded"
    assert len(waits.asked) == 4
    ceilings = [0.5 * 2**n for n in range(4)]
    assert all(c / 2 <= w <= c for w, c in zip(waits.asked, ceilings, strict=True))
    assert converged(fake)
    assert len(invites(fake)) == len(set(invites(fake))) == len(NEWCOMERS)


def test_5xx_beyond_the_retries_stops_the_run_and_a_rerun_converges(
    fake: TinesFake, tmp_path: Path
) -> None:
    waits = Waits()
    fake.fail_next(5, status=503, path_prefix="teams/1/invite_member")
    first = reconciler(fake, waits).sync_all("reconcile", triggered_by=[], requested_by="t")
    assert first.status == "failed"
    assert len(waits.asked) == 4  # bounded: max_retries, then give up
    assert {r.outcome for r in first.results} == {"failed", "not_run"}
    assert invites(fake) == []
    second = reconciler(fake, Waits()).sync_all("reconcile", triggered_by=[], requested_by="t")
    assert second.status == "succeeded"
    assert converged(fake)
    assert len(invites(fake)) == len(set(invites(fake))) == len(NEWCOMERS)


def test_a_run_stopped_by_an_outage_audits_what_was_sent_and_nothing_more(
    fake: TinesFake, tmp_path: Path
) -> None:
    store = Store.open(f"sqlite:///{tmp_path / 'state.db'}")
    store.upgrade()
    bridge = reconciler(fake, Waits())
    bridge.store = store
    fake.fail_next(5, status=503, path_prefix="teams/1/invite_member")
    try:
        report = bridge.sync_all("reconcile", triggered_by=[], requested_by="t")
        assert report.status == "failed"
        records = store.audit()
        # the one call that failed is in the audit; the operations never sent are not
        assert [(r.op, r.outcome) for r in records] == [("add_membership", "failed")]
        assert "503" in (records[0].error or "")
        [run] = store.list_runs()
        assert run.status == "failed"
    finally:
        store.close()


def test_connection_resets_are_retried_without_duplicates(fake: TinesFake) -> None:
    waits = Waits()
    fake.reset_connections(3)
    report = reconciler(fake, waits).sync_all("reconcile", triggered_by=[], requested_by="t")
    assert report.status == "succeeded"
    assert len(waits.asked) == 3
    assert len([r for r in fake.requests if r.status is None]) == 3
    assert converged(fake)
    assert len(invites(fake)) == len(set(invites(fake))) == len(NEWCOMERS)


def test_a_slow_answer_times_out_is_retried_and_creates_nothing_twice(
    fake: TinesFake,
) -> None:
    waits = Waits()
    fake.slow(3.0)
    waits.hook = lambda: fake.slow(0)  # the target recovers while the client backs off
    report = reconciler(fake, waits, timeout=1.0).sync_all(
        "reconcile", triggered_by=[], requested_by="t"
    )
    assert report.status == "succeeded"
    assert 1 <= len(waits.asked) <= 4
    assert converged(fake)
    assert len(invites(fake)) == len(set(invites(fake))) == len(NEWCOMERS)
    members = fake.state.export()
    assert len({u.email for u in members.users}) == len(members.users)


@pytest.mark.parametrize("status", [401, 403])
def test_refused_credentials_stop_at_once_without_a_retry_storm(
    fake: TinesFake, status: int
) -> None:
    waits = Waits()
    fake.fail_next(100, status=status, path_prefix="teams/1/invite_member")
    report = reconciler(fake, waits).sync_all("reconcile", triggered_by=[], requested_by="t")
    assert report.status == "failed"
    assert waits.asked == []
    refused = [r for r in fake.requests if r.status == status]
    assert len(refused) == 1  # one call, then the run stopped
    assert [r.outcome for r in report.results].count("not_run") == len(NEWCOMERS) - 1
    assert "check that the API key is valid" in (report.error or "")


def test_a_wrong_api_key_stops_the_workers_until_the_settings_change(
    fake: TinesFake, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    waits = Waits()
    store = Store.open(f"sqlite:///{tmp_path / 'state.db'}", clock=lambda: 1000.0)
    store.upgrade()
    health, metrics = Health(), Metrics()
    pool = WorkerPool(
        store=store,
        reconciler=lambda: reconciler(fake, waits, api_key="wrong-key"),
        metrics=metrics,
        health=health,
    )
    try:
        store.enqueue("all", "reconcile", source="test")
        item = store.claim("w")
        assert item is not None
        pool.run_item(item)
        assert len(fake.requests) == 1
        assert waits.asked == []
        # A stop, not a timed retry: status, metrics and the log say so, and this process's
        # workers take no more work; the key waits, due, for a process with good settings.
        assert pool.stopped_because is not None
        assert health.failing()["target"].startswith("stopped: the target refused the bridge")
        assert "jit_bridge_workers_stopped 1.0" in metrics.render().decode()
        assert any("workers stopped" in r.getMessage() for r in caplog.records)
        [waiting] = store.queue_items()
        assert (waiting.key, waiting.claimed_by, waiting.attempts) == ("all", None, 0)
        assert waiting.not_before == 1000.0
        assert "fix the credentials or TLS settings and restart" in (waiting.last_error or "")
    finally:
        store.close()
    with pytest.raises(UnauthorizedError):
        reconciler(fake, waits, api_key="wrong-key").target.read_state()

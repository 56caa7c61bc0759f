"""Runs and the removals a safety hold keeps back for approval; mapping versions; leases."""

from __future__ import annotations

import os
import socket
import subprocess
from typing import TYPE_CHECKING, Any

import pytest

from bridge.store import (
    RunAlreadyApprovedError,
    RunNotFoundError,
    RunNotHeldError,
    Store,
)

if TYPE_CHECKING:
    from tests.fixtures.store_db import FakeClock

pytest_plugins = ["tests.fixtures.store_db"]

HELD: list[dict[str, Any]] = [
    {
        "op": "remove_membership",
        "email": "carol@example.com",
        "team": "Analytics",
        "role": "VIEWER",
    },
    {"op": "set_tenant_owner", "email": "dana@example.com", "value": False},
]


def held_run(store: Store) -> str:
    run_id = store.start_run("reconcile", "schedule", requested_by="scheduler")
    store.hold_run(run_id, HELD, "3 removals exceed max_removals = 2")
    store.finish_run(run_id, "held", {"applied": 4, "held": 2})
    return run_id


# -- runs -----------------------------------------------------------------------------------


def test_a_run_records_its_start_finish_and_summary(store: Store, store_clock: FakeClock) -> None:
    run_id = store.start_run("reconcile", "schedule", requested_by="scheduler")
    running = store.get_run(run_id)
    assert running is not None
    assert (running.status, running.finished_at) == ("running", None)

    store_clock.advance(12)
    store.finish_run(run_id, "partial", {"applied": 3, "failed": 1})

    finished = store.get_run(run_id)
    assert finished is not None
    assert (finished.status, finished.summary) == ("partial", {"applied": 3, "failed": 1})
    assert finished.finished_at is not None
    assert (finished.finished_at - finished.started_at).total_seconds() == pytest.approx(12)


def test_a_run_with_nothing_to_do_reads_back_as_json(store: Store) -> None:
    run_id = store.start_run("user", "login", requested_by="webhook")
    store.finish_run(run_id, "no_changes", {"operations": 0})

    (run,) = store.list_runs(status="no_changes")
    assert run.to_json()["status"] == "no_changes"
    assert run.to_json()["id"] == run_id


def test_run_ids_sort_by_start_time_and_runs_list_newest_first(
    store: Store, store_clock: FakeClock
) -> None:
    started = []
    for n in range(5):
        started.append(store.start_run("user", "login", requested_by=f"cli-{n}"))
        store_clock.advance(0.002)
    store.finish_run(started[1], "failed", {"error": "Keycloak unreachable"})

    assert started == sorted(started)
    assert [run.id for run in store.list_runs(3)] == started[:-4:-1]
    assert [run.id for run in store.list_runs(10, status="failed")] == [started[1]]
    assert store.get_run("no-such-run") is None


def test_approving_a_held_run_returns_its_operations_once(store: Store) -> None:
    run_id = held_run(store)
    assert [run.id for run in store.list_runs(status="held")] == [run_id]

    assert store.approve_run(run_id, approved_by="ops@example.com") == HELD

    approved = store.get_run(run_id)
    assert approved is not None
    assert (approved.status, approved.approved_by) == ("approved", "ops@example.com")
    assert approved.approved_at is not None
    assert store.list_runs(status="held") == []
    with pytest.raises(RunAlreadyApprovedError, match=r"already approved by ops@example\.com"):
        store.approve_run(run_id, approved_by="someone-else")


def test_only_a_held_run_can_be_approved(store: Store) -> None:
    run_id = store.start_run("reconcile", "cli", requested_by="cli")
    store.finish_run(run_id, "succeeded", {})

    with pytest.raises(RunNotHeldError, match="status 'succeeded'"):
        store.approve_run(run_id, approved_by="ops")
    with pytest.raises(RunNotFoundError, match="no run with id 'missing'"):
        store.approve_run("missing", approved_by="ops")
    with pytest.raises(RunNotFoundError):
        store.finish_run("missing", "failed", {})


def test_an_approval_between_hold_and_finish_is_not_undone(store: Store) -> None:
    run_id = store.start_run("reconcile", "schedule", requested_by="scheduler")
    store.hold_run(run_id, HELD, "over budget")
    store.approve_run(run_id, approved_by="ops")

    store.finish_run(run_id, "held", {"held": 2})

    with pytest.raises(RunAlreadyApprovedError):
        store.approve_run(run_id, approved_by="ops")


def test_a_held_run_survives_a_restart(
    store: Store, store_url: str, store_clock: FakeClock
) -> None:
    run_id = held_run(store)
    store.close()

    restarted = Store.open(store_url, clock=store_clock)
    try:
        run = restarted.get_run(run_id)
        assert run is not None
        assert (run.status, run.hold_reason) == ("held", "3 removals exceed max_removals = 2")
        assert restarted.approve_run(run_id, approved_by="ops") == HELD
    finally:
        restarted.close()


# -- mapping versions -----------------------------------------------------------------------


def test_mapping_versions_are_kept_and_the_newest_is_current(store: Store) -> None:
    assert store.current_mapping() is None

    first = store.save_mapping('{"mappings": [1]}', "file mappings/mapping.json")
    second = store.save_mapping('{"mappings": [2]}', "admin API by ops")

    assert (first, second) == (1, 2)
    assert store.current_mapping() == (2, '{"mappings": [2]}')
    assert store.get_mapping(1) == '{"mappings": [1]}'
    assert [(v.version, v.source, v.text) for v in store.mapping_versions()] == [
        (2, "admin API by ops", '{"mappings": [2]}'),
        (1, "file mappings/mapping.json", '{"mappings": [1]}'),
    ]


def test_saving_the_current_mapping_again_adds_no_version(store: Store) -> None:
    store.save_mapping('{"mappings": [1]}', "file")
    store.save_mapping('{"mappings": [2]}', "api")

    assert store.save_mapping('{"mappings": [2]}', "file") == 2
    assert store.save_mapping('{"mappings": [1]}', "rollback") == 3
    assert len(store.mapping_versions()) == 3


# -- leases ---------------------------------------------------------------------------------


def test_a_lease_has_one_holder_until_it_expires(store: Store, store_clock: FakeClock) -> None:
    assert store.acquire_lease("scheduler", "proc-a", ttl_seconds=30)
    assert not store.acquire_lease("scheduler", "proc-b", ttl_seconds=30)
    assert store.acquire_lease("poller", "proc-b", ttl_seconds=30), "leases are per name"

    store_clock.advance(20)
    assert store.acquire_lease("scheduler", "proc-a", ttl_seconds=30), "renewal"
    store_clock.advance(20)
    assert not store.acquire_lease("scheduler", "proc-b", ttl_seconds=30), "renewed lease is live"

    store_clock.advance(11)
    assert store.acquire_lease("scheduler", "proc-b", ttl_seconds=30), "proc-a stopped renewing"
    assert not store.acquire_lease("scheduler", "proc-a", ttl_seconds=30)


def test_releasing_a_lease_frees_it_only_for_its_holder(store: Store) -> None:
    store.acquire_lease("scheduler", "proc-a", ttl_seconds=30)

    store.release_lease("scheduler", "proc-b")
    assert not store.acquire_lease("scheduler", "proc-b", ttl_seconds=30)

    store.release_lease("scheduler", "proc-a")
    assert store.acquire_lease("scheduler", "proc-b", ttl_seconds=30)


def test_a_held_run_stays_approvable_whatever_else_failed_in_it(store: Store) -> None:
    run_id = store.start_run("all", "reconcile", requested_by="schedule")
    store.hold_run(run_id, HELD, "over budget")

    store.finish_run(run_id, "partial", {"status": "partial", "outcomes": {"failed": 1}})

    run = store.get_run(run_id)
    assert run is not None
    assert (run.status, run.summary["status"]) == ("held", "partial")
    assert store.approve_run(run_id, approved_by="ops") == HELD


def test_a_stopping_process_marks_its_own_running_runs_interrupted(store: Store) -> None:
    store.holder = "this-host:1"
    mine = store.start_run("all", "reconcile", requested_by="schedule")
    store.holder = "other-host:4242"
    theirs = store.start_run("user", "login", requested_by="queue:login")
    store.holder = "this-host:1"

    assert store.interrupt_runs("stopping") == 1

    assert [status_of(store, r) for r in (mine, theirs)] == ["interrupted", "running"]


def test_runs_left_by_a_dead_process_are_interrupted_by_the_next_start(store: Store) -> None:
    store.holder = f"{socket.gethostname()}:{_dead_pid()}"
    dead = store.start_run("all", "reconcile", requested_by="schedule")
    store.holder = "far-away-host:7"
    store.keep_process_alive(30)
    live_elsewhere = store.start_run("user", "login", requested_by="queue:login")
    store.holder = "cli@far-away-host:8"
    cli_elsewhere = store.start_run("user", "login", requested_by="cli")
    store.holder = "gone-host:9"  # a service whose process lease is not live
    gone_elsewhere = store.start_run("all", "reconcile", requested_by="schedule")
    store.holder = f"{socket.gethostname()}:{os.getpid()}"

    assert store.interrupt_abandoned_runs() == 2

    runs = (dead, live_elsewhere, cli_elsewhere, gone_elsewhere)
    assert [status_of(store, r) for r in runs] == [
        "interrupted",
        "running",
        "running",
        "interrupted",
    ]


def status_of(store: Store, run_id: str) -> str:
    run = store.get_run(run_id)
    assert run is not None
    return run.status


def _dead_pid() -> int:
    """The id of a process that has exited."""
    child = subprocess.Popen(["true"])
    child.wait()
    return child.pid

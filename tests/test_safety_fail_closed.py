"""Fail closed (docs/design.md, Safety) against a real Keycloak behind a switchable proxy: when
Keycloak is unreachable, answers 500, hangs, cuts a page short, or a mapped group is gone, nothing
is removed; the failure shows in the run report, health, metrics and logs; and once Keycloak
answers again the queued work runs by itself and converges."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from bridge.health import Health
from bridge.mapping_file import parse_mapping
from bridge.metrics import Metrics
from bridge.policy import Policy
from bridge.reconcile import Reconciler
from bridge.sources.base import SourceError
from bridge.store import Store
from bridge.targets.tines import TinesTarget
from bridge.worker import WorkerPool
from tests.fixtures.faulty_proxy import FaultyProxy
from tests.fixtures.keycloak import KeycloakSandbox, TestKeycloak
from tests.tines_fake import TinesFake


@dataclass
class World:
    """Keycloak group G: `stays` (already in the team) and `joins` (not yet); `left` holds
    the team in Tines but is in no group. Healthy, a full reconcile adds `joins` and
    removes `left`."""

    keycloak: TestKeycloak
    proxy: FaultyProxy
    tines: TinesFake
    group: str
    stays: str
    joins: str
    left: str
    clock: list[float]
    store: Store
    health: Health
    metrics: Metrics
    pool: WorkerPool

    def reconciler(self) -> Reconciler:
        mapping = parse_mapping(
            json.dumps(
                {
                    "mappings": [
                        {"group_name": self.group, "team_name": "Analytics", "role_name": "EDITOR"}
                    ]
                }
            )
        )
        return Reconciler(
            policy=Policy(mode="enhanced"),
            mapping=lambda: mapping,
            source=self.keycloak.source(server_url=self.proxy.url, timeout=1),
            target=TinesTarget(self.tines.url, self.tines.api_key),
            store=self.store,
        )

    def members(self) -> set[str]:
        state = self.tines.state.export()
        emails = {u.id: u.email for u in state.users}
        return {emails[m.user_id] for t in state.teams for m in t.members}

    def removals(self) -> int:
        return len([w for w in self.tines.writes() if w.path.endswith("remove_member")])

    def run_queued(self) -> None:
        item = self.store.claim("test-worker")
        assert item is not None, "nothing claimable in the queue"
        self.pool.run_item(item)

    def later(self, seconds: float = 3600) -> None:
        self.clock[0] += seconds


@pytest.fixture
def world(
    keycloak: TestKeycloak,
    keycloak_sandbox: KeycloakSandbox,
    tines_fake: TinesFake,
    faulty_proxy: Callable[..., FaultyProxy],
    tmp_path: Path,
) -> World:
    group = keycloak_sandbox.create_group("/Staff")
    names = {}
    for role in ("stays", "joins", "left"):
        username, _ = keycloak_sandbox.create_user(role)
        names[role] = f"{username}@example.com"
        if role != "left":
            keycloak.add_to_group(username, group)
    team = tines_fake.state.add_team("Analytics")
    for role, email in names.items():
        user_id = tines_fake.state.add_user(email)
        if role != "joins":
            tines_fake.state.containers[team].members[user_id] = "EDITOR"
    clock = [1_000_000.0]
    store = Store.open(f"sqlite:///{tmp_path / 'state.db'}", clock=lambda: clock[0])
    store.upgrade()
    health, metrics = Health(), Metrics()
    world = World(
        keycloak,
        faulty_proxy(keycloak.url),
        tines_fake,
        group,
        names["stays"],
        names["joins"],
        names["left"],
        clock,
        store,
        health,
        metrics,
        None,  # type: ignore[arg-type]
    )
    world.pool = WorkerPool(
        store=store,
        reconciler=world.reconciler,
        metrics=metrics,
        health=health,
    )
    return world


def metric(world: World, name: str) -> float:
    """What a scrape of /metrics shows: the store's gauges refreshed first."""
    world.metrics.refresh_from_store(world.store)
    return world.metrics.registry.get_sample_value(name) or 0.0


def assert_recovers(world: World) -> None:
    world.proxy.heal()
    world.later()
    world.run_queued()
    assert world.members() == {world.stays, world.joins}
    assert world.health.failing() == {}
    assert world.store.queue_items() == []


FAULTS: dict[str, Callable[[FaultyProxy], None]] = {
    "unreachable": lambda p: p.refuse(),
    "500 everywhere": lambda p: p.fail(500, r"/admin/"),
    "timeout": lambda p: p.hang(r"/admin/"),
    "truncated user page": lambda p: p.truncate(r"/users\?"),
}


@pytest.mark.parametrize("fault", FAULTS)
def test_a_failed_bulk_read_removes_nothing_is_reported_and_heals(
    world: World, fault: str, caplog: pytest.LogCaptureFixture
) -> None:
    FAULTS[fault](world.proxy)
    with pytest.raises(SourceError):
        world.reconciler().sync_all("reconcile", triggered_by=[], requested_by="test")
    world.store.enqueue("all", "reconcile", source="test")
    with caplog.at_level(logging.WARNING, logger="bridge.worker"):
        world.run_queued()
    assert world.tines.writes() == []
    assert world.members() == {world.stays, world.left}
    assert "keycloak" in world.health.failing()
    assert metric(world, "jit_bridge_keycloak_read_failures_total") == 1
    [waiting] = world.store.queue_items()
    assert "Keycloak read failed" in (waiting.last_error or "")
    assert "Keycloak read failed" in caplog.text
    assert_recovers(world)


@pytest.mark.parametrize("fault", ["500", "truncated"])
def test_an_unreadable_group_keeps_what_it_grants_and_is_retried(
    world: World, fault: str, caplog: pytest.LogCaptureFixture
) -> None:
    group_id = world.keycloak.group_id(world.group)
    pattern = rf"/groups/{group_id}/members"
    world.proxy.fail(500, pattern) if fault == "500" else world.proxy.truncate(pattern)
    world.store.enqueue("all", "reconcile", source="test")
    with caplog.at_level(logging.WARNING):
        world.run_queued()
    assert world.removals() == 0
    assert world.left in world.members()
    assert "keycloak" in world.health.failing()
    assert metric(world, "jit_bridge_unreadable_groups") == 1
    [run] = world.store.list_runs()
    assert world.group in run.summary["unreadable_groups"]
    [waiting] = world.store.queue_items()
    assert world.group in (waiting.last_error or "")
    assert "could not be read" in caplog.text
    assert_recovers(world)
    assert metric(world, "jit_bridge_unreadable_groups") == 0


def test_a_failed_user_read_removes_nothing_and_is_retried(world: World) -> None:
    world.proxy.fail(500, r"/groups")
    world.store.enqueue(f"email:{world.left}", "reconcile", source="test")
    world.run_queued()
    assert world.tines.writes() == []
    assert "keycloak" in world.health.failing()
    world.proxy.heal()
    world.later()
    world.run_queued()
    assert world.removals() == 1
    assert world.left not in world.members()


@pytest.mark.parametrize("change", ["deleted", "renamed"])
def test_a_mapped_group_that_disappeared_removes_nothing(
    world: World, change: str, capsys: pytest.CaptureFixture[str]
) -> None:
    group_id = world.keycloak.group_id(world.group)
    if change == "deleted":
        world.keycloak.admin.delete_group(group_id)
    else:
        world.keycloak.admin.update_group(group_id, {"name": "Renamed"})
    report = world.reconciler().sync_all("reconcile", triggered_by=[], requested_by="test")
    assert world.group in report.unreadable_groups
    assert world.removals() == 0
    assert world.members() == {world.stays, world.left}
    kept = [s.reason for s in report.plan.skipped if "could not be read" in s.reason]
    assert len(kept) == 2  # stays and left keep Analytics

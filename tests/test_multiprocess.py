"""Several bridge processes on one PostgreSQL store, one of them killed with SIGKILL mid-run.

Each node is a real process running the real service (`Service.build`: store, workers,
scheduler, webhook endpoint under uvicorn) against the Tines fake. Its identity source is a
snapshot file, so no Keycloak is needed; the claim lease and the scheduler lease are shortened
so a takeover happens within seconds rather than the production bounds.

What a user would notice is asserted: every accepted login is provisioned, no write reaches
Tines twice (the fake's request log), and the schedule keeps running on a survivor.
"""

from __future__ import annotations

import json
import signal
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from bridge.model import IdpUser
from tests.fixtures.nodes import (
    LEADER_LEASE_TTL,
    SHUTDOWN_TIMEOUT,
    TEAMS,
    Deployment,
    Node,
    start_nodes,
    wait_until,
)
from tests.fixtures.postgres import PostgresCluster
from tests.tines_fake import TinesFake

SETTLE_TIMEOUT = 90.0

StartDeployment = Callable[..., Deployment]


@pytest.fixture
def deployment(
    postgres: PostgresCluster, tines_fake: TinesFake, tmp_path: Path
) -> Iterator[StartDeployment]:
    """A factory: `deployment(nodes=3, users=30, mode="jit")` (see `start_nodes`), on a new
    database of the session's PostgreSQL server. Every process is killed at teardown."""
    started: list[Deployment] = []

    def start(**options: Any) -> Deployment:
        database_url = postgres.create_database(f"multiprocess_{uuid.uuid4().hex[:12]}")
        started.append(start_nodes(tmp_path, tines_fake, database_url, **options))
        return started[-1]

    try:
        yield start
    finally:
        for deployment in started:
            deployment.stop()


def desired_access(users: list[IdpUser]) -> set[tuple[str, str, str]]:
    """(email, team, role) for every mapped group of every user."""
    return {(user.email or "", *TEAMS[group]) for user in users for group in user.groups}


def tines_access(fake: TinesFake) -> set[tuple[str, str, str]]:
    state = fake.state.export()
    emails = {user.id: user.email for user in state.users}
    return {
        (emails[member.user_id], team.name, member.role)
        for team in state.teams
        for member in team.members
    }


def writes_made_more_than_once(fake: TinesFake) -> dict[str, int]:
    """Writes Tines applied more than once. A survivor that retakes a dead process's user
    may try to create someone that process had just created: Tines refuses (422, taken) and
    the user is planned again; that refusal changed nothing, and is the only one allowed."""
    refused = [r for r in fake.writes() if r not in fake.applied_writes()]
    assert all(r.path.endswith("/admin/users") and r.status == 422 for r in refused), refused
    sent = Counter(
        f"{r.method} {r.path} {json.dumps(r.body, sort_keys=True)}" for r in fake.applied_writes()
    )
    return {write: count for write, count in sent.items() if count > 1}


def test_logins_accepted_by_a_killed_process_are_provisioned_once_by_the_others(
    deployment: StartDeployment, tines_fake: TinesFake
) -> None:
    tines_fake.slow(0.2)
    bridge = deployment(nodes=3, users=30, mode="jit", reconcile_interval=0)
    doomed, survivors = bridge.nodes[0], bridge.nodes[1:]

    statuses = [bridge.nodes[n % 3].post_login(u.id) for n, u in enumerate(bridge.users[:24])]
    assert statuses == [202] * 24
    wait_until(
        lambda: any(
            (e.claimed_by or "").startswith(doomed.worker_prefix)
            for e in bridge.store.queue_items()
        ),
        SETTLE_TIMEOUT,
        "the doomed node has a key in hand",
        doomed,
    )
    # Accepted by the doomed node while its workers are busy: only the others can run these.
    assert [doomed.post_login(u.id) for u in bridge.users[24:]] == [202] * 6
    doomed.kill()

    wait_until(
        lambda: (
            tines_access(tines_fake) == desired_access(bridge.users)
            and not bridge.store.queue_items()
        ),
        SETTLE_TIMEOUT,
        "every login provisioned and the queue empty",
        *survivors,
    )
    assert writes_made_more_than_once(tines_fake) == {}
    created = [
        r.body["email"] for r in tines_fake.applied_writes() if r.path.endswith("/admin/users")
    ]
    assert sorted(created) == sorted(u.email or "" for u in bridge.users)


def test_the_schedule_moves_to_a_survivor_when_its_leader_is_killed_mid_reconcile(
    deployment: StartDeployment, tines_fake: TinesFake
) -> None:
    tines_fake.slow(0.03)
    bridge = deployment(nodes=2, users=40, mode="enhanced", reconcile_interval=1, in_tines=True)
    wait_until(
        lambda: (
            bridge.node_holding(bridge.lease_holder()) is not None
            and len(tines_fake.applied_writes()) >= 5
        ),
        SETTLE_TIMEOUT,
        "a leader elected and its first full reconcile under way",
        *bridge.nodes,
    )
    leader = bridge.node_holding(bridge.lease_holder())
    assert leader is not None
    (survivor,) = [n for n in bridge.nodes if n is not leader]
    assert tines_access(tines_fake) != desired_access(bridge.users), "killed mid-run"
    leader.kill()
    killed_at = time.time()

    # The lease of the dead leader expires after LEADER_LEASE_TTL; the survivor tries to take
    # it every third of that, so it holds it within about 4 s (generous margin for a busy CI).
    wait_until(
        lambda: bridge.lease_holder() == survivor.holder_id,
        LEADER_LEASE_TTL * 10,
        "the survivor holds the scheduler lease",
        survivor,
    )
    wait_until(
        lambda: tines_access(tines_fake) == desired_access(bridge.users),
        SETTLE_TIMEOUT,
        "the full reconcile finished by the survivor",
        survivor,
    )
    wait_until(
        lambda: any(
            run.requested_by == "queue:reconcile"
            and run.status == "no_changes"
            and run.started_at.timestamp() > killed_at
            for run in bridge.store.list_runs(limit=20)
        ),
        SETTLE_TIMEOUT,
        "a scheduled reconcile after the kill that found nothing left to do",
        survivor,
    )
    assert writes_made_more_than_once(tines_fake) == {}
    assert len(tines_fake.applied_writes()) == len(tines_fake.writes())


ANALYSTS_ONLY = {
    "mappings": [{"group_name": "Analysts", "team_name": "Analytics", "role_name": "EDITOR"}]
}


def test_a_mapping_put_to_one_process_is_in_force_in_every_process_and_the_cli(
    deployment: StartDeployment, tines_fake: TinesFake
) -> None:
    bridge = deployment(nodes=2, users=12, mode="enhanced", reconcile_interval=0, in_tines=True)
    first, second = bridge.nodes
    assert first.admin("POST", "sync", json={"all": True}).status_code == 202
    wait_until(
        lambda: tines_access(tines_fake) == desired_access(bridge.users),
        SETTLE_TIMEOUT,
        "everyone provisioned under the file's mapping",
        *bridge.nodes,
    )

    put = second.admin("PUT", "mapping", content=json.dumps(ANALYSTS_ONLY))

    assert put.status_code == 200
    version = put.json()["version"]
    # The other process plans with the new version from its next request on.
    assert first.admin("GET", "mapping").json()["version"] == version
    assert first.admin("GET", "status").json()["mapping_version"] == version
    # The PUT queued a full reconcile: the Managers memberships go without anyone logging in.
    analysts_only = {a for a in desired_access(bridge.users) if a[1] == "Analytics"}
    wait_until(
        lambda: tines_access(tines_fake) == analysts_only and not bridge.store.queue_items(),
        SETTLE_TIMEOUT,
        "the Managers memberships removed by the PUT's full reconcile",
        *bridge.nodes,
    )
    manager = bridge.users[0]
    assert "/Managers" in manager.groups
    writes_before = len(tines_fake.writes())

    # A login at the other process and a CLI sync both plan under the new version: neither
    # gives the Managers membership back (no flapping between processes or with the CLI).
    assert first.post_login(manager.id) == 202
    synced = bridge.cli(
        "sync", "--user", manager.email or "", "--idp-snapshot", str(bridge.snapshot)
    )
    assert synced.returncode == 0, synced.stderr
    assert "no changes" in synced.stdout
    wait_until(
        lambda: not bridge.store.queue_items(), SETTLE_TIMEOUT, "the login handled", *bridge.nodes
    )
    assert tines_access(tines_fake) == analysts_only
    assert len(tines_fake.writes()) == writes_before


def test_sigterm_mid_reconcile_exits_0_with_every_write_audited_and_nothing_left_running(
    deployment: StartDeployment, tines_fake: TinesFake
) -> None:
    tines_fake.slow(0.05)
    bridge = deployment(nodes=1, users=40, mode="enhanced", reconcile_interval=3600, in_tines=True)
    (node,) = bridge.nodes
    assert node.admin("POST", "sync", json={"all": True}).status_code == 202
    wait_until(
        lambda: bridge.lease_holder() == node.holder_id and len(tines_fake.applied_writes()) >= 3,
        SETTLE_TIMEOUT,
        "the schedule's lease taken and a full reconcile under way",
        node,
    )
    tines_fake.slow(4.0)  # the write in flight when the signal comes keeps it draining
    wait_until(
        lambda: any(r.status is None for r in tines_fake.writes()),
        SETTLE_TIMEOUT,
        "a write in flight",
        node,
    )

    node.process.send_signal(signal.SIGTERM)

    # Still serving while it drains, and saying it is not ready.
    wait_until(lambda: _readyz(node) == 503, SETTLE_TIMEOUT, "readyz 503 while draining", node)
    assert node.process.wait(SHUTDOWN_TIMEOUT + 10) == 0, node.output()
    runs = bridge.store.list_runs(limit=100)
    assert [r.status for r in runs if r.status == "running"] == []
    assert any(r.kind == "all" and r.status == "interrupted" for r in runs)
    assert bridge.lease_holder() is None
    # The full reconcile was handed back, not lost: it waits for the next process.
    (entry,) = bridge.store.queue_items()
    assert entry.key == "all"
    assert entry.claimed_by is None
    # Every write Tines saw has its audit record, with its outcome.
    audited = [r for r in bridge.store.audit(limit=10_000) if r.op == "add_membership"]
    assert len(tines_fake.writes()) == len(tines_fake.applied_writes()) == len(audited)
    assert {r.outcome for r in audited} == {"applied"}
    assert sorted(_audited_write(r) for r in audited) == sorted(
        _tines_write(tines_fake, w) for w in tines_fake.applied_writes()
    )


def test_a_write_cut_short_by_kill_9_is_audited_as_unknown_and_settled_by_the_next_read(
    deployment: StartDeployment, tines_fake: TinesFake
) -> None:
    tines_fake.slow(0.05)
    bridge = deployment(nodes=1, users=20, mode="enhanced", reconcile_interval=0, in_tines=True)
    (node,) = bridge.nodes
    assert node.admin("POST", "sync", json={"all": True}).status_code == 202
    wait_until(lambda: len(tines_fake.applied_writes()) >= 3, SETTLE_TIMEOUT, "writes", node)
    tines_fake.slow(2.0)
    wait_until(
        lambda: any(r.status is None for r in tines_fake.writes()),
        SETTLE_TIMEOUT,
        "a write in flight",
        node,
    )

    pending = [r for r in tines_fake.writes() if r.status is None]
    node.kill()

    wait_until(
        lambda: all(r.status is not None for r in tines_fake.writes()),
        SETTLE_TIMEOUT,
        "Tines finished the writes the bridge never heard back about",
    )
    tines_fake.slow(0.0)
    applied = {_tines_write(tines_fake, w) for w in tines_fake.applied_writes()}
    audit = bridge.store.audit(limit=10_000)
    unknown = [r for r in audit if r.outcome == "unknown"]
    # Writes for several users go out at once (write_concurrency), so the kill may cut short
    # more than one: each was recorded before it was sent, and none is left without a record.
    cut_short = {_audited_write(r) for r in unknown}
    assert cut_short, "no write was audited as unknown"
    assert cut_short <= applied
    assert {_tines_write(tines_fake, w) for w in pending if w.status and w.status < 300} <= (
        cut_short
    )
    assert len(audit) == len(tines_fake.applied_writes())

    bridge.start_node()  # marks the killed run interrupted; the next read settles the writes

    wait_until(
        lambda: (
            tines_access(tines_fake) == desired_access(bridge.users)
            and not bridge.store.queue_items()
        ),
        SETTLE_TIMEOUT,
        "the full reconcile finished by the restarted process",
        *bridge.nodes,
    )
    for write in cut_short:
        settled = [r for r in bridge.store.audit(limit=10_000) if _audited_write(r) == write]
        assert [r.outcome for r in settled] == ["applied"], write
    assert writes_made_more_than_once(tines_fake) == {}
    assert [r.status for r in bridge.store.list_runs(limit=100) if r.status == "running"] == []
    killed = [r for r in bridge.store.list_runs(limit=100) if r.id == unknown[0].run_id]
    assert [r.status for r in killed] == ["interrupted"]


def _readyz(node: Node) -> int:
    try:
        return httpx.get(f"http://127.0.0.1:{node.port}/readyz", timeout=1).status_code
    except httpx.HTTPError:
        return 0


def _audited_write(record: Any) -> tuple[str, str, str]:
    return (record.email, record.team or "", (record.after or {}).get("role", ""))


def _tines_write(fake: TinesFake, write: Any) -> tuple[str, str, str]:
    """(email, team, role) of a Tines membership invitation from the request log."""
    state = fake.state.export()
    team_id = write.path.rstrip("/").split("/")[-2]
    teams = {t.id: t.name for t in state.teams}
    emails = {u.id: u.email for u in state.users}
    return (emails[str(write.body["user_id"])], teams[team_id], write.body["role"])


def test_a_login_during_a_full_reconcile_does_not_wait_for_it(
    deployment: StartDeployment, tines_fake: TinesFake
) -> None:
    tines_fake.slow(0.2)
    bridge = deployment(nodes=1, users=40, mode="enhanced", reconcile_interval=0, in_tines=True)
    (node,) = bridge.nodes
    last = bridge.users[-1]  # the full reconcile reaches this user last
    assert node.admin("POST", "sync", json={"all": True}).status_code == 202
    wait_until(lambda: len(tines_fake.applied_writes()) >= 3, SETTLE_TIMEOUT, "under way", node)

    assert node.post_login(last.id) == 202

    wait_until(
        lambda: (
            {a for a in tines_access(tines_fake) if a[0] == last.email}
            == {a for a in desired_access(bridge.users) if a[0] == last.email}
        ),
        SETTLE_TIMEOUT,
        "the login's access in Tines",
        node,
    )
    full = next(r for r in bridge.store.list_runs(limit=100) if r.kind == "all")
    assert full.status == "running", "the login did not wait for the full reconcile"
    wait_until(
        lambda: (
            tines_access(tines_fake) == desired_access(bridge.users)
            and not bridge.store.queue_items()
        ),
        SETTLE_TIMEOUT,
        "the full reconcile finished",
        node,
    )
    assert writes_made_more_than_once(tines_fake) == {}

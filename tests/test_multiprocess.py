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
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from bridge.model import IdpUser
from tests.fixtures.nodes import (
    LEADER_LEASE_TTL,
    TEAMS,
    Deployment,
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

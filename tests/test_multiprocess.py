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
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from bridge.intake.signatures import sign_jit_bridge
from bridge.model import IdpSnapshot, IdpUser
from bridge.store import Store
from bridge.store.database import read_transaction
from bridge.store.tables import leases
from tests.fixtures.postgres import PostgresCluster, free_port
from tests.tines_fake import TinesFake

WEBHOOK_SECRET = "multiprocess-webhook-secret"
CLAIM_LEASE = 2.0
LEADER_LEASE_TTL = 3.0
SETTLE_TIMEOUT = 90.0
TEAMS = {"/Analysts": ("Analytics", "EDITOR"), "/Managers": ("Incident Response", "TEAM_ADMIN")}
MAPPING = {
    "mappings": [
        {"group_name": group.strip("/"), "team_name": team, "role_name": role}
        for group, (team, role) in TEAMS.items()
    ]
}

NODE = """
import sys
from pathlib import Path

import uvicorn

from bridge import service, wiring
from bridge.server import create_app
from bridge.settings import load_settings

snapshot, claim_lease, leader_ttl = Path(sys.argv[1]), float(sys.argv[2]), float(sys.argv[3])
service.build_source = lambda settings: wiring.build_source(settings, snapshot)
settings = load_settings()
node = service.Service.build(settings)
node.workers.lease_seconds = claim_lease
node.lease_ttl = leader_ttl
app = create_app(node.context)
node.start_background()
config = uvicorn.Config(
    app, host=settings.listen_host, port=settings.listen_port, log_level="warning"
)
try:
    uvicorn.Server(config).run()
finally:
    node.stop()
"""


@dataclass
class Node:
    """One bridge process."""

    process: subprocess.Popen[bytes]
    port: int
    log: Path

    @property
    def holder_id(self) -> str:
        """The id under which the service takes the scheduler lease."""
        return f"{socket.gethostname()}:{self.process.pid}"

    @property
    def worker_prefix(self) -> str:
        return f"worker-{self.process.pid}-"

    def wait_healthy(self) -> None:
        wait_until(self._healthy, 30.0, f"node on port {self.port} healthy", self)

    def _healthy(self) -> bool:
        if self.process.poll() is not None:
            raise AssertionError(f"node exited with {self.process.returncode}:\n{self.output()}")
        try:
            return httpx.get(f"http://127.0.0.1:{self.port}/healthz", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    def post_login(self, user_id: str) -> int:
        """Deliver a signed listener LOGIN event; returns the HTTP status."""
        body = json.dumps(
            {
                "id": f"ev-{uuid.uuid4().hex}",
                "time": int(time.time() * 1000),
                "realm": "jit-bridge",
                "kind": "user",
                "type": "LOGIN",
                "user_id": user_id,
                "operation": None,
                "resource_type": None,
                "resource_path": None,
            }
        ).encode()
        signature = sign_jit_bridge(body, WEBHOOK_SECRET, int(time.time()))
        answer = httpx.post(
            f"http://127.0.0.1:{self.port}/webhooks/keycloak",
            content=body,
            headers={"Content-Type": "application/json", "X-JIT-Bridge-Signature": signature},
            timeout=30,
        )
        return answer.status_code

    def kill(self) -> None:
        """SIGKILL: no shutdown code runs, claims and the lease are left behind."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(10)

    def output(self) -> str:
        return self.log.read_text(errors="replace")[-4000:]


def wait_until(condition: Callable[[], bool], timeout: float, what: str, *nodes: Node) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            logs = "\n".join(f"--- node {n.port}\n{n.output()}" for n in nodes)
            raise AssertionError(f"not reached within {timeout:.0f} s: {what}\n{logs}")
        time.sleep(0.1)


@dataclass
class Deployment:
    """Bridge processes sharing one database, one mapping and one IdP snapshot."""

    database_url: str
    users: list[IdpUser]
    nodes: list[Node]
    store: Store

    def lease_holder(self) -> str | None:
        with read_transaction(self.store.engine) as connection:
            row = connection.execute(select(leases.c.holder, leases.c.expires_at)).first()
        return None if row is None or row.expires_at < time.time() else str(row.holder)

    def node_holding(self, holder: str | None) -> Node | None:
        return next((n for n in self.nodes if n.holder_id == holder), None)

    def stop(self) -> None:
        for node in self.nodes:
            node.kill()
        self.store.close()


def start_nodes(
    workdir: Path,
    tines: TinesFake,
    database_url: str,
    *,
    nodes: int,
    users: int,
    mode: str,
    reconcile_interval: int = 0,
    in_tines: bool = False,
) -> Deployment:
    """Start `nodes` bridge processes on `database_url` and wait until each answers.

    The fake gets the mapped teams; `in_tines=True` also creates the users there, without
    access (only a login creates a Tines user; a scheduled reconcile grants and revokes).
    Also used by bench/multiprocess.py.
    """
    for team, _role in TEAMS.values():
        tines.state.add_team(team)
    people = [_person(n) for n in range(users)]
    for person in people if in_tines else []:
        tines.state.add_user(person.email or "")
    snapshot = workdir / "idp.json"
    snapshot.write_text(IdpSnapshot(users=people).model_dump_json())
    mapping = workdir / "mapping.json"
    mapping.write_text(json.dumps(MAPPING))
    settings = {
        "JIT_BRIDGE_DATABASE_URL": database_url,
        "JIT_BRIDGE_TARGET": "tines",
        "JIT_BRIDGE_TINES_URL": tines.url,
        "JIT_BRIDGE_TINES_API_KEY": tines.api_key,
        "JIT_BRIDGE_MAPPING_FILE": str(mapping),
        "JIT_BRIDGE_MODE": mode,
        "JIT_BRIDGE_RECONCILE_INTERVAL": str(reconcile_interval),
        "JIT_BRIDGE_WEBHOOK_SECRET": WEBHOOK_SECRET,
        "JIT_BRIDGE_MAX_REMOVALS": "1000",
        "JIT_BRIDGE_WORKERS": "2",
        "JIT_BRIDGE_LOG_LEVEL": "WARNING",
    }
    base = {k: v for k, v in os.environ.items() if not k.startswith("JIT_BRIDGE_")}
    started: list[Node] = []
    for n in range(nodes):
        port = free_port()
        log = workdir / f"node-{n}.log"
        env = {**base, **settings, "JIT_BRIDGE_LISTEN": f"127.0.0.1:{port}"}
        arguments = [str(snapshot), str(CLAIM_LEASE), str(LEADER_LEASE_TTL)]
        with log.open("wb") as sink:
            process = subprocess.Popen(
                [sys.executable, "-c", NODE, *arguments],
                cwd=workdir,
                env=env,
                stdout=sink,
                stderr=subprocess.STDOUT,
            )
        started.append(Node(process, port, log))
    deployment = Deployment(database_url, people, started, Store.open(database_url))
    try:
        for node in started:
            node.wait_healthy()
    except BaseException:
        deployment.stop()
        raise
    return deployment


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


def _person(n: int) -> IdpUser:
    groups = ["/Analysts"] if n % 3 else ["/Analysts", "/Managers"]
    return IdpUser(
        id=str(uuid.UUID(int=n + 1)),
        username=f"user{n:03d}",
        email=f"user{n:03d}@example.com",
        email_verified=True,
        first_name="User",
        last_name=f"{n:03d}",
        groups=groups,
    )


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

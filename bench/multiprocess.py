"""Rough intake and reconcile throughput of one and of two bridge processes on PostgreSQL.

    python bench/multiprocess.py [--logins 2000] [--processes 1 2] [--clients 8]

For each process count: a throwaway PostgreSQL cluster (tests/fixtures/postgres.py), a fresh
database, the Tines fake (no delay) and that many bridge processes in JIT mode, each the real
service as tests/test_multiprocess.py starts it (snapshot source, 2 workers). A client pool
posts one signed LOGIN per user, spread over the processes round-robin:

- intake: logins accepted (202, durably queued) per second, until the last 202;
- reconcile: users provisioned in Tines per second, from the first post until the queue is
  empty and every user exists.

Client, processes, PostgreSQL and the fake share the machine, so the numbers are a floor and
only comparable with each other on one machine.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.fixtures.nodes import Deployment, Node, start_nodes  # noqa: E402
from tests.fixtures.postgres import PostgresCluster, find_binaries  # noqa: E402
from tests.tines_fake import TinesFake  # noqa: E402


def measure(cluster: PostgresCluster, processes: int, logins: int, clients: int) -> str:
    fake = TinesFake(api_key="bench-key").start()
    workdir = Path(tempfile.mkdtemp(prefix="jit-bridge-bench-"))
    database_url = cluster.create_database(f"bench_{uuid.uuid4().hex[:8]}")
    bridge: Deployment | None = None
    try:
        bridge = start_nodes(workdir, fake, database_url, nodes=processes, users=logins, mode="jit")
        nodes: list[Node] = bridge.nodes
        started = time.perf_counter()
        with ThreadPoolExecutor(clients) as pool:
            statuses = list(
                pool.map(
                    lambda n: nodes[n % len(nodes)].post_login(bridge.users[n].id),
                    range(logins),
                )
            )
        accepted = time.perf_counter()
        refused = len([s for s in statuses if s != 202])
        while bridge.store.queue_items() or len(fake.state.export().users) < logins:
            time.sleep(0.05)
        settled = time.perf_counter()
    finally:
        if bridge is not None:
            bridge.stop()
        fake.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    return (
        f"{processes} process(es): intake {logins / (accepted - started):7.0f} logins/s"
        f"{f' ({refused} refused)' if refused else ''}, "
        f"reconcile {logins / (settled - started):6.0f} users/s "
        f"({logins} logins, {settled - started:.1f} s)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--logins", type=int, default=2000)
    parser.add_argument("--processes", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--clients", type=int, default=8)
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="jit-bridge-bench-pg-"))
    cluster = PostgresCluster(find_binaries(), workdir)
    try:
        cluster.start()
        for count in args.processes:
            print(measure(cluster, count, args.logins, args.clients), flush=True)
    finally:
        cluster.stop()
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()

"""Webhook intake against docs/design.md, Performance: valid events per second on one core with
SQLite.

    python -m bench.webhook --events 20000 --connections 16

The server is the real app (`bridge.server.create_app`) on a fresh SQLite store, under
uvicorn with one worker process pinned to CPU 0, configured as `jit-bridge run` configures
it. Workers and scheduler are not started, so the server's core does intake only (draining
the queue is the workers' job and is measured elsewhere). This process, pinned to CPU 1,
pre-signs `--events` distinct listener events (`LOGIN`, one user each, so no two coalesce)
with the product's own signer and replays them over `--connections` keep-alive HTTP/1.1
connections. Afterwards the server is stopped and the database file is opened afresh: every
event answered 202 must be in `seen_events` and its user in `work_queue`.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

SECRET = "bench-webhook-secret"
PATH = "/webhooks/keycloak"


def serve(database_url: str, port: int, synchronous: str) -> None:
    """The server process: the product's app and store, nothing else running."""
    import uvicorn

    from bridge.app_state import ServiceContext
    from bridge.health import Health
    from bridge.metrics import Metrics
    from bridge.server import create_app
    from bridge.settings import Settings
    from bridge.store import Store

    os.sched_setaffinity(0, {0})
    settings = Settings(webhook_secret=SECRET, database_url=database_url, mode="enhanced")
    store = Store.open(database_url, sqlite_synchronous=synchronous)  # type: ignore[arg-type]
    store.upgrade()

    def no_reconciler(dry_run: bool = False) -> Any:
        raise RuntimeError("the webhook benchmark runs no reconciles")

    context = ServiceContext(
        settings=settings,
        store=store,
        mappings=None,  # type: ignore[arg-type]  # the webhook path reads no mapping
        metrics=Metrics(),
        health=Health(),
        reconciler=no_reconciler,
        wake_workers=lambda: None,
    )
    config = uvicorn.Config(
        create_app(context),
        host="127.0.0.1",
        port=port,
        log_level="warning",
        access_log=False,
        workers=1,
    )
    uvicorn.Server(config).run()


def signed_events(count: int, run: str) -> list[tuple[str, bytes, str]]:
    from bridge.intake.signatures import sign_jit_bridge

    now = int(time.time())
    events = []
    for i in range(count):
        event_id = f"{run}-{i}"
        body = json.dumps(
            {
                "id": event_id,
                "time": now * 1000,
                "realm": "bench",
                "kind": "user",
                "type": "LOGIN",
                "user_id": f"{run}-user-{i}",
                "operation": None,
                "resource_type": None,
                "resource_path": None,
            }
        ).encode()
        events.append((event_id, body, sign_jit_bridge(body, SECRET, now)))
    return events


def replay(
    port: int, events: list[tuple[str, bytes, str]], connections: int
) -> tuple[float, list[tuple[str, int, float]]]:
    """Send every event once; returns wall seconds and (event id, status, latency s)."""
    results: list[tuple[str, int, float]] = []
    lock = threading.Lock()
    start_gate = threading.Barrier(connections + 1)

    def sender(share: list[tuple[str, bytes, str]]) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        mine = []
        start_gate.wait()
        for event_id, body, signature in share:
            sent = time.perf_counter()
            conn.request(
                "POST",
                PATH,
                body=body,
                headers={
                    "Content-Type": "application/json",
                    "X-JIT-Bridge-Signature": signature,
                },
            )
            response = conn.getresponse()
            response.read()
            mine.append((event_id, response.status, time.perf_counter() - sent))
        conn.close()
        with lock:
            results.extend(mine)

    threads = [
        threading.Thread(target=sender, args=(events[i::connections],)) for i in range(connections)
    ]
    for thread in threads:
        thread.start()
    start_gate.wait()
    began = time.perf_counter()
    for thread in threads:
        thread.join()
    return time.perf_counter() - began, results


def durable(db_file: Path, accepted: list[str]) -> dict[str, int]:
    """Opened after the server stopped: which accepted events the store actually holds."""
    with sqlite3.connect(db_file) as db:
        seen = {row[0] for row in db.execute("SELECT event_id FROM seen_events")}
        keys = {row[0] for row in db.execute("SELECT key FROM work_queue")}
    missing_events = [e for e in accepted if e not in seen]
    missing_keys = [e for e in accepted if f"id:{e.replace('-', '-user-', 1)}" not in keys]
    return {
        "accepted": len(accepted),
        "missing_event_ids": len(missing_events),
        "missing_queue_keys": len(missing_keys),
    }


def cpu_seconds(pid: int) -> float:
    """User + system CPU time a process has used so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _wait_ready(port: int, server: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise SystemExit("the webhook server exited during start-up")
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=1)
            conn.request("GET", "/healthz")
            if conn.getresponse().status == 200:
                return
        except OSError:
            time.sleep(0.1)
    raise SystemExit("the webhook server did not answer /healthz within 30 s")


def run(events: int, connections: int, warmup: int, synchronous: str) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as workdir:
        db_file = Path(workdir) / "bench.db"
        port = _free_port()
        server = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "bench.webhook",
                "--serve",
                f"sqlite:///{db_file}",
                "--port",
                str(port),
                "--synchronous",
                synchronous,
            ]
        )
        try:
            _wait_ready(port, server)
            os.sched_setaffinity(0, {1})
            replay(port, signed_events(warmup, "warmup"), connections)
            load = signed_events(events, "bench")
            cpu_before = cpu_seconds(server.pid)
            wall, results = replay(port, load, connections)
            server_cpu = cpu_seconds(server.pid) - cpu_before
        finally:
            server.terminate()
            server.wait(timeout=30)
        latencies = sorted(r[2] for r in results)
        statuses: dict[int, int] = {}
        for _, status, _ in results:
            statuses[status] = statuses.get(status, 0) + 1
        accepted = [event_id for event_id, status, _ in results if status == 202]
        return {
            "events": events,
            "connections": connections,
            "sqlite_synchronous": synchronous,
            "wall_s": round(wall, 2),
            "events_per_s": round(len(accepted) / wall),
            "server_cpu_s": round(server_cpu, 2),
            "events_per_server_cpu_s": round(len(accepted) / server_cpu),
            "p50_ms": round(statistics.median(latencies) * 1000, 1),
            "p99_ms": round(latencies[int(len(latencies) * 0.99) - 1] * 1000, 1),
            "statuses": statuses,
            "durable": durable(db_file, accepted),
        }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.webhook", description=__doc__)
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--warmup", type=int, default=500)
    parser.add_argument("--synchronous", choices=["FULL", "NORMAL"], default="FULL")
    parser.add_argument("--serve", metavar="DATABASE_URL", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve:
        serve(args.serve, args.port, args.synchronous)
        return 0
    print(json.dumps(run(args.events, args.connections, args.warmup, args.synchronous)))
    return 0


if __name__ == "__main__":
    sys.exit(main())

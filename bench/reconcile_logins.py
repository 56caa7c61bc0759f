"""Logins while a full reconcile runs: login → target p99 during a 10,000-user, 2 % drift
full reconcile (the contract: under 2 s).

    python -m bench.reconcile_logins [--users 10000] [--drift 0.02] [--logins 150]

Starts the fakes (bench/fakes.py, own process: Keycloak's admin API and Tines serving a
synthetic organisation, `--target-latency-ms` per Tines answer) and one `jit-bridge run`
(enhanced mode, SQLite, 2 workers, the product's default Tines rate limit). Queues a full
reconcile through the admin API; while its run is `running`, delivers a listener LOGIN
webhook for another user of the organisation every `--spacing` seconds (not waiting for the
previous one), and measures from each delivery to the moment that user's queue entry is gone
(polled every 10 ms): the login's own reconcile has read Keycloak and Tines, planned, and
written whatever was missing. Every login is delivered while the full reconcile runs. The
default 5 logins a second stays under the product's Tines rate limit on `admin/users`
(450/min), which each login's read of its user counts against. Prints p50/p99/max and the
full reconcile's duration; `--json F` also writes them.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import httpx

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from bench.reconcile import fakes  # noqa: E402
from bridge.intake.signatures import sign_jit_bridge  # noqa: E402
from bridge.store import Store  # noqa: E402
from tests.fixtures.bridge import BridgeProcess, free_port  # noqa: E402

SECRET = "bench-webhook-secret"
TOKEN = "bench-admin-token"


def start_bridge(info: dict[str, Any], workdir: Path) -> BridgeProcess:
    port = free_port()
    values = {
        "mode": "enhanced",
        "mapping_file": info["mapping"],
        "database_url": f"sqlite:///{workdir / 'state.db'}",
        "tines_url": info["target"],
        "tines_api_key": "bench-key",
        "keycloak_url": info["keycloak"],
        "keycloak_realm": "bench",
        "keycloak_client_id": "jit-bridge",
        "keycloak_client_secret": "bench-secret",
        "webhook_secret": SECRET,
        "admin_token": TOKEN,
        "reconcile_interval": "0",
        "max_removals": str(10**9),  # measured: logins beside the writes, not the budget
        "max_removal_fraction": "1.0",
        "listen": f"127.0.0.1:{port}",
        "log_level": "WARNING",
    }
    env = {f"JIT_BRIDGE_{k.upper()}": v for k, v in values.items()}
    return BridgeProcess(settings=env, workdir=workdir, port=port, admin_token=TOKEN).start()


def deliver_login(client: httpx.Client, bridge: BridgeProcess, user_id: str) -> None:
    body = json.dumps(
        {
            "id": f"bench-{uuid.uuid4().hex}",
            "time": int(time.time() * 1000),
            "realm": "bench",
            "kind": "user",
            "type": "LOGIN",
            "user_id": user_id,
            "operation": None,
            "resource_type": None,
            "resource_path": None,
        }
    ).encode()
    answer = client.post(
        f"{bridge.url}/webhooks/keycloak",
        content=body,
        headers={
            "Content-Type": "application/json",
            "X-JIT-Bridge-Signature": sign_jit_bridge(body, SECRET, int(time.time())),
        },
    )
    answer.raise_for_status()


def full_run(store: Store) -> Any:
    return next((r for r in store.list_runs(limit=20) if r.kind == "all"), None)


def running(store: Store, run_id: str) -> bool:
    run = store.get_run(run_id)
    return run is not None and run.status == "running"


def settle(store: Store, sent: dict[str, float], done: dict[str, float], until: float) -> None:
    """Note, every 10 ms until `until`, the logins whose queue entry is gone."""
    while True:
        queued = {entry.key for entry in store.queue_items()}
        now = time.monotonic()
        for key in sent.keys() - done.keys() - queued:
            done[key] = now
        if now >= until:
            return
        time.sleep(0.01)


def percentile(ordered: list[float], p: float) -> float:
    return ordered[min(len(ordered) - 1, int(p * len(ordered)))]


def measure(args: argparse.Namespace) -> dict[str, Any]:
    with fakes(args.users, args.drift, 5.0, args.target_latency_ms) as info:
        workdir = Path(tempfile.mkdtemp(prefix="bench-reconcile-logins-"))
        bridge = start_bridge(info, workdir)
        store = Store.open(f"sqlite:///{workdir / 'state.db'}")
        try:
            time.sleep(3)  # the start-up listing of Tines' emails (every process does it)
            assert bridge.admin("POST", "sync", json={"all": True}).status_code == 202
            while (run := full_run(store)) is None:
                time.sleep(0.05)
            sent: dict[str, float] = {}
            done: dict[str, float] = {}
            with httpx.Client(timeout=60) as client:
                for user_id in list(info["user_ids"])[: args.logins]:
                    if not running(store, run.id):
                        break
                    sent[f"id:{user_id}"] = time.monotonic()
                    deliver_login(client, bridge, user_id)
                    settle(store, sent, done, until=time.monotonic() + args.spacing)
            while len(done) < len(sent):
                settle(store, sent, done, until=time.monotonic() + 1.0)
            latencies = [done[key] - sent[key] for key in sent]
            while running(store, run.id):
                time.sleep(0.2)
            run = store.get_run(run.id)
            assert run is not None
            assert run.finished_at is not None
        finally:
            store.close()
            bridge.stop(60)
    ordered = sorted(latencies)
    return {
        "users": args.users,
        "drift": args.drift,
        "full_reconcile_seconds": round((run.finished_at - run.started_at).total_seconds(), 1),
        "full_reconcile_status": run.status,
        "full_reconcile_outcomes": run.summary.get("outcomes"),
        "logins_measured": len(ordered),
        "p50_s": round(statistics.median(ordered), 3) if ordered else None,
        "p99_s": round(percentile(ordered, 0.99), 3) if ordered else None,
        "max_s": round(ordered[-1], 3) if ordered else None,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.reconcile_logins", description=__doc__)
    parser.add_argument("--users", type=int, default=10_000)
    parser.add_argument("--drift", type=float, default=0.02)
    parser.add_argument("--logins", type=int, default=200)
    parser.add_argument("--spacing", type=float, default=0.2, help="seconds between logins")
    parser.add_argument("--target-latency-ms", type=float, default=20.0)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    result = measure(args)
    print(json.dumps(result, indent=2))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

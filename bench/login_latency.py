"""Login-to-target latency (docs/design.md, Performance): through the listener webhook and through
event-store polling.

    python bench/login_latency.py [--logins 200] [--paths listener,poll-1s,poll-5s] [--spacing 0.2]

Starts its own Keycloak (deploy/keycloak/keycloak.py, with the project's listener jar), an
in-process Tines fake and one `jit-bridge run` per path, in jit mode. For each path it logs in N
new users of a mapped group (password grant), one every `--spacing` seconds without waiting
for the previous one, and measures from the token response to the moment the fake committed
the user's creation. The fake answers at once and stamps the write itself, so target latency
and polling granularity are excluded. Prints p50/p99/max per path; `--json F` also writes them.

The contract: p99 under 1 s through the listener, and within the poll interval when polling.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from tests.fixtures.bridge import BridgeProcess, free_port  # noqa: E402
from tests.fixtures.keycloak import TestKeycloak, load_harness  # noqa: E402
from tests.tines_fake import TinesFake  # noqa: E402

SECRET = "bench-listener-secret"
PASSWORD = "bench-password"
GROUP = "/BenchUsers"
TEAM = "Analytics"
PATHS = {"listener": None, "poll-1s": 1.0, "poll-5s": 5.0}


class StampingTinesFake(TinesFake):
    """The Tines fake, noting when each user creation was committed (monotonic clock)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.created_at: dict[str, float] = {}
        self.created = threading.Condition()

    def _handle(self, method: str, path: str, query: dict[str, str], body: Any) -> Any:
        answer = super()._handle(method, path, query, body)
        if method == "POST" and path.rstrip("/").endswith("/admin/users"):
            with self.created:
                self.created_at[str(body["email"]).lower()] = time.monotonic()
                self.created.notify_all()
        return answer


@dataclass
class PathResult:
    path: str
    latencies_s: list[float]
    missing: int
    #: (latency s, wall-clock time of the token response, username) of the slowest logins
    slowest: list[tuple[float, float, str]]

    def summary(self) -> dict[str, Any]:
        ordered = sorted(self.latencies_s)
        return {
            "path": self.path,
            "logins": len(ordered) + self.missing,
            "reached_target": len(ordered),
            "p50_ms": round(percentile(ordered, 50) * 1000, 1),
            "p99_ms": round(percentile(ordered, 99) * 1000, 1),
            "max_ms": round(ordered[-1] * 1000, 1),
            "mean_ms": round(statistics.fmean(ordered) * 1000, 1),
        }


def percentile(ordered: list[float], p: float) -> float:
    """Nearest-rank percentile of sorted values."""
    rank = max(1, -(-len(ordered) * p // 100))
    return ordered[int(rank) - 1]


def start_session_keycloak(listener_port: int) -> tuple[Any, TestKeycloak]:
    """A fresh Keycloak running the listener (as tests/fixtures/keycloak.py does)."""
    build = subprocess.run(
        ["bash", str(REPO / "deploy" / "keycloak-provider" / "build.sh")],
        capture_output=True,
        text=True,
        check=True,
    )
    jar = Path(build.stdout.strip().splitlines()[-1])
    server = load_harness().start_keycloak(
        providers=[jar],
        extra_args=[
            f"--spi-events-listener--jit-bridge--url=http://127.0.0.1:{listener_port}/webhooks/keycloak",
            f"--spi-events-listener--jit-bridge--secret={SECRET}",
            "--spi-events-listener--jit-bridge--max-attempts=6",
        ],
    )
    admin = server.admin()
    config_path = f"admin/realms/{server.realm}/events/config"
    config = admin.connection.raw_get(config_path).json()
    listeners = sorted({*config.get("eventsListeners", []), "jit-bridge"})
    admin.connection.raw_put(config_path, data=json.dumps({**config, "eventsListeners": listeners}))
    keycloak = TestKeycloak(
        url=server.url,
        realm=server.realm,
        admin=admin,
        listener_port=listener_port,
        listener_secret=SECRET,
    )
    return server, keycloak


def start_bridge(
    keycloak: TestKeycloak,
    tines: TinesFake,
    workdir: Path,
    port: int,
    poll: float | None,
    log_level: str = "WARNING",
) -> BridgeProcess:
    workdir.mkdir(parents=True)
    mapping = workdir / "mapping.json"
    mapping.write_text(
        json.dumps({"mappings": [{"group_name": GROUP, "team_name": TEAM, "role_name": "EDITOR"}]})
    )
    values = {
        "mode": "jit",
        "mapping_file": str(mapping),
        "database_url": f"sqlite:///{workdir / 'state.db'}",
        "tines_url": tines.url,
        "tines_api_key": tines.api_key,
        "keycloak_url": keycloak.url,
        "keycloak_realm": keycloak.realm,
        "keycloak_client_id": keycloak.client_id,
        "keycloak_client_secret": keycloak.client_secret,
        # A polling bridge gets another secret: the listener's deliveries are refused (401,
        # never retried), so only the event store can bring it the logins.
        "webhook_secret": SECRET if poll is None else "not-the-listener-secret",
        "poll_events": "false" if poll is None else "true",
        "poll_interval": str(poll or 5),
        "reconcile_interval": "0",
        "listen": f"127.0.0.1:{port}",
        "admin_token": "bench-admin-token",
        "log_level": log_level,
    }
    env = {f"JIT_BRIDGE_{k.upper()}": v for k, v in values.items()}
    return BridgeProcess(
        settings=env, workdir=workdir, port=port, admin_token=values["admin_token"]
    ).start()


def measure(
    keycloak: TestKeycloak,
    tines: StampingTinesFake,
    path: str,
    logins: int,
    spacing: float,
    deadline_s: float,
) -> PathResult:
    usernames = [f"bench-{path}-{i:04d}" for i in range(logins)]
    for username in usernames:
        keycloak.create_user(username, password=PASSWORD, groups=(GROUP,))
    logged_in_at: dict[str, float] = {}
    wall: dict[str, float] = {}
    began = time.monotonic()
    for i, username in enumerate(usernames):
        time.sleep(max(0.0, began + i * spacing - time.monotonic()))
        keycloak.login(username, PASSWORD)
        logged_in_at[f"{username}@example.com"] = time.monotonic()
        wall[f"{username}@example.com"] = time.time()
    give_up = time.monotonic() + deadline_s
    with tines.created:
        while not all(e in tines.created_at for e in logged_in_at):
            left = give_up - time.monotonic()
            if left <= 0:
                break
            tines.created.wait(left)
        reached = {
            e: tines.created_at[e] - t for e, t in logged_in_at.items() if e in tines.created_at
        }
    slowest = sorted(((s, wall[e], e) for e, s in reached.items()), reverse=True)[:5]
    return PathResult(path, list(reached.values()), logins - len(reached), slowest)


def settle(bridge: BridgeProcess, poll: float | None) -> None:
    """Let a polling bridge finish its start-up catch-up first: it replays the last 10 minutes
    of logins (the earlier paths' users), which would otherwise queue ahead of the measured
    ones."""
    if poll is None:
        return
    time.sleep(2 * poll)
    bridge.wait_until(bridge.idle, timeout=600, what="the catch-up to finish")


def keep_log_if_slow(
    bridge: BridgeProcess, path: str, result: PathResult | None, budget_s: float
) -> None:
    """A login over its budget (or a failed run) keeps the bridge's log, which the temporary
    directory would otherwise take with it, and names the slow logins' times to look for."""
    if result is not None and not result.missing and result.slowest[0][0] <= budget_s:
        return
    kept = Path(tempfile.gettempdir()) / f"jit-bridge-bench-{path}-{int(time.time())}.log"
    kept.write_text(bridge.log(), encoding="utf-8")
    print(f"{path}: a login missed its {budget_s} s budget; bridge log: {kept}", file=sys.stderr)
    for latency, at, email in result.slowest if result else []:
        stamp = time.strftime("%H:%M:%S", time.gmtime(at)) + f".{int(at * 1000) % 1000:03d}Z"
        print(f"  {email}: {latency * 1000:.0f} ms after its token at {stamp}", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--logins", type=int, default=200, help="logins per path (>= 50)")
    parser.add_argument(
        "--paths", default=",".join(PATHS), help="comma list of " + ", ".join(PATHS)
    )
    parser.add_argument("--spacing", type=float, default=0.2, help="seconds between logins")
    parser.add_argument("--json", type=Path, help="also write the results to this file")
    parser.add_argument(
        "--log-level",
        default="WARNING",
        choices=["DEBUG", "INFO", "WARNING"],
        help="the bridge's log level; its log is kept when a login misses its budget",
    )
    args = parser.parse_args(argv)
    if args.logins < 50:
        parser.error("--logins must be at least 50 for a meaningful p99")
    paths = [p.strip() for p in args.paths.split(",") if p.strip()]
    unknown = [p for p in paths if p not in PATHS]
    if unknown:
        parser.error(f"unknown path(s) {unknown}; choose from {list(PATHS)}")

    listener_port = free_port()
    os.environ.pop("JIT_BRIDGE_SETTINGS", None)
    print(f"starting Keycloak (listener → 127.0.0.1:{listener_port}) …", file=sys.stderr)
    server, keycloak = start_session_keycloak(listener_port)
    tines = StampingTinesFake(api_key="bench-tines-key")
    tines.start()
    tines.state.add_team(TEAM)
    keycloak.create_group(GROUP)
    results: list[dict[str, Any]] = []
    try:
        with tempfile.TemporaryDirectory(prefix="jit-bridge-bench-") as tmp:
            for path in paths:
                poll = PATHS[path]
                port = listener_port if poll is None else free_port()
                bridge = start_bridge(keycloak, tines, Path(tmp) / path, port, poll, args.log_level)
                result: PathResult | None = None
                try:
                    settle(bridge, poll)
                    print(f"{path}: {args.logins} logins …", file=sys.stderr)
                    deadline = 30.0 + 3 * (poll or 1.0)
                    result = measure(keycloak, tines, path, args.logins, args.spacing, deadline)
                finally:
                    bridge.stop()
                    keep_log_if_slow(bridge, path, result, budget_s=poll or 1.0)
                results.append(result.summary())
                print(json.dumps(results[-1]), file=sys.stderr)
    finally:
        tines.stop()
        server.stop()
    print(f"{'path':<10} {'logins':>6} {'reached':>7} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8}")
    for r in results:
        print(
            f"{r['path']:<10} {r['logins']:>6} {r['reached_target']:>7} "
            f"{r['p50_ms']:>8} {r['p99_ms']:>8} {r['max_ms']:>8}"
        )
    if args.json:
        args.json.write_text(json.dumps({"spacing_s": args.spacing, "results": results}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())

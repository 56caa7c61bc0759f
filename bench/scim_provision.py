"""Initial provisioning into a real scim2-server: a full sync of new users, as logins.

    python -m bench.scim_provision --users 1000 5000 [--via cli|service]

For each size: a fresh scim2-server process (in-memory, its own port), the synthetic
organisation of bench/org.py as an IdP snapshot (`--teams` teams; every user new to the
target), and one fresh process that runs the product's full sync with a SQLite store and
reports its wall time, the requests it sent (counted by the connector), the operations
applied and its peak RSS. The server's CPU time is read from /proc when the run ends.

`--via cli` (default): as `jit-bridge sync --all --trigger login --idp-snapshot F` does, no
queue claims. `--via service`: as a worker reconciles the queued key `all` with a login
trigger (`Reconciler.reconcile`), every user's writes under that user's queue claim.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.offline_plan import write_inputs
from bench.org import Shape, build

TOKEN = "bench-token"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _server_cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def child(info: dict[str, Any]) -> dict[str, Any]:
    """The measured process: the product's sync --all, as the CLI wires it."""
    from bridge.keys import EVERYONE
    from bridge.reconcile import Reconciler
    from bridge.settings import load_settings
    from bridge.wiring import build_source, build_target, open_store, read_mapping

    settings = load_settings(Path(info["settings"]))
    mapping = read_mapping(settings, Path(info["mapping"]))
    store = open_store(settings)
    target = build_target(settings)
    # As `jit-bridge sync` wires it: write_concurrency from the settings (older commits,
    # measured as "before", have no such setting and write one user at a time).
    concurrency = getattr(settings, "write_concurrency", None)
    options = {} if concurrency is None else {"write_concurrency": concurrency}
    reconciler = Reconciler(
        policy=settings.policy,
        mapping=lambda: mapping,
        source=build_source(settings, Path(info["idp"])),
        target=target,
        store=store,
        **options,
    )
    start = time.perf_counter()
    if info["via"] == "service":
        report = reconciler.reconcile(EVERYONE, "login", causes=[], requested_by="bench").report
        assert report is not None, "a login of everyone plans in jit mode"
    else:
        report = reconciler.sync_all("login", triggered_by=[], requested_by="bench")
    wall = time.perf_counter() - start
    store.close()
    stats = target.stats  # type: ignore[attr-defined]
    outcomes: dict[str, int] = {}
    for result in report.results:
        outcomes[result.outcome] = outcomes.get(result.outcome, 0) + 1
    kinds: dict[str, int] = {}
    for op in report.plan.operations:
        kinds[op.op] = kinds.get(op.op, 0) + 1
    return {
        "via": info["via"],
        "wall_s": round(wall, 1),
        "cpu_s": round(sum(os.times()[:2]), 1),
        "write_concurrency": concurrency,
        "status": report.status,
        "reads": stats.reads,
        "writes": stats.writes,
        "operations": kinds,
        "outcomes": outcomes,
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }


def measure(users: int, teams: int, options: list[str], via: str) -> dict[str, Any]:
    org = build(Shape(users=users, teams=teams))
    server = shutil.which("scim2-server", path=str(Path(sys.executable).parent))
    if server is None:
        raise SystemExit("scim2-server is not installed (pip install -e .[dev])")
    port = _free_port()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        files = write_inputs(org, folder)
        settings = files["settings"]
        settings.write_text(
            'mode = "jit"\ntarget = "scim"\nlog_level = "WARNING"\n'
            'scim_owner_group = "Tenant Owners"\n'
            f'scim_url = "http://127.0.0.1:{port}/bench/v2"\nscim_token = "{TOKEN}"\n'
            f'database_url = "sqlite:///{folder}/bridge.db"\n' + "".join(f"{o}\n" for o in options),
            encoding="utf-8",
        )
        log = (folder / "server.log").open("wb")
        command = [server, "--hostname=127.0.0.1", f"--port={port}", f"--bearer-token={TOKEN}"]
        process = subprocess.Popen(
            [*command, "--dynamic-tenants"],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            _wait(port)
            cpu_before = _server_cpu_s(process.pid)
            info = {k: str(v) for k, v in files.items()} | {"via": via}
            done = subprocess.run(
                [sys.executable, "-m", "bench.scim_provision", "--child"],
                input=json.dumps(info),
                capture_output=True,
                text=True,
                check=False,
            )
            server_cpu = _server_cpu_s(process.pid) - cpu_before
        finally:
            process.terminate()
            process.wait(timeout=10)
            log.close()
        if done.returncode != 0:
            raise SystemExit(f"bench child failed:\n{done.stderr[-3000:]}")
        result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    requests = result["reads"] + result["writes"]
    result.update(
        users=users,
        options=options,
        requests_per_user=round(requests / users, 2),
        users_per_s=round(users / result["wall_s"], 1),
        server_cpu_s=round(server_cpu, 1),
        loadavg=os.getloadavg()[0],
    )
    return result


def _wait(port: int) -> None:
    import requests

    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            requests.get(f"http://127.0.0.1:{port}/ready/v2/ServiceProviderConfig", timeout=1)
            return
        except requests.ConnectionError:
            time.sleep(0.1)
    raise SystemExit("scim2-server did not start")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.scim_provision", description=__doc__)
    parser.add_argument("--users", type=int, nargs="+", default=[1_000, 5_000])
    parser.add_argument("--teams", type=int, default=20)
    parser.add_argument(
        "--setting",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="an extra settings line, e.g. write_concurrency=1 (TOML syntax)",
    )
    parser.add_argument(
        "--via",
        choices=["cli", "service"],
        default="cli",
        help="the CLI's sync --all (no claims) or the service's full reconcile (claims)",
    )
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(child(json.loads(sys.stdin.read()))))
        return 0
    for users in args.users:
        print(json.dumps(measure(users, args.teams, args.setting, args.via)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

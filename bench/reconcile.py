"""Full reconcile against docs/design.md, Performance, and against the naive per-user design.

    python -m bench.reconcile --users 1000 10000 50000

For each size, in fresh processes (so peak memory is the bridge's own):

1. no change: the fakes (bench/fakes.py, own process) serve an organisation whose target
   already matches the mapping; one process runs `Reconciler.sync_all` (the product's full
   reconcile, with a SQLite store) and reports wall time, peak RSS and request counts;
2. drift: the same with `--drift` of the users changed in the target; checks that the
   writes sent equal the planned operations and that a second reconcile plans nothing;
3. naive: `--naive-sample` users reconciled one by one (`KeycloakSource.read_user` +
   `TinesTarget.read_user_state` per user, i.e. `Reconciler.sync_user`), extrapolated
   linearly to every user (the naive cost per user grows with N, so this flatters it).

The HTTP client keeps the product's default Tines rate limit on `admin/users` (450/minute),
as in production; the wall times include the waits it imposes.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

from bench.org import POLICY

T = TypeVar("T")
ALL_REMOVALS = 10**9  # the benchmark checks convergence, not the removal budget


@contextmanager
def fakes(
    users: int, drift: float, kc_ms: float, target_ms: float, shape: list[str]
) -> Iterator[dict[str, Any]]:
    """Start bench/fakes.py twice, Keycloak and Tines each in its own process (so neither
    waits for the other's GIL); they end when we close their stdin."""
    processes = []
    info: dict[str, Any] = {}
    try:
        for serve in ("keycloak", "target"):
            process = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "bench.fakes",
                    f"--serve={serve}",
                    f"--users={users}",
                    f"--drift={drift}",
                    f"--keycloak-latency-ms={kc_ms}",
                    f"--target-latency-ms={target_ms}",
                    *shape,
                ],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                text=True,
            )
            processes.append(process)
        for process in processes:
            assert process.stdout is not None
            info.update(json.loads(process.stdout.readline()))
        yield info
    finally:
        for process in processes:
            assert process.stdin is not None
            process.stdin.close()
        for process in processes:
            process.wait(timeout=30)


def measure(
    kind: str, info: dict[str, Any], sample: int, concurrency: int, profile: Path | None = None
) -> dict[str, Any]:
    """Run one measurement in a fresh interpreter and return its JSON result."""
    out = subprocess.run(
        [
            *(sys.executable, "-m", "bench.reconcile", "--child", kind),
            *("--sample", str(sample), f"--write-concurrency={concurrency}"),
            *((f"--profile={profile}",) if profile else ()),
        ],
        input=json.dumps(info),
        capture_output=True,
        text=True,
        check=False,
    )
    if out.returncode != 0:
        raise SystemExit(f"bench child {kind} failed:\n{out.stderr}")
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


# --------------------------------------------------------------------------------------
# Child side: the measured process


def _wiring(
    info: dict[str, Any], store_dir: str, concurrency: int = 1
) -> tuple[Any, Any, Any, Any]:
    from bridge.mapping_file import load_mapping
    from bridge.reconcile import Reconciler
    from bridge.sources.keycloak import KeycloakSource
    from bridge.store import Store
    from bridge.targets.tines import TinesTarget

    mapping = load_mapping(Path(info["mapping"]))
    source = KeycloakSource(info["keycloak"], "bench", "jit-bridge", "bench-secret")
    target = TinesTarget(info["target"], "bench-key")
    store = Store.open(f"sqlite:///{store_dir}/bench.db")
    store.upgrade()
    reconciler = Reconciler(
        policy=POLICY,
        mapping=lambda: mapping,
        source=source,
        target=target,
        store=store,
        write_concurrency=concurrency,
    )
    return reconciler, source, target, store


class _UsersLimitFloor:
    """Counts `admin/users` requests; `seconds()` is the least time the client's limit on
    them (450/minute after a burst of 10) makes that many take, however fast all else is."""

    def __init__(self, bucket: Any) -> None:
        self.rate: float = bucket._rate
        self.burst: float = bucket._burst
        self.pages = 0

    def seconds(self) -> float:
        return max(0.0, self.pages - self.burst) / self.rate


def _without_users_limit(target: Any) -> _UsersLimitFloor:
    """Lift the client's `admin/users` limit for this run, so the wall time measures the
    bridge; what the limit alone would impose is reported apart (`users_limit_floor_s`).
    Other paths keep their limit (4,000/minute, which `admin/users` now shares)."""
    floor = _UsersLimitFloor(target.http._limiters.pop("admin/users"))
    send = target.http.send

    def counting(method: str, path: str, **kwargs: Any) -> Any:
        if path.split("?")[0].strip("/").startswith("admin/users"):
            floor.pages += 1
        return send(method, path, **kwargs)

    target.http.send = counting
    return floor


def _limiter_waits(target: Any) -> dict[str, float]:
    """Seconds each of the Tines client's rate limiters made it wait, filled in as it runs."""
    waits: dict[str, float] = {}
    for prefix, limiter in target.http._limiters.items():
        waits[prefix] = 0.0

        def sleep(seconds: float, prefix: str = prefix, real: Any = limiter._sleep) -> None:
            waits[prefix] += seconds
            real(seconds)

        limiter._sleep = sleep
    return waits


def _timed(phases: dict[str, float], name: str, call: Callable[..., T]) -> Callable[..., T]:
    def timed(*args: Any, **kwargs: Any) -> T:
        start = time.perf_counter()
        try:
            return call(*args, **kwargs)
        finally:
            phases[name] = phases.get(name, 0.0) + time.perf_counter() - start

    return timed


def _server_counts(url: str) -> dict[str, int]:
    import requests

    counts: dict[str, int] = requests.get(f"{url}/__bench/stats", timeout=10).json()
    return counts


class _ThreadsProfile:
    """cProfile of this thread and of every thread started while it runs (the read pools),
    merged into one file: cProfile alone sees only the thread that enabled it. Timed in
    each thread's CPU time, so waiting (for answers, for the GIL) counts nothing."""

    def __init__(self) -> None:
        import cProfile
        import threading

        self._profiles = [cProfile.Profile(time.thread_time)]

        def start_in_thread(*_: Any) -> None:
            profile = cProfile.Profile(time.thread_time)
            self._profiles.append(profile)
            profile.enable()

        threading.setprofile(start_in_thread)
        self._profiles[0].enable()

    def dump(self, path: str) -> None:
        import pstats
        import threading

        threading.setprofile(None)
        self._profiles[0].disable()
        for profile in self._profiles:
            profile.create_stats()
        pstats.Stats(*self._profiles).dump_stats(path)


def _cpu() -> float:
    """User + system CPU seconds of this process (all its threads) so far."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def child_full(
    info: dict[str, Any], concurrency: int, profile: str | None = None
) -> dict[str, Any]:
    import os

    with tempfile.TemporaryDirectory() as store_dir:
        reconciler, source, target, store = _wiring(info, store_dir, concurrency)
        floor = None
        if info.get("users_limit") == "apart":
            floor = _without_users_limit(target)
        waits = _limiter_waits(target)
        phases: dict[str, float] = {}
        source.read_all = _timed(phases, "keycloak_read", source.read_all)
        target.read_state = _timed(phases, "target_read", target.read_state)
        rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        fakes_before = {k: _server_counts(info[k])["cpu_s"] for k in ("keycloak", "target")}
        profiler = _ThreadsProfile() if profile else None
        start = time.perf_counter()
        cpu_start = _cpu()
        report = reconciler.sync_all(
            "reconcile", triggered_by=[], requested_by="bench", allow_removals=ALL_REMOVALS
        )
        wall = time.perf_counter() - start
        cpu = _cpu() - cpu_start
        if profiler is not None and profile:
            profiler.dump(profile)
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        result = {
            "wall_s": round(wall, 2),
            "phases_s": {k: round(v, 2) for k, v in phases.items()},
            "rate_limit_waits_s": {k: round(v, 2) for k, v in waits.items()},
            "users_limit": info.get("users_limit", "enforce"),
            "cpu_s": round(cpu, 2),
            "process_cpu_s": round(_cpu(), 2),
            "loadavg": os.getloadavg()[0],
            "write_concurrency": concurrency,
            "peak_rss_mb": round(peak / 1024, 1),
            "rss_before_mb": round(rss_before / 1024, 1),
            "status": report.status,
            "keycloak_reads": source.stats.requests,
            "target_reads": target.http.stats.reads,
            "target_writes": target.http.stats.writes,
            "target_retries": target.http.stats.retries,
            "planned_ops": len(report.plan.operations),
            "applied_ops": sum(1 for r in report.results if r.outcome == "applied"),
            "held_ops": len(report.plan.held),
            "server_target": _server_counts(info["target"]),
            "server_keycloak": _server_counts(info["keycloak"]),
        }
        if floor is not None:
            result["users_pages"] = floor.pages
            result["users_limit_floor_s"] = round(floor.seconds(), 2)
        result["fakes_cpu_s"] = {
            k: round(result[f"server_{k}"]["cpu_s"] - fakes_before[k], 2)
            for k in ("keycloak", "target")
        }
        # Again, with the store as the first run left it (identity pairs saved): the steady
        # state of a service that reconciles every so often.
        start, cpu_start = time.perf_counter(), _cpu()
        again = reconciler.sync_all(
            "reconcile", triggered_by=[], requested_by="bench", allow_removals=ALL_REMOVALS
        )
        result["second_run"] = {
            "wall_s": round(time.perf_counter() - start, 2),
            "cpu_s": round(_cpu() - cpu_start, 2),
            "ops": len(again.plan.operations),
            "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        }
        result["second_run_ops"] = len(again.plan.operations)
        store.close()
        return result


def child_naive(info: dict[str, Any], sample: int) -> dict[str, Any]:
    from bridge.keys import UserRef

    with tempfile.TemporaryDirectory() as store_dir:
        reconciler, source, target, _store = _wiring(info, store_dir)
        reconciler.store = None  # spare the naive design the store's writes
        ids: list[str] = info["user_ids"]
        chosen = [ids[i * len(ids) // sample] for i in range(sample)]
        start = time.perf_counter()
        ops = 0
        for user_id in chosen:
            report = reconciler.sync_user(
                UserRef(user_id=user_id), "reconcile", triggered_by=[], requested_by="bench"
            )
            ops += len(report.plan.operations)
        wall = time.perf_counter() - start
        return {
            "sample": sample,
            "wall_s_per_user": round(wall / sample, 3),
            "keycloak_reads_per_user": round(source.stats.requests / sample, 1),
            "target_reads_per_user": round(target.http.stats.reads / sample, 1),
            "planned_ops": ops,
        }


# --------------------------------------------------------------------------------------
# Parent side


def run_size(args: argparse.Namespace, users: int) -> dict[str, Any]:
    row: dict[str, Any] = {"users": users}
    shape = [
        f"--departments={args.departments}",
        f"--leaves={args.leaves}",
        f"--mapped-leaves={args.mapped_leaves}",
        f"--teams={args.teams}",
    ]
    lat = (args.keycloak_latency_ms, args.target_latency_ms)
    with fakes(users, 0.0, *lat, shape) as info:
        info["users_limit"] = args.tines_users_limit
        row["selectors"], row["teams"] = info["selectors"], info["teams"]
        profile = args.profile and args.profile.with_suffix(f".{users}.no_change.prof")
        row["no_change"] = measure("full", info, 0, args.write_concurrency, profile)
        if args.naive_sample:
            naive = measure("naive", info, args.naive_sample, 1)
            naive["extrapolated_wall_s"] = round(naive["wall_s_per_user"] * users)
            naive["extrapolated_keycloak_reads"] = round(naive["keycloak_reads_per_user"] * users)
            naive["extrapolated_target_reads"] = round(naive["target_reads_per_user"] * users)
            row["naive"] = naive
    if args.drift:
        with fakes(users, args.drift, *lat, shape) as info:
            info["users_limit"] = args.tines_users_limit
            profile = args.profile and args.profile.with_suffix(f".{users}.drift.prof")
            drift = measure("full", info, 0, args.write_concurrency, profile)
            drift["drifted_users"] = info["drifted_users"]
            drift["writes_equal_planned"] = (
                drift["target_writes"] == drift["planned_ops"] == drift["applied_ops"]
            )
            row["drift"] = drift
    return row


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.reconcile", description=__doc__)
    parser.add_argument("--users", type=int, nargs="+", default=[10_000])
    parser.add_argument("--drift", type=float, default=0.02, help="share of users drifted")
    parser.add_argument("--naive-sample", type=int, default=10, help="0 skips the naive run")
    parser.add_argument("--keycloak-latency-ms", type=float, default=5.0)
    parser.add_argument("--target-latency-ms", type=float, default=20.0)
    parser.add_argument("--departments", type=int, default=30)
    parser.add_argument("--leaves", type=int, default=10, help="subgroups per department")
    parser.add_argument("--mapped-leaves", type=int, default=269)
    parser.add_argument("--teams", type=int, default=100)
    parser.add_argument(
        "--write-concurrency", type=int, default=4, help="the product's default is 4"
    )
    parser.add_argument(
        "--tines-users-limit",
        choices=["enforce", "apart"],
        default="enforce",
        help="apart: lift the client's admin/users limit and report the least time it "
        "would add (users_limit_floor_s) beside the wall time",
    )
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument(
        "--profile",
        type=Path,
        help="cProfile each full reconcile in-process into FILE.<users>.<run>.prof",
    )
    parser.add_argument("--child", choices=["full", "naive"], help=argparse.SUPPRESS)
    parser.add_argument("--sample", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        info = json.loads(sys.stdin.read())
        result = (
            child_full(info, args.write_concurrency, args.profile and str(args.profile))
            if args.child == "full"
            else child_naive(info, args.sample)
        )
        print(json.dumps(result))
        return 0
    rows = []
    for users in args.users:
        row = run_size(args, users)
        print(json.dumps(row), flush=True)
        rows.append(row)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

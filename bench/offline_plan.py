"""Offline `jit-bridge plan --all` from snapshots, against the time to json-load its inputs.

    python -m bench.offline_plan --users 10000 100000

For each size the synthetic organisation of bench/org.py (by default 300 mapped groups,
100 teams; `--drift` of the users changed in the target) is written as the three files an
offline plan reads: the mapping, an IdP snapshot and a target snapshot. Then, in the same run
and one after the other, each in a fresh process:

1. `json.load` of the two snapshots and the mapping, timed inside the process (the floor:
   any plan must at least read its inputs);
2. `jit-bridge plan --all --trigger reconcile --json` (the installed command, start-up
   included), its output to a file; wall time and the process's peak RSS (from wait4);
3. `jit-bridge --help`, wall time (the command's start-up alone).

The ratio is (2) / (1), of wall time and of CPU time (user + system; on a shared machine the
steadier of the two). `--repeat N` runs each step N times and keeps the fastest. The plan's
SHA-256 is printed so two commits can be shown to plan byte for byte the same.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.org import OWNERS, Org, Shape, build

_LOAD = """
import json, sys, time
start, cpu = time.perf_counter(), time.process_time()
for path in sys.argv[1:]:
    with open(path, "rb") as handle:
        json.load(handle)
print(time.perf_counter() - start, time.process_time() - cpu)
"""


def write_inputs(org: Org, folder: Path) -> dict[str, Path]:
    """The mapping, IdP snapshot, target snapshot and settings of an offline plan."""
    files = {
        "mapping": folder / "mapping.json",
        "idp": folder / "idp.json",
        "target": folder / "target.json",
        "settings": folder / "settings.toml",
    }
    files["mapping"].write_text(json.dumps(org.mapping_json), encoding="utf-8")
    idp_users = [
        {
            "id": raw["id"],
            "username": raw["username"],
            "email": raw["email"],
            "email_verified": True,
            "first_name": raw["firstName"],
            "last_name": raw["lastName"],
            "groups": org.user_groups[str(raw["id"])],
        }
        for raw in org.users
    ]
    files["idp"].write_text(json.dumps({"users": idp_users}), encoding="utf-8")
    target_users = [
        {
            "id": str(raw["id"]),
            "email": raw["email"],
            "first_name": raw["first_name"],
            "last_name": raw["last_name"],
            "tenant_owner": raw["admin"],
            "active": True,
        }
        for raw in org.target_users
    ]
    teams = [
        {
            "id": str(team_id),
            "name": org.team_names[team_id],
            "members": [
                {"user_id": str(user_id), "role": role}
                for user_id, role in sorted(org.team_members[team_id].items())
            ],
        }
        for team_id in sorted(org.team_names)
    ]
    files["target"].write_text(
        json.dumps({"users": target_users, "teams": teams}), encoding="utf-8"
    )
    files["settings"].write_text(
        'mode = "enhanced"\nmanage_teams = "all"\nrequire_verified_email = true\n'
        'log_level = "WARNING"\nmax_removals = 1000000000\nmax_removal_fraction = 1.0\n',
        encoding="utf-8",
    )
    return files


def _run(command: list[str], stdout: Any) -> tuple[float, float, float]:
    """Wall seconds, peak RSS (MB) and CPU seconds (user + system) of one child process."""
    start = time.perf_counter()
    process = subprocess.Popen(command, stdout=stdout, stderr=subprocess.PIPE)
    _pid, status, usage = os.wait4(process.pid, 0)
    wall = time.perf_counter() - start
    process.returncode = os.waitstatus_to_exitcode(status)
    assert process.stderr is not None
    errors = process.stderr.read().decode(errors="replace")
    process.stderr.close()
    if process.returncode not in (0, 4):
        raise SystemExit(f"{' '.join(command)} failed ({process.returncode}):\n{errors}")
    return wall, usage.ru_maxrss / 1024, usage.ru_utime + usage.ru_stime


def measure(users: int, drift: float, repeat: int, keep: Path | None) -> dict[str, Any]:
    org = build(Shape(users=users, drift=drift))
    command = shutil.which("jit-bridge", path=str(Path(sys.executable).parent)) or "jit-bridge"
    with tempfile.TemporaryDirectory() as tmp:
        folder = keep or Path(tmp)
        folder.mkdir(parents=True, exist_ok=True)
        files = write_inputs(org, folder)
        del org
        sizes_mb = sum(files[k].stat().st_size for k in ("mapping", "idp", "target")) / 1e6
        loads, plans, helps = [], [], []
        out = folder / "plan.json"
        for _ in range(repeat):
            inputs = [str(files[k]) for k in ("idp", "target", "mapping")]
            load = subprocess.run(
                [sys.executable, "-c", _LOAD, *inputs],
                capture_output=True,
                text=True,
                check=True,
            )
            wall_s, cpu_s = load.stdout.split()
            loads.append((float(wall_s), float(cpu_s)))
            with out.open("wb") as handle:
                plans.append(
                    _run(
                        [
                            command,
                            "--settings",
                            str(files["settings"]),
                            "--mapping",
                            str(files["mapping"]),
                            "plan",
                            "--all",
                            "--trigger",
                            "reconcile",
                            "--json",
                            "--idp-snapshot",
                            str(files["idp"]),
                            "--target-snapshot",
                            str(files["target"]),
                        ],
                        handle,
                    )
                )
            helps.append(_run([command, "--help"], subprocess.DEVNULL))
        plan_text = out.read_bytes()
        plan = json.loads(plan_text)
        load_s = min(wall for wall, _ in loads)
        load_cpu = min(cpu for _, cpu in loads)
        plan_s = min(wall for wall, _, _ in plans)
        plan_cpu = min(cpu for _, _, cpu in plans)
        return {
            "users": users,
            "owners": OWNERS,
            "inputs_mb": round(sizes_mb, 1),
            "json_load_s": round(load_s, 3),
            "plan_s": round(plan_s, 2),
            "ratio": round(plan_s / load_s, 1),
            "json_load_cpu_s": round(load_cpu, 3),
            "plan_cpu_s": round(plan_cpu, 2),
            "cpu_ratio": round(plan_cpu / load_cpu, 1),
            "plan_peak_rss_mb": round(max(rss for _, rss, _ in plans), 1),
            "help_s": round(min(wall for wall, _, _ in helps), 3),
            "help_cpu_s": round(min(cpu for _, _, cpu in helps), 3),
            "operations": len(plan["operations"]),
            "skipped": len(plan["skipped"]),
            "held": len(plan["held"]),
            "plan_sha256": hashlib.sha256(plan_text).hexdigest()[:16],
            "loadavg": os.getloadavg()[0],
        }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.offline_plan", description=__doc__)
    parser.add_argument("--users", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--drift", type=float, default=0.02, help="share of users drifted")
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--keep", type=Path, help="write the inputs and plan here, and keep them")
    args = parser.parse_args(argv)
    for users in args.users:
        keep = args.keep / str(users) if args.keep else None
        print(json.dumps(measure(users, args.drift, args.repeat, keep)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

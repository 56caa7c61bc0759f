"""What a full reconcile's per-user queue claims cost the store: one by one or a chunk at once.

    python -m bench.user_claims --users 1000 --chunk 100

The service's full reconcile writes to each user under that user's queue claim, taken and
released in a write transaction each (a commit, so an fsync on SQLite). Claiming a chunk of
users together (`Store.claim_users`, `Store.complete_all`) makes that two commits per chunk.
Both ways on a fresh SQLite store (synchronous FULL, as the service runs it) in a temporary
directory; prints wall seconds of each.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time

from bridge.store import Store


def measure(users: int, chunk: int) -> dict[str, object]:
    with tempfile.TemporaryDirectory() as folder:
        store = Store.open(f"sqlite:///{folder}/bridge.db")
        store.upgrade()
        read_at = store.now()
        start = time.perf_counter()
        for n in range(users):
            store.complete_all(list(store.claim_users([f"id:one-{n}"], read_at).values()))
        one_by_one = time.perf_counter() - start
        start = time.perf_counter()
        for first in range(0, users, chunk):
            keys = [f"id:chunk-{n}" for n in range(first, min(first + chunk, users))]
            store.complete_all(list(store.claim_users(keys, read_at).values()))
        chunked = time.perf_counter() - start
        store.close()
    return {
        "users": users,
        "chunk": chunk,
        "one_by_one_s": round(one_by_one, 2),
        "chunked_s": round(chunked, 2),
        "loadavg": os.getloadavg()[0],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.user_claims", description=__doc__)
    parser.add_argument("--users", type=int, default=1_000)
    parser.add_argument("--chunk", type=int, default=100)
    args = parser.parse_args(argv)
    print(json.dumps(measure(args.users, args.chunk)))
    return 0


if __name__ == "__main__":
    sys.exit(main())

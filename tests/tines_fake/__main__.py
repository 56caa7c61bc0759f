"""Run the Tines fake standalone: `python -m tests.tines_fake --port 8090 --api-key K --seed F`.

The seed is a target snapshot (docs/design.md, Formats), e.g. one written by `jit-bridge snapshot
target`.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import threading
from pathlib import Path

from bridge.model import TargetState
from tests.tines_fake.server import TinesFake


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.tines_fake", description=__doc__)
    parser.add_argument("--port", type=int, default=8090, help="port on 127.0.0.1 (0 = any)")
    parser.add_argument("--api-key", default="fake-tines-key", help="the bearer key to accept")
    parser.add_argument("--seed", type=Path, help="target snapshot JSON to preload")
    parser.add_argument(
        "--existing-member",
        choices=["update", "reject"],
        default="update",
        help="how invite_member treats an existing member (see tests/tines_fake/server.py)",
    )
    args = parser.parse_args(argv)
    fake = TinesFake(args.api_key, existing_member=args.existing_member, port=args.port)
    if args.seed is not None:
        try:
            fake.state.load(TargetState.model_validate_json(args.seed.read_text()))
        except (OSError, ValueError) as error:
            print(f"cannot load seed {args.seed}: {error}", file=sys.stderr)
            return 2
    fake.start()
    print(f"Tines fake listening on {fake.url} (Ctrl-C stops it)", flush=True)
    with contextlib.suppress(KeyboardInterrupt):
        threading.Event().wait()
    fake.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())

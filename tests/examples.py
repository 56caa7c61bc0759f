"""How many examples a property test tries: all of them in the whole suite, a quarter in the
fast layer (`make test-unit`, which sets JIT_BRIDGE_TEST_NO_SERVICES) so it stays under a
minute. Use as `@settings(max_examples=examples(200))`."""

from __future__ import annotations

import os


def examples(full: int) -> int:
    if os.environ.get("JIT_BRIDGE_TEST_NO_SERVICES"):
        return max(25, full // 4)
    return full

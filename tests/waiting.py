"""The one wait-until loop of the tests (and benchmarks): poll until something is true.

For waiting on processes and servers only; a test never asserts how long anything took.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def wait_until(
    probe: Callable[[], T],
    timeout: float,
    what: str,
    *,
    interval: float = 0.1,
    context: Callable[[], str] | None = None,
) -> T:
    """Call `probe` until it returns something truthy, and return that. After `timeout`
    seconds, fail naming `what`, the last answer and `context()` (a log tail, say)."""
    deadline = time.monotonic() + timeout
    while True:
        last = probe()
        if last:
            return last
        if time.monotonic() > deadline:
            extra = f"\n{context()}" if context is not None else ""
            raise AssertionError(
                f"not reached within {timeout:.0f} s: {what} (last: {last!r}){extra}"
            )
        time.sleep(interval)

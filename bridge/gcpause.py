"""Pausing Python's cyclic garbage collector while a full plan builds its large object graph.

A full plan reads and keeps about ten objects per user (snapshot or API records, memberships,
desired access) and frees almost nothing until it ends. Every so many allocations the cyclic
collector walks all live objects again to find cycles there are none of: at 10,000 users
that was about half of the planning time, at 100,000 more (bench/README.md). Reference
counting still frees every object as usual while the collector is paused; it resumes, and
collects any cycles, when the plan is made.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def paused_gc() -> Iterator[None]:
    """No cyclic collection inside the block; nested or concurrent use is harmless (the
    collector is only re-enabled by the block that disabled it)."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()

"""Crash safety: what `enqueue` acknowledged survives `kill -9`, and a claim held by a killed
worker is taken over once its lease expires. The children are real processes on the same
database, with the store's default (fully durable) settings."""

from __future__ import annotations

import signal
import subprocess
import sys
from typing import TYPE_CHECKING

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import text

from bridge.store import Store
from bridge.store.database import read_transaction
from bridge.store.tables import metadata

if TYPE_CHECKING:
    from tests.fixtures.store_db import FakeClock

pytest_plugins = ["tests.fixtures.store_db"]


CHILD = """
import sys, time
from bridge.store import Store

url, mode, arg = sys.argv[1], sys.argv[2], sys.argv[3]
store = Store.open(url)
if mode == "enqueue":
    for n in range(int(arg)):
        store.enqueue(f"id:user-{n}", "login", event_id=f"evt-{n}")
        print(f"id:user-{n}", flush=True)
    print("done", flush=True)
else:
    item = store.claim("child-worker", lease_seconds=float(arg))
    print(item.key if item else "nothing", flush=True)
time.sleep(600)
"""


def kill_child_after(url: str, mode: str, arg: str, lines_before_kill: int) -> list[str]:
    """Run the child until it printed `lines_before_kill` lines, SIGKILL it, and return
    everything it printed (every line is something a store call returned)."""
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, url, mode, arg], stdout=subprocess.PIPE, text=True
    )
    assert child.stdout is not None
    printed: list[str] = []
    try:
        while len(printed) < lines_before_kill:
            line = child.stdout.readline()
            assert line, f"child ended early after printing {printed[-3:]}"
            printed.append(line.strip())
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()
    printed += [line.strip() for line in child.stdout]
    child.stdout.close()
    assert child.returncode == -signal.SIGKILL
    return printed


def assert_database_intact(store: Store) -> None:
    if store.engine.dialect.name == "sqlite":
        with read_transaction(store.engine) as connection:
            assert connection.execute(text("PRAGMA integrity_check")).scalar_one() == "ok"


def test_every_acknowledged_enqueue_survives_a_kill_mid_way(store: Store, store_url: str) -> None:
    acknowledged = kill_child_after(store_url, "enqueue", "5000", lines_before_kill=25)

    assert "done" not in acknowledged, "the child was meant to die mid-way"
    assert_database_intact(store)
    queued = {entry.key for entry in store.queue_items()}
    assert set(acknowledged) <= queued
    assert queued <= {f"id:user-{n}" for n in range(5000)}
    # The event ids were committed with the queue rows: redelivery queues nothing.
    for key in acknowledged:
        event_id = key.replace("id:user-", "evt-")
        assert store.enqueue(key, "login", event_id=event_id) == "duplicate"


def test_a_kill_after_the_last_enqueue_loses_nothing(store: Store, store_url: str) -> None:
    acknowledged = kill_child_after(store_url, "enqueue", "30", lines_before_kill=31)

    assert acknowledged[-1] == "done"
    assert {entry.key for entry in store.queue_items()} == set(acknowledged[:-1])
    assert store.queue_depth() == 30


def test_a_killed_workers_claim_is_taken_over_after_its_lease(
    store: Store, store_url: str, store_clock: FakeClock
) -> None:
    store.enqueue("id:alice", "login", event_id="evt-1")

    assert kill_child_after(store_url, "claim", "30", lines_before_kill=1) == ["id:alice"]
    assert store.claim("parent-worker") is None, "the dead child's lease is still live"

    store_clock.advance(90)  # well past the child's 30 s lease, whenever the child started
    taken = store.claim("parent-worker")
    assert taken is not None
    assert (taken.key, taken.trigger, taken.event_ids, taken.attempts) == (
        "id:alice",
        "login",
        ("evt-1",),
        1,
    )
    assert store.complete(taken)
    assert store.queue_items() == []


def test_upgrading_again_is_harmless_and_builds_the_declared_schema(store: Store) -> None:
    store.upgrade()

    assert store.schema_is_current()
    with read_transaction(store.engine) as connection:
        differences = compare_metadata(MigrationContext.configure(connection), metadata)
    assert differences == []

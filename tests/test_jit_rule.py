"""The jit rule ("jit acts only on logins"), decided once in `bridge.keys.acts_on`, as the
worker applies it to queue entries: against the Tines fake, through `WorkerPool.run_item`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bridge.health import Health
from bridge.keys import EVERYONE, UserRef, acts_on
from bridge.mapping import Mapping
from bridge.mapping_file import parse_mapping
from bridge.metrics import Metrics
from bridge.model import IdentityView, IdpSnapshot, Mode
from bridge.policy import Policy
from bridge.reconcile import Reconciler
from bridge.sources.base import SnapshotSource
from bridge.store import Store
from bridge.targets.tines import TinesTarget
from bridge.worker import WorkerPool
from tests.test_safety_support import MAPPING, idp_user, seed_tenant
from tests.tines_fake import TinesFake


class CountingSource(SnapshotSource):
    """A snapshot that counts how often it is read."""

    def __init__(self, snapshot: IdpSnapshot) -> None:
        super().__init__(snapshot)
        self.reads = 0

    def read_user(self, ref: UserRef, mapping: Mapping) -> IdentityView:
        self.reads += 1
        return super().read_user(ref, mapping)

    def read_all(self, mapping: Mapping) -> IdentityView:
        self.reads += 1
        return super().read_all(mapping)


def worker(
    fake: TinesFake, tmp_path: Path, mode: Mode, people: list[str]
) -> tuple[WorkerPool, CountingSource, Store]:
    store = Store.open(f"sqlite:///{tmp_path / 'state.db'}")
    store.upgrade()
    source = CountingSource(
        IdpSnapshot.model_validate({"users": [idp_user(n, "/Analysts") for n in people]})
    )

    def reconciler() -> Reconciler:
        return Reconciler(
            policy=Policy(mode=mode),
            mapping=lambda: parse_mapping(json.dumps(MAPPING)),
            source=source,
            target=TinesTarget(fake.url, fake.api_key),
            store=store,
        )

    pool = WorkerPool(store=store, reconciler=reconciler, metrics=Metrics(), health=Health())
    return pool, source, store


def run_queued(pool: WorkerPool, store: Store, key: str, trigger: str) -> None:
    store.enqueue(key, trigger, source="test")  # type: ignore[arg-type]
    item = store.claim("test-worker")
    assert item is not None
    pool.run_item(item)
    assert store.queue_depth() == 0, "the entry must be settled, not retried"


def test_the_rule() -> None:
    assert acts_on("jit", "login")
    assert not acts_on("jit", "change")
    assert not acts_on("jit", "reconcile")
    assert all(acts_on("enhanced", t) for t in ("login", "change", "reconcile"))


def test_jit_everyone_with_a_login_trigger_plans_as_if_everyone_logged_in(
    tines_fake: TinesFake, tmp_path: Path
) -> None:
    seed_tenant(tines_fake, {"Analytics": ["old"]})
    pool, _, store = worker(tines_fake, tmp_path, "jit", ["old", "amy", "bob"])

    run_queued(pool, store, EVERYONE, "login")

    members = {u.email for u in tines_fake.state.export().users}
    assert {"amy@example.com", "bob@example.com"} <= members
    [run] = store.list_runs(limit=1)
    assert run.status == "succeeded"


@pytest.mark.parametrize(
    ("key", "trigger"),
    [(EVERYONE, "reconcile"), ("email:amy@example.com", "reconcile"), ("id:id-amy", "change")],
)
def test_jit_ignores_anything_but_a_login_without_reading(
    tines_fake: TinesFake, tmp_path: Path, key: str, trigger: str
) -> None:
    seed_tenant(tines_fake, {"Analytics": ["old"]})
    pool, source, store = worker(tines_fake, tmp_path, "jit", ["old", "amy"])
    tines_fake.clear_log()

    run_queued(pool, store, key, trigger)

    assert source.reads == 0, "jit read Keycloak for a trigger it does not act on"
    assert tines_fake.requests == [], "jit read or wrote the target for a non-login trigger"
    assert store.list_runs(limit=1) == []

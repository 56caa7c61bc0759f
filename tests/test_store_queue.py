"""The durable coalescing work queue, event de-duplication, poll cursors and known users."""

from __future__ import annotations

import threading
import time
from collections import Counter
from typing import TYPE_CHECKING

import pytest

from bridge.keys import EnqueueResult
from bridge.store import EnqueueRequest, QueueItem, Store, StoreError
from bridge.store.queue import MAX_EVENT_IDS

if TYPE_CHECKING:
    from tests.fixtures.store_db import FakeClock

pytest_plugins = ["tests.fixtures.store_db"]

DAY = 24 * 3600.0


def claim_ready(store: Store, worker: str = "w1") -> QueueItem:
    item = store.claim(worker)
    assert item is not None, "expected a ready queue item"
    return item


# -- coalescing -----------------------------------------------------------------------------


def test_ten_enqueues_for_one_user_become_one_reconcile(store: Store) -> None:
    results = [store.enqueue("id:alice", "change", event_id=f"e{n}") for n in range(10)]

    assert results == ["queued"] + ["merged"] * 9
    assert store.queue_depth() == 1
    item = claim_ready(store)
    assert item.key == "id:alice"
    assert item.event_ids == tuple(f"e{n}" for n in range(10))
    assert store.claim("w2") is None


@pytest.mark.parametrize(
    ("triggers", "strongest"),
    [
        (["reconcile", "change", "reconcile"], "change"),
        (["change", "login", "reconcile"], "login"),
        (["login", "reconcile"], "login"),
        (["reconcile", "reconcile"], "reconcile"),
    ],
)
def test_merge_keeps_the_strongest_trigger(
    store: Store, triggers: list[str], strongest: str
) -> None:
    for trigger in triggers:
        store.enqueue("email:bob@example.com", trigger)  # type: ignore[arg-type]

    assert claim_ready(store).trigger == strongest


def test_merge_keeps_earliest_not_before_and_latest_hints(
    store: Store, store_clock: FakeClock
) -> None:
    store.enqueue(
        "id:carol", "change", not_before=store_clock.now + 60, email_hint="old@example.com"
    )
    assert store.claim("w1") is None, "not due yet"

    store.enqueue(
        "id:carol", "change", not_before=store_clock.now + 30, email_hint="carol@example.com"
    )
    store_clock.advance(30)
    item = claim_ready(store)

    assert item.email_hint == "carol@example.com"


def test_event_ids_kept_per_key_are_bounded_to_the_most_recent(store: Store) -> None:
    for n in range(MAX_EVENT_IDS + 10):
        store.enqueue("id:dave", "change", event_id=f"e{n}")

    item = claim_ready(store)

    assert len(item.event_ids) == MAX_EVENT_IDS
    assert item.event_ids[-1] == f"e{MAX_EVENT_IDS + 9}"
    assert "e0" not in item.event_ids


def test_oldest_ready_key_is_claimed_first(store: Store, store_clock: FakeClock) -> None:
    for key in ("id:1", "id:2", "id:3"):
        store.enqueue(key, "reconcile")
        store_clock.advance(1)
    store.enqueue("id:1", "login")  # a merge does not make the key younger

    assert [claim_ready(store, f"w{n}").key for n in range(3)] == ["id:1", "id:2", "id:3"]


def test_a_batch_is_queued_merged_and_de_duplicated_like_single_enqueues(store: Store) -> None:
    results = store.enqueue_many(
        [
            EnqueueRequest("id:pia", "change", event_id="e1"),
            EnqueueRequest("id:pia", "login", event_id="e2"),
            EnqueueRequest("id:quinn", "change", event_id="e1"),
            EnqueueRequest("all", "reconcile"),
        ]
    )

    assert results == ["queued", "merged", "duplicate", "queued"]
    first = claim_ready(store)
    store.complete(first)  # a full reconcile never runs beside a user's
    second = claim_ready(store)
    assert {(item.key, item.trigger) for item in (first, second)} == {
        ("id:pia", "login"),
        ("all", "reconcile"),
    }


def test_concurrent_enqueues_sharing_commits_each_get_their_own_answer(store: Store) -> None:
    answers: dict[str, list[EnqueueResult]] = {}

    def deliver(thread: int) -> None:
        mine = [store.enqueue("id:shared", "login", event_id="evt-shared")]
        mine += [store.enqueue(f"id:t{thread}-{n}", "change") for n in range(25)]
        answers[f"t{thread}"] = mine

    threads = [threading.Thread(target=deliver, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert sorted(answer[0] for answer in answers.values()) == ["duplicate"] * 7 + ["queued"]
    assert all(answer[1:] == ["queued"] * 25 for answer in answers.values())
    assert store.queue_depth() == 1 + 8 * 25


def test_a_batch_with_a_bad_request_stores_nothing(store: Store) -> None:
    with pytest.raises(StoreError, match="unknown trigger"):
        store.enqueue_many(
            [EnqueueRequest("id:ray", "login", event_id="e1"), EnqueueRequest("id:sam", "x")]  # type: ignore[arg-type]
        )

    assert store.queue_depth() == 0
    assert store.enqueue("id:ray", "login", event_id="e1") == "queued"


def test_unknown_trigger_and_empty_key_are_refused(store: Store) -> None:
    with pytest.raises(StoreError, match="unknown trigger 'logon'"):
        store.enqueue("id:erin", "logon")  # type: ignore[arg-type]
    with pytest.raises(StoreError, match="must not be empty"):
        store.enqueue("", "login")
    assert store.queue_depth() == 0


# -- a key being worked ---------------------------------------------------------------------


def test_trigger_arriving_during_a_claim_runs_the_key_again_afterwards(store: Store) -> None:
    store.enqueue("id:frank", "reconcile", event_id="e1")
    first = claim_ready(store, "w1")

    assert store.enqueue("id:frank", "login", event_id="e2", email_hint="f@example.com") == (
        "queued"
    )
    assert store.claim("w2") is None, "the key is being worked by w1"
    assert [entry.rerun_pending for entry in store.queue_items()] == [True]

    assert store.complete(first)
    second = claim_ready(store, "w2")
    assert (second.trigger, second.event_ids, second.email_hint) == (
        "login",
        ("e2",),
        "f@example.com",
    )
    assert store.complete(second)
    assert store.queue_items() == []


def test_completed_key_leaves_the_queue(store: Store) -> None:
    store.enqueue("id:gina", "login")
    assert store.complete(claim_ready(store))

    assert store.queue_depth() == 0
    assert store.claim("w1") is None


# -- event de-duplication -------------------------------------------------------------------


def test_an_event_seen_before_queues_nothing(store: Store) -> None:
    assert store.enqueue("id:hana", "login", event_id="evt-1") == "queued"
    store.complete(claim_ready(store))

    assert store.enqueue("id:hana", "login", event_id="evt-1") == "duplicate"
    assert store.enqueue("id:other", "change", event_id="evt-1") == "duplicate"
    assert store.queue_depth() == 0


def test_an_event_is_forgotten_after_the_retention_window(
    store: Store, store_clock: FakeClock
) -> None:
    store.enqueue("id:ivan", "login", event_id="evt-1")
    store.complete(claim_ready(store))

    store_clock.advance(6 * DAY)
    assert store.enqueue("id:ivan", "login", event_id="evt-1") == "duplicate"
    store_clock.advance(2 * DAY)
    assert store.enqueue("id:ivan", "login", event_id="evt-1") == "queued"


def test_pruning_drops_only_expired_event_ids(store: Store, store_clock: FakeClock) -> None:
    store.enqueue("id:jo", "login", event_id="old")
    store_clock.advance(8 * DAY)
    store.enqueue("id:jo", "login", event_id="new")

    assert store.prune_seen_events() == 1
    assert store.enqueue("id:jo", "login", event_id="new") == "duplicate"


# -- leases, failures, back-off -------------------------------------------------------------


def test_an_expired_claim_is_taken_over_and_the_dead_worker_cannot_finish_it(
    store: Store, store_clock: FakeClock
) -> None:
    store.enqueue("id:kim", "login", event_id="e1")
    dead = store.claim("w-dead", lease_seconds=30)
    assert dead is not None
    store_clock.advance(29)
    assert store.claim("w2", lease_seconds=30) is None, "lease still live"

    store_clock.advance(2)
    taken = claim_ready(store, "w2")

    assert (taken.key, taken.trigger, taken.event_ids, taken.attempts) == (
        "id:kim",
        "login",
        ("e1",),
        1,
    )
    assert not store.complete(dead)
    assert not store.fail(dead, "late", retry_in=1)
    assert store.complete(taken)
    assert store.queue_items() == []


def test_expired_claim_merges_work_queued_meanwhile(store: Store, store_clock: FakeClock) -> None:
    store.enqueue("id:lee", "reconcile", event_id="e1")
    claim_ready(store, "w-dead")
    store.enqueue("id:lee", "login", event_id="e2")
    store_clock.advance(301)

    taken = claim_ready(store, "w2")

    assert (taken.trigger, taken.event_ids) == ("login", ("e1", "e2"))


def test_extending_a_claim_keeps_it(store: Store, store_clock: FakeClock) -> None:
    store.enqueue("all", "reconcile")
    item = store.claim("w1", lease_seconds=60)
    assert item is not None
    store_clock.advance(50)
    assert store.extend_claim(item, lease_seconds=60)
    store_clock.advance(50)

    assert store.claim("w2") is None
    assert store.complete(item)


def test_a_full_reconciles_claims_outlive_their_lease_while_its_writes_run(
    store: Store, store_clock: FakeClock
) -> None:
    """A chunk of a full reconcile's writes can outlast one lease (a target answering 429
    with Retry-After): the claims are renewed meanwhile, so a login queued for one of those
    users is not taken by a worker until the chunk is done; then it runs at once."""
    from bridge.keys import UserRef
    from bridge.reconcile import Reconciler

    key = UserRef(user_id="kc-1").key
    claim = Reconciler._user_claims(store, {"a@example.com": key}, store.now(), lease_seconds=0.3)
    with claim(["a@example.com"]) as claimed:
        assert claimed == frozenset({"a@example.com"})
        store.enqueue(key, "login")  # a login of that user, during the chunk
        store_clock.advance(60)  # far past the claim's lease, unless renewed

        def renewed() -> bool:  # the renewal runs every lease / 3 s of real time
            leases = [e.lease_until for e in store.queue_items() if e.key == key]
            return bool(leases) and (leases[0] or 0) > store.now()

        deadline = time.monotonic() + 10
        while not renewed():
            assert time.monotonic() < deadline, "the full reconcile's claim was not renewed"
            time.sleep(0.05)
        assert store.claim("worker") is None
    item = claim_ready(store, "worker")
    assert (item.key, item.trigger) == (key, "login")


def test_a_failed_attempt_backs_off_and_keeps_every_trigger(
    store: Store, store_clock: FakeClock
) -> None:
    store.enqueue("id:max", "change", event_id="e1")
    item = claim_ready(store)
    store.enqueue("id:max", "login", event_id="e2")

    assert store.fail(item, "Keycloak answered 503", retry_in=60)
    assert store.queue_depth() == 1
    (entry,) = store.queue_items()
    assert (entry.attempts, entry.last_error, entry.not_before) == (
        1,
        "Keycloak answered 503",
        store_clock.now + 60,
    )
    store_clock.advance(59)
    assert store.claim("w1") is None

    store_clock.advance(1)
    retried = claim_ready(store)
    assert (retried.trigger, retried.event_ids, retried.attempts) == ("login", ("e1", "e2"), 1)
    assert store.fail(retried, "again", retry_in=10)
    store_clock.advance(10)
    assert claim_ready(store).attempts == 2


def test_a_new_trigger_shortens_a_back_off(store: Store, store_clock: FakeClock) -> None:
    store.enqueue("id:nia", "change")
    store.fail(claim_ready(store), "timeout", retry_in=600)

    store.enqueue("id:nia", "login")

    assert claim_ready(store).trigger == "login"


# -- several workers ------------------------------------------------------------------------


class Ledger:
    """What the workers did: claims per key, and whether two ever held one key at once."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.in_flight: set[str] = set()
        self.overlaps: list[str] = []
        self.claims: Counter[str] = Counter()
        self.event_ids: set[str] = set()

    def begin(self, item: QueueItem) -> None:
        with self.lock:
            if item.key in self.in_flight:
                self.overlaps.append(item.key)
            self.in_flight.add(item.key)
            self.claims[item.key] += 1
            self.event_ids.update(item.event_ids)

    def end(self, item: QueueItem) -> None:
        with self.lock:
            self.in_flight.discard(item.key)


def work_until_drained(url: str, worker: str, ledger: Ledger, stop: threading.Event) -> None:
    """One worker with its own engine, as a separate process would have."""
    store = Store.open(url, sqlite_synchronous="NORMAL")
    try:
        while True:
            item = store.claim(worker)
            if item is None:
                if stop.is_set() and not store.queue_items():
                    return
                continue
            ledger.begin(item)
            ledger.end(item)
            assert store.complete(item)
    finally:
        store.close()


def run_workers(
    url: str, ledger: Ledger, stop: threading.Event, count: int
) -> list[threading.Thread]:
    threads = [
        threading.Thread(target=work_until_drained, args=(url, f"w{n}", ledger, stop))
        for n in range(count)
    ]
    for thread in threads:
        thread.start()
    return threads


def test_four_workers_process_every_key_exactly_once_and_never_together(
    store: Store, store_url: str
) -> None:
    keys = [f"id:user-{n}" for n in range(120)]
    for key in keys:
        store.enqueue(key, "reconcile")
    ledger, stop = Ledger(), threading.Event()
    stop.set()

    for thread in run_workers(store_url, ledger, stop, 4):
        thread.join()

    assert ledger.overlaps == []
    assert ledger.claims == Counter(dict.fromkeys(keys, 1))


def test_enqueues_racing_with_workers_lose_no_event(store: Store, store_url: str) -> None:
    ledger, stop = Ledger(), threading.Event()
    threads = run_workers(store_url, ledger, stop, 3)
    sent = [f"evt-{n}" for n in range(200)]
    for n, event_id in enumerate(sent):
        store.enqueue(f"id:user-{n % 10}", "change", event_id=event_id)
    stop.set()

    for thread in threads:
        thread.join()

    assert ledger.overlaps == []
    assert ledger.event_ids == set(sent)


# -- poll cursors and known users -----------------------------------------------------------


def test_cursors_are_stored_and_replaced(store: Store) -> None:
    assert store.get_cursor("keycloak-events") is None

    store.set_cursor("keycloak-events", {"time": 100, "ids": ["a"]})
    store.set_cursor("keycloak-events", {"time": 200, "ids": ["b", "c"]})
    store.set_cursor("keycloak-admin-events", {"time": 5, "ids": []})

    assert store.get_cursor("keycloak-events") == {"time": 200, "ids": ["b", "c"]}
    assert store.get_cursor("keycloak-admin-events") == {"time": 5, "ids": []}


def test_a_known_user_email_is_remembered_and_updated(store: Store) -> None:
    assert store.email_for("8c1f") is None

    store.remember_user("8c1f", "Alice@Example.com")
    assert store.email_for("8c1f") == "alice@example.com"
    store.remember_user("8c1f", "alice.ng@example.com")
    assert store.email_for("8c1f") == "alice.ng@example.com"


def test_a_url_that_is_not_supported_is_refused_without_its_password() -> None:
    with pytest.raises(StoreError, match="supports sqlite") as refused:
        Store.open("mysql://bridge:hunter2@db.example.com/bridge")

    assert "hunter2" not in str(refused.value)


def test_a_full_reconcile_runs_beside_user_reconciles_and_takes_each_user_when_free(
    store: Store, store_clock: FakeClock
) -> None:
    store.enqueue("all", "reconcile")
    everyone = store.claim("w1")
    assert everyone is not None
    assert everyone.key == "all"
    read_at = store.now()
    # A login during the full reconcile is taken at once.
    store.enqueue("id:carol", "login")
    carol = store.claim("w2")
    assert carol is not None
    assert carol.key == "id:carol"
    # The full reconcile leaves carol to her own reconcile, and takes dave and erin (one
    # transaction for both) while they are free.
    claimed = store.claim_users(["id:carol", "id:dave", "id:erin"], read_at)
    assert sorted(claimed) == ["id:dave", "id:erin"]
    # dave's login meanwhile waits for the full reconcile's writes to him, and only those.
    store.enqueue("id:dave", "login")
    assert store.claim("w3") is None
    assert store.complete_all(list(claimed.values())) == 2
    after = store.claim("w3")
    assert after is not None
    assert (after.key, after.trigger) == ("id:dave", "login")
    assert store.claim("w4") is None, "erin's claim left nothing behind"


def test_a_user_reconciled_after_the_full_reconciles_read_is_left_to_that_run(
    store: Store, store_clock: FakeClock
) -> None:
    read_at = store.now()
    store_clock.advance(1)
    store.enqueue("id:erin", "change")
    erin = store.claim("w1")
    assert erin is not None
    store.complete(erin)

    assert store.claim_users(["id:erin"], read_at) == {}
    later = store.claim_users(["id:erin"], store.now())
    assert list(later) == ["id:erin"]


def test_a_full_reconciles_claim_on_a_user_is_retaken_when_its_process_dies(
    store: Store, store_clock: FakeClock
) -> None:
    assert list(store.claim_users(["id:frank"], store.now(), lease_seconds=10)) == ["id:frank"]
    store_clock.advance(11)

    redo = store.claim("w2")

    assert redo is not None
    assert (redo.key, redo.trigger) == ("id:frank", "reconcile")

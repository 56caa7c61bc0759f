"""Workers: take one queued key at a time and reconcile it (docs/design.md, Flow).

A key is a user (`id:…`, `email:…`) or `all`. Failures never lose the key: it goes back to
the queue with backoff, so a Keycloak or target outage delays work and never drops it.

A claim is a short lease that a heartbeat renews while the reconcile runs. A process that
dies (SIGKILL, OOM, power) stops renewing, so another worker, or the same service after its
restart, takes the key over within `lease_seconds`; a long full reconcile keeps its claim.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from bridge.health import Health
from bridge.keys import EVERYONE
from bridge.metrics import Metrics
from bridge.progress import RunProgress
from bridge.reconcile import Applied, Failed, Held, Outcome, Reconciler, RetryAfter, Stop
from bridge.store import QueueItem, Store

log = logging.getLogger(__name__)

MAX_BACKOFF = 600.0


def backoff(attempts: int, retry_after: float | None = None) -> float:
    """Exponential backoff with jitter: 2, 4, 8 … seconds, capped; Retry-After wins if longer."""
    delay = min(MAX_BACKOFF, 2.0 ** max(1, attempts + 1)) * random.uniform(0.75, 1.25)  # noqa: S311
    return max(delay, retry_after or 0.0)


@dataclass
class WorkerPool:
    store: Store
    reconciler: Callable[[], Reconciler]
    metrics: Metrics
    health: Health
    count: int = 2
    lease_seconds: float = 15.0
    idle_wait: float = 0.5
    wake: threading.Event = field(default_factory=threading.Event)
    #: Set when the process stops: no new claims; reconciles in hand stop before a write.
    stopping: threading.Event = field(default_factory=threading.Event)
    #: Why the workers stopped taking work (credentials or TLS refused), until a restart.
    stopped_because: str | None = None
    #: Set once the workers are done: claims in hand are renewed until then.
    _halted: threading.Event = field(default_factory=threading.Event)
    _threads: list[threading.Thread] = field(default_factory=list)
    #: How far the full reconcile this process is running has got; None when it runs none.
    full_reconcile: RunProgress | None = None
    _in_hand: dict[str, QueueItem] = field(default_factory=dict)
    _in_hand_lock: threading.Lock = field(default_factory=threading.Lock)

    def start(self, name_prefix: str = "worker") -> None:
        for i in range(self.count):
            thread = threading.Thread(
                target=self._loop,
                args=(f"{name_prefix}-{i}",),
                name=f"{name_prefix}-{i}",
                daemon=True,
            )
            thread.start()
            self._threads.append(thread)
        heartbeat = threading.Thread(
            target=self._renew_leases, name=f"{name_prefix}-heartbeat", daemon=True
        )
        heartbeat.start()
        self._threads.append(heartbeat)

    def stop(self, timeout: float = 30.0) -> None:
        """Take no new work; wait up to `timeout` s for the reconciles in hand (they stop
        before their next write), then hand back any claim still held. Keys stay queued."""
        deadline = time.monotonic() + timeout
        self.stopping.set()
        self.wake.set()
        for thread in self._threads:
            if thread.name.endswith("-heartbeat"):
                continue
            thread.join(max(0.0, deadline - time.monotonic()))
        self.abandon()
        self._halted.set()

    def abandon(self) -> None:
        """Hand back every claim still in hand, so another worker takes it at once rather
        than after its lease expired (the thread holding it is left to die with the process)."""
        with self._in_hand_lock:
            in_hand = list(self._in_hand.values())
            self._in_hand.clear()
        for item in in_hand:
            try:
                self.store.release(item, "handed back: its process stopped")
            except Exception:
                log.exception("cannot hand back %s; its claim expires on its own", item.key)

    def _loop(self, worker_id: str) -> None:
        while not self.stopping.is_set():
            if self.stopped_because is not None:
                self.stopping.wait(self.idle_wait)
                continue
            try:
                item = self.store.claim(worker_id, lease_seconds=self.lease_seconds)
            except Exception:
                log.exception("cannot read the queue; retrying")
                self.stopping.wait(2.0)
                continue
            if item is None:
                self.wake.wait(self.idle_wait)
                self.wake.clear()
                continue
            if self.stopping.is_set():
                self.store.release(item, "handed back: its process stopped")
                return
            with self._in_hand_lock:
                self._in_hand[worker_id] = item
            try:
                self.run_item(item)
            finally:
                with self._in_hand_lock:
                    self._in_hand.pop(worker_id, None)

    def _renew_leases(self) -> None:
        """Renew the claim of every key in hand, three times per lease."""
        while not self._halted.wait(self.lease_seconds / 3):
            with self._in_hand_lock:
                in_hand = list(self._in_hand.values())
            for item in in_hand:
                try:
                    if not self.store.extend_claim(item, lease_seconds=self.lease_seconds):
                        log.warning("%s: claim lost before the reconcile ended", item.key)
                except Exception:
                    log.exception("cannot renew the claim on %s", item.key)

    def run_item(self, item: QueueItem) -> None:
        """Reconcile one queue entry and act on its outcome: complete it, put it back to be
        retried, hand it back, or stop taking work."""
        started = time.monotonic()
        try:
            self._run_item(item)
        finally:
            duration = time.monotonic() - started
            self.metrics.run_duration.labels(trigger=item.trigger).observe(duration)

    def _run_item(self, item: QueueItem) -> None:
        try:
            reconciler = self.reconciler()
            if item.key == EVERYONE:
                self.full_reconcile = reconciler.progress
            try:
                outcome = reconciler.reconcile(
                    item.key,
                    item.trigger,
                    causes=list(item.event_ids) or [f"queue:{item.trigger}"],
                    requested_by=f"queue:{item.trigger}",
                )
            finally:
                self.full_reconcile = None
        except Exception as exc:
            log.exception("reconcile of %s failed", item.key)
            self.metrics.failure("unexpected")
            outcome = RetryAfter(None, f"{type(exc).__name__}: {exc}")
        self._observe(item, outcome)
        match outcome:
            case Applied() | Failed() | Held():
                self.store.complete(item)
            case RetryAfter(seconds=0.0):
                self.store.release(item, outcome.reason)
            case RetryAfter():
                self._retry(item, outcome.reason, backoff(item.attempts, outcome.seconds))
            case Stop():
                self._stop_for(outcome.failing, outcome.reason)
                self.store.release(item, outcome.reason)

    def _observe(self, item: QueueItem, outcome: Outcome) -> None:
        """Health, metrics, and for a full reconcile that failed before it had a plan a failed
        run with the reason, so `status` shows why (a user's failure shows in its queue entry
        instead; a run per retry would be noise)."""
        kind = _kind_of(item)
        report = outcome.report
        failing, reason = None, None
        if isinstance(outcome, RetryAfter | Stop):
            failing, reason = outcome.failing, outcome.reason
        if failing is not None and reason is not None:
            self.health.record_failure(failing, reason)
        if failing == "keycloak":
            self.metrics.source_failures.inc()
        if isinstance(outcome, Stop) and failing == "target":
            self.metrics.failure("target_unauthorized")
        elif failing == "keycloak":
            self.metrics.failure("keycloak_read")
        elif failing == "target":
            self.metrics.failure("target_unavailable")
        if report is None:
            if reason is not None:
                self.metrics.runs.labels(kind=kind, status="failed").inc()
                if kind == "all":
                    self._record_failed_full_reconcile(item, reason)
            return
        if failing != "keycloak":
            self.health.record_success("keycloak")
        if failing != "target":
            self.health.record_success("target")
        self.metrics.observe_run(report, kind=kind)

    def _record_failed_full_reconcile(self, item: QueueItem, error: str) -> None:
        try:
            run_id = self.store.start_run(
                EVERYONE, "reconcile", requested_by=f"queue:{item.trigger}"
            )
            self.store.finish_run(run_id, "failed", {"status": "failed", "error": error})
        except Exception:
            log.exception("cannot record the failed full reconcile")

    def _stop_for(self, failing: str, reason: str) -> None:
        """Take no more work: credentials or TLS settings are wrong, and retrying cannot fix
        them. Status (the target failing), the metric and the log say so until a restart."""
        if self.stopped_because is None:
            log.error("workers stopped: %s", reason)
        self.stopped_because = reason
        self.metrics.workers_stopped.set(1)
        self.health.record_failure(failing, f"stopped: {reason}")

    def _retry(self, item: QueueItem, error: str, delay: float) -> None:
        log.warning("%s: %s; retrying in %.0f s", item.key, error, delay)
        self.metrics.retries.inc()
        self.store.fail(item, error, retry_in=delay)


def _kind_of(item: QueueItem) -> str:
    return "all" if item.key == EVERYONE else "user"

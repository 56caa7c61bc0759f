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
from bridge.keys import EVERYONE, UserRef, acts_on, plan_trigger
from bridge.metrics import Metrics
from bridge.model import Mode
from bridge.progress import RunProgress
from bridge.reconcile import Reconciler, RunReport
from bridge.sources.base import SourceError
from bridge.store import QueueItem, Store
from bridge.targets.base import TransientError, UnauthorizedError

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
    mode: Callable[[], Mode]
    metrics: Metrics
    health: Health
    count: int = 2
    lease_seconds: float = 15.0
    idle_wait: float = 0.5
    wake: threading.Event = field(default_factory=threading.Event)
    #: Set when the process stops: no new claims; reconciles in hand stop before a write.
    stopping: threading.Event = field(default_factory=threading.Event)
    #: Set once the workers are done: claims in hand are renewed until then.
    _halted: threading.Event = field(default_factory=threading.Event)
    _threads: list[threading.Thread] = field(default_factory=list)
    _in_hand: dict[str, QueueItem] = field(default_factory=dict)
    _in_hand_lock: threading.Lock = field(default_factory=threading.Lock)
    #: How far the full reconcile this process is running has got; None when it runs none.
    full_reconcile: RunProgress | None = None

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
        """Reconcile one queue entry and settle it: complete, or back to the queue."""
        started = time.monotonic()
        try:
            self._run_item(item)
        finally:
            duration = time.monotonic() - started
            self.metrics.run_duration.labels(trigger=item.trigger).observe(duration)

    def _run_item(self, item: QueueItem) -> None:
        try:
            report = self._reconcile(item)
        except SourceError as exc:
            self.health.record_failure("keycloak", str(exc))
            self.metrics.source_failures.inc()
            self.metrics.failure("keycloak_read")
            self._give_back_unplanned(item, f"Keycloak read failed: {exc}", backoff(item.attempts))
            return
        except UnauthorizedError as exc:
            self.health.record_failure("target", str(exc))
            self.metrics.failure("target_unauthorized")
            self._give_back_unplanned(item, f"target refused our credentials: {exc}", MAX_BACKOFF)
            return
        except TransientError as exc:
            self.health.record_failure("target", str(exc))
            self.metrics.failure("target_unavailable")
            self._give_back_unplanned(
                item, f"target unavailable: {exc}", backoff(item.attempts, exc.retry_after)
            )
            return
        except Exception as exc:
            log.exception("reconcile of %s failed", item.key)
            self.metrics.failure("unexpected")
            self._give_back_unplanned(item, f"{type(exc).__name__}: {exc}", backoff(item.attempts))
            return
        if report is not None and report.unreadable_groups:
            # Fail closed (docs/design.md, Safety): the run kept whatever those groups grant; say
            # so and come back once Keycloak answers for them again.
            problem = "mapped groups could not be read: " + ", ".join(
                sorted(report.unreadable_groups)
            )
            self.health.record_failure("keycloak", problem)
            self.metrics.source_failures.inc()
            self.metrics.failure("keycloak_read")
        else:
            self.health.record_success("keycloak")
        if report is not None and item.key == EVERYONE:
            self.metrics.unreadable_groups.set(len(report.unreadable_groups))
            self.metrics.orphan_accounts.set(len(report.plan.orphans))
        if report is not None:
            self.metrics.observe_run(report, kind=_kind_of(item))
        if report is not None and report.status == "interrupted":
            self.store.release(item, "handed back: its process stopped")
            return
        if report is not None:
            stopped = report.error if report.status in ("failed", "partial") else None
            if stopped and any(r.outcome == "not_run" for r in report.results):
                # The target stopped the run part-way (transient/auth): re-plan later.
                self.health.record_failure("target", stopped)
                self.metrics.failure("target_unavailable")
                self._retry(item, stopped, backoff(item.attempts))
                return
            self.health.record_success("target")
            if report.unreadable_groups:
                self._retry(item, problem, backoff(item.attempts))
                return
        self.store.complete(item)

    def _reconcile(self, item: QueueItem) -> RunReport | None:
        if not acts_on(self.mode(), item.trigger):
            return None  # nothing to read: the plan would be empty
        reconciler = self.reconciler()
        causes = list(item.event_ids) or [f"queue:{item.trigger}"]
        trigger = plan_trigger(item.trigger)
        if item.key == EVERYONE:
            self.full_reconcile = reconciler.progress
            try:
                return reconciler.sync_all(
                    trigger, triggered_by=causes, requested_by=f"queue:{item.trigger}"
                )
            finally:
                self.full_reconcile = None
        # Nothing an event carried decides anything: the key names whom to re-read; an
        # email hint is never taken as the identity of a user Keycloak does not know.
        ref = UserRef.from_key(item.key)
        return reconciler.sync_user(
            ref, trigger, triggered_by=causes, requested_by=f"queue:{item.trigger}"
        )

    def _give_back_unplanned(self, item: QueueItem, error: str, delay: float) -> None:
        """A reconcile that failed before it had a plan: count it as a failed run, put the
        key back, and for a full reconcile also record a failed run with the reason, so
        `status` shows why (a user's failure shows in its queue entry instead; a run per
        retry would be noise)."""
        kind = _kind_of(item)
        self.metrics.runs.labels(kind=kind, status="failed").inc()
        if kind == "all":
            try:
                run_id = self.store.start_run(
                    EVERYONE, "reconcile", requested_by=f"queue:{item.trigger}"
                )
                self.store.finish_run(run_id, "failed", {"status": "failed", "error": error})
            except Exception:
                log.exception("cannot record the failed full reconcile")
        self._retry(item, error, delay)

    def _retry(self, item: QueueItem, error: str, delay: float) -> None:
        log.warning("%s: %s; retrying in %.0f s", item.key, error, delay)
        self.metrics.retries.inc()
        self.store.fail(item, error, retry_in=delay)


def _kind_of(item: QueueItem) -> str:
    return "all" if item.key == EVERYONE else "user"

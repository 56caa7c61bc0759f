"""Prometheus metrics, one registry per service instance (so tests can build several).

Counters and the run-duration histogram count what this process did, requests to Keycloak
and the target included (every attempt, by status code, so a target's 429s show). The gauges
of the queue, the last full reconcile, its orphans and unreadable groups are read from the
state store at each scrape (`refresh_from_store`), so every process reports the
installation's state, whichever process did the work. Readiness is asked at each scrape too
(`refresh_readiness`), as `/readyz` asks it. The standard `process_*` metrics (start time,
memory, CPU) come with them.

deploy/prometheus/alerts.yml and deploy/grafana/jit-bridge.json are built on these names.
"""

from __future__ import annotations

from typing import Literal

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    ProcessCollector,
    disable_created_metrics,
    generate_latest,
)

from bridge.overview import (
    held_run_count,
    last_full_reconcile,
    last_full_reconcile_failed,
    queue_view,
)
from bridge.reconcile import RunReport
from bridge.store import Store

# One series per value: a `_created` twin of every counter only doubles what is scraped.
disable_created_metrics()  # type: ignore[no-untyped-call]

FailureKind = Literal[
    "keycloak_read", "target_unavailable", "target_unauthorized", "operation", "unexpected"
]
"""Why work failed: Keycloak could not be read; the target was unavailable or refused our
credentials; one operation was refused; or something the bridge did not expect."""

#: The `code` of a request that got no answer (connection refused or reset, timeout, TLS).
NO_RESPONSE = "error"

#: Seconds: a login's run takes well under one; a full reconcile of thousands, minutes.
RUN_DURATION_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        ProcessCollector(registry=r)
        self.webhook_requests = Counter(
            "jit_bridge_webhook_requests", "Webhook requests by result", ["result"], registry=r
        )
        self.webhook_previous_secret_requests = Counter(
            "jit_bridge_webhook_previous_secret",
            "Webhook requests signed with webhook_secret_previous, not webhook_secret (a "
            "rotation is over when this stops growing)",
            registry=r,
        )
        self.runs = Counter(
            "jit_bridge_runs", "Reconcile runs by kind and status", ["kind", "status"], registry=r
        )
        self.run_duration = Histogram(
            "jit_bridge_run_duration_seconds",
            "How long a reconcile took, reads included, by what queued it",
            ["trigger"],
            buckets=RUN_DURATION_BUCKETS,
            registry=r,
        )
        self.operations = Counter(
            "jit_bridge_operations",
            "Target operations by op and outcome",
            ["op", "outcome"],
            registry=r,
        )
        self.failures = Counter("jit_bridge_failures", "Failures by kind", ["kind"], registry=r)
        self.source_failures = Counter(
            "jit_bridge_keycloak_read_failures", "Failed reads of Keycloak", registry=r
        )
        self.unreadable_groups = Gauge(
            "jit_bridge_unreadable_groups",
            "Mapped groups the last full reconcile that completed could not read (what they "
            "grant was not removed)",
            registry=r,
        )
        self.orphan_accounts = Gauge(
            "jit_bridge_orphan_accounts",
            "Target accounts in managed_email_domains that no Keycloak user has, as the last "
            "full reconcile found them",
            registry=r,
        )
        self.retries = Counter("jit_bridge_queue_retries", "Queue entries put back", registry=r)
        self.queue_depth = Gauge(
            "jit_bridge_queue_depth", "Queue entries waiting (as queue_waiting)", registry=r
        )
        self.queue_waiting = Gauge(
            "jit_bridge_queue_waiting", "Queue entries waiting to be worked on", registry=r
        )
        self.queue_in_progress = Gauge(
            "jit_bridge_queue_in_progress", "Queue entries a worker is working on", registry=r
        )
        self.queue_oldest_waiting = Gauge(
            "jit_bridge_queue_oldest_waiting_seconds",
            "How long the oldest waiting queue entry has waited (0 when none waits)",
            registry=r,
        )
        self.held_runs = Gauge("jit_bridge_held_runs", "Runs waiting for approval", registry=r)
        self.events_polled = Counter(
            "jit_bridge_events_polled", "Events read from Keycloak's event store", registry=r
        )
        self.workers_stopped = Gauge(
            "jit_bridge_workers_stopped",
            "1 while workers take no work: the target refused the credentials or TLS",
            registry=r,
        )
        self.last_full_reconcile = Gauge(
            "jit_bridge_last_full_reconcile_timestamp_seconds",
            "When the last full reconcile that completed finished (0: none yet)",
            registry=r,
        )
        self.last_full_reconcile_failed = Gauge(
            "jit_bridge_last_full_reconcile_failed",
            "1 when the newest full reconcile that ended failed or was partial, else 0",
            registry=r,
        )
        self.full_reconcile_interval = Gauge(
            "jit_bridge_full_reconcile_interval_seconds",
            "The schedule of full reconciles (reconcile_interval; 0: no schedule runs)",
            registry=r,
        )
        self.ready = Gauge(
            "jit_bridge_ready",
            "1 when this process is ready (/readyz answers 200), 0 when not",
            registry=r,
        )
        self.dependency_up = Gauge(
            "jit_bridge_dependency_up",
            "1 when the dependency answered this process's readiness check, 0 when not",
            ["dependency"],
            registry=r,
        )
        self.target_requests = Counter(
            "jit_bridge_target_requests",
            "Requests sent to the target, every attempt, by method and HTTP status code "
            f"('{NO_RESPONSE}': no answer)",
            ["method", "code"],
            registry=r,
        )
        self.keycloak_requests = Counter(
            "jit_bridge_keycloak_requests",
            f"Admin API reads of Keycloak by HTTP status code ('{NO_RESPONSE}': no answer)",
            ["code"],
            registry=r,
        )

    def observe_run(self, report: RunReport, kind: str = "user") -> None:
        self.runs.labels(kind=kind, status=report.status).inc()
        for result in report.results:
            self.operations.labels(op=result.op.op, outcome=result.outcome).inc()
            if result.outcome == "failed":
                self.failure("operation")

    def failure(self, kind: FailureKind) -> None:
        self.failures.labels(kind=kind).inc()

    def refresh_from_store(self, store: Store) -> None:
        """The installation-wide gauges, as the store has them now."""
        queue = queue_view(store)
        self.queue_depth.set(queue.waiting)
        self.queue_waiting.set(queue.waiting)
        self.queue_in_progress.set(queue.in_progress)
        self.queue_oldest_waiting.set(queue.oldest_waiting_seconds or 0.0)
        self.held_runs.set(held_run_count(store))
        last = last_full_reconcile(store)
        finished = None if last is None else last.finished_at
        self.last_full_reconcile.set(0 if finished is None else finished.timestamp())
        self.orphan_accounts.set(0 if last is None or last.orphans is None else last.orphans)
        unreadable = None if last is None else last.unreadable_groups
        self.unreadable_groups.set(unreadable or 0)
        self.last_full_reconcile_failed.set(1 if last_full_reconcile_failed(store) else 0)

    def refresh_readiness(self, checks: dict[str, str], *, stopping: bool) -> None:
        """`checks`: dependency → "ok" or "failing: why" (`check_dependencies`)."""
        for name, answer in checks.items():
            self.dependency_up.labels(dependency=name).set(1 if answer == "ok" else 0)
        self.ready.set(0 if stopping or any(v != "ok" for v in checks.values()) else 1)

    # The request hooks of the Keycloak source and the target's transport.
    def target_request(self, method: str, code: int | None) -> None:
        self.target_requests.labels(method=method, code=_code(code)).inc()

    def keycloak_request(self, code: int | None) -> None:
        self.keycloak_requests.labels(code=_code(code)).inc()

    def render(self) -> bytes:
        return generate_latest(self.registry)

    # The intake's metrics hook: counters by result, kept generic on purpose.
    def webhook(self, result: str) -> None:
        self.webhook_requests.labels(result=result).inc()

    def webhook_previous_secret(self) -> None:
        self.webhook_previous_secret_requests.inc()


def _code(status: int | None) -> str:
    return NO_RESPONSE if status is None else str(status)

"""Prometheus metrics, one registry per service instance (so tests can build several)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, generate_latest

from bridge.reconcile import RunReport


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.webhook_requests = Counter(
            "jit_bridge_webhook_requests", "Webhook requests by result", ["result"], registry=r
        )
        self.runs = Counter(
            "jit_bridge_runs", "Reconcile runs by kind and status", ["kind", "status"], registry=r
        )
        self.operations = Counter(
            "jit_bridge_operations",
            "Target operations by op and outcome",
            ["op", "outcome"],
            registry=r,
        )
        self.source_failures = Counter(
            "jit_bridge_keycloak_read_failures", "Failed reads of Keycloak", registry=r
        )
        self.unreadable_groups = Gauge(
            "jit_bridge_unreadable_groups",
            "Mapped groups the last full reconcile could not read (removals held)",
            registry=r,
        )
        self.orphan_accounts = Gauge(
            "jit_bridge_orphan_accounts",
            "Target accounts in managed_email_domains that no Keycloak user has, as the last "
            "full reconcile found them",
            registry=r,
        )
        self.retries = Counter("jit_bridge_queue_retries", "Queue entries put back", registry=r)
        self.queue_depth = Gauge("jit_bridge_queue_depth", "Queue entries waiting", registry=r)
        self.held_runs = Gauge("jit_bridge_held_runs", "Runs waiting for approval", registry=r)
        self.events_polled = Counter(
            "jit_bridge_events_polled", "Events read from Keycloak's event store", registry=r
        )
        self.last_full_reconcile = Gauge(
            "jit_bridge_last_full_reconcile_timestamp_seconds",
            "When the last full reconcile finished",
            registry=r,
        )

    def observe_run(self, report: RunReport, kind: str = "user") -> None:
        self.runs.labels(kind=kind, status=report.status).inc()
        for result in report.results:
            self.operations.labels(op=result.op.op, outcome=result.outcome).inc()

    def render(self) -> bytes:
        return generate_latest(self.registry)

    # The intake's metrics hook: counters by result, kept generic on purpose.
    def webhook(self, result: str) -> None:
        self.webhook_requests.labels(result=result).inc()

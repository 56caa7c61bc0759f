"""`jit-bridge run`: webhook endpoint, admin API, poller, scheduler and workers in one process.

Shutdown is graceful: on SIGTERM/SIGINT the HTTP server stops accepting, the scheduler and
poller stop, and workers finish the reconcile in hand. Anything still queued stays in the
store and runs after the next start, so stopping never loses a trigger.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import uvicorn
from apscheduler.schedulers.background import BackgroundScheduler

from bridge.app_state import MappingHolder, ServiceContext
from bridge.health import Health
from bridge.intake.poller import EventPoller, KeycloakAdminEventReader, poll_period
from bridge.keys import EVERYONE
from bridge.mapping_file import MappingError, load_mapping, parse_mapping
from bridge.metrics import Metrics
from bridge.reconcile import Reconciler
from bridge.server import create_app
from bridge.settings import Settings
from bridge.sources.base import IdentitySource
from bridge.store import Store
from bridge.targets.base import Target
from bridge.wiring import (
    build_reconciler,
    build_source,
    build_target,
    mapping_path,
    open_store,
)
from bridge.worker import WorkerPool

log = logging.getLogger(__name__)

SCHEDULER_LEASE = "scheduler"
#: A reserved (RFC 2606) address no target holds: reading it is a harmless readiness probe.
LEADER_LEASE_TTL = 30.0
"""Seconds the scheduler lease lasts unrenewed: when its holder dies, another process runs the
schedule and the event poller within this plus one renewal period. The holder renews it every
third of it, so two missed renewals (a slow database) do not yet cost the lease."""
#: How often each process refreshes its target's caches (Tines: which emails exist).
CACHE_REFRESH_SECONDS = 900.0


def load_mapping_in_force(store: Store, path: Path) -> MappingHolder:
    """The mapping file, recorded as a version when it changed; else the last good version.

    A mapping PUT through the admin API is a newer version and stays in force until the
    file changes again. A broken file never replaces a good mapping while one is stored.
    """
    current = store.current_mapping()
    try:
        text = path.read_text(encoding="utf-8")
        mapping = load_mapping(path)
    except (OSError, UnicodeDecodeError, MappingError) as exc:
        if current is None:
            raise
        log.error(
            "mapping file %s is unusable (%s); keeping stored version %s", path, exc, current[0]
        )
        return MappingHolder(parse_mapping(current[1], source=f"stored v{current[0]}"), current[0])
    last_file = next((v for v in store.mapping_versions() if v.source == "file"), None)
    if last_file is None or last_file.text != text:
        version = store.save_mapping(text, source="file")
        return MappingHolder(mapping, version)
    # Read again: a process starting beside this one may have saved the file since we looked.
    current = store.current_mapping()
    assert current is not None
    return MappingHolder(parse_mapping(current[1], source=f"stored v{current[0]}"), current[0])


@dataclass
class Service:
    """All the moving parts of one bridge process, startable without uvicorn for tests."""

    settings: Settings
    store: Store
    source: IdentitySource
    target: Target
    context: ServiceContext
    workers: WorkerPool
    scheduler: BackgroundScheduler
    holder_id: str
    poller: EventPoller | None = None
    lease_ttl: float = LEADER_LEASE_TTL
    _leader_until: float = field(default=0.0, init=False, repr=False)

    @classmethod
    def build(cls, settings: Settings, mapping_override: Path | None = None) -> Service:
        store = open_store(settings)
        holder = load_mapping_in_force(store, mapping_path(settings, mapping_override))
        source = build_source(settings)
        target = build_target(settings)
        metrics, health = Metrics(), Health()

        def reconciler(dry_run: bool = False) -> Reconciler:
            if dry_run:  # a plan: a target that refuses writes, nothing recorded
                return build_reconciler(settings, holder.get, source=source, dry_run=True)
            return build_reconciler(settings, holder.get, source=source, target=target, store=store)

        workers = WorkerPool(
            store=store,
            reconciler=reconciler,
            mode=lambda: settings.mode,
            metrics=metrics,
            health=health,
            count=settings.workers,
        )
        context = ServiceContext(
            settings=settings,
            store=store,
            mappings=holder,
            metrics=metrics,
            health=health,
            reconciler=reconciler,
            wake_workers=workers.wake.set,
            readiness_checks=_readiness_checks(source, target),
        )
        service = cls(
            settings=settings,
            store=store,
            source=source,
            target=target,
            context=context,
            workers=workers,
            scheduler=BackgroundScheduler(timezone="UTC"),
            holder_id=f"{socket.gethostname()}:{os.getpid()}",
        )
        service.poller = _build_poller(settings, context)
        return service

    def start_background(self) -> None:
        self.workers.start(name_prefix=f"worker-{os.getpid()}")
        s = self.settings
        if s.mode == "enhanced" and s.reconcile_interval > 0:
            self.scheduler.add_job(
                self._scheduled_reconcile,
                "interval",
                seconds=s.reconcile_interval,
                id="full-reconcile",
                max_instances=1,
                coalesce=True,
            )
        # Every process, not only the leader: each keeps its own target and caches.
        self.scheduler.add_job(
            self._refresh_target_caches,
            "interval",
            seconds=CACHE_REFRESH_SECONDS,
            id="target-caches",
            next_run_time=datetime.now(UTC),
            max_instances=1,
            coalesce=True,
        )
        if s.poll_events and self.poller is not None:
            self.scheduler.add_job(
                self._poll,
                "interval",
                seconds=poll_period(s.poll_interval),
                id="poll-events",
                max_instances=1,
                coalesce=True,
            )
        if any(job.id != "target-caches" for job in self.scheduler.get_jobs()):
            # Renewed on its own timer, more often than it expires and independent of the
            # jobs' intervals: renewing only when a job fires would let the lease lapse
            # between fires (a 900 s schedule against a 30 s lease), and every process
            # would then take its turn at running the schedule.
            self.scheduler.add_job(
                self._renew_leadership,
                "interval",
                seconds=self.lease_ttl / 3,
                id="leader-lease",
                next_run_time=datetime.now(UTC),
                max_instances=1,
                coalesce=True,
            )
        self.scheduler.start()

    def stop(self) -> None:
        log.info("stopping: no new work is taken; queued work stays queued")
        if self.scheduler.running:
            self.scheduler.shutdown(wait=True)
        self.workers.stop()
        self.store.release_lease(SCHEDULER_LEASE, self.holder_id)
        self.target.close()
        self.source.close()
        self.store.close()

    def _refresh_target_caches(self) -> None:
        try:
            self.target.refresh_caches()
        except Exception as exc:  # a cache only saves reads: without it, reads are made
            log.warning("cannot refresh the target's caches (%s); reading as needed", exc)

    def _renew_leadership(self) -> None:
        """Take or renew the scheduler lease. Leadership counts from before the request, on
        this process's monotonic clock, so it ends here no later than the lease in the store."""
        asked_at = time.monotonic()
        try:
            held = self.store.acquire_lease(SCHEDULER_LEASE, self.holder_id, self.lease_ttl)
        except Exception as exc:
            log.warning("cannot renew the scheduler lease (%s); retrying", exc)
            return
        was_leader = self._is_leader()
        self._leader_until = asked_at + self.lease_ttl if held else 0.0
        if held != was_leader:
            log.info("%s the schedule and event poller", "running" if held else "not running")

    def _is_leader(self) -> bool:
        """Whether this process holds the scheduler lease (at most one process does)."""
        return time.monotonic() < self._leader_until

    def _scheduled_reconcile(self) -> None:
        if not self._is_leader():
            return
        self.context.enqueue(EVERYONE, "reconcile", source="schedule")

    def _poll(self) -> None:
        if self.poller is None or not self._is_leader():
            return
        try:
            result = self.poller.poll_once()
        except Exception as exc:
            self.context.health.record_failure("keycloak", f"event poll failed: {exc}")
            log.warning("event poll failed: %s", exc)
            return
        if result.errors:
            # poll_once reports a failed stream instead of raising; its cursor stays put.
            self.context.health.record_failure(
                "keycloak", "event poll failed: " + "; ".join(result.errors)
            )
        else:
            self.context.health.record_success("keycloak")
        self.context.metrics.events_polled.inc(result.events_read)


def _readiness_checks(source: IdentitySource, target: Target) -> dict[str, Any]:
    checks: dict[str, Any] = {}
    ping = getattr(source, "ping", None)
    if callable(ping):
        checks["keycloak"] = ping
    checks["target"] = target.ping
    return checks


def _build_poller(settings: Settings, context: ServiceContext) -> EventPoller | None:
    """The event-store poller, on a Keycloak admin connection of its own (the service
    account needs `view-events`), queueing through the context so a worker wakes at once.
    Settings were checked when the source was built."""
    if not settings.poll_events:
        return None
    from keycloak import KeycloakAdmin, KeycloakOpenIDConnection

    connection = KeycloakOpenIDConnection(
        server_url=settings.keycloak_url,
        realm_name=settings.keycloak_realm,
        client_id=settings.keycloak_client_id or "",
        client_secret_key=settings.secret("keycloak_client_secret"),
        verify=settings.verify_tls,
        timeout=int(settings.request_timeout),
    )
    return EventPoller(
        KeycloakAdminEventReader(KeycloakAdmin(connection=connection)),
        context,
        context.store,
        realm=settings.keycloak_realm or "",
        mode_provider=lambda: settings.mode,
    )


def run_service(settings: Settings, mapping_override: Path | None = None) -> int:
    service = Service.build(settings, mapping_override)
    app = create_app(service.context)
    service.start_background()
    config = uvicorn.Config(
        app,
        host=settings.listen_host,
        port=settings.listen_port,
        log_level=settings.log_level.lower(),
        access_log=False,
        timeout_graceful_shutdown=10,
    )
    server = uvicorn.Server(config)
    log.info(
        "jit-bridge %s mode, target %s, listening on %s",
        settings.mode,
        settings.target,
        settings.listen,
    )
    try:
        server.run()  # returns on SIGINT/SIGTERM (uvicorn installs the handlers)
    finally:
        service.stop()
    return 0

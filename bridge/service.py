"""`jit-bridge run`: webhook endpoint, admin API, poller, scheduler and workers in one process.

Shutdown is graceful: on SIGTERM/SIGINT the HTTP server stops accepting, the scheduler and
poller stop, and workers finish the reconcile in hand. Anything still queued stays in the
store and runs after the next start, so stopping never loses a trigger.
"""

from __future__ import annotations

import logging
import os
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import uvicorn
from apscheduler.schedulers.background import BackgroundScheduler

from bridge.health import Health
from bridge.mapping_file import MappingError, load_mapping, parse_mapping
from bridge.metrics import Metrics
from bridge.reconcile import Reconciler
from bridge.server import MappingHolder, ServiceContext, create_app
from bridge.settings import Settings
from bridge.sources.base import IdentitySource
from bridge.store import Store
from bridge.targets.base import Target
from bridge.wiring import build_source, build_target, mapping_path, open_store
from bridge.worker import WorkerPool

log = logging.getLogger(__name__)

SCHEDULER_LEASE = "scheduler"


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
    poller: Any = None

    @classmethod
    def build(cls, settings: Settings, mapping_override: Path | None = None) -> Service:
        store = open_store(settings)
        holder = load_mapping_in_force(store, mapping_path(settings, mapping_override))
        source = build_source(settings)
        target = build_target(settings)
        metrics, health = Metrics(), Health()

        def reconciler(dry_run: bool = False) -> Reconciler:
            return Reconciler(
                policy=settings.policy,
                mapping=holder.get,
                source=source,
                target=build_target(settings, dry_run=True) if dry_run else target,
                store=None if dry_run else store,
                dry_run=dry_run or settings.dry_run,
            )

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
        service.poller = _build_poller(settings, source, store, metrics)
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
        if s.poll_events and self.poller is not None:
            self.scheduler.add_job(
                self._poll,
                "interval",
                seconds=s.poll_interval,
                id="poll-events",
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

    def _is_leader(self, ttl: float) -> bool:
        return self.store.acquire_lease(SCHEDULER_LEASE, self.holder_id, ttl)

    def _scheduled_reconcile(self) -> None:
        if not self._is_leader(ttl=max(30.0, self.settings.poll_interval * 3)):
            return
        self.store.enqueue("all", "reconcile", source="schedule")
        self.workers.wake.set()

    def _poll(self) -> None:
        if not self._is_leader(ttl=max(30.0, self.settings.poll_interval * 3)):
            return
        try:
            result = self.poller.poll_once()
        except Exception as exc:
            self.context.health.record_failure("keycloak", f"event poll failed: {exc}")
            log.warning("event poll failed: %s", exc)
            return
        self.context.health.record_success("keycloak")
        count = int(getattr(result, "events_read", 0) or 0)
        self.context.metrics.events_polled.inc(count)
        if getattr(result, "triggers_queued", 0):
            self.workers.wake.set()


def _readiness_checks(source: IdentitySource, target: Target) -> dict[str, Any]:
    checks: dict[str, Any] = {}
    ping = getattr(source, "ping", None)
    if callable(ping):
        checks["keycloak"] = ping
    target_ping = getattr(target, "ping", None)
    checks["target"] = target_ping if callable(target_ping) else (lambda: None)
    return checks


def _build_poller(
    settings: Settings, source: IdentitySource, store: Store, metrics: Metrics
) -> Any:
    if not settings.poll_events:
        return None
    from bridge.intake.poller import EventPoller, KeycloakAdminEventReader

    admin = getattr(source, "admin", None)
    if admin is None:
        log.error("poll_events needs the Keycloak source; polling is off")
        return None
    return EventPoller(
        KeycloakAdminEventReader(admin),
        store,
        store,
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

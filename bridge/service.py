"""`jit-bridge run`: webhook endpoint, admin API, poller, scheduler and workers in one process.

Shutdown is graceful: on SIGTERM/SIGINT the HTTP server stops accepting, the scheduler and
poller stop, and workers finish the reconcile in hand. Anything still queued stays in the
store and runs after the next start, so stopping never loses a trigger.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import uvicorn
from apscheduler.schedulers.background import BackgroundScheduler

from bridge.app_state import ServiceContext
from bridge.health import Health
from bridge.intake.poller import EventPoller, KeycloakAdminEventReader, poll_period
from bridge.keys import EVERYONE
from bridge.logs import uvicorn_log_config
from bridge.mapping import Mapping
from bridge.mapping_versions import MappingInForce
from bridge.metrics import Metrics
from bridge.reconcile import Reconciler
from bridge.server import create_app
from bridge.settings import Settings
from bridge.sources.base import IdentitySource
from bridge.store import Store
from bridge.targets.base import Target
from bridge.tls import server_context
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
#: How often each process looks for an edited mapping file (a new version within seconds).
MAPPING_FILE_CHECK_SECONDS = 2.0
#: The jobs only the holder of the scheduler lease runs.
LEADER_JOBS = ("full-reconcile", "poll-events")
#: How often each process refreshes its target's caches (Tines: which emails exist).
CACHE_REFRESH_SECONDS = 900.0


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
        store.holder = f"{socket.gethostname()}:{os.getpid()}"
        # Runs a killed process left `running` are over: say so before anything else runs.
        store.interrupt_abandoned_runs()
        store.keep_process_alive(LEADER_LEASE_TTL)
        stopping = threading.Event()
        holder = MappingInForce(store, mapping_path(settings, mapping_override))
        metrics, health = Metrics(), Health()
        source = build_source(settings, observe=metrics.keycloak_request)
        target = build_target(settings, observe=metrics.target_request)

        def reconciler(dry_run: bool = False, mapping: Mapping | None = None) -> Reconciler:
            """`mapping`: plan under this mapping instead of the one in force (a preview)."""
            chosen = holder.get if mapping is None else lambda: mapping
            if dry_run:  # a plan: a target that refuses writes, nothing recorded
                return build_reconciler(settings, chosen, source=source, dry_run=True)
            return build_reconciler(
                settings,
                chosen,
                source=source,
                target=target,
                store=store,
                should_stop=stopping.is_set,
            )

        workers = WorkerPool(
            store=store,
            reconciler=reconciler,
            metrics=metrics,
            health=health,
            count=settings.workers,
            stopping=stopping,
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
            stopping=stopping,
            full_reconcile=lambda: workers.full_reconcile,
        )
        service = cls(
            settings=settings,
            store=store,
            source=source,
            target=target,
            context=context,
            workers=workers,
            scheduler=BackgroundScheduler(timezone="UTC"),
            holder_id=store.holder,
        )
        service.poller = _build_poller(settings, context)
        return service

    def start_background(self) -> None:
        self.workers.start(name_prefix=f"worker-{os.getpid()}")
        s = self.settings
        scheduled = s.mode == "enhanced" and s.reconcile_interval > 0
        self.context.metrics.full_reconcile_interval.set(s.reconcile_interval if scheduled else 0)
        if scheduled:
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
        # Every process: a host's own mapping file edited there becomes a new version.
        self.scheduler.add_job(
            self.context.mappings.record_file_change,
            "interval",
            seconds=MAPPING_FILE_CHECK_SECONDS,
            id="mapping-file",
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
        # Every process: its own lease says it is alive (so others leave its runs be), and
        # runs of processes that are gone are marked interrupted.
        self.scheduler.add_job(
            self._keep_alive,
            "interval",
            seconds=self.lease_ttl / 3,
            id="process-lease",
            max_instances=1,
            coalesce=True,
        )
        if any(job.id in LEADER_JOBS for job in self.scheduler.get_jobs()):
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

    def begin_stop(self) -> None:
        """Stop taking work: /readyz answers 503, the webhook refuses deliveries (Keycloak
        retries them, at another process behind a load balancer), the schedule and poller
        stop, and workers take no new key; reconciles in hand stop before their next write."""
        if self.context.stopping.is_set():
            return
        log.info("stopping: intake closed, no new work taken; queued work stays queued")
        self.context.stopping.set()
        self.workers.wake.set()
        if self.scheduler.running:
            self.scheduler.shutdown(wait=False)

    def stop(self, timeout: float | None = None) -> None:
        """Stop within `timeout` s (default `shutdown_timeout`): claims finished or handed
        back, this process's unfinished runs `interrupted`, its leases released."""
        deadline = time.monotonic() + (
            self.settings.shutdown_timeout if timeout is None else timeout
        )
        self.begin_stop()
        self.workers.stop(max(0.0, deadline - time.monotonic()))
        try:
            interrupted = self.store.interrupt_runs("the process stopped before the run ended")
            if interrupted:
                log.warning("%d run(s) interrupted by the stop", interrupted)
            self.store.release_lease(SCHEDULER_LEASE, self.holder_id)
            self.store.release_process()
        except Exception as exc:  # the store is down: the leases expire on their own
            log.warning("cannot record the stop in the state store (%s)", exc)
        self.target.close()
        self.source.close()
        self.store.close()
        log.info("stopped")

    def _keep_alive(self) -> None:
        try:
            self.store.keep_process_alive(self.lease_ttl)
            self.store.interrupt_abandoned_runs()
        except Exception as exc:
            log.warning("cannot renew this process's lease (%s); retrying", exc)

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


class ListenError(Exception):
    """The `listen` address cannot be bound (in use, or not ours to bind)."""


def listen_socket(settings: Settings) -> socket.socket:
    """The bound listening socket, taken before anything else starts, so a busy port
    stops the start at once with a plain message (and no worker has begun)."""
    host, port = settings.listen_host.strip("[]"), settings.listen_port
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise ListenError(
            f"cannot listen on {settings.listen} (listen): {exc.strerror or exc}; "
            "is another jit-bridge already running there?"
        ) from None
    return sock


def tls_context(settings: Settings) -> ssl.SSLContext | None:
    """The HTTPS context of `listen` when `tls_cert_file` and `tls_key_file` are set; raises
    bridge.tls.TlsError naming the file when they cannot be used."""
    if settings.tls_cert_file is None or settings.tls_key_file is None:
        return None
    return server_context(
        settings.tls_cert_file, settings.tls_key_file, settings.secret("tls_key_password")
    )


def run_service(settings: Settings, mapping_override: Path | None = None) -> int:
    # Certificate and key first: a bad file stops the start before anything else runs.
    context = tls_context(settings)
    sock = listen_socket(settings)
    return serve(Service.build(settings, mapping_override), sock, context)


class _Server(uvicorn.Server):
    """uvicorn without its own signal handling: it would re-raise SIGTERM after its
    shutdown, so the process died by the signal (exit 143) before the service's own stop."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


class _Config(uvicorn.Config):
    """uvicorn's settings with a TLS context of our own (bridge.tls: TLS 1.2+, checked
    files) instead of the one uvicorn would build from file names."""

    def __init__(self, *args: Any, tls: ssl.SSLContext | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._tls = tls

    def load(self) -> None:
        super().load()
        if self._tls is not None:
            self.ssl = self._tls


def serve(
    service: Service, sock: socket.socket | None = None, tls: ssl.SSLContext | None = None
) -> int:
    """Run `service` under uvicorn until SIGTERM or SIGINT, then stop it gracefully within
    `shutdown_timeout` and return 0 (a second signal cuts the wait for workers short).
    `sock`: the listening socket already bound (`listen_socket`); else uvicorn binds.
    `tls`: serve HTTPS with this context (default: `tls_context(settings)`)."""
    settings = service.settings
    if tls is None:
        tls = tls_context(settings)
    app = create_app(service.context)
    trusted_proxies = list(settings.forwarded_allow_ips)
    server = _Server(
        _Config(
            app,
            host=settings.listen_host,
            port=settings.listen_port,
            log_level=settings.log_level.lower(),
            log_config=uvicorn_log_config(settings.log_level),
            access_log=False,
            timeout_graceful_shutdown=2,
            # X-Forwarded-Proto/-For only from the proxies named in forwarded_allow_ips;
            # uvicorn's own default would believe any local process.
            proxy_headers=bool(trusted_proxies),
            forwarded_allow_ips=trusted_proxies or None,
            tls=tls,
        )
    )
    deadline: list[float] = []

    def drain() -> None:
        # The HTTP server stays up meanwhile, so /readyz says 503 and the webhook refuses.
        service.workers.stop(max(0.5, settings.shutdown_timeout - 3))
        server.should_exit = True

    def on_signal(signum: int, _frame: object) -> None:
        if deadline:
            log.warning("second %s: stopping now", signal.Signals(signum).name)
            server.should_exit = True
            service.workers.abandon()
            return
        deadline.append(time.monotonic() + settings.shutdown_timeout)
        log.info("%s: stopping within %s s", signal.Signals(signum).name, settings.shutdown_timeout)
        service.begin_stop()
        threading.Thread(target=drain, name="drain", daemon=True).start()

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGTERM, signal.SIGINT)}
    service.start_background()
    log.info(
        "jit-bridge %s mode, target %s, listening on %s",
        settings.mode,
        settings.target,
        f"{'https' if tls is not None else 'http'}://{settings.listen}",
    )
    try:
        server.run(sockets=None if sock is None else [sock])
    finally:
        remaining = (deadline[0] - time.monotonic()) if deadline else settings.shutdown_timeout
        service.stop(max(0.0, remaining))
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return 0

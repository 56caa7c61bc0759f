"""The state of one running bridge process, shared by its HTTP face, workers and scheduler:
the mapping in force, the store, metrics and health, and the one way work is queued.

Nothing here speaks HTTP; `bridge.server` serves this state, `bridge.service` builds it.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field

from bridge.health import Health
from bridge.keys import EnqueueResult, TriggerKind
from bridge.mapping_versions import MappingInForce
from bridge.metrics import Metrics
from bridge.model import Mode
from bridge.progress import RunProgress
from bridge.reconcile import Reconciler
from bridge.settings import Settings
from bridge.store import Store


@dataclass
class ServiceContext:
    settings: Settings
    store: Store
    mappings: MappingInForce
    metrics: Metrics
    health: Health
    reconciler: Callable[..., Reconciler]
    wake_workers: Callable[[], None]
    readiness_checks: dict[str, Callable[[], None]] = field(default_factory=dict)
    #: Set when the process begins to stop: not ready, and the webhook refuses deliveries.
    stopping: threading.Event = field(default_factory=threading.Event)
    #: How far a full reconcile this process is running has got (None: it runs none).
    full_reconcile: Callable[[], RunProgress | None] = lambda: None

    def mode(self) -> Mode:
        return self.settings.mode

    def enqueue(
        self,
        key: str,
        trigger: TriggerKind,
        *,
        event_id: str | None = None,
        source: str | None = None,
        email_hint: str | None = None,
    ) -> EnqueueResult:
        """The one enqueue-and-wake path (webhook, event poller, admin API, schedule): queue
        durably, then wake a worker unless the event was a duplicate."""
        result = self.store.enqueue(
            key, trigger, event_id=event_id, source=source, email_hint=email_hint
        )
        if result != "duplicate":
            self.wake_workers()
        return result

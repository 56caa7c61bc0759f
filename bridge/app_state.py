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
from bridge.mapping import Mapping
from bridge.metrics import Metrics
from bridge.model import Mode
from bridge.reconcile import Reconciler
from bridge.settings import Settings
from bridge.store import Store


@dataclass
class MappingHolder:
    """The mapping in force. A bad replacement is refused; the last good one stays."""

    mapping: Mapping
    version: int | None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def get(self) -> Mapping:
        with self._lock:
            return self.mapping

    def replace(self, mapping: Mapping, version: int) -> None:
        with self._lock:
            self.mapping, self.version = mapping, version


@dataclass
class ServiceContext:
    settings: Settings
    store: Store
    mappings: MappingHolder
    metrics: Metrics
    health: Health
    reconciler: Callable[..., Reconciler]
    wake_workers: Callable[[], None]
    readiness_checks: dict[str, Callable[[], None]] = field(default_factory=dict)

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

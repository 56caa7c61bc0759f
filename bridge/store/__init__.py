"""The bridge's durable state on SQLAlchemy: SQLite by default, PostgreSQL when several bridge
processes share the work. Everything goes through `Store`."""

from bridge.store.errors import (
    RunAlreadyApprovedError,
    RunNotFoundError,
    RunNotHeldError,
    StoreError,
    StoreUnavailableError,
)
from bridge.store.facade import DEFAULT_DATABASE_URL, Store
from bridge.store.records import (
    FULL_RECONCILE_KEY,
    AuditOutcome,
    AuditRecord,
    EnqueueRequest,
    EnqueueResult,
    MappingVersion,
    QueueEntry,
    QueueItem,
    Run,
    RunStatus,
    TriggerKind,
)

__all__ = [
    "DEFAULT_DATABASE_URL",
    "FULL_RECONCILE_KEY",
    "AuditOutcome",
    "AuditRecord",
    "EnqueueRequest",
    "EnqueueResult",
    "MappingVersion",
    "QueueEntry",
    "QueueItem",
    "Run",
    "RunAlreadyApprovedError",
    "RunNotFoundError",
    "RunNotHeldError",
    "RunStatus",
    "Store",
    "StoreError",
    "StoreUnavailableError",
    "TriggerKind",
]

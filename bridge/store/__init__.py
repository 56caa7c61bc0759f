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
    AuditOutcome,
    AuditRecord,
    EnqueueRequest,
    FinishedRunStatus,
    MappingVersion,
    QueueEntry,
    QueueItem,
    Run,
    RunStatus,
)

__all__ = [
    "DEFAULT_DATABASE_URL",
    "AuditOutcome",
    "AuditRecord",
    "EnqueueRequest",
    "FinishedRunStatus",
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
]

"""The values the store hands out and takes in.

Queue times are epoch seconds from the store's clock (a worker computes latency as
`clock() - item.enqueued_at`); records people read (audit, runs, mapping versions) carry
timezone-aware UTC datetimes.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from bridge.keys import TriggerKind

FinishedRunStatus = Literal[
    "succeeded", "no_changes", "dry_run", "held", "partial", "failed", "interrupted"
]
"""How a run ended: what a reconcile reports (`RunReport.status`) and records."""

RunStatus = FinishedRunStatus | Literal["running", "approved"]
"""The statuses the bridge writes. The store keeps any string a caller gives, so a run written
by a newer version still reads back."""

AuditOutcome = Literal["applied", "held", "failed", "skipped", "dry_run", "unknown"]
"""`unknown`: the write was recorded before it was sent and its outcome is not known yet (in
flight, or its process died); the next read of that user settles it."""


@dataclass(frozen=True)
class EnqueueRequest:
    """One trigger for `Store.enqueue_many` (same meaning as `Store.enqueue`'s arguments)."""

    key: str
    trigger: TriggerKind
    event_id: str | None = None
    source: str | None = None
    email_hint: str | None = None
    not_before: float | None = None


@dataclass(frozen=True)
class QueueItem:
    """One claimed unit of work: reconcile `key` because of `trigger`.

    `claim_token` identifies this claim; `complete` and `fail` only act while it is still the
    key's current claim, so a worker whose lease expired cannot disturb the next one.
    """

    id: int
    key: str
    trigger: TriggerKind
    event_ids: tuple[str, ...]
    email_hint: str | None
    source: str | None
    attempts: int
    enqueued_at: float
    worker_id: str
    claim_token: str
    lease_until: float


@dataclass(frozen=True)
class QueueEntry:
    """A row of the queue as `status` shows it."""

    key: str
    trigger: TriggerKind | None
    event_count: int
    attempts: int
    enqueued_at: float | None
    not_before: float | None
    claimed_by: str | None
    lease_until: float | None
    rerun_pending: bool
    last_error: str | None


class AuditRecord(BaseModel):
    """One operation the bridge applied, held, skipped or failed (docs/design.md, Settings and
    state).

    `trigger` names what caused it (event ids or a run id); `because` is the chain of groups
    and mapping entries that made it desired. `before`/`after` are small JSON values such as
    `{"role": "EDITOR"}`. Never put a secret in any field. `time` defaults to now.
    """

    model_config = ConfigDict(frozen=True)

    time: datetime = Field(default_factory=lambda: datetime.now(UTC))
    run_id: str | None = None
    trigger: str
    email: str
    op: str
    team: str | None = None
    case_group: str | None = None
    before: Any = None
    after: Any = None
    because: list[str] = Field(default_factory=list)
    outcome: AuditOutcome
    error: str | None = None

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict (ISO time), for `jit-bridge audit --json` and the admin API;
        `dry_run` marks a record of what a dry run would have done."""
        return {**self.model_dump(mode="json"), "dry_run": self.outcome == "dry_run"}


class Run(BaseModel):
    """A sync run: a full reconcile or a CLI/admin sync, and what a removal budget held."""

    model_config = ConfigDict(frozen=True)

    id: str
    kind: str
    trigger: str
    requested_by: str
    status: str
    started_at: datetime
    finished_at: datetime | None = None
    summary: dict[str, Any] = Field(default_factory=dict)
    held_operations: list[dict[str, Any]] | None = None
    hold_reason: str | None = None
    approved_by: str | None = None
    approved_at: datetime | None = None

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict (ISO times), for status output and the admin API."""
        return self.model_dump(mode="json")


class MappingVersion(BaseModel):
    """One saved mapping: its number, where it came from (file, API), when, and its text."""

    model_config = ConfigDict(frozen=True)

    version: int
    source: str
    saved_at: datetime
    sha256: str
    text: str

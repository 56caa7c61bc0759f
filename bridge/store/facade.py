"""`Store`: the one object the rest of the bridge uses for state (docs/design.md, Settings and
state).

Each method is one short transaction that has committed when the method returns, so a caller
can acknowledge what it stored (the webhook's 202 comes after `enqueue` returns). Time comes
from the injected `clock`, so tests move time instead of sleeping.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import Callable, Collection, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Engine, text
from sqlalchemy.exc import SQLAlchemyError

from bridge.keys import EnqueueResult, TriggerKind
from bridge.model import AccountPair
from bridge.store import (
    audit,
    cursors,
    first_logins,
    known_users,
    leases,
    mappings,
    pairs,
    queue,
    runs,
    schema,
)
from bridge.store.batching import GroupCommitter
from bridge.store.database import (
    SqliteSynchronous,
    create_store_engine,
    read_transaction,
    write_transaction,
)
from bridge.store.errors import StoreUnavailableError
from bridge.store.records import (
    AuditRecord,
    EnqueueRequest,
    MappingVersion,
    QueueEntry,
    QueueItem,
    Run,
    RunStatus,
)

log = logging.getLogger(__name__)

DEFAULT_DATABASE_URL = "sqlite:///jit-bridge.db"
PROCESS_LEASE_PREFIX = "process:"
EVENT_RETENTION_SECONDS = 7 * 24 * 3600.0
_PRUNE_EVERY = 1000


@dataclass(frozen=True)
class _AuditWrite:
    """One caller's audit write: records, write-ahead intents (their ids come back), or the
    outcomes of earlier intents."""

    records: list[AuditRecord] = field(default_factory=list)
    intents: list[AuditRecord] = field(default_factory=list)
    settled: list[tuple[int, AuditRecord]] = field(default_factory=list)


class Store:
    """Queue, event de-duplication, cursors, known users, runs, audit, mappings and leases."""

    def __init__(
        self,
        engine: Engine,
        *,
        clock: Callable[[], float] = time.time,
        event_retention: float = EVENT_RETENTION_SECONDS,
    ) -> None:
        self._engine = engine
        self._clock = clock
        self._event_retention = event_retention
        self._enqueues_since_prune = 0
        self._enqueue_batches = GroupCommitter(self.enqueue_many)
        self._audit_batches = GroupCommitter(self._write_audit)
        #: Who this process is in `runs.holder` (the service sets its own id).
        self.holder = f"cli@{socket.gethostname()}:{os.getpid()}"

    @classmethod
    def open(
        cls,
        database_url: str = DEFAULT_DATABASE_URL,
        *,
        clock: Callable[[], float] = time.time,
        event_retention: float = EVENT_RETENTION_SECONDS,
        sqlite_synchronous: SqliteSynchronous = "FULL",
    ) -> Store:
        """Connect lazily to `database_url`; call `upgrade()` before first use of a new DB.

        `sqlite_synchronous="NORMAL"` trades durability against power loss (not against a
        killed process) for commits without fsync; see `bridge.store.database`.
        """
        engine = create_store_engine(database_url, sqlite_synchronous=sqlite_synchronous)
        return cls(engine, clock=clock, event_retention=event_retention)

    @property
    def engine(self) -> Engine:
        return self._engine

    def upgrade(self) -> None:
        """Apply every pending migration (idempotent; safe from several processes at once)."""
        schema.upgrade(self._engine)

    def schema_is_current(self) -> bool:
        return schema.is_current(self._engine)

    def close(self) -> None:
        self._engine.dispose()

    def ping(self) -> None:
        """Raise `StoreUnavailableError` unless the database answers a query."""
        try:
            with read_transaction(self._engine) as connection:
                connection.execute(text("SELECT 1"))
        except SQLAlchemyError as exc:
            where = self._engine.url.render_as_string(hide_password=True)
            raise StoreUnavailableError(
                f"the state store at {where} does not answer ({type(exc).__name__}); check "
                "that the database is running and database_url is right"
            ) from None

    # -- queue ------------------------------------------------------------------------------

    def enqueue(
        self,
        key: str,
        trigger: TriggerKind,
        *,
        event_id: str | None = None,
        source: str | None = None,
        email_hint: str | None = None,
        not_before: float | None = None,
    ) -> EnqueueResult:
        """Queue `key` durably: committed, with its event id, when this returns.

        One pending entry per key: a second trigger merges into it (strongest trigger, event
        ids appended, earliest `not_before`), and a trigger for a key being worked makes it
        run again afterwards. An event id seen within the retention window is a duplicate.
        """
        request = EnqueueRequest(key, trigger, event_id, source, email_hint, not_before)
        # Checked here, so one caller's bad request cannot fail a batch shared with others.
        queue.check_request(key, trigger)
        return self._enqueue_batches.submit(request)

    def enqueue_many(self, requests: Sequence[EnqueueRequest]) -> list[EnqueueResult]:
        """Queue several triggers in one transaction (one commit, one fsync): a poller's page
        of events, or webhook deliveries batched together. All or none are stored."""
        now = self._clock()
        with write_transaction(self._engine) as connection:
            results = [
                queue.enqueue(
                    connection,
                    now,
                    request.key,
                    request.trigger,
                    event_id=request.event_id,
                    source=request.source,
                    email_hint=request.email_hint,
                    not_before=request.not_before,
                    event_retention=self._event_retention,
                )
                for request in requests
            ]
        self._enqueues_since_prune += len(results)
        if self._enqueues_since_prune >= _PRUNE_EVERY:
            self.prune_seen_events()
        return results

    def claim(self, worker_id: str, lease_seconds: float = 300) -> QueueItem | None:
        """The oldest ready key, leased to `worker_id`; None when nothing is ready."""
        now = self._clock()
        with read_transaction(self._engine) as connection:
            if not queue.has_ready(connection, now):
                return None
        with write_transaction(self._engine) as connection:
            return queue.claim(connection, now, worker_id, lease_seconds)

    def now(self) -> float:
        """The store's clock: the time base of queue entries and reads."""
        return self._clock()

    def claim_users(
        self, keys: Collection[str], read_at: float, lease_seconds: float = 60.0
    ) -> dict[str, QueueItem]:
        """Claim users' keys for a full reconcile's writes to them (`queue.claim_user`), all
        in one transaction: one commit for a chunk of users rather than one per user. The
        keys claimed, with their items; the others are left to their own reconciles."""
        with write_transaction(self._engine) as connection:
            now = self._clock()
            claimed = {
                key: queue.claim_user(
                    connection, now, key, f"{self.holder}/full-reconcile", lease_seconds, read_at
                )
                for key in dict.fromkeys(keys)
            }
        return {key: item for key, item in claimed.items() if item is not None}

    def complete(self, item: QueueItem) -> bool:
        """Done with `item`. False when its lease had expired and the key moved on."""
        return self.complete_all([item]) == 1

    def complete_all(self, items: Collection[QueueItem]) -> int:
        """Done with every item, in one transaction; how many were still ours (the others'
        leases had expired and their keys moved on)."""
        with write_transaction(self._engine) as connection:
            lost = [item for item in items if not queue.complete(connection, item)]
        for item in lost:
            log.warning("claim on %s by %s was lost before it completed", item.key, item.worker_id)
        return len(items) - len(lost)

    def fail(self, item: QueueItem, error: str, retry_in: float) -> bool:
        """Retry `item` (and anything queued for its key meanwhile) after `retry_in` s."""
        with write_transaction(self._engine) as connection:
            kept = queue.fail(connection, self._clock(), item, error, retry_in)
        if not kept:
            log.warning("claim on %s by %s was lost before it failed", item.key, item.worker_id)
        return kept

    def release(self, item: QueueItem, reason: str) -> bool:
        """Hand `item` back unfinished: the next worker (of any process) takes it at once."""
        with write_transaction(self._engine) as connection:
            return queue.release(connection, self._clock(), item, reason)

    def extend_claim(self, item: QueueItem, lease_seconds: float = 300) -> bool:
        """Renew the lease of a long attempt (a full reconcile); false if already lost."""
        return self.extend_claims([item], lease_seconds) == 1

    def extend_claims(self, items: Collection[QueueItem], lease_seconds: float) -> int:
        """Renew every item's lease in one transaction; how many were still held."""
        with write_transaction(self._engine) as connection:
            now = self._clock()
            return sum(queue.extend(connection, now, item, lease_seconds) for item in items)

    def queue_depth(self) -> int:
        with read_transaction(self._engine) as connection:
            return queue.depth(connection)

    def queue_items(self) -> list[QueueEntry]:
        with read_transaction(self._engine) as connection:
            return queue.entries(connection)

    def prune_seen_events(self) -> int:
        """Forget event ids older than the retention window (also done every 1000 enqueues)."""
        self._enqueues_since_prune = 0
        with write_transaction(self._engine) as connection:
            return queue.prune_seen_events(connection, self._clock(), self._event_retention)

    # -- poll cursors and known users -------------------------------------------------------

    def get_cursor(self, name: str) -> dict[str, Any] | None:
        with read_transaction(self._engine) as connection:
            return cursors.get(connection, name)

    def set_cursor(self, name: str, value: dict[str, Any]) -> None:
        with write_transaction(self._engine) as connection:
            cursors.put(connection, self._clock(), name, value)

    def remember_user(self, user_id: str, email: str) -> None:
        with write_transaction(self._engine) as connection:
            known_users.remember(connection, self._clock(), user_id, email)

    def email_for(self, user_id: str) -> str | None:
        with read_transaction(self._engine) as connection:
            return known_users.email_for(connection, user_id)

    # -- identity pairs ---------------------------------------------------------------------

    def all_pairs(self, target: str) -> list[AccountPair]:
        """Every Keycloak id ↔ account pair stored for a target kind (`tines`, `scim`)."""
        with read_transaction(self._engine) as connection:
            return pairs.all_pairs(connection, target)

    def changed_pairs(self, target: str, found: list[AccountPair]) -> list[AccountPair]:
        """Those of `found` that `save_pairs` would write: new, or stored differently. Read
        only, so a run that pairs nothing new takes no write lock."""
        with read_transaction(self._engine) as connection:
            return pairs.changed(connection, target, found)

    def pairs_for(self, target: str, user_ids: Iterable[str]) -> list[AccountPair]:
        with read_transaction(self._engine) as connection:
            return pairs.pairs_for(connection, target, user_ids)

    def save_pairs(self, target: str, found: Iterable[AccountPair]) -> int:
        """Pair each Keycloak id with its account (an account keeps one pair); returns how
        many pairs were new or changed."""
        with write_transaction(self._engine) as connection:
            return pairs.save(connection, self._clock(), target, found)

    # -- first logins -----------------------------------------------------------------------

    def begin_first_logins(self, emails: Iterable[str]) -> set[str]:
        """Record, before the target is asked to create them, that these users' first
        logins have begun (see `bridge.store.first_logins`); returns those (lower-cased) an
        earlier attempt had already begun."""
        with write_transaction(self._engine) as connection:
            return first_logins.begin(connection, self._clock(), emails)

    def finish_first_logins(self, emails: Iterable[str]) -> None:
        with write_transaction(self._engine) as connection:
            first_logins.finish(connection, emails)

    def unfinished_first_logins(self, emails: Iterable[str]) -> set[str]:
        """Those of `emails` (lower-cased) whose first login began and did not finish."""
        with read_transaction(self._engine) as connection:
            return first_logins.unfinished(connection, emails)

    # -- runs -------------------------------------------------------------------------------

    def start_run(self, kind: str, trigger: str, *, requested_by: str) -> str:
        """A new `running` run, recorded as this process's (`holder`)."""
        with write_transaction(self._engine) as connection:
            return runs.start(connection, self._clock(), kind, trigger, requested_by, self.holder)

    def interrupt_runs(self, reason: str) -> int:
        """Mark this process's runs still `running` `interrupted` (it is stopping)."""
        with write_transaction(self._engine) as connection:
            return runs.interrupt(connection, self._clock(), {self.holder}, reason)

    def interrupt_abandoned_runs(self) -> int:
        """Mark `interrupted` the runs left `running` by processes that are gone: on this
        host, a process id no longer alive; elsewhere, a service whose process lease
        expired. (A CLI command on another host holds no lease: its runs are left alone.)"""
        now = self._clock()
        with read_transaction(self._engine) as connection:
            holders = runs.running_holders(connection)
            alive = leases.live_holders(connection, now, PROCESS_LEASE_PREFIX)
        gone = {h for h in holders if h != self.holder and _process_gone(h, alive)}
        if not gone:
            return 0
        with write_transaction(self._engine) as connection:
            marked = runs.interrupt(connection, now, gone, "its process stopped or was killed")
        log.warning(
            "marked %d run(s) of stopped processes interrupted: %s", marked, sorted(map(str, gone))
        )
        return marked

    def keep_process_alive(self, ttl_seconds: float) -> None:
        """Renew this process's lease: while it is live, other processes leave its runs be."""
        self.acquire_lease(PROCESS_LEASE_PREFIX + self.holder, self.holder, ttl_seconds)

    def release_process(self) -> None:
        self.release_lease(PROCESS_LEASE_PREFIX + self.holder, self.holder)

    def finish_run(self, run_id: str, status: RunStatus | str, summary: dict[str, Any]) -> None:
        with write_transaction(self._engine) as connection:
            runs.finish(connection, self._clock(), run_id, status, summary)

    def note_run_progress(self, run_id: str, summary: dict[str, Any]) -> None:
        """Show what a running run has planned (its summary until it finishes)."""
        with write_transaction(self._engine) as connection:
            runs.note_progress(connection, run_id, summary)

    def hold_run(self, run_id: str, held_operations: list[dict[str, Any]], reason: str) -> None:
        with write_transaction(self._engine) as connection:
            runs.hold(connection, run_id, held_operations, reason)

    def approve_run(self, run_id: str, approved_by: str) -> list[dict[str, Any]]:
        """Record the approval and return the held operations for the caller to apply.

        Raises `RunNotFoundError`, `RunNotHeldError` or `RunAlreadyApprovedError`.
        """
        with write_transaction(self._engine) as connection:
            return runs.approve(connection, self._clock(), run_id, approved_by)

    def get_run(self, run_id: str) -> Run | None:
        with read_transaction(self._engine) as connection:
            return runs.get(connection, run_id)

    def list_runs(self, limit: int = 50, status: RunStatus | str | None = None) -> list[Run]:
        """Newest first."""
        with read_transaction(self._engine) as connection:
            return runs.recent(connection, limit, status)

    def last_run(self, kind: str, statuses: Collection[str]) -> Run | None:
        """The newest run of `kind` (e.g. a full reconcile) with one of `statuses`."""
        with read_transaction(self._engine) as connection:
            return runs.last_of(connection, kind, statuses)

    # -- audit ------------------------------------------------------------------------------

    def record_audit(self, *records: AuditRecord) -> None:
        """Append one or more records in one transaction."""
        self.record_audit_many(records)

    def record_audit_many(self, records: Iterable[AuditRecord]) -> None:
        self._audit_batches.submit(_AuditWrite(records=list(records)))

    def record_audit_intent(self, record: AuditRecord) -> int:
        """Record a target write before it is sent; `settle_audit` records its outcome."""
        return self.record_audit_intents([record])[0]

    def settle_audit(self, intent_id: int, outcome: AuditRecord) -> None:
        self.settle_audits([(intent_id, outcome)])

    def record_audit_intents(self, records: Sequence[AuditRecord]) -> list[int]:
        """`record_audit_intent` for several writes (a batch) in one transaction."""
        return self._audit_batches.submit(_AuditWrite(intents=list(records)))

    def settle_audits(self, settled: Iterable[tuple[int, AuditRecord]]) -> None:
        """`settle_audit` for several (intent id, outcome) in one transaction."""
        self._audit_batches.submit(_AuditWrite(settled=list(settled)))

    def _write_audit(self, writes: Sequence[_AuditWrite]) -> list[list[int]]:
        """Audit writes of concurrent callers (a run's concurrent writers) in one transaction:
        one fsync for all, where each alone would wait for its own."""
        with write_transaction(self._engine) as connection:
            found = []
            for write in writes:
                if write.records:
                    audit.record(connection, write.records)
                for intent_id, outcome in write.settled:
                    audit.settle(connection, intent_id, outcome)
                found.append([audit.record_intent(connection, r) for r in write.intents])
            return found

    def unsettled_writes(self, emails: Iterable[str] | None) -> list[tuple[int, AuditRecord]]:
        """Writes recorded before sending whose runs ended without their outcome (a crash,
        a stop past its deadline): (intent id, record), for `emails` or everyone (None)."""
        with read_transaction(self._engine) as connection:
            return audit.unsettled(connection, emails, finished_runs_only=True)

    def audit(
        self,
        email: str | None = None,
        since: datetime | float | None = None,
        limit: int = 1000,
        *,
        run_id: str | None = None,
    ) -> list[AuditRecord]:
        """The newest `limit` records matching every filter given, oldest first."""
        with read_transaction(self._engine) as connection:
            return audit.query(connection, email=email, since=since, run_id=run_id, limit=limit)

    # -- mapping versions -------------------------------------------------------------------

    def save_mapping(self, text: str, source: str) -> int:
        """Keep `text` as the current mapping; returns its version number."""
        with write_transaction(self._engine) as connection:
            return mappings.save(connection, self._clock(), text, source)

    def current_mapping(self) -> tuple[int, str] | None:
        with read_transaction(self._engine) as connection:
            return mappings.current(connection)

    def latest_mapping_version(self) -> int | None:
        """The version in force, without its text: cheap enough to ask before every plan."""
        with read_transaction(self._engine) as connection:
            return mappings.latest_version(connection)

    def last_mapping_from(self, source: str) -> MappingVersion | None:
        with read_transaction(self._engine) as connection:
            return mappings.last_from(connection, source)

    def get_mapping(self, version: int) -> str | None:
        with read_transaction(self._engine) as connection:
            return mappings.text_of(connection, version)

    def mapping_versions(self) -> list[MappingVersion]:
        """Newest first."""
        with read_transaction(self._engine) as connection:
            return mappings.versions(connection)

    # -- leases -----------------------------------------------------------------------------

    def acquire_lease(self, name: str, holder: str, ttl_seconds: float) -> bool:
        with write_transaction(self._engine) as connection:
            return leases.acquire(connection, self._clock(), name, holder, ttl_seconds)

    def release_lease(self, name: str, holder: str) -> None:
        with write_transaction(self._engine) as connection:
            leases.release(connection, name, holder)


def _process_gone(holder: str | None, alive: set[str]) -> bool:
    """Whether the process `holder` (`host:pid` or `cli@host:pid`) is known to be gone."""
    if holder is None:
        return True  # a run from before runs named their process
    host, _, pid = holder.removeprefix("cli@").rpartition(":")
    if host == socket.gethostname() and pid.isdigit():
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            return True
        except PermissionError:
            return False
        return False
    return not holder.startswith("cli@") and holder not in alive

"""Polling Keycloak's event store: triggers for a Keycloak with no listener installed.

Keycloak keeps user events (`/events`) and admin events (`/admin-events`) when the realm
stores them. The poller reads them in ascending time from a durable cursor per stream:

- An event's time is set when Keycloak records it, before its transaction commits, so under
  concurrent logins an event can become visible after a later-stamped one was already read.
  Each poll therefore reads from `lookback_s` (default 10 s) before the newest event handled,
  and the cursor keeps the keys of the events handled in that window to skip them when they
  come back (this also covers several events sharing a millisecond; `dateFrom` is inclusive).
  An event committed more than `lookback_s` after its time would still be missed; the next
  login (jit) or full reconcile (enhanced) heals it.
- The cursor moves only after a page's triggers are durably queued: a crash replays events
  (the queue de-duplicates by event id), it never skips them.
- With no cursor yet, the poller starts `catch_up_s` (default 10 minutes) before now. Older
  history is not worth replaying: what happened before the bridge ran is healed by the first
  full reconcile (enhanced) or by the user's next login (jit), while a short window still
  covers logins made while the bridge was being deployed or restarted with a fresh store.
- After downtime the cursor lets the poller read everything stored since. If Keycloak has
  expired events the poller never read (`eventsExpiration`), they are lost; the poller warns
  and, in enhanced mode, queues a full reconcile to heal.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal, Protocol

from keycloak import KeycloakAdmin, urls_patterns
from keycloak.exceptions import KeycloakGetError, raise_error_from_response

from bridge.intake.events import (
    EventError,
    KeycloakEvent,
    TriggerSink,
    enqueue_triggers,
    parse_rest_admin_event,
    parse_rest_user_event,
    triggers_for,
)
from bridge.keys import EVERYONE, acts_on
from bridge.model import Mode

log = logging.getLogger(__name__)

StreamName = Literal["user", "admin"]
DEFAULT_CATCH_UP_S = 600.0
DEFAULT_LOOKBACK_S = 10.0
# Only after this long without a complete read can events have expired unseen; checking
# the realm's expiration setting on every poll would cost a request each time.
_GAP_CHECK_AFTER_MS = 60_000


def poll_period(poll_interval_s: float) -> float:
    """How often to poll so a login reaches the target within `poll_interval_s` (docs/design.md,
    Performance).

    A login waits up to one period for the poll that sees it, then its reconcile runs (tens to
    a few hundred ms). Polling exactly every `poll_interval` would put the slowest logins
    just past the interval, so the poller runs a little more often: a quarter of the
    interval earlier, at most half a second (1 s → every 0.75 s, 5 s → every 4.5 s)."""
    return poll_interval_s - min(poll_interval_s / 4, 0.5)


class KeycloakEventReader(Protocol):
    """Reads stored events in ascending time from `date_from_ms` (inclusive)."""

    def user_events(self, date_from_ms: int, first: int, max: int) -> list[dict[str, Any]]: ...

    def admin_events(self, date_from_ms: int, first: int, max: int) -> list[dict[str, Any]]: ...

    def expiration_ms(self, stream: StreamName) -> int | None:
        """How long Keycloak keeps events of that stream; None when they never expire."""
        ...


class CursorStore(Protocol):
    def get_cursor(self, name: str) -> dict[str, Any] | None: ...

    def set_cursor(self, name: str, value: dict[str, Any]) -> None: ...


class KeycloakAdminEventReader:
    """`KeycloakEventReader` over python-keycloak. Its `get_events` / `get_admin_events` pass
    the query through and do not paginate, so paging is the poller's.

    Keycloak 26.2 and newer take `dateFrom` in epoch milliseconds with `direction=asc`. Older
    releases answer that with 400 ("expected format is yyyy-MM-dd") and list newest first,
    filtered by whole days. On the first such answer the reader switches to reading by day:
    it asks from the day before (so any server time zone is covered), reads the newest-first
    pages until they pass `date_from_ms`, keeps exactly the events at or after it, and serves
    them oldest first in the pages the poller asks for, so the cursor means the same on
    every release."""

    def __init__(self, admin: KeycloakAdmin) -> None:
        self._admin = admin
        self._by_day = False
        self._snapshot: tuple[str, int, list[dict[str, Any]]] | None = None

    @property
    def reads_by_day(self) -> bool:
        """True once Keycloak refused an epoch-millisecond `dateFrom` (before 26.2)."""
        return self._by_day

    def user_events(self, date_from_ms: int, first: int, max: int) -> list[dict[str, Any]]:
        return self._read("user", date_from_ms, first, max)

    def admin_events(self, date_from_ms: int, first: int, max: int) -> list[dict[str, Any]]:
        return self._read("admin", date_from_ms, first, max)

    def _fetch(self, stream: StreamName, query: dict[str, Any]) -> list[dict[str, Any]]:
        if stream == "user":
            events: list[dict[str, Any]] = self._admin.get_events(query)
        else:
            events = self._admin.get_admin_events(query)
        return events

    def _read(
        self, stream: StreamName, date_from_ms: int, first: int, max_results: int
    ) -> list[dict[str, Any]]:
        if not self._by_day:
            try:
                return self._fetch(stream, _query(date_from_ms, first, max_results))
            except KeycloakGetError as error:
                if not _wants_a_date(error):
                    raise
                log.info(
                    "Keycloak takes event dates only as yyyy-MM-dd (a release before 26.2); "
                    "reading events by day and filtering them here"
                )
                self._by_day = True
        snapshot = self._snapshot
        if first == 0 or snapshot is None or snapshot[:2] != (stream, date_from_ms):
            events = self._read_since(stream, date_from_ms, max(max_results, 1))
            snapshot = self._snapshot = (stream, date_from_ms, events)
        return snapshot[2][first : first + max_results]

    def _read_since(
        self, stream: StreamName, date_from_ms: int, page_size: int
    ) -> list[dict[str, Any]]:
        """Every stored event at or after `date_from_ms`, oldest first."""
        day = datetime.fromtimestamp(date_from_ms / 1000 - 86_400, UTC).strftime("%Y-%m-%d")
        found: dict[str, dict[str, Any]] = {}
        first = 0
        while True:
            page = self._fetch(stream, {"dateFrom": day, "first": first, "max": page_size})
            for raw in page:
                when = raw.get("time") if isinstance(raw, dict) else None
                if isinstance(when, int) and when >= date_from_ms:
                    # Pages shift when events arrive meanwhile: the same event may come twice.
                    found.setdefault(json.dumps(raw, sort_keys=True), raw)
            older = [r.get("time") for r in page if isinstance(r, dict)]
            passed = any(isinstance(t, int) and t < date_from_ms for t in older)
            if len(page) < page_size or passed:
                break
            first += len(page)
        # Newest first from Keycloak; reversed, events sharing a millisecond keep their order.
        oldest_first = list(found.values())[::-1]
        return sorted(oldest_first, key=lambda r: int(r["time"]))

    def expiration_ms(self, stream: StreamName) -> int | None:
        path = urls_patterns.URL_ADMIN_EVENTS_CONFIG.format(
            **{"realm-name": self._admin.connection.realm_name}
        )
        config = raise_error_from_response(self._admin.connection.raw_get(path), KeycloakGetError)
        key = "eventsExpiration" if stream == "user" else "adminEventsExpiration"
        seconds = config.get(key) if isinstance(config, dict) else None
        return int(seconds) * 1000 if isinstance(seconds, int) and seconds > 0 else None


def _query(date_from_ms: int, first: int, max_results: int) -> dict[str, Any]:
    return {"dateFrom": date_from_ms, "direction": "asc", "first": first, "max": max_results}


def _wants_a_date(error: KeycloakGetError) -> bool:
    """Keycloak before 26.2 refuses epoch milliseconds: 400 "... expected format is yyyy-MM-dd"."""
    return error.response_code == 400 and "yyyy-MM-dd" in str(error.error_message)


@dataclass(frozen=True)
class PollResult:
    """What one poll did. `errors` name the stream and what failed; its cursor did not move."""

    events_read: int = 0
    triggers_queued: int = 0
    duplicates: int = 0
    ignored: int = 0
    malformed: int = 0
    gap_detected: bool = False
    errors: tuple[str, ...] = ()


@dataclass
class _Tally:
    events_read: int = 0
    triggers_queued: int = 0
    duplicates: int = 0
    ignored: int = 0
    malformed: int = 0
    gap_detected: bool = False
    errors: list[str] = field(default_factory=list)


@dataclass
class _Cursor:
    """The newest event time handled, the keys (with times) of the events handled within the
    look-back window before it, and when a poll last read the stream to its end (to tell
    downtime from a quiet realm)."""

    time_ms: int
    seen: dict[str, int]
    checked_ms: int | None

    @classmethod
    def load(cls, value: dict[str, Any]) -> _Cursor:
        time_ms, checked = value.get("time_ms"), value.get("checked_ms")
        seen, ids = value.get("seen", {}), value.get("ids", [])  # `ids`: before look-back
        if not isinstance(time_ms, int) or not isinstance(seen, dict) or not isinstance(ids, list):
            raise ValueError("stored cursor is not {'time_ms': int, 'seen': {...}}; reset it")
        keys = {str(k): int(t) for k, t in seen.items()} | {str(i): time_ms for i in ids}
        return cls(time_ms, keys, checked if isinstance(checked, int) else None)

    def dump(self) -> dict[str, Any]:
        return {
            "time_ms": self.time_ms,
            "seen": dict(sorted(self.seen.items())),
            "checked_ms": self.checked_ms,
        }

    def handled(self, event: KeycloakEvent) -> bool:
        return event.dedupe_key in self.seen

    def advance(self, event: KeycloakEvent, lookback_ms: int) -> None:
        self.seen[event.dedupe_key] = event.time_ms
        if event.time_ms > self.time_ms:
            self.time_ms = event.time_ms
            oldest = self.time_ms - lookback_ms
            self.seen = {k: t for k, t in self.seen.items() if t >= oldest}


class EventPoller:
    """Reads new stored events and enqueues their triggers; call `poll_once` on a schedule."""

    def __init__(
        self,
        reader: KeycloakEventReader,
        sink: TriggerSink,
        cursor_store: CursorStore,
        *,
        realm: str,
        mode_provider: Callable[[], Mode],
        page_size: int = 100,
        clock: Callable[[], float] = time.time,
        catch_up_s: float = DEFAULT_CATCH_UP_S,
        lookback_s: float = DEFAULT_LOOKBACK_S,
    ) -> None:
        if page_size < 1:
            raise ValueError("page_size must be at least 1")
        self._reader = reader
        self._sink = sink
        self._cursors = cursor_store
        self._realm = realm
        self._mode_provider = mode_provider
        self._page_size = page_size
        self._clock = clock
        self._catch_up_ms = int(catch_up_s * 1000)
        self._lookback_ms = int(lookback_s * 1000)

    def cursor_name(self, stream: StreamName) -> str:
        return f"keycloak-events/{self._realm}/{stream}"

    def poll_once(self) -> PollResult:
        """Read both streams to their end. Admin events are read only in enhanced mode: in
        jit mode they trigger nothing (docs/design.md, Triggers). A stream that fails keeps its
        cursor and is reported in `errors`; the other stream is still read."""
        mode = self._mode_provider()
        tally = _Tally()
        # Admin events ask only for changes and full reconciles.
        streams: list[StreamName] = ["user", "admin"] if acts_on(mode, "change") else ["user"]
        for stream in streams:
            try:
                self._poll_stream(stream, mode, tally)
            except Exception as error:  # any failure: report it, keep the cursor, retry later
                message = f"{stream} events of realm {self._realm}: {_describe(error)}"
                log.warning("event poll failed, cursor kept: %s", message[:500])
                tally.errors.append(message[:500])
        return PollResult(
            tally.events_read,
            tally.triggers_queued,
            tally.duplicates,
            tally.ignored,
            tally.malformed,
            tally.gap_detected,
            tuple(tally.errors),
        )

    def _poll_stream(self, stream: StreamName, mode: Mode, tally: _Tally) -> None:
        name = self.cursor_name(stream)
        now_ms = int(self._clock() * 1000)
        stored = self._cursors.get_cursor(name)
        if stored is None:
            cursor = _Cursor(now_ms - self._catch_up_ms, {}, None)
        else:
            cursor = _Cursor.load(stored)
            self._heal_expired(stream, cursor, now_ms, mode, tally)
        read = self._reader.user_events if stream == "user" else self._reader.admin_events
        date_from, first = cursor.time_ms - self._lookback_ms, 0
        while True:
            page = read(date_from, first, self._page_size)
            for raw in page:
                self._handle(stream, raw, cursor, mode, tally)
            last_page = len(page) < self._page_size
            if last_page:
                cursor.checked_ms = now_ms
            self._cursors.set_cursor(name, cursor.dump())
            if last_page:
                return
            first += len(page)

    def _handle(
        self, stream: StreamName, raw: Any, cursor: _Cursor, mode: Mode, tally: _Tally
    ) -> None:
        tally.events_read += 1
        parse = parse_rest_user_event if stream == "user" else parse_rest_admin_event
        try:
            event = parse(raw, realm=self._realm)
            if cursor.handled(event):
                tally.duplicates += 1
                return
            triggers = triggers_for(event, mode)
        except EventError as error:
            # Skipped, not retried: a malformed stored event would otherwise block the stream.
            log.warning(
                "skipping malformed stored %s event in realm %s: %s", stream, self._realm, error
            )
            tally.malformed += 1
            return
        if triggers:
            outcome = enqueue_triggers(self._sink, event, triggers, source=f"poll:{stream}-events")
            tally.triggers_queued += outcome.queued + outcome.merged
            tally.duplicates += outcome.duplicates
        else:
            tally.ignored += 1
        cursor.advance(event, self._lookback_ms)

    def _heal_expired(
        self, stream: StreamName, cursor: _Cursor, now_ms: int, mode: Mode, tally: _Tally
    ) -> None:
        """Queue a full reconcile when Keycloak may have expired events we never read."""
        last_read_ms = cursor.checked_ms if cursor.checked_ms is not None else cursor.time_ms
        if now_ms - last_read_ms <= _GAP_CHECK_AFTER_MS:
            return
        try:
            expiration_ms = self._reader.expiration_ms(stream)
        except Exception as error:  # the events still matter more than the gap check
            log.warning(
                "could not read the event expiration of realm %s (%s); cannot tell whether "
                "events expired unread since the last poll",
                self._realm,
                type(error).__name__,
            )
            return
        if expiration_ms is None or now_ms - last_read_ms <= expiration_ms:
            return
        tally.gap_detected = True
        log.warning(
            "%s events of realm %s were last read %d s ago, longer than Keycloak keeps them "
            "(%d s): events in between may be lost%s",
            stream,
            self._realm,
            (now_ms - last_read_ms) // 1000,
            expiration_ms // 1000,
            "; queueing a full reconcile" if acts_on(mode, "reconcile") else "",
        )
        if acts_on(mode, "reconcile"):
            result = self._sink.enqueue(
                EVERYONE,
                "reconcile",
                event_id=f"event-gap:{self.cursor_name(stream)}:{last_read_ms}",
                source=f"poll:{stream}-events",
            )
            if result != "duplicate":
                tally.triggers_queued += 1


EVENT_STORE_500 = (
    "Keycloak's event store answered 500. A Keycloak with a second events store provider "
    "(Phase Two's keycloak-events adds one) has none in use unless it is started with "
    "--spi-events-store--provider=jpa; see docs/phase-two.md"
)


def _describe(error: Exception) -> str:
    """What a failed poll says in the log and in status: the cause an operator can act on."""
    if isinstance(error, KeycloakGetError) and error.response_code == 500:
        return f"{EVENT_STORE_500} ({str(error)[:200]})"
    return f"{type(error).__name__}: {error}"

"""The event-store poller against Keycloak's admin REST API (mocked with `responses`).

The mock behaves like Keycloak's store: `dateFrom` is inclusive, `direction=asc` sorts by
time, `first`/`max` page, and events expire. The reader under test is the real
python-keycloak one.
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
import responses
from keycloak import KeycloakAdmin, KeycloakOpenIDConnection

from bridge.intake.poller import EventPoller, KeycloakAdminEventReader, poll_period
from bridge.model import Mode
from tests.test_intake_events import FakeQueue

KC = "http://kc.test"
REALM = "demo"
NOW_MS = 1_767_225_600_000
MINUTE = 60_000
DAY = 86_400_000
LOOKBACK = 10_000  # the poller's default look-back, ms


@dataclass
class KeycloakEventStore:
    """Stored events as Keycloak's admin REST API serves them."""

    user_events: list[dict[str, Any]] = field(default_factory=list)
    admin_events: list[dict[str, Any]] = field(default_factory=list)
    expiration_s: int | None = 7 * 86_400
    config_status: int = 200
    failing_offsets: set[int] = field(default_factory=set)
    #: Serve like Keycloak before 26.2: `dateFrom` only as yyyy-MM-dd, newest first.
    by_day: bool = False
    user_requests: list[dict[str, str]] = field(default_factory=list)
    admin_requests: list[dict[str, str]] = field(default_factory=list)

    def install(self, mock: responses.RequestsMock) -> None:
        mock.post(
            f"{KC}/realms/{REALM}/protocol/openid-connect/token",
            json={"access_token": "t", "expires_in": 300, "token_type": "Bearer"},
        )
        base = f"{KC}/admin/realms/{REALM}"
        mock.add_callback(
            "GET", f"{base}/events", callback=lambda r: self._serve(r, self.user_events)
        )
        mock.add_callback(
            "GET",
            f"{base}/admin-events",
            callback=lambda r: self._serve(r, self.admin_events, admin=True),
        )
        mock.add_callback("GET", f"{base}/events/config", callback=lambda r: self._config())

    def _serve(
        self,
        request: requests.PreparedRequest,
        events: list[dict[str, Any]],
        *,
        admin: bool = False,
    ) -> Any:
        query = {k: v[0] for k, v in parse_qs(urlsplit(request.url or "").query).items()}
        (self.admin_requests if admin else self.user_requests).append(query)
        first, size = int(query["first"]), int(query["max"])
        if first in self.failing_offsets:
            return (500, {}, json.dumps({"error": "unknown_error"}))
        if self.by_day:
            return self._serve_by_day(query, events, first, size)
        assert query["direction"] == "asc"
        selected = sorted(
            (e for e in events if e["time"] >= int(query["dateFrom"])), key=lambda e: e["time"]
        )
        return (200, {}, json.dumps(selected[first : first + size]))

    @staticmethod
    def _serve_by_day(
        query: dict[str, str], events: list[dict[str, Any]], first: int, size: int
    ) -> Any:
        try:
            day = datetime.strptime(query["dateFrom"], "%Y-%m-%d").replace(tzinfo=UTC)
        except ValueError:
            message = "Invalid value for 'Date(From)', expected format is yyyy-MM-dd"
            return (400, {}, json.dumps({"error": message}))
        since = int(day.timestamp() * 1000)
        selected = sorted(
            (e for e in events if e["time"] >= since), key=lambda e: e["time"], reverse=True
        )
        return (200, {}, json.dumps(selected[first : first + size]))

    def _config(self) -> Any:
        config = {"eventsEnabled": True, "eventsExpiration": self.expiration_s}
        return (self.config_status, {}, json.dumps(config))


class CursorTable:
    def __init__(self) -> None:
        self.cursors: dict[str, dict[str, Any]] = {}
        self.writes: Counter[str] = Counter()

    def get_cursor(self, name: str) -> dict[str, Any] | None:
        value = self.cursors.get(name)
        return json.loads(json.dumps(value)) if value is not None else None

    def set_cursor(self, name: str, value: dict[str, Any]) -> None:
        self.writes[name] += 1
        self.cursors[name] = json.loads(json.dumps(value))


def login(event_id: str | None, time_ms: int, user: str, **extra: Any) -> dict[str, Any]:
    event = {
        "time": time_ms,
        "type": "LOGIN",
        "realmId": "6f1c",
        "userId": user,
        "sessionId": f"s-{user}",
    }
    if event_id is not None:
        event["id"] = event_id
    return event | extra


def membership(event_id: str, time_ms: int, user: str) -> dict[str, Any]:
    return {
        "id": event_id,
        "time": time_ms,
        "realmId": "6f1c",
        "authDetails": {"realmId": "master", "clientId": "c0ffee", "userId": "admin"},
        "operationType": "CREATE",
        "resourceType": "GROUP_MEMBERSHIP",
        "resourcePath": f"users/{user}/groups/g-1",
        "representation": json.dumps({"id": "g-1", "name": "Zürich/Ops", "path": "/Zürich/Ops"}),
    }


class Harness:
    def __init__(self, store: KeycloakEventStore) -> None:
        self.store = store
        self.queue = FakeQueue()
        self.cursors = CursorTable()
        self.now_ms = NOW_MS
        self.mode: Mode = "enhanced"
        admin = KeycloakAdmin(
            connection=KeycloakOpenIDConnection(
                server_url=KC, realm_name=REALM, client_id="bridge", client_secret_key="s3cret"
            )
        )
        self.poller = EventPoller(
            KeycloakAdminEventReader(admin),
            self.queue,
            self.cursors,
            realm=REALM,
            mode_provider=lambda: self.mode,
            page_size=2,
            clock=lambda: self.now_ms / 1000,
        )

    def cursor(self, stream: str = "user") -> dict[str, Any] | None:
        return self.cursors.cursors.get(self.poller.cursor_name(stream))  # type: ignore[arg-type]

    def set_cursor(self, stream: str, value: dict[str, Any]) -> None:
        self.cursors.cursors[self.poller.cursor_name(stream)] = value  # type: ignore[arg-type]

    def queued_keys(self) -> list[str]:
        return [call["key"] for call in self.queue.calls]


@pytest.fixture
def store() -> Iterator[KeycloakEventStore]:
    events = KeycloakEventStore()
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        events.install(mock)
        yield events


@pytest.fixture
def harness(store: KeycloakEventStore) -> Harness:
    return Harness(store)


def test_first_start_reads_only_the_catch_up_window(
    harness: Harness, store: KeycloakEventStore
) -> None:
    store.user_events = [
        login("old", NOW_MS - 11 * MINUTE, "u-old"),
        login("new", NOW_MS - 9 * MINUTE, "u-new"),
    ]

    result = harness.poller.poll_once()

    assert store.user_requests[0] == {
        "dateFrom": str(NOW_MS - 10 * MINUTE - LOOKBACK),
        "direction": "asc",
        "first": "0",
        "max": "2",
    }
    assert harness.queued_keys() == ["id:u-new"]
    assert (result.events_read, result.triggers_queued) == (1, 1)
    assert harness.cursor() == {
        "time_ms": NOW_MS - 9 * MINUTE,
        "seen": {"new": NOW_MS - 9 * MINUTE},
        "checked_ms": NOW_MS,
    }


def test_pages_until_a_short_page(harness: Harness, store: KeycloakEventStore) -> None:
    store.user_events = [login(f"e{i}", NOW_MS - 5 * MINUTE + i, f"u{i}") for i in range(5)]

    result = harness.poller.poll_once()

    assert [r["first"] for r in store.user_requests] == ["0", "2", "4"]
    assert harness.queued_keys() == [f"id:u{i}" for i in range(5)]
    assert result.triggers_queued == 5
    assert harness.cursors.writes[harness.poller.cursor_name("user")] == 3  # once per page


def test_an_exactly_full_last_page_is_followed_by_an_empty_one(
    harness: Harness, store: KeycloakEventStore
) -> None:
    store.user_events = [login(f"e{i}", NOW_MS - MINUTE + i, f"u{i}") for i in range(4)]

    harness.poller.poll_once()

    assert [r["first"] for r in store.user_requests] == ["0", "2", "4"]
    assert len(harness.queue.calls) == 4


def test_events_sharing_the_cursor_millisecond_are_not_queued_twice(
    harness: Harness, store: KeycloakEventStore
) -> None:
    t = NOW_MS - MINUTE
    store.user_events = [login("a", t, "u-a"), login("b", t, "u-b")]
    harness.poller.poll_once()
    assert harness.cursor() == {"time_ms": t, "seen": {"a": t, "b": t}, "checked_ms": NOW_MS}

    store.user_events.append(login("c", t, "u-c"))  # committed late, same millisecond
    harness.now_ms += 5000
    result = harness.poller.poll_once()

    assert store.user_requests[-1]["dateFrom"] == str(t - LOOKBACK)
    assert harness.queued_keys() == ["id:u-a", "id:u-b", "id:u-c"]
    assert (result.events_read, result.duplicates, result.triggers_queued) == (3, 2, 1)
    assert harness.cursor()["seen"] == {"a": t, "b": t, "c": t}  # type: ignore[index]


def test_an_event_committed_after_a_later_one_was_read_is_still_queued(
    harness: Harness, store: KeycloakEventStore
) -> None:
    # Two concurrent logins: b (stamped later) commits first and is read; a commits after.
    t = NOW_MS - 3000
    store.user_events = [login("b", t + 40, "u-b")]
    harness.poller.poll_once()
    store.user_events.append(login("a", t, "u-a"))
    harness.now_ms += 1000

    result = harness.poller.poll_once()

    assert harness.queued_keys() == ["id:u-b", "id:u-a"]
    assert (result.duplicates, result.triggers_queued) == (1, 1)
    # the newest time handled does not go back
    assert harness.cursor()["time_ms"] == t + 40  # type: ignore[index]


def test_the_look_back_window_bounds_what_is_re_read_and_remembered(
    harness: Harness, store: KeycloakEventStore
) -> None:
    t = NOW_MS - MINUTE
    store.user_events = [login("old", t, "u-old"), login("new", t + LOOKBACK + 1, "u-new")]
    harness.poller.poll_once()
    assert harness.cursor()["seen"] == {"new": t + LOOKBACK + 1}  # type: ignore[index]

    harness.now_ms += 1000
    result = harness.poller.poll_once()

    assert store.user_requests[-1]["dateFrom"] == str(t + 1)
    assert (result.events_read, result.duplicates, result.triggers_queued) == (1, 1, 0)
    assert harness.queued_keys() == ["id:u-old", "id:u-new"]


def test_events_without_ids_are_told_apart_by_time_type_user_and_session(
    harness: Harness, store: KeycloakEventStore
) -> None:
    t = NOW_MS - MINUTE
    store.user_events = [login(None, t, "u-a"), login(None, t, "u-b")]
    harness.poller.poll_once()
    harness.now_ms += 5000

    second = harness.poller.poll_once()

    assert harness.queued_keys() == ["id:u-a", "id:u-b"]
    assert second.duplicates == 2


def test_a_queue_failure_leaves_the_cursor_and_the_next_poll_replays(
    harness: Harness, store: KeycloakEventStore
) -> None:
    store.user_events = [login("a", NOW_MS - MINUTE, "u-a")]
    harness.queue.fail = True

    failed = harness.poller.poll_once()

    assert harness.cursor() is None
    assert "database is locked" in failed.errors[0]

    harness.queue.fail = False
    harness.now_ms += 5000
    retried = harness.poller.poll_once()

    assert retried.triggers_queued == 1
    assert harness.queued_keys() == ["id:u-a"]


def test_a_failing_page_keeps_the_cursor_at_the_last_complete_page(
    harness: Harness, store: KeycloakEventStore
) -> None:
    store.user_events = [login(f"e{i}", NOW_MS - MINUTE + i, f"u{i}") for i in range(5)]
    store.failing_offsets = {2}

    failed = harness.poller.poll_once()

    assert harness.queued_keys() == ["id:u0", "id:u1"]
    assert harness.cursor() == {
        "time_ms": NOW_MS - MINUTE + 1,
        "seen": {"e0": NOW_MS - MINUTE, "e1": NOW_MS - MINUTE + 1},
        "checked_ms": None,
    }
    assert "user events" in failed.errors[0]

    store.failing_offsets = set()
    harness.now_ms += 5000
    harness.poller.poll_once()

    assert harness.queued_keys() == [f"id:u{i}" for i in range(5)]


def test_catch_up_after_downtime_reads_everything_stored_since(
    harness: Harness, store: KeycloakEventStore
) -> None:
    harness.set_cursor(
        "user", {"time_ms": NOW_MS - 2 * DAY, "ids": ["seen"], "checked_ms": NOW_MS - 2 * DAY}
    )
    harness.set_cursor(
        "admin", {"time_ms": NOW_MS - 2 * DAY, "ids": [], "checked_ms": NOW_MS - 2 * DAY}
    )
    store.user_events = [login("seen", NOW_MS - 2 * DAY, "u-seen")] + [
        login(f"e{i}", NOW_MS - DAY + i * MINUTE, f"u{i}") for i in range(3)
    ]

    result = harness.poller.poll_once()

    assert store.user_requests[0]["dateFrom"] == str(NOW_MS - 2 * DAY - LOOKBACK)
    assert harness.queued_keys() == ["id:u0", "id:u1", "id:u2"]
    assert (result.gap_detected, result.duplicates) == (False, 1)


def test_a_quiet_realm_is_not_mistaken_for_a_gap(
    harness: Harness, store: KeycloakEventStore
) -> None:
    store.expiration_s = 3600
    harness.set_cursor(
        "user", {"time_ms": NOW_MS - 3 * DAY, "ids": ["x"], "checked_ms": NOW_MS - 5000}
    )

    result = harness.poller.poll_once()

    assert result.gap_detected is False
    assert harness.queue.calls == []


def test_expired_events_heal_with_a_full_reconcile_in_enhanced_mode(
    harness: Harness, store: KeycloakEventStore, caplog: pytest.LogCaptureFixture
) -> None:
    store.expiration_s = 86_400
    harness.set_cursor(
        "user", {"time_ms": NOW_MS - 3 * DAY, "ids": [], "checked_ms": NOW_MS - 3 * DAY}
    )
    store.user_events = [login("recent", NOW_MS - MINUTE, "u-1")]

    with caplog.at_level(logging.WARNING, logger="bridge.intake.poller"):
        result = harness.poller.poll_once()

    assert result.gap_detected is True
    assert harness.queue.entries == {"all": {"reconcile"}, "id:u-1": {"login"}}
    assert "longer than Keycloak keeps them" in caplog.text


def test_expired_events_only_warn_in_jit_mode(harness: Harness, store: KeycloakEventStore) -> None:
    harness.mode = "jit"
    store.expiration_s = 86_400
    harness.set_cursor(
        "user", {"time_ms": NOW_MS - 3 * DAY, "ids": [], "checked_ms": NOW_MS - 3 * DAY}
    )

    result = harness.poller.poll_once()

    assert result.gap_detected is True
    assert harness.queue.calls == []


def test_admin_events_trigger_changes_in_enhanced_mode(
    harness: Harness, store: KeycloakEventStore
) -> None:
    store.admin_events = [
        membership("a1", NOW_MS - MINUTE, "u-1"),
        {
            "id": "a2",
            "time": NOW_MS - MINUTE + 1,
            "operationType": "UPDATE",
            "resourceType": "GROUP",
            "resourcePath": "groups/g-1",
        },
        {
            "id": "a3",
            "time": NOW_MS - MINUTE + 2,
            "operationType": "UPDATE",
            "resourceType": "CLIENT",
        },
    ]

    result = harness.poller.poll_once()

    assert harness.queue.entries == {"id:u-1": {"change"}, "all": {"reconcile"}}
    assert harness.queue.calls[0]["source"] == "poll:admin-events"
    assert (result.triggers_queued, result.ignored) == (2, 1)


def test_jit_mode_does_not_read_admin_events(harness: Harness, store: KeycloakEventStore) -> None:
    harness.mode = "jit"
    store.admin_events = [membership("a1", NOW_MS - MINUTE, "u-1")]

    harness.poller.poll_once()

    assert harness.queue.calls == []
    assert store.admin_requests == []
    assert harness.cursor("admin") is None


def test_a_malformed_stored_event_is_skipped_and_does_not_block_the_stream(
    harness: Harness, store: KeycloakEventStore
) -> None:
    store.user_events = [
        login("bad", NOW_MS - MINUTE, "u-bad", type=None),
        login("ok", NOW_MS - MINUTE + 1, "u-ok"),
    ]

    result = harness.poller.poll_once()

    assert harness.queued_keys() == ["id:u-ok"]
    assert result.malformed == 1
    assert harness.cursor()["time_ms"] == NOW_MS - MINUTE + 1  # type: ignore[index]


def test_a_corrupt_cursor_is_reported_not_guessed(harness: Harness) -> None:
    harness.set_cursor("user", {"time": "yesterday"})

    result = harness.poller.poll_once()

    assert "reset it" in result.errors[0]
    assert harness.queue.calls == []


def test_an_unreadable_expiration_setting_does_not_stop_the_poll(
    harness: Harness, store: KeycloakEventStore
) -> None:
    store.config_status = 403
    harness.set_cursor(
        "user", {"time_ms": NOW_MS - 3 * DAY, "ids": [], "checked_ms": NOW_MS - 3 * DAY}
    )
    store.user_events = [login("recent", NOW_MS - MINUTE, "u-1")]

    result = harness.poller.poll_once()

    assert result.errors == ()
    assert harness.queued_keys() == ["id:u-1"]


@pytest.mark.parametrize(
    ("interval", "period"), [(0.2, 0.15), (1.0, 0.75), (2.0, 1.5), (5.0, 4.5), (60.0, 59.5)]
)
def test_the_poller_runs_often_enough_for_a_login_to_land_within_the_interval(
    interval: float, period: float
) -> None:
    assert poll_period(interval) == pytest.approx(period)


def test_an_event_store_answering_500_is_named_with_its_likely_cause(
    harness: Harness, store: KeycloakEventStore
) -> None:
    """Phase Two's keycloak-events adds a second events store; without
    --spi-events-store--provider=jpa Keycloak uses none and every read answers 500."""
    store.user_events = [login("e0", NOW_MS - MINUTE, "u0")]
    store.failing_offsets = {0}

    failed = harness.poller.poll_once()

    assert harness.queued_keys() == []
    error = failed.errors[0]
    assert error.startswith(f"user events of realm {REALM}: ")
    assert "event store answered 500" in error
    assert "--spi-events-store--provider=jpa" in error
    assert "docs/phase-two.md" in error


# --------------------------------------------------------------------------------------
# Keycloak before 26.2: `dateFrom` only as a day, newest first. Same cursor, same triggers.


def test_a_keycloak_that_wants_days_gets_exactly_the_events_since_the_cursor(
    harness: Harness, store: KeycloakEventStore
) -> None:
    store.by_day = True
    store.user_events = [
        login("old", NOW_MS - 11 * MINUTE, "u-old"),  # same day, before the catch-up window
        *(login(f"e{i}", NOW_MS - 5 * MINUTE + i, f"u{i}") for i in range(5)),
    ]

    result = harness.poller.poll_once()

    assert result.errors == ()
    assert store.user_requests[0]["dateFrom"] == str(NOW_MS - 10 * MINUTE - LOOKBACK)
    # The cursor is on 2025-12-31 (UTC); the day before covers any server time zone.
    assert {r["dateFrom"] for r in store.user_requests[1:]} == {"2025-12-30"}
    assert "direction" not in store.user_requests[1]
    assert harness.queued_keys() == [f"id:u{i}" for i in range(5)]  # oldest first, once each
    assert harness.cursor() == {
        "time_ms": NOW_MS - 5 * MINUTE + 4,
        "seen": {f"e{i}": NOW_MS - 5 * MINUTE + i for i in range(5)},
        "checked_ms": NOW_MS,
    }


def test_by_day_a_later_poll_queues_only_what_is_new_including_late_commits(
    harness: Harness, store: KeycloakEventStore
) -> None:
    store.by_day = True
    t = NOW_MS - 3000
    store.user_events = [login("b", t + 40, "u-b"), login("c", t + 40, "u-c")]
    harness.poller.poll_once()
    store.user_events += [login("a", t, "u-a"), login("d", t + 50, "u-d")]  # a committed late
    harness.now_ms += 1000

    result = harness.poller.poll_once()

    queued = harness.queued_keys()
    assert sorted(queued[:2]) == ["id:u-b", "id:u-c"]  # one millisecond: either order
    assert queued[2:] == ["id:u-a", "id:u-d"]
    assert (result.duplicates, result.triggers_queued) == (2, 2)
    assert harness.cursor()["time_ms"] == t + 50  # type: ignore[index]
    # The epoch form is tried once per reader, not on every poll.
    assert sum(r["dateFrom"].isdigit() for r in store.user_requests) == 1


def test_by_day_admin_events_are_read_the_same_way(
    harness: Harness, store: KeycloakEventStore
) -> None:
    store.by_day = True
    store.admin_events = [membership(f"m{i}", NOW_MS - MINUTE + i, f"u{i}") for i in range(3)]

    result = harness.poller.poll_once()

    assert result.errors == ()
    assert harness.queued_keys() == ["id:u0", "id:u1", "id:u2"]

"""The shared HTTP layer: retries, Retry-After, the error taxonomy, dry run, rate limits."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest
import requests
import responses

from bridge.targets.base import (
    AlreadyExistsError,
    BadRequestError,
    DryRunRejectedError,
    NotFoundError,
    TransientError,
    UnauthorizedError,
)
from bridge.targets.http import Backoff, HttpClient, TokenBucket, parse_retry_after

API = "https://tenant.example/api/v1/"
KEY = "sk-very-secret-123"


def client(sleeps: list[float] | None = None, **options: object) -> HttpClient:
    recorded = sleeps if sleeps is not None else []
    defaults: dict[str, object] = {
        "headers": {"Authorization": f"Bearer {KEY}"},
        "sleep": recorded.append,
        "backoff": Backoff(base=1.0, cap=8.0, jitter=0.0),
        "max_retries": 3,
    }
    return HttpClient(API, **{**defaults, **options})  # type: ignore[arg-type]


@responses.activate
def test_get_returns_decoded_json_and_sends_the_auth_header() -> None:
    responses.get(API + "teams", json={"teams": []})
    assert client().get("teams", params={"page": 1}) == {"teams": []}
    sent = responses.calls[0].request
    assert sent.headers["Authorization"] == f"Bearer {KEY}"
    assert sent.url == API + "teams?page=1"


@responses.activate
def test_an_empty_204_answer_is_none() -> None:
    responses.delete(API + "admin/users/4", status=204)
    assert client().delete("admin/users/4") is None


@responses.activate
@pytest.mark.parametrize("method", ["POST", "PUT", "PATCH", "DELETE"])
def test_dry_run_refuses_every_mutating_method_before_sending(method: str) -> None:
    responses.add(method, API + "admin/users", json={})
    dry = client(dry_run=True)
    with pytest.raises(DryRunRejectedError, match=f"{method} .*admin/users was not sent"):
        dry.request(method, "admin/users", json={"email": "a@example.com"})
    assert len(responses.calls) == 0
    assert dry.stats.writes == 0


@responses.activate
def test_dry_run_still_reads() -> None:
    responses.get(API + "admin/users", json={"admin/users": []})
    assert client(dry_run=True).get("admin/users") == {"admin/users": []}


@responses.activate
@pytest.mark.parametrize("status", [429, 500, 502, 503, 504])
def test_transient_statuses_are_retried_with_exponential_backoff(status: int) -> None:
    for _ in range(3):
        responses.get(API + "teams", status=status)
    responses.get(API + "teams", json={"teams": [1]})
    sleeps: list[float] = []
    http = client(sleeps)
    assert http.get("teams") == {"teams": [1]}
    assert sleeps == [1.0, 2.0, 4.0]
    assert http.stats.retries == 3
    assert http.stats.reads == 1


@responses.activate
def test_retry_after_in_seconds_is_honoured() -> None:
    responses.post(API + "teams/3/invite_member", status=429, headers={"Retry-After": "7"})
    responses.post(API + "teams/3/invite_member", json={"role": "VIEWER"})
    sleeps: list[float] = []
    client(sleeps).post("teams/3/invite_member", json={"user_id": 1})
    assert sleeps == [7.0]


@responses.activate
def test_retry_after_as_an_http_date_is_honoured() -> None:
    later = format_datetime(datetime.now(UTC) + timedelta(seconds=30), usegmt=True)
    responses.get(API + "teams", status=503, headers={"Retry-After": later})
    responses.get(API + "teams", json={})
    sleeps: list[float] = []
    client(sleeps).get("teams")
    assert len(sleeps) == 1
    assert 20.0 < sleeps[0] <= 30.0


def test_parse_retry_after_reads_seconds_dates_and_garbage() -> None:
    now = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)
    assert parse_retry_after("12", now) == 12.0
    assert parse_retry_after("Thu, 01 Jan 2026 12:00:45 GMT", now) == 45.0
    assert parse_retry_after("Thu, 01 Jan 2026 11:00:00 GMT", now) == 0.0
    assert parse_retry_after("soon", now) is None
    assert parse_retry_after(None, now) is None


@responses.activate
def test_retries_run_out_into_a_transient_error_with_retry_after() -> None:
    responses.get(API + "admin/users", status=429, headers={"Retry-After": "3"})
    http = client(max_retries=2)
    with pytest.raises(TransientError, match="HTTP 429 after 3 attempts") as caught:
        http.get("admin/users")
    assert caught.value.retry_after == 3.0
    assert len(responses.calls) == 3


@responses.activate
def test_a_retry_after_longer_than_max_wait_is_handed_back_at_once() -> None:
    responses.get(API + "teams", status=429, headers={"Retry-After": "3600"})
    sleeps: list[float] = []
    with pytest.raises(TransientError, match="asked to wait 3600 s") as caught:
        client(sleeps, max_wait=60.0).get("teams")
    assert caught.value.retry_after == 3600.0
    assert sleeps == []
    assert len(responses.calls) == 1


@responses.activate
@pytest.mark.parametrize("failure", [requests.ConnectionError("reset"), requests.Timeout("slow")])
def test_connection_errors_and_timeouts_are_retried(failure: Exception) -> None:
    responses.get(API + "teams", body=failure)
    responses.get(API + "teams", json={"ok": True})
    sleeps: list[float] = []
    assert client(sleeps).get("teams") == {"ok": True}
    assert sleeps == [1.0]


@responses.activate
def test_connection_errors_that_persist_become_transient_without_retry_after() -> None:
    responses.get(API + "teams", body=requests.ConnectionError("refused"))
    with pytest.raises(TransientError, match="ConnectionError") as caught:
        client(max_retries=1).get("teams")
    assert caught.value.retry_after is None


@responses.activate
@pytest.mark.parametrize("status", [401, 403])
def test_unauthorized_is_never_retried_and_never_names_the_key(status: int) -> None:
    responses.get(API + "admin/users", status=status, json={"error": f"bad token {KEY}"})
    sleeps: list[float] = []
    with pytest.raises(UnauthorizedError, match="check that the API key") as caught:
        client(sleeps).get("admin/users")
    assert len(responses.calls) == 1
    assert sleeps == []
    assert KEY not in str(caught.value)
    assert "***" in str(caught.value)


@responses.activate
@pytest.mark.parametrize(
    ("status", "body", "error"),
    [
        (404, {"error": "Team not found"}, NotFoundError),
        (409, {"error": "conflict"}, AlreadyExistsError),
        (422, {"error": "Email has already been taken"}, AlreadyExistsError),
        (422, {"error": "User is already a member of this team"}, AlreadyExistsError),
        (422, {"error": "Role not found"}, BadRequestError),
        (400, {"error": "Invalid scope"}, BadRequestError),
    ],
)
def test_client_errors_map_to_the_taxonomy(
    status: int, body: dict[str, str], error: type[Exception]
) -> None:
    responses.post(API + "teams/3/invite_member", status=status, json=body)
    with pytest.raises(error) as caught:
        client().post("teams/3/invite_member", json={})
    assert body["error"] in str(caught.value)
    assert "teams/3/invite_member" in str(caught.value)
    assert len(responses.calls) == 1


@responses.activate
def test_bad_request_names_the_status_and_quotes_only_an_excerpt() -> None:
    responses.put(API + "admin/users/1", status=400, body="x" * 5000)
    with pytest.raises(BadRequestError, match="rejected with 400") as caught:
        client().put("admin/users/1", json={})
    assert len(str(caught.value)) < 400


@responses.activate
def test_a_success_that_is_not_json_is_transient() -> None:
    responses.get(API + "teams", body="<html>proxy login</html>")
    with pytest.raises(TransientError, match="not JSON"):
        client().get("teams")


@responses.activate
def test_the_key_stays_out_of_repr_and_logs(caplog: pytest.LogCaptureFixture) -> None:
    responses.get(API + "teams", status=503)
    responses.get(API + "teams", json={})
    http = client()
    with caplog.at_level(logging.DEBUG):
        http.get("teams")
    assert "retrying" in caplog.text
    assert KEY not in caplog.text
    assert KEY not in repr(http)


@responses.activate
def test_stats_count_reads_and_writes_by_method() -> None:
    responses.get(API + "teams", json={})
    responses.post(API + "teams", json={})
    responses.put(API + "teams/1", json={})
    http = client()
    http.get("teams")
    http.get("teams")
    http.post("teams", json={})
    http.put("teams/1", json={})
    assert (http.stats.reads, http.stats.writes) == (2, 2)
    assert http.stats.by_method["GET"] == 2


def test_backoff_grows_exponentially_up_to_the_cap_with_bounded_jitter() -> None:
    backoff = Backoff(base=0.5, cap=4.0, jitter=0.5)
    assert [backoff.delay(n, rng=lambda: 0.0) for n in range(5)] == [0.5, 1.0, 2.0, 4.0, 4.0]
    assert backoff.delay(3, rng=lambda: 1.0) == 2.0


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def test_token_bucket_holds_requests_to_the_rate_after_the_burst() -> None:
    clock = FakeClock()
    bucket = TokenBucket(60.0, burst=2, clock=clock, sleep=clock.sleep)
    for _ in range(5):
        bucket.acquire()
    assert clock.sleeps == pytest.approx([1.0, 1.0, 1.0])


@responses.activate
def test_admin_users_and_every_other_path_keep_under_tines_limits_by_default() -> None:
    """Tines allows 500/minute on admin/users and 5,000 on the rest: at most 460 and 4,500
    here in any minute (a burst, then a steady rate), in two buckets, so a burst on one
    does not slow the other."""
    responses.get(API + "admin/users", json={})
    responses.get(API + "teams", json={})
    clock = FakeClock()
    http = client(sleep=clock.sleep, clock=clock)
    for _ in range(505):
        http.get("teams")
    # a burst of 500, then one request per 60/4000 s
    assert len(clock.sleeps) == 5
    assert sum(clock.sleeps) == pytest.approx(5 * 60 / 4000)
    clock.sleeps.clear()
    for _ in range(15):
        http.get("admin/users")
    # a burst of 10, then one request per 60/450 s: never more than 500 in a minute
    assert len(clock.sleeps) == 5
    assert sum(clock.sleeps) == pytest.approx(5 * 60 / 450)

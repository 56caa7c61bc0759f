"""The HTTP layer every target connector shares: retries, rate limits, dry run, error taxonomy.

One `HttpClient` per target. It turns HTTP outcomes into the errors of `bridge.targets.base`,
so connectors only decide what a call *means*:

- 429, 5xx, connection errors and timeouts are retried with exponential backoff and jitter,
  honouring `Retry-After` (seconds or an HTTP date). When retries run out, or the target asks
  for a longer wait than `max_wait` (a worker should not sleep for minutes), `TransientError`
  carries the delay the target asked for, so the queue can reschedule.
- 401/403 → `UnauthorizedError` at once (retrying a bad key only burns the rate limit),
  404 → `NotFoundError`, 409 or a 422 saying "already"/"taken" → `AlreadyExistsError`,
  any other 4xx → `BadRequestError` with the status and a short excerpt of the body.
- With `dry_run` on, every mutating method is refused with `DryRunRejectedError` right here,
  where requests are sent, so no planner bug can write to the target (SPEC §5).
- An optional token bucket per path prefix keeps low-limit endpoint groups (Tines allows
  500 requests/minute on `admin/users`) under their limit.

Secrets: the auth header values are never put into an error message, a log line or `repr`;
a response body that echoes one is redacted before it is quoted.
"""

from __future__ import annotations

import email.utils
import logging
import random
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import requests

from bridge.targets.base import (
    AlreadyExistsError,
    BadRequestError,
    DryRunRejectedError,
    NotFoundError,
    TransientError,
    UnauthorizedError,
    tls_failure,
)

log = logging.getLogger(__name__)

MUTATING_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
RETRYABLE_STATUSES = frozenset({429, 500, 502, 503, 504})
#: Tines allows 500 requests/minute on `admin/users`; stay clearly below it.
DEFAULT_RATE_LIMITS: Mapping[str, float] = {"admin/users": 450.0}
_EXCERPT_CHARS = 200

Sleep = Callable[[float], None]
Clock = Callable[[], float]


@dataclass(frozen=True)
class Backoff:
    """Exponential backoff with jitter: attempt n waits base·2ⁿ (at most `cap`), shortened by
    up to `jitter` of itself at random so that parallel workers do not retry in lockstep."""

    base: float = 0.5
    cap: float = 30.0
    jitter: float = 0.5

    def delay(self, attempt: int, rng: Callable[[], float] = random.random) -> float:
        ceiling = min(self.cap, self.base * (2.0**attempt))
        return ceiling * (1.0 - self.jitter * rng())


class TokenBucket:
    """Allows `per_minute` requests on average and at most `burst` back to back.

    Over any one minute at most `burst + per_minute` requests pass, so a limit of 450 with a
    burst of 10 stays under Tines' 500.
    """

    def __init__(
        self,
        per_minute: float,
        *,
        burst: float = 10.0,
        clock: Clock = time.monotonic,
        sleep: Sleep = time.sleep,
    ) -> None:
        if per_minute <= 0 or burst < 1:
            raise ValueError("a rate limit needs per_minute > 0 and burst >= 1")
        self._rate = per_minute / 60.0
        self._burst = burst
        self._tokens = burst
        self._clock = clock
        self._sleep = sleep
        self._updated = clock()
        self._lock = threading.Lock()

    def acquire(self) -> None:
        """Take one token, sleeping until one is available."""
        with self._lock:
            now = self._clock()
            self._tokens = min(self._burst, self._tokens + (now - self._updated) * self._rate)
            self._updated = now
            self._tokens -= 1.0
            wait = -self._tokens / self._rate if self._tokens < 0 else 0.0
        if wait > 0:
            self._sleep(wait)


@dataclass
class RequestStats:
    """Requests made, for benchmarks: one count per logical call (`by_method`), plus the
    extra attempts retries cost (`retries`)."""

    by_method: Counter[str] = field(default_factory=Counter)
    retries: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def count(self, method: str, *, retry: bool = False) -> None:
        with self._lock:
            if retry:
                self.retries += 1
            else:
                self.by_method[method] += 1

    @property
    def reads(self) -> int:
        return sum(n for method, n in self.by_method.items() if method not in MUTATING_METHODS)

    @property
    def writes(self) -> int:
        return sum(n for method, n in self.by_method.items() if method in MUTATING_METHODS)


class HttpClient:
    """JSON over HTTP to one target, with the behaviour described in the module docstring.

    `base_url` is the API root (`https://tenant.example/api/v1/`); request paths are relative
    to it (`admin/users`), and rate limits are keyed by the prefix of that relative path.
    """

    def __init__(
        self,
        base_url: str,
        *,
        headers: Mapping[str, str] | None = None,
        timeout: float = 30.0,
        verify_tls: bool = True,
        dry_run: bool = False,
        max_retries: int = 4,
        backoff: Backoff | None = None,
        max_wait: float = 60.0,
        rate_limits: Mapping[str, float] | None = DEFAULT_RATE_LIMITS,
        sleep: Sleep = time.sleep,
        clock: Clock = time.monotonic,
        session: requests.Session | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/") + "/"
        self.timeout = timeout
        self.verify_tls = verify_tls
        self.dry_run = dry_run
        self.max_retries = max_retries
        self.backoff = backoff or Backoff()
        self.max_wait = max_wait
        self.stats = RequestStats()
        self._sleep = sleep
        self._session = session or requests.Session()
        self._session.headers.update(headers or {})
        self._secrets = _secret_values(headers or {})
        self._limiters = {
            prefix.strip("/"): TokenBucket(per_minute, clock=clock, sleep=sleep)
            for prefix, per_minute in (rate_limits or {}).items()
        }

    def __repr__(self) -> str:
        return f"HttpClient(base_url={self.base_url!r}, dry_run={self.dry_run})"

    def get(self, path: str, params: Mapping[str, Any] | None = None) -> Any:
        return self.request("GET", path, params=params)

    def post(self, path: str, json: Any = None) -> Any:
        return self.request("POST", path, json=json)

    def put(self, path: str, json: Any = None) -> Any:
        return self.request("PUT", path, json=json)

    def delete(self, path: str) -> Any:
        return self.request("DELETE", path)

    def request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        json: Any = None,
    ) -> Any:
        """Send one request (retrying transient failures) and return the decoded JSON body,
        or None for an empty body."""
        method = method.upper()
        path = path.lstrip("/")
        where = f"{method} {self.base_url}{path}"
        if self.dry_run and method in MUTATING_METHODS:
            raise DryRunRejectedError(f"dry run is on: {where} was not sent")
        self.stats.count(method)
        limiter = self._limiter_for(path)
        attempt = 0
        while True:
            if limiter is not None:
                limiter.acquire()
            try:
                response = self._session.request(
                    method,
                    self.base_url + path,
                    params=params,
                    json=json,
                    timeout=self.timeout,
                    verify=self.verify_tls,
                )
            except requests.exceptions.SSLError as exc:
                raise tls_failure(where, exc) from None
            except (requests.ConnectionError, requests.Timeout) as exc:
                problem, retry_after = f"{type(exc).__name__} (no response)", None
            else:
                if response.status_code not in RETRYABLE_STATUSES:
                    return self._decode(where, response)
                problem = f"HTTP {response.status_code}"
                retry_after = parse_retry_after(response.headers.get("Retry-After"))
            if attempt >= self.max_retries:
                raise TransientError(
                    f"{where} failed with {problem} after {attempt + 1} attempts; "
                    "the target is overloaded or unreachable, the work will be retried later",
                    retry_after=retry_after,
                )
            if retry_after is not None and retry_after > self.max_wait:
                raise TransientError(
                    f"{where} failed with {problem}; the target asked to wait "
                    f"{retry_after:.0f} s, longer than this client waits ({self.max_wait:.0f} s)",
                    retry_after=retry_after,
                )
            wait = retry_after if retry_after is not None else self.backoff.delay(attempt)
            log.info("%s: %s, retrying in %.2f s", where, problem, wait)
            self.stats.count(method, retry=True)
            attempt += 1
            self._sleep(wait)

    def close(self) -> None:
        self._session.close()

    def _limiter_for(self, path: str) -> TokenBucket | None:
        for prefix, limiter in self._limiters.items():
            if path == prefix or path.startswith(prefix + "/"):
                return limiter
        return None

    def _decode(self, where: str, response: requests.Response) -> Any:
        status = response.status_code
        if status < 400:
            if not response.content:
                return None
            try:
                return response.json()
            except ValueError:
                raise TransientError(
                    f"{where} answered {status} with a body that is not JSON: "
                    f"{self._excerpt(response)}"
                ) from None
        excerpt = self._excerpt(response)
        if status in (401, 403):
            raise UnauthorizedError(
                f"{where} was refused with {status}: check that the API key is valid and has "
                f"the rights this call needs (a tenant-owner key for admin endpoints). {excerpt}"
            )
        if status == 404:
            raise NotFoundError(f"{where} answered 404: {excerpt}")
        lowered = excerpt.lower()
        if status == 409 or (status == 422 and ("already" in lowered or "taken" in lowered)):
            raise AlreadyExistsError(f"{where} answered {status} (conflict): {excerpt}")
        raise BadRequestError(f"{where} was rejected with {status}: {excerpt}")

    def _excerpt(self, response: requests.Response) -> str:
        text = " ".join(response.text.split())
        for secret in self._secrets:
            text = text.replace(secret, "***")
        if len(text) > _EXCERPT_CHARS:
            text = text[:_EXCERPT_CHARS] + "…"
        return text or "(empty body)"


def parse_retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """`Retry-After` as seconds from now: either delta-seconds or an HTTP date. None when
    absent or unreadable; a date in the past means "now" (0)."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())


def _secret_values(headers: Mapping[str, str]) -> list[str]:
    """Header values that carry credentials, and the bare token inside `Bearer <token>`."""
    secrets: list[str] = []
    for name, value in headers.items():
        if name.lower() in ("authorization", "x-user-token", "x-api-key") and value:
            secrets.append(value)
            scheme, _, token = value.partition(" ")
            if token and scheme.lower() in ("bearer", "token"):
                secrets.append(token)
    return sorted(secrets, key=len, reverse=True)

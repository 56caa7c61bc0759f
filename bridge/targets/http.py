"""The HTTP transport every target shares: retries, rate limits, dry run, error taxonomy.

`Transport` is the one core that sends a target's requests; `HttpClient` (JSON APIs: Tines)
builds on it, and the SCIM target adapts scim2-client to it (`scim_transport.py`). Everything
that must hold for every request to any target is enforced in `Transport.send`:

- 429, 5xx (but 501), connection errors and timeouts are retried with exponential backoff and
  jitter, honouring `Retry-After` (seconds or an HTTP date). When retries run out, or the
  target asks for a longer wait than `max_wait` (a worker should not sleep for minutes),
  `TransientError` carries the delay the target asked for, so the queue can reschedule.
- One status→error map (`error_for_status`): 401/403 → `UnauthorizedError` at once (retrying a
  bad key only burns the rate limit), 404 → `NotFoundError`, 409 or a 422 saying
  "already"/"taken" → `AlreadyExistsError`, any other 4xx (and 501) → `BadRequestError`, each
  with the status and what the server said.
- With `dry_run` on, every mutating method is refused with `DryRunRejectedError` right here,
  where requests are sent, so no planner bug can write to the target (docs/design.md, Safety).
- Every request is counted (`RequestStats`): one per call, plus the retries it cost; and
  every attempt is told to `observe` (method and status code, None when no answer came), which
  the service turns into metrics.
- An optional token bucket per path prefix keeps low-limit endpoint groups (Tines allows
  500 requests/minute on `admin/users`) under their limit, and one for every other path (`*`)
  keeps concurrent readers and writers under the target's general limit (Tines: 5,000).

Secrets: credentials are never put into an error message, a log line or `repr`; a response
body that echoes one is redacted before it is quoted.
"""

from __future__ import annotations

import email.utils
import logging
import random
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import requests

from bridge.httpenv import settle_environment
from bridge.targets.base import (
    AlreadyExistsError,
    BadRequestError,
    DryRunRejectedError,
    NotFoundError,
    TargetError,
    TransientError,
    UnauthorizedError,
    tls_failure,
)

log = logging.getLogger(__name__)

MUTATING_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
RETRYABLE_STATUSES = frozenset({429, 500, 502, 503, 504})
#: Tines allows 500 requests/minute on `admin/users` and 5,000 on most other endpoints (per
#: IP address and token); stay below both. `*` is every path no other prefix names.
DEFAULT_RATE_LIMITS: Mapping[str, float] = {"admin/users": 450.0, "*": 4000.0}
#: Requests a bucket lets through back to back (default 10): over any one minute at most
#: burst + rate pass, 4,500 of Tines' 5,000 for `*`, so a full read's few hundred team
#: pages are not spread over seconds.
DEFAULT_RATE_BURSTS: Mapping[str, float] = {"*": 500.0}
_EXCERPT_CHARS = 200

Sleep = Callable[[float], None]
Clock = Callable[[], float]
#: Told of every attempt: the method, and the status code (None: no answer came).
RequestObserver = Callable[[str, int | None], None]


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


def error_for_status(where: str, status: int, detail: str, *, credential_hint: str) -> TargetError:
    """The one map from a refused request (not retried, or retried in vain) to an error."""
    if status in (401, 403):
        return UnauthorizedError(f"{where} was refused with {status}: {credential_hint}. {detail}")
    if status == 404:
        return NotFoundError(f"{where} answered 404: {detail}")
    lowered = detail.lower()
    if status == 409 or (status == 422 and ("already" in lowered or "taken" in lowered)):
        return AlreadyExistsError(f"{where} answered {status} (conflict): {detail}")
    return BadRequestError(f"{where} was rejected with {status}: {detail}")


class Transport:
    """Sends one target's requests with the guarantees in the module docstring.

    `base_url` is joined with each request's path as given. `label` prefixes every message
    (`SCIM`); `credential_hint` says what to check when the target refuses the credentials;
    `detail` extracts what the server said from an error response (default: an excerpt of
    the body). `secrets` (and credential headers) are redacted from every quoted body.
    """

    def __init__(
        self,
        base_url: str,
        *,
        label: str = "",
        credential_hint: str = "check the target's credentials and their rights",
        headers: Mapping[str, str] | None = None,
        secrets: Sequence[str] = (),
        detail: Callable[[requests.Response], str] | None = None,
        timeout: float = 30.0,
        verify_tls: bool = True,
        dry_run: bool = False,
        max_retries: int = 4,
        backoff: Backoff | None = None,
        max_wait: float = 60.0,
        rate_limits: Mapping[str, float] | None = None,
        rate_bursts: Mapping[str, float] | None = None,
        sleep: Sleep = time.sleep,
        clock: Clock = time.monotonic,
        session: requests.Session | None = None,
        observe: RequestObserver | None = None,
    ) -> None:
        self.base_url = base_url
        self.observe = observe
        self.label = label
        self.credential_hint = credential_hint
        self.timeout = timeout
        self.verify_tls = verify_tls
        self.dry_run = dry_run
        self.max_retries = max_retries
        self.backoff = backoff or Backoff()
        self.max_wait = max_wait
        self.stats = RequestStats()
        self._sleep = sleep
        self._detail = detail
        if session is None:
            session = requests.Session()
            settle_environment(session)
        self._session = session
        self._session.headers.update(headers or {})
        self._secrets = sorted(
            {*_secret_values(headers or {}), *(s for s in secrets if s)}, key=len, reverse=True
        )
        bursts = rate_bursts or {}
        self._limiters = {
            prefix.strip("/"): TokenBucket(
                per_minute, burst=bursts.get(prefix, 10.0), clock=clock, sleep=sleep
            )
            for prefix, per_minute in (rate_limits or {}).items()
        }

    def __repr__(self) -> str:
        return f"{type(self).__name__}(base_url={self.base_url!r}, dry_run={self.dry_run})"

    def send(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        """Send one request, retrying transient failures; return a response below 400 or
        raise the error `error_for_status` names. `kwargs` go to `requests` (params, json…)."""
        method = method.upper()
        where = f"{self.label} {method} {self.base_url}{path}".lstrip()
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
                    timeout=self.timeout,
                    verify=self.verify_tls,
                    **kwargs,
                )
            except requests.exceptions.SSLError as exc:
                self._observe(method, None)
                raise tls_failure(where, exc) from None
            except (requests.ConnectionError, requests.Timeout) as exc:
                self._observe(method, None)
                problem, retry_after = f"{type(exc).__name__} (no response)", None
            else:
                self._observe(method, response.status_code)
                if response.status_code < 400:
                    return response
                if response.status_code not in RETRYABLE_STATUSES:
                    raise error_for_status(
                        where,
                        response.status_code,
                        self.describe(response),
                        credential_hint=self.credential_hint,
                    )
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

    def _observe(self, method: str, status: int | None) -> None:
        if self.observe is not None:
            self.observe(method, status)

    def describe(self, response: requests.Response) -> str:
        """What the server said about a failure, short and with secrets redacted."""
        said = self._detail(response) if self._detail is not None else ""
        return self.redact(said) if said else self.excerpt(response)

    def excerpt(self, response: requests.Response) -> str:
        text = self.redact(" ".join(response.text.split()))
        if len(text) > _EXCERPT_CHARS:
            text = text[:_EXCERPT_CHARS] + "…"
        return text or "(empty body)"

    def redact(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, "***")
        return text

    def close(self) -> None:
        self._session.close()

    def _limiter_for(self, path: str) -> TokenBucket | None:
        for prefix, limiter in self._limiters.items():
            if prefix != "*" and (path == prefix or path.startswith(prefix + "/")):
                return limiter
        return self._limiters.get("*")


class HttpClient(Transport):
    """JSON over HTTP to one target (Tines).

    `base_url` is the API root (`https://tenant.example/api/v1/`); request paths are relative
    to it (`admin/users`), and rate limits are keyed by the prefix of that relative path.
    """

    def __init__(
        self,
        base_url: str,
        *,
        rate_limits: Mapping[str, float] | None = DEFAULT_RATE_LIMITS,
        rate_bursts: Mapping[str, float] | None = DEFAULT_RATE_BURSTS,
        credential_hint: str = (
            "check that the API key is valid and has the rights this call needs "
            "(a tenant-owner key for admin endpoints)"
        ),
        **options: Any,
    ) -> None:
        super().__init__(
            base_url.rstrip("/") + "/",
            rate_limits=rate_limits,
            rate_bursts=rate_bursts,
            credential_hint=credential_hint,
            **options,
        )

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
        path = path.lstrip("/")
        response = self.send(method, path, params=params, json=json)
        if not response.content:
            return None
        try:
            return response.json()
        except ValueError:
            raise TransientError(
                f"{method.upper()} {self.base_url}{path} answered {response.status_code} with "
                f"a body that is not JSON: {self.excerpt(response)}"
            ) from None


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

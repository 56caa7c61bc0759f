"""The one place SCIM requests are sent: retries, dry run, error mapping, request counts.

scim2-client builds and validates SCIM payloads but leaves sending to an engine; its own engine
needs httpx2, which is not a dependency here, so this engine sends with `requests`. Everything
that must hold for every request is enforced in `request()`, below every verb:

- dry run refuses POST/PUT/PATCH/DELETE with DryRunRejectedError before anything is sent;
- 429, 5xx (but 501), connection errors and timeouts are retried with exponential backoff that
  honours Retry-After, then raised as TransientError (with the server's Retry-After);
- 401/403 → UnauthorizedError, 404 → NotFoundError, 409 → AlreadyExistsError, any other 4xx
  (and 501) → BadRequestError, each naming the method, path and the server's SCIM detail;
- the bearer token lives only in an auth object whose repr hides it, never in a message.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import requests
from scim2_client.client import BaseSyncSCIMClient
from scim2_models import Group, ScimProvider, User

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
from bridge.targets.http import parse_retry_after

log = logging.getLogger(__name__)

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
RETRIED_STATUSES = frozenset({429, 500, 502, 503, 504})


@dataclass
class RequestStats:
    """Requests actually sent (retries included), for benchmarks and metrics."""

    reads: int = 0
    writes: int = 0


@dataclass(frozen=True)
class RetryPolicy:
    """Bounded exponential backoff. A Retry-After longer than `max_delay` is not waited for
    here: the TransientError carries it so the worker requeues the user instead of blocking."""

    attempts: int = 4
    base_delay: float = 0.5
    max_delay: float = 30.0

    def delay(self, attempt: int, retry_after: float | None) -> float:
        backoff: float = min(self.base_delay * 2.0**attempt, self.max_delay)
        return backoff if retry_after is None else max(backoff, float(retry_after))


class BearerAuth(requests.auth.AuthBase):
    """Adds the bearer token to each request; its repr never shows the token."""

    def __init__(self, token: str) -> None:
        self._token = token

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        request.headers["Authorization"] = f"Bearer {self._token}"
        return request

    def __repr__(self) -> str:
        return "BearerAuth(token=***)"


def _scim_detail(response: requests.Response) -> str:
    """The server's own explanation (SCIM error `detail` / `scimType`), shortened."""
    try:
        body = response.json()
    except ValueError:
        return response.text[:200]
    if not isinstance(body, dict):
        return ""
    parts = [str(body[key]) for key in ("scimType", "detail") if body.get(key)]
    return ": ".join(parts)[:300]


def error_for(method: str, path: str, response: requests.Response) -> TargetError:
    """The connector error for a failed response that is not retried."""
    status = response.status_code
    detail = _scim_detail(response)
    where = f"SCIM {method} {path} answered {status}" + (f" ({detail})" if detail else "")
    if status in (401, 403):
        return UnauthorizedError(
            f"{where}; check scim_token and the rights of the token on the SCIM service"
        )
    if status == 404:
        return NotFoundError(where)
    if status == 409:
        return AlreadyExistsError(where)
    if status in RETRIED_STATUSES:
        return TransientError(
            f"{where}; gave up after retries",
            parse_retry_after(response.headers.get("Retry-After")),
        )
    return BadRequestError(f"{where}; the request was refused as invalid and will not be retried")


class ScimHttpClient(BaseSyncSCIMClient):
    """A scim2-client engine over a `requests.Session` with the guarantees above."""

    def __init__(
        self,
        base_url: str,
        token: str,
        *,
        dry_run: bool = False,
        verify_tls: bool = True,
        timeout: float = 10,
        retry: RetryPolicy | None = None,
        sleep: Callable[[float], None] = time.sleep,
        session: requests.Session | None = None,
    ) -> None:
        super().__init__(provider=ScimProvider(models=[User, Group]))
        self.base_url = base_url.rstrip("/")
        self.dry_run = dry_run
        self.timeout = timeout
        self.retry = retry or RetryPolicy()
        self.stats = RequestStats()
        self._sleep = sleep
        self._session = session or requests.Session()
        self._session.auth = BearerAuth(token)
        self._session.verify = verify_tls
        self._session.headers["Accept"] = "application/scim+json, application/json"

    def __repr__(self) -> str:
        return f"ScimHttpClient({self.base_url!r}, dry_run={self.dry_run})"

    def close(self) -> None:
        self._session.close()

    def request(self, method: str, url: str, **kwargs: Any) -> requests.Response:
        method = method.upper()
        if self.dry_run and method not in SAFE_METHODS:
            raise DryRunRejectedError(f"dry run: SCIM {method} {url} was not sent")
        if "json" in kwargs:
            kwargs.setdefault("headers", {})["Content-Type"] = "application/scim+json"
        attempt = 0
        while True:
            response: requests.Response | None = None
            try:
                response = self._send_once(method, url, kwargs)
            except requests.exceptions.SSLError as exc:
                raise tls_failure(f"SCIM {method} {url}", exc) from None
            except (requests.ConnectionError, requests.Timeout) as exc:
                problem = f"SCIM {method} {url} failed: {type(exc).__name__}"
            if response is not None and response.status_code < 400:
                return response
            if response is not None and response.status_code not in RETRIED_STATUSES:
                raise error_for(method, url, response)
            retry_after = None
            if response is not None:
                retry_after = parse_retry_after(response.headers.get("Retry-After"))
                problem = f"SCIM {method} {url} answered {response.status_code}"
            attempt += 1
            delay = self.retry.delay(attempt - 1, retry_after)
            if attempt >= self.retry.attempts or delay > self.retry.max_delay:
                if response is not None:
                    raise error_for(method, url, response)
                raise TransientError(
                    f"{problem} after {attempt} attempts; is {self.base_url} reachable?"
                )
            log.warning("%s; retry %d in %.1fs", problem, attempt, delay)
            self._sleep(delay)

    def _send_once(self, method: str, url: str, kwargs: dict[str, Any]) -> requests.Response:
        if method in SAFE_METHODS:
            self.stats.reads += 1
        else:
            self.stats.writes += 1
        return self._session.request(
            method, self.base_url + url, timeout=self.timeout, allow_redirects=False, **kwargs
        )

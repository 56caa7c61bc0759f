"""scim2-client over the targets' one HTTP transport (`bridge.targets.http.Transport`).

scim2-client builds and validates SCIM payloads but leaves sending to an engine; its own
engine needs httpx2, which is not a dependency here. `ScimHttpClient` is an engine that sends
every request through `Transport.send`, so SCIM gets the retries (with Retry-After), the one
status→error map, the dry-run guard and the request counts every target has. What is SCIM's
own: the `application/scim+json` content type, the server's SCIM error `detail`/`scimType` in
messages, and a bearer token that lives only in an auth object whose repr hides it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import requests
from scim2_client.client import BaseSyncSCIMClient
from scim2_models import Group, ScimProvider, User

from bridge.targets.http import Backoff, RequestObserver, RequestStats, Transport

#: SCIM services are usually not rate limited like Tines; give up sooner.
SCIM_MAX_RETRIES = 3
SCIM_MAX_WAIT = 30.0


class BearerAuth(requests.auth.AuthBase):
    """Adds the bearer token to each request; its repr never shows the token."""

    def __init__(self, token: str) -> None:
        self._token = token

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        request.headers["Authorization"] = f"Bearer {self._token}"
        return request

    def __repr__(self) -> str:
        return "BearerAuth(token=***)"


def scim_detail(response: requests.Response) -> str:
    """The server's own explanation (SCIM error `scimType` / `detail`), shortened; empty when
    the body is not a SCIM error (the transport then quotes the body)."""
    try:
        body = response.json()
    except ValueError:
        return ""
    if not isinstance(body, dict):
        return ""
    parts = [str(body[key]) for key in ("scimType", "detail") if body.get(key)]
    return ": ".join(parts)[:300]


class ScimHttpClient(BaseSyncSCIMClient):
    """A scim2-client engine that sends through a `Transport`."""

    def __init__(
        self,
        base_url: str,
        token: str,
        *,
        dry_run: bool = False,
        verify_tls: bool = True,
        timeout: float = 10,
        max_retries: int = SCIM_MAX_RETRIES,
        backoff: Backoff | None = None,
        max_wait: float = SCIM_MAX_WAIT,
        sleep: Callable[[float], None] = time.sleep,
        session: requests.Session | None = None,
        observe: RequestObserver | None = None,
    ) -> None:
        super().__init__(provider=ScimProvider(models=[User, Group]))
        session = session or requests.Session()
        session.auth = BearerAuth(token)
        self.transport = Transport(
            base_url.rstrip("/"),
            label="SCIM",
            credential_hint="check scim_token and the rights of the token on the SCIM service",
            headers={"Accept": "application/scim+json, application/json"},
            secrets=[token],
            detail=scim_detail,
            timeout=timeout,
            verify_tls=verify_tls,
            dry_run=dry_run,
            max_retries=max_retries,
            backoff=backoff,
            max_wait=max_wait,
            sleep=sleep,
            session=session,
            observe=observe,
        )

    @property
    def base_url(self) -> str:
        return self.transport.base_url

    @property
    def dry_run(self) -> bool:
        return self.transport.dry_run

    @property
    def stats(self) -> RequestStats:
        return self.transport.stats

    def __repr__(self) -> str:
        return f"ScimHttpClient({self.base_url!r}, dry_run={self.dry_run})"

    def close(self) -> None:
        self.transport.close()

    def request(self, method: str, url: str, **kwargs: Any) -> requests.Response:
        if "json" in kwargs:
            kwargs.setdefault("headers", {})["Content-Type"] = "application/scim+json"
        return self.transport.send(method, url, allow_redirects=False, **kwargs)

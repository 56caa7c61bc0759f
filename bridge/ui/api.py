"""The console's way to act: the service's own admin API (`/api/v1`), called in-process.

Status, plan, audit, approval and mapping changes go through the very endpoints scripts use,
with the admin token, so the console can never do something the API would refuse, nor do it
differently.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import httpx
from starlette.types import ASGIApp

#: Set on the admin API calls the console makes for a signed-in operator, so approvals and
#: queued syncs say they came from the console. Only an admin-token holder can call the API
#: at all: this attributes, it does not authorise.
CALLER_HEADER = "X-JIT-Bridge-Caller"


@dataclass(frozen=True)
class ApiAnswer:
    status: int
    body: Any
    text: str

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300

    @property
    def detail(self) -> str:
        """The API's own words for a refusal (FastAPI's `detail`, else the body)."""
        if isinstance(self.body, dict) and "detail" in self.body:
            return str(self.body["detail"])
        return self.text or f"HTTP {self.status}"


@dataclass
class AdminApiClient:
    app: ASGIApp
    token: str
    #: Generous: a plan for everyone reads the whole of Keycloak and the target.
    timeout: float = 600.0

    async def call(
        self,
        method: str,
        path: str,
        *,
        params: dict[str, Any] | None = None,
        content: bytes | None = None,
        prefix: str = "/api/v1",
    ) -> ApiAnswer:
        transport = httpx.ASGITransport(app=self.app)
        async with httpx.AsyncClient(
            transport=transport, base_url="http://console.internal", timeout=self.timeout
        ) as client:
            answer = await client.request(
                method,
                f"{prefix}{path}",
                params=params,
                content=content,
                headers={"Authorization": f"Bearer {self.token}", CALLER_HEADER: "console"},
            )
        try:
            body = answer.json()
        except ValueError:
            body = None
        return ApiAnswer(answer.status_code, body, answer.text)

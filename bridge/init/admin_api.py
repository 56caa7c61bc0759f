"""The few Keycloak admin REST calls `jit-bridge init` makes, as a Keycloak admin.

The admin's password is held in memory only for this process (Keycloak's admin tokens last a
minute, so a 401 logs in again once); it is never written anywhere. Every failure becomes an
`AdminApiError` that says what was being done and why Keycloak refused it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import requests

Json = dict[str, Any]


class AdminApiError(Exception):
    """A Keycloak admin call failed. `status` is the HTTP status (None: no answer)."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


@dataclass
class AdminCredentials:
    username: str
    password: str = field(repr=False)
    realm: str = "master"
    client_id: str = "admin-cli"


class KeycloakAdminApi:
    """One realm's admin API (plus the server info), called with an admin's token."""

    def __init__(
        self,
        url: str,
        realm: str,
        credentials: AdminCredentials,
        *,
        verify_tls: bool = True,
        timeout: float = 15,
    ) -> None:
        self.url = url.rstrip("/")
        self.realm = realm
        self._credentials = credentials
        self._verify = verify_tls
        self._timeout = timeout
        self._session = requests.Session()
        self._token: str | None = None

    # -- login -----------------------------------------------------------------------------
    def login(self) -> None:
        creds = self._credentials
        token_url = f"{self.url}/realms/{quote(creds.realm, safe='')}/protocol/openid-connect/token"
        try:
            answer = self._session.post(
                token_url,
                data={
                    "grant_type": "password",
                    "client_id": creds.client_id,
                    "username": creds.username,
                    "password": creds.password,
                },
                verify=self._verify,
                timeout=self._timeout,
            )
        except requests.RequestException as exc:
            raise AdminApiError(f"cannot reach Keycloak at {self.url}: {_reason(exc)}") from None
        if answer.status_code in (400, 401):
            raise AdminApiError(
                f"Keycloak refused the admin login of '{creds.username}' in realm "
                f"'{creds.realm}' ({_keycloak_error(answer)})",
                answer.status_code,
            )
        if answer.status_code == 404:
            raise AdminApiError(
                f"{self.url} has no realm '{creds.realm}' to log the admin in "
                "(is this Keycloak's base URL, and --admin-realm right?)",
                404,
            )
        if answer.status_code != 200:
            raise AdminApiError(
                f"admin login at {token_url} answered HTTP {answer.status_code}",
                answer.status_code,
            )
        self._token = str(answer.json()["access_token"])

    # -- HTTP ------------------------------------------------------------------------------
    def request(
        self, method: str, path: str, what: str, *, json: Any = None, params: Json | None = None
    ) -> requests.Response:
        """`path` is relative to the server (`admin/realms/x/clients`). Raises AdminApiError
        naming `what` for any answer other than 2xx (a 404 is returned to the caller)."""
        if self._token is None:
            self.login()
        for attempt in (1, 2):
            try:
                answer = self._session.request(
                    method,
                    f"{self.url}/{path}",
                    json=json,
                    params=params,
                    headers={"Authorization": f"Bearer {self._token}"},
                    verify=self._verify,
                    timeout=self._timeout,
                )
            except requests.RequestException as exc:
                raise AdminApiError(f"{what}: cannot reach Keycloak: {_reason(exc)}") from None
            if answer.status_code == 401 and attempt == 1:
                self.login()  # the admin token expired (they last a minute)
                continue
            break
        if answer.status_code == 404 or answer.ok:
            return answer
        if answer.status_code == 403:
            raise AdminApiError(
                f"{what}: Keycloak refused (HTTP 403): '{self._credentials.username}' lacks "
                f"the admin rights for this in realm '{self.realm}'",
                403,
            )
        raise AdminApiError(
            f"{what}: Keycloak answered HTTP {answer.status_code} ({_keycloak_error(answer)})",
            answer.status_code,
        )

    def get(self, path: str, what: str, **params: Any) -> Any:
        answer = self.request("GET", path, what, params=params or None)
        if answer.status_code == 404:
            return None
        return answer.json()

    @property
    def realm_path(self) -> str:
        return f"admin/realms/{quote(self.realm, safe='')}"

    # -- what init reads -------------------------------------------------------------------
    def check_realm(self) -> Json:
        realm = self.get(self.realm_path, f"reading realm '{self.realm}'")
        if realm is None:
            raise AdminApiError(f"Keycloak at {self.url} has no realm '{self.realm}'", 404)
        result: Json = realm
        return result

    def event_listener_providers(self) -> set[str]:
        """Ids of the event listeners installed in the server (`jit-bridge`, Phase Two's
        `ext-event-webhook`, ...), from the server info."""
        info = self.get("admin/serverinfo", "reading the server info") or {}
        listeners = info.get("providers", {}).get("eventsListener", {}).get("providers", {})
        return set(listeners)

    def find_client(self, client_id: str) -> Json | None:
        found = self.get(
            f"{self.realm_path}/clients", f"looking up client '{client_id}'", clientId=client_id
        )
        for client in found or []:
            if client.get("clientId") == client_id:
                result: Json = client
                return result
        return None

    def realm_management_id(self) -> str:
        client = self.find_client("realm-management")
        if client is None:
            raise AdminApiError(f"realm '{self.realm}' has no 'realm-management' client")
        return str(client["id"])

    def realm_management_role(self, management_id: str, name: str) -> Json:
        role = self.get(
            f"{self.realm_path}/clients/{management_id}/roles/{quote(name, safe='')}",
            f"reading role '{name}'",
        )
        if role is None:
            hint = (
                " (organization: selectors need Keycloak 26.7 or later)"
                if name == "view-organizations"
                else ""
            )
            raise AdminApiError(f"'realm-management' has no role '{name}'{hint}")
        result: Json = role
        return result


def _reason(exc: requests.RequestException) -> str:
    text = str(exc)
    if isinstance(exc, requests.ConnectionError):
        return "connection refused or host unknown"
    if isinstance(exc, requests.Timeout):
        return "timed out"
    return text.splitlines()[0] if text else type(exc).__name__


def _keycloak_error(answer: requests.Response) -> str:
    try:
        body = answer.json()
    except ValueError:
        return f"HTTP {answer.status_code}"
    if isinstance(body, dict):
        for key in ("error_description", "errorMessage", "error"):
            if body.get(key):
                return str(body[key])
    return f"HTTP {answer.status_code}"

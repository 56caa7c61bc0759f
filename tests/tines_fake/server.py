"""An in-memory Tines tenant speaking the REST API of reference/tines.md §4.

Only what the bridge calls, shaped exactly as documented: `admin/users` (list with
`filter=TENANT_OWNER` and `include=team_memberships`, get by id or by email, create, update,
delete), `teams`
(list with `scope`, create, get, update, delete; a case-group id works wherever a team id
does), `teams/{id}/members`, `invite_member`, `remove_member`. Lists page with `page` and
`per_page` (default 20, at most 500) and carry `meta`.

Where Tines is silent the fake chooses, and the choice is an option so tests cover both:

- `existing_member="update"` (default): `invite_member` for a member changes their role and
  answers 200 with the member. `"reject"`: it answers 422 `{"error": "User is already a member
  of this team"}`, even with the same role.
- `email_lookup=True` (default): `GET admin/users/{email}` finds a user by email, as Tines'
  "Users: Get" page documents. `False` plays an older tenant that only knows ids and answers
  404 for an email, as it would for any id it does not have.
- `PUT admin/users/{id}` changes `email` too (Tines' "Users: Update" page lists it among the
  optional fields); a taken email is a 422 as on create.
- Removing a non-member answers 404 `{"error": "User is not a member of this team"}`.
- Error bodies are Rails-style `{"error": "..."}`; a taken email is a 422 saying "has already
  been taken". Rate limiting (when injected) is a 429 with an optional `Retry-After`.
- Case groups cannot be created through the API (Tines documents no call); load them with
  `state.load` or `state.add_case_group`. `team_memberships` lists teams, not case groups.
- Unknown or missing fields in a body answer 400/422; role names are free text.

Fault injection (`fail_next`, `slow`, `reset_connections`) and a request log let tests assert
exactly which calls were made.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import ThreadingHTTPServer
from typing import Any
from urllib.parse import unquote, urlencode

from bridge.model import CaseGroup, Member, TargetState, TargetUser, Team
from tests.tines_fake.handler import Answer, JsonHandler
from tests.tines_fake.handler import start as start_server

API = "/api/v1/"
DEFAULT_PER_PAGE = 20
MAX_PER_PAGE = 500
_STAMP = "2026-01-01T00:00:00Z"

Json = Any


class FakeError(Exception):
    """An HTTP error answer: status plus a Rails-style body."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


@dataclass
class LoggedRequest:
    """One request as the fake saw it. `status` is None for a connection it reset."""

    method: str
    path: str
    query: dict[str, str]
    body: Json
    status: int | None = None

    @property
    def is_write(self) -> bool:
        return self.method in ("POST", "PUT", "PATCH", "DELETE")


@dataclass
class _User:
    id: int
    email: str
    first_name: str | None = None
    last_name: str | None = None
    admin: bool = False
    tenant_permissions: list[str] = field(default_factory=list)
    is_active: bool = True

    def as_json(self) -> Json:
        return {
            "id": self.id,
            "scim_uid": None,
            "email": self.email,
            "admin": self.admin,
            "tenant_permissions": list(self.tenant_permissions),
            "is_active": self.is_active,
            "created_at": _STAMP,
            "updated_at": _STAMP,
            "first_name": self.first_name,
            "last_name": self.last_name,
            "last_seen": None,
        }


@dataclass
class _Container:
    """A team or a case group: both hold members keyed by user id."""

    id: int
    name: str
    team_id: int | None = None  # set for a case group
    personal: bool = False
    members: dict[int, str] = field(default_factory=dict)


class FakeState:
    """The tenant's data, guarded by one lock (the server is threaded)."""

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.users: dict[int, _User] = {}
        self.containers: dict[int, _Container] = {}
        self._next_user = 1
        self._next_container = 1

    # -- test helpers -----------------------------------------------------------------
    def load(self, state: TargetState) -> None:
        """Replace everything with a snapshot (docs/design.md, Formats). Ids must be integers, as
        in Tines."""
        with self.lock:
            self.users.clear()
            self.containers.clear()
            for user in state.users:
                self.users[_int_id(user.id)] = _User(
                    id=_int_id(user.id),
                    email=user.email,
                    first_name=user.first_name,
                    last_name=user.last_name,
                    admin=user.tenant_owner,
                    tenant_permissions=list(user.tenant_permissions),
                    is_active=user.active,
                )
            for team in state.teams:
                self.containers[_int_id(team.id)] = _Container(
                    _int_id(team.id), team.name, members=_members(team.members)
                )
                for group in team.case_groups:
                    self.containers[_int_id(group.id)] = _Container(
                        _int_id(group.id),
                        group.name,
                        team_id=_int_id(team.id),
                        members=_members(group.members),
                    )
            self._next_user = max(self.users, default=0) + 1
            self._next_container = max(self.containers, default=0) + 1

    def export(self) -> TargetState:
        """Everything as a snapshot, ordered by id (personal teams left out)."""
        with self.lock:
            users = [
                TargetUser(
                    id=str(u.id),
                    email=u.email,
                    first_name=u.first_name,
                    last_name=u.last_name,
                    tenant_owner=u.admin,
                    tenant_permissions=list(u.tenant_permissions),
                    active=u.is_active,
                )
                for u in sorted(self.users.values(), key=lambda u: u.id)
            ]
            teams = [
                Team(
                    id=str(team.id),
                    name=team.name,
                    members=_member_models(team.members),
                    case_groups=[
                        CaseGroup(
                            id=str(group.id), name=group.name, members=_member_models(group.members)
                        )
                        for group in self._groups_of(team.id)
                    ],
                )
                for team in self._teams(scope="standard")
            ]
            return TargetState(users=users, teams=teams)

    def add_user(self, email: str, **fields: Any) -> int:
        with self.lock:
            user = _User(id=self._next_user, email=email, **fields)
            self.users[user.id] = user
            self._next_user += 1
            return user.id

    def add_team(self, name: str, *, personal: bool = False) -> int:
        return self._add_container(name, None, personal)

    def add_case_group(self, team_id: int, name: str) -> int:
        return self._add_container(name, team_id, False)

    def role(self, container_id: int | str, user_id: int | str) -> str | None:
        with self.lock:
            return self.containers[int(container_id)].members.get(int(user_id))

    # -- internals --------------------------------------------------------------------
    def _add_container(self, name: str, team_id: int | None, personal: bool) -> int:
        with self.lock:
            container = _Container(self._next_container, name, team_id=team_id, personal=personal)
            self.containers[container.id] = container
            self._next_container += 1
            return container.id

    def _teams(self, scope: str) -> list[_Container]:
        teams = [c for c in self.containers.values() if c.team_id is None]
        if scope == "standard":
            teams = [t for t in teams if not t.personal]
        elif scope == "personal_only":
            teams = [t for t in teams if t.personal]
        return sorted(teams, key=lambda t: t.id)

    def _groups_of(self, team_id: int) -> list[_Container]:
        return sorted(
            (c for c in self.containers.values() if c.team_id == team_id), key=lambda c: c.id
        )


@dataclass
class _Fault:
    remaining: int
    status: int
    retry_after: str | None
    path_prefix: str | None

    def matches(self, path: str) -> bool:
        return self.path_prefix is None or path.startswith(API + self.path_prefix.lstrip("/"))


class TinesFake:
    """The fake tenant and its HTTP server. `start()` binds 127.0.0.1 on a free port (or
    `port`); `url` is the tenant base URL to hand to `TinesTarget`."""

    def __init__(
        self,
        api_key: str = "fake-tines-key",
        *,
        existing_member: str = "update",
        email_lookup: bool = True,
        port: int = 0,
    ) -> None:
        if existing_member not in ("update", "reject"):
            raise ValueError("existing_member must be 'update' or 'reject'")
        self.api_key = api_key
        self.existing_member = existing_member
        self.email_lookup = email_lookup
        self.state = FakeState()
        self.requests: list[LoggedRequest] = []
        self._faults: list[_Fault] = []
        self._resets = 0
        self._delay = 0.0
        self._port = port
        self._server: ThreadingHTTPServer | None = None

    # -- lifecycle --------------------------------------------------------------------
    def start(self) -> TinesFake:
        self._server = start_server(_handler_for(self), self._port)
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    @property
    def url(self) -> str:
        if self._server is None:
            raise RuntimeError("the fake is not running; call start()")
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    # -- fault injection --------------------------------------------------------------
    def fail_next(
        self,
        n: int,
        status: int = 429,
        retry_after: float | str | None = None,
        path_prefix: str | None = None,
    ) -> None:
        """Answer the next `n` requests (under `path_prefix`, relative to /api/v1, if given)
        with `status`, without acting on them."""
        with self.state.lock:
            after = None if retry_after is None else str(retry_after)
            self._faults.append(_Fault(n, status, after, path_prefix))

    def slow(self, seconds: float) -> None:
        """Delay every answer by `seconds` (0 turns it off)."""
        self._delay = seconds

    def reset_connections(self, n: int) -> None:
        """Drop the connection (TCP reset, no answer) on the next `n` requests."""
        with self.state.lock:
            self._resets += n

    # -- request log ------------------------------------------------------------------
    def writes(self) -> list[LoggedRequest]:
        """Every mutating request received, including refused ones."""
        return [r for r in self.requests if r.is_write]

    def applied_writes(self) -> list[LoggedRequest]:
        """Mutating requests that succeeded (2xx): what actually changed the tenant."""
        return [r for r in self.writes() if r.status is not None and 200 <= r.status < 300]

    def clear_log(self) -> None:
        self.requests.clear()

    # -- dispatch (called by the handler) ---------------------------------------------
    def _fault_for(self, path: str) -> tuple[str, _Fault | None]:
        with self.state.lock:
            if self._resets > 0:
                self._resets -= 1
                return "reset", None
            for fault in self._faults:
                if fault.remaining > 0 and fault.matches(path):
                    fault.remaining -= 1
                    return "fail", fault
            return "ok", None

    def _handle(self, method: str, path: str, query: dict[str, str], body: Json) -> Json:
        parts = path[len(API) :].strip("/").split("/") if path.startswith(API) else []
        with self.state.lock:
            return _Api(self, query).route(method, parts, body)


class _Api:
    """The endpoints. Each method returns the JSON answer or raises FakeError."""

    def __init__(self, fake: TinesFake, query: dict[str, str]) -> None:
        self.fake = fake
        self.state = fake.state
        self.query = query

    def route(self, method: str, parts: list[str], body: Json) -> Json:
        routes: dict[tuple[str, ...], Callable[..., Json]] = {
            ("GET", "admin", "users"): self.list_users,
            ("POST", "admin", "users"): self.create_user,
            ("GET", "admin", "users", "@"): self.get_user,
            ("PUT", "admin", "users", "*"): self.update_user,
            ("DELETE", "admin", "users", "*"): self.delete_user,
            ("GET", "teams"): self.list_teams,
            ("POST", "teams"): self.create_team,
            ("GET", "teams", "*"): self.get_team,
            ("PUT", "teams", "*"): self.update_team,
            ("DELETE", "teams", "*"): self.delete_team,
            ("GET", "teams", "*", "members"): self.list_members,
            ("POST", "teams", "*", "invite_member"): self.invite_member,
            ("POST", "teams", "*", "remove_member"): self.remove_member,
        }
        for pattern, handler in routes.items():
            if pattern[0] == method and _path_matches(pattern[1:], parts):
                ids = [
                    int(p) if want == "*" else unquote(p)
                    for p, want in zip(parts, pattern[1:], strict=True)
                    if want in ("*", "@")
                ]
                return handler(*ids, body) if method in ("POST", "PUT") else handler(*ids)
        raise FakeError(404, f"No route matches {method} /{'/'.join(parts)}")

    # -- admin/users ------------------------------------------------------------------
    def list_users(self) -> Json:
        users = sorted(self.state.users.values(), key=lambda u: u.id)
        if self.query.get("filter") == "TENANT_OWNER":
            users = [u for u in users if u.admin]
        return self._page("admin/users", "admin/users", [self._user_json(u) for u in users])

    def get_user(self, ref: str) -> Json:
        """By id, or by email where the tenant accepts one in its place."""
        if ref.isdigit():
            return self._user_json(self._user(int(ref)))
        wanted = ref.lower()
        found = next((u for u in self.state.users.values() if u.email.lower() == wanted), None)
        if found is None or not self.fake.email_lookup:
            raise FakeError(404, f"User {ref} not found")
        return self._user_json(found)

    def _user_json(self, user: _User) -> Json:
        item = user.as_json()
        if self.query.get("include") == "team_memberships":
            item["team_memberships"] = [
                {"team_id": t.id, "team_name": t.name, "role": t.members[user.id]}
                for t in self.state._teams("all")
                if user.id in t.members
            ]
        return item

    def create_user(self, body: Json) -> Json:
        fields = _fields(
            body, {"email", "first_name", "last_name", "admin", "tenant_permissions", "is_active"}
        )
        email = fields.pop("email", None)
        if not isinstance(email, str) or "@" not in email:
            raise FakeError(422, "Email is invalid")
        if any(u.email.lower() == email.lower() for u in self.state.users.values()):
            raise FakeError(422, "Email has already been taken")
        user_id = self.state.add_user(email, **fields)
        return self.state.users[user_id].as_json()

    def update_user(self, user_id: int, body: Json) -> Json:
        user = self._user(user_id)
        fields = _fields(
            body, {"email", "first_name", "last_name", "admin", "tenant_permissions", "is_active"}
        )
        if "email" in fields:  # documented: "email — Optional. User email."
            email = fields["email"]
            if not isinstance(email, str) or "@" not in email:
                raise FakeError(422, "Email is invalid")
            others = (u for u in self.state.users.values() if u.id != user.id)
            if any(u.email.lower() == email.lower() for u in others):
                raise FakeError(422, "Email has already been taken")
        for name, value in fields.items():
            setattr(user, name, value)
        return user.as_json()

    def delete_user(self, user_id: int) -> Json:
        self._user(user_id)
        del self.state.users[user_id]
        for container in self.state.containers.values():
            container.members.pop(user_id, None)
        return None

    # -- teams ------------------------------------------------------------------------
    def list_teams(self) -> Json:
        scope = self.query.get("scope", "standard")
        if self.query.get("include_personal_teams") == "true":
            scope = "all"
        if scope not in ("all", "standard", "personal_only"):
            raise FakeError(400, f"Invalid scope {scope}")
        items = [self._team_json(t) for t in self.state._teams(scope)]
        return self._page("teams", "teams", items)

    def create_team(self, body: Json) -> Json:
        name = _fields(body, {"name"}).get("name")
        if not name:
            raise FakeError(422, "Name can't be blank")
        return {"id": self.state.add_team(name), "name": name}

    def get_team(self, container_id: int) -> Json:
        return self._team_json(self._container(container_id))

    def update_team(self, container_id: int, body: Json) -> Json:
        container = self._container(container_id)
        container.name = _fields(body, {"name"}).get("name") or container.name
        return {"id": container.id, "name": container.name}

    def delete_team(self, container_id: int) -> Json:
        self._container(container_id)
        for group in self.state._groups_of(container_id):
            del self.state.containers[group.id]
        del self.state.containers[container_id]
        return None

    # -- members ----------------------------------------------------------------------
    def list_members(self, container_id: int) -> Json:
        container = self._container(container_id)
        items = [
            self._member_json(self._user(uid), role)
            for uid, role in sorted(container.members.items())
        ]
        return self._page(f"teams/{container_id}/members", "members", items)

    def invite_member(self, container_id: int, body: Json) -> Json:
        container = self._container(container_id)
        fields = _fields(body, {"email", "user_id", "role"})
        if ("email" in fields) == ("user_id" in fields):
            raise FakeError(422, "Provide exactly one of email or user_id")
        role = fields.get("role") or "VIEWER"
        if "user_id" in fields:
            user = self._user(int(fields["user_id"]))
        else:
            email = str(fields["email"])
            known = [u for u in self.state.users.values() if u.email.lower() == email.lower()]
            user = known[0] if known else self.state.users[self.state.add_user(email)]
        if user.id in container.members and self.fake.existing_member == "reject":
            raise FakeError(422, "User is already a member of this team")
        container.members[user.id] = role
        return self._member_json(user, role)

    def remove_member(self, container_id: int, body: Json) -> Json:
        container = self._container(container_id)
        user_id = int(_fields(body, {"user_id"}).get("user_id") or 0)
        if user_id not in container.members:
            raise FakeError(404, "User is not a member of this team")
        del container.members[user_id]
        return {"deleted_id": user_id}

    # -- helpers ----------------------------------------------------------------------
    def _user(self, user_id: int) -> _User:
        user = self.state.users.get(user_id)
        if user is None:
            raise FakeError(404, f"User {user_id} not found")
        return user

    def _container(self, container_id: int) -> _Container:
        container = self.state.containers.get(container_id)
        if container is None:
            raise FakeError(404, f"Team {container_id} not found")
        return container

    def _team_json(self, container: _Container) -> Json:
        groups = [{"id": g.id, "name": g.name} for g in self.state._groups_of(container.id)]
        return {"id": container.id, "name": container.name, "groups": groups}

    @staticmethod
    def _member_json(user: _User, role: str) -> Json:
        return {
            "id": user.id,
            "first_name": user.first_name,
            "last_name": user.last_name,
            "email": user.email,
            "is_admin": user.admin,
            "created_at": _STAMP,
            "last_seen": None,
            "invitation_accepted": True,
            "role": role,
        }

    def _page(self, path: str, key: str, items: list[Json]) -> Json:
        try:
            page = max(1, int(self.query.get("page", "1")))
            per_page = min(MAX_PER_PAGE, max(1, int(self.query.get("per_page", DEFAULT_PER_PAGE))))
        except ValueError:
            raise FakeError(400, "page and per_page must be integers") from None
        pages = max(1, -(-len(items) // per_page))
        base = f"{self.fake.url}{API}{path}"

        def link(number: int) -> str:
            return f"{base}?{urlencode({**self.query, 'page': number, 'per_page': per_page})}"

        has_next = page < pages
        return {
            key: items[(page - 1) * per_page : page * per_page],
            "meta": {
                "current_page": link(page),
                "previous_page": link(page - 1) if page > 1 else None,
                "next_page": link(page + 1) if has_next else None,
                "next_page_number": page + 1 if has_next else None,
                "per_page": per_page,
                "pages": pages,
                "count": len(items),
            },
        }


def _handler_for(fake: TinesFake) -> type[JsonHandler]:
    class Handler(JsonHandler):
        def respond(
            self, method: str, path: str, query: dict[str, str], body: Json
        ) -> Answer | None:
            entry = LoggedRequest(method, path, query, body)
            fake.requests.append(entry)
            if fake._delay:
                time.sleep(fake._delay)
            outcome, fault = fake._fault_for(path)
            if outcome == "reset":
                self.reset()
                return None
            headers: dict[str, str] = {}
            if fault is not None:
                status, answer = fault.status, {"error": f"injected failure {fault.status}"}
                if fault.retry_after is not None:
                    headers["Retry-After"] = fault.retry_after
            elif self.headers.get("Authorization") != f"Bearer {fake.api_key}":
                status, answer = 401, {"error": "Unauthorized"}
            else:
                try:
                    answer = fake._handle(method, path, query, body)
                    status = 204 if method == "DELETE" else 200
                except FakeError as error:
                    status, answer = error.status, {"error": str(error)}
            entry.status = status
            return status, answer, headers

    return Handler


def _path_matches(pattern: tuple[str, ...], parts: list[str]) -> bool:
    if len(pattern) != len(parts):
        return False
    return all(
        want in (got, "*", "@") and (want != "*" or got.isdigit()) and (want != "@" or got != "")
        for want, got in zip(pattern, parts, strict=True)
    )


def _fields(body: Json, allowed: set[str]) -> dict[str, Any]:
    if body is None:
        return {}
    if not isinstance(body, dict):
        raise FakeError(400, "The body must be a JSON object")
    unknown = set(body) - allowed
    if unknown:
        raise FakeError(422, f"Unknown parameters: {', '.join(sorted(unknown))}")
    return dict(body)


def _int_id(value: str) -> int:
    if not value.isdigit():
        raise ValueError(f"Tines ids are integers; the snapshot holds id {value!r}")
    return int(value)


def _members(members: list[Member]) -> dict[int, str]:
    return {_int_id(m.user_id): m.role for m in members}


def _member_models(members: dict[int, str]) -> list[Member]:
    return [Member(user_id=str(uid), role=role) for uid, role in sorted(members.items())]

"""Tines as a target, through its REST API (`<tenant>/api/v1`, `Authorization: Bearer <key>`).

The key must be a tenant-owner API key: `admin/users` needs it. Calls made:

| what | call |
|---|---|
| users | `GET admin/users` (`per_page=500`, pages until `next_page_number` is null) |
| teams, case groups | `GET teams?scope=standard` (all but personal teams; case groups: `groups`) |
| members of a team or case group | `GET teams/{id}/members` |
| create user | `POST admin/users {email, first_name, last_name}` |
| update user | `PUT admin/users/{id}`, only the fields that change (`admin`, `is_active`, …) |
| change email | `PUT admin/users/{id} {email}` (documented among the update's fields) |
| one paired account | `GET admin/users/{id}?include=team_memberships` |
| add membership | `POST teams/{id}/invite_member {user_id, role}` |
| change role | see below |
| remove membership | `POST teams/{id}/remove_member {user_id}` |

Assumptions about behaviour Tines does not document (reference/tines.md §4.3, §4.8):

- **Case groups use the team endpoints.** Tines documents that `GET`/`DELETE teams/{id}` accept
  a case-group id; we assume `members`, `invite_member` and `remove_member` do as well, so a
  case-group membership is read and written with the case group's id in place of the team's.
  `TinesTarget._container` is the one place that would change if Tines exposes other calls.
- **Changing a role.** Tines has no documented call for it. The bridge sends `invite_member`
  with the user id and the new role. If Tines answers that the user is already a member (or
  answers success but reports the old role), the bridge removes the member and invites them
  again with the new role. That pair is one logical operation for the plan and the audit log;
  it is not atomic, so if the second call fails the user is briefly without the membership
  and the next reconcile (level-triggered) adds it back. Tines refuses to remove the last
  member of a team, so the role of a team's only member cannot be changed this way; that
  surfaces as a `BadRequestError`.
- **"Already a member" on add** is resolved by re-reading the members: success if the role
  already matches, otherwise a role change.
- **Removing a non-member** (404, or an error saying "not a member") counts as success.
- **Avatars** are not part of Tines' user API; `create_user` ignores `avatar_url`.
- **Finding one user by email.** `GET admin/users/{email}?include=team_memberships`: Tines
  documents that an email may stand in for the user id (tines.com API docs, "Users: Get",
  2026). Older tenants may not accept it; `user_lookup="auto"` (the default) notices (a 400,
  an answer for another user, or a 404 for an email that `POST admin/users` then calls taken)
  and falls back for good to listing `admin/users` (500 per page) until the email turns up:
  ⌈users/500⌉ requests. `"email"` and `"list"` force one way. For a login (`creating`),
  emails a fresh complete listing lacks are taken as absent without a request
  (`bridge.targets.tines_users.KnownEmails`), so a first login costs one `admin/users` call:
  the create. Any other read asks Tines, so a user added after the listing is never missed.
  Tenant owners (`filter=TENANT_OWNER`) are read only when the user is one, which is when the
  last-owner rule needs them.
  The user's team roles come from `team_memberships` (or, should Tines leave it out, from
  each team's members, so a missing field never hides a membership to remove); case-group
  roles from one `members` read per case group (Tines allows at most 3 per team), made only
  when the user exists.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from itertools import chain, islice
from typing import Any, Literal
from urllib.parse import quote

from bridge.model import CaseGroup, Member, TargetState, TargetUser, Team
from bridge.targets.base import (
    AlreadyExistsError,
    BadRequestError,
    NotFoundError,
    Target,
    TargetError,
)
from bridge.targets.http import HttpClient, RequestObserver
from bridge.targets.tines_users import KnownEmails

PER_PAGE = 500
USERS = "admin/users"

UserLookup = Literal["auto", "email", "list"]

log = logging.getLogger(__name__)


def tines_http(base_url: str, api_key: str, **client_options: Any) -> HttpClient:
    """The HTTP client for a tenant (`https://tenant.example`): API root and bearer auth set,
    anything else (`dry_run`, `sleep`, `max_retries`, …) passed on to `HttpClient`."""
    return HttpClient(
        base_url.rstrip("/") + "/api/v1/",
        headers={"Authorization": f"Bearer {api_key}", "Accept": "application/json"},
        **client_options,
    )


class TinesTarget(Target):
    """Reads and writes Tines users, teams, case groups and memberships.

    Pass `http` to supply a preconfigured client (tests, benchmarks, custom retries); it
    then carries dry run, TLS and timeout itself and the keyword arguments here are unused.
    `read_state` sends up to `read_concurrency` reads at once (the user pages, which
    `admin/users`' 500/minute limit slows, alongside the teams' member lists).
    `user_lookup` chooses how `read_user_state` finds one user (see the module docstring).
    """

    name = "tines"
    supports_email_change = True

    def __init__(
        self,
        base_url: str,
        api_key: str,
        *,
        dry_run: bool = False,
        verify_tls: bool = True,
        timeout: float = 30.0,
        http: HttpClient | None = None,
        read_concurrency: int = 4,
        user_lookup: UserLookup = "auto",
        known_emails: KnownEmails | None = None,
        observe: RequestObserver | None = None,
    ) -> None:
        self.read_concurrency = max(1, read_concurrency)
        self.user_lookup: UserLookup = user_lookup
        self.known = known_emails if known_emails is not None else KnownEmails()
        self.http = http or tines_http(
            base_url,
            api_key,
            timeout=timeout,
            verify_tls=verify_tls,
            dry_run=dry_run,
            observe=observe,
        )

    def __repr__(self) -> str:
        return f"TinesTarget({self.http.base_url!r}, dry_run={self.http.dry_run})"

    # -- reads ----------------------------------------------------------------------------
    def ping(self) -> None:
        # admin/users, not teams: it also proves the key is a tenant-owner key.
        self.http.get(USERS, params={"per_page": 1})

    def read_state(self) -> TargetState:
        started = self.known.begin_listing()
        with ThreadPoolExecutor(self.read_concurrency, thread_name_prefix="tines") as pool:
            user_items = self._pages(USERS, USERS)
            # The first request goes alone, so a bad key or a dead tenant fails at once.
            first = list(islice(user_items, 1))
            users = pool.submit(lambda: [_user(raw) for raw in chain(first, user_items)])
            try:
                raw_teams = self._teams()
                containers = [str(raw["id"]) for raw in raw_teams] + [
                    str(group["id"]) for raw in raw_teams for group in raw.get("groups") or []
                ]
                # One `Member` per (user, role) for the whole read: a user in three teams with
                # one role is one record, not three (a bulk read holds every membership).
                shared: dict[tuple[object, object], Member] = {}
                read = partial(self._members, shared=shared)
                members = dict(zip(containers, pool.map(read, containers), strict=True))
            finally:
                # A failure reading the users wins, as it would in a sequential read.
                read_users = users.result()
            teams = [
                _team_with(raw, members[str(raw["id"])], members.__getitem__) for raw in raw_teams
            ]
            self.known.replace((u.email for u in read_users), started)
            return TargetState(users=read_users, teams=teams)

    def refresh_caches(self) -> None:
        """List every email (no memberships), so a first login needs no read to learn the
        user is new. ⌈users/500⌉ `admin/users` requests; the service runs it every 15 min."""
        started = self.known.begin_listing()
        emails = [str(raw.get("email", "")) for raw in self._pages(USERS, USERS)]
        self.known.replace(emails, started)

    def read_user_state(
        self, email: str, *, creating: bool = False, account_id: str | None = None
    ) -> TargetState:
        # Only a caller that will create the user may take "absent" from memory (see Target),
        # and never for a user the store paired with an account.
        remembered = creating and account_id is None and self.known.absent(email)
        found = None if remembered else self._find_user(email)
        if found is None and account_id is not None:
            found = self._by_id(account_id, email)
        teams = self._teams()
        if found is None:
            return TargetState(teams=[_team_with(raw, [], lambda group_id: []) for raw in teams])
        user, raw_user = found
        owners: dict[str, TargetUser] = {}
        if user.tenant_owner:
            # The last-owner rule needs every owner only when this user is one.
            owners = {u.id: u for u in map(_user, self._pages(USERS, USERS, filter="TENANT_OWNER"))}
        owners[user.id] = user

        def only(members: list[Member]) -> list[Member]:
            return [m for m in members if m.user_id == user.id]

        def team_members(team_id: str) -> list[Member]:
            return only(self._members(team_id))

        if "team_memberships" in raw_user:
            roles = {str(m["team_id"]): m["role"] for m in raw_user["team_memberships"] or []}

            def team_members(team_id: str) -> list[Member]:  # cheaper, no request
                role = roles.get(team_id)
                return [] if role is None else [Member(user_id=user.id, role=role)]

        return TargetState(
            users=sorted(owners.values(), key=lambda u: u.email.lower()),
            teams=[
                _team_with(raw, team_members(str(raw["id"])), lambda gid: only(self._members(gid)))
                for raw in teams
            ],
        )

    # -- writes ---------------------------------------------------------------------------
    def create_user(
        self,
        email: str,
        first_name: str | None,
        last_name: str | None,
        avatar_url: str | None,
    ) -> TargetUser:
        body = _without_none({"email": email, "first_name": first_name, "last_name": last_name})
        try:
            created = _user(self.http.post(USERS, json=body))
        except AlreadyExistsError:
            self.known.add(email)
            if self.user_lookup == "auto":
                self._check_lookup_after_conflict(email)
            raise
        self.known.add(created.email)
        return created

    def update_user(
        self,
        user: TargetUser,
        *,
        first_name: str | None = None,
        last_name: str | None = None,
        tenant_owner: bool | None = None,
        tenant_permissions: list[str] | None = None,
        active: bool | None = None,
    ) -> TargetUser:
        body = _without_none(
            {
                "first_name": first_name,
                "last_name": last_name,
                "admin": tenant_owner,
                "tenant_permissions": tenant_permissions,
                "is_active": active,
            }
        )
        if not body:
            return user
        return _user(self.http.put(f"{USERS}/{user.id}", json=body))

    def change_email(self, user: TargetUser, email: str) -> TargetUser:
        """`PUT admin/users/{id} {"email": …}`: Tines documents `email` among the fields
        an update may change (tines.com API docs, "Users: Update")."""
        changed = _user(self.http.put(f"{USERS}/{user.id}", json={"email": email}))
        self.known.add(changed.email)
        return changed

    def add_membership(
        self, user: TargetUser, team_id: str, case_group_id: str | None, role: str
    ) -> None:
        container = self._container(team_id, case_group_id)
        try:
            self._invite(container, user, role)
        except AlreadyExistsError:
            current = self._role_of(container, user)
            if current is None:
                raise
            if current != role:
                # Tines just refused an invite with the new role: go straight to the
                # remove-and-invite half of a role change.
                self._reinvite(container, user, role)

    def change_role(
        self, user: TargetUser, team_id: str, case_group_id: str | None, role: str
    ) -> None:
        container = self._container(team_id, case_group_id)
        try:
            answered = self._invite(container, user, role)
        except AlreadyExistsError:
            answered = None
        if answered != role:
            self._reinvite(container, user, role)

    def remove_membership(self, user: TargetUser, team_id: str, case_group_id: str | None) -> None:
        self._remove(self._container(team_id, case_group_id), user)

    def close(self) -> None:
        self.http.close()

    # -- helpers --------------------------------------------------------------------------
    @staticmethod
    def _container(team_id: str, case_group_id: str | None) -> str:
        """The id the membership calls take: the case group's when there is one (assumed to
        work like a team id; see the module docstring)."""
        return case_group_id or team_id

    def _invite(self, container: str, user: TargetUser, role: str) -> str | None:
        """Invite (or re-invite) a member; returns the role Tines reports, if it does."""
        answer = self.http.post(
            f"teams/{container}/invite_member", json={"user_id": _wire_id(user.id), "role": role}
        )
        return answer.get("role") if isinstance(answer, dict) else None

    def _reinvite(self, container: str, user: TargetUser, role: str) -> None:
        """The fallback role change: remove the member, then invite them with the role."""
        self._remove(container, user)
        self._invite(container, user, role)

    def _remove(self, container: str, user: TargetUser) -> None:
        try:
            self.http.post(f"teams/{container}/remove_member", json={"user_id": _wire_id(user.id)})
        except NotFoundError:
            return
        except BadRequestError as error:
            if "not a member" not in str(error).lower():
                raise

    def _role_of(self, container: str, user: TargetUser) -> str | None:
        return next((m.role for m in self._members(container) if m.user_id == user.id), None)

    def _members(
        self, container: str, shared: dict[tuple[object, object], Member] | None = None
    ) -> list[Member]:
        where = f"GET teams/{container}/members"
        pages = self._pages(f"teams/{container}/members", "members")
        if shared is None:
            return [_member(raw, where) for raw in pages]
        return [_shared_member(raw, where, shared) for raw in pages]

    def _teams(self) -> list[dict[str, Any]]:
        # `standard` is every shared team; personal teams are private workspaces that no
        # mapping names and that the bridge must never prune.
        return list(self._pages("teams", "teams", scope="standard"))

    def _find_user(self, email: str) -> tuple[TargetUser, dict[str, Any]] | None:
        if self.user_lookup != "list":
            try:
                raw = self._by_email(email)
            except _LookupUnsupportedError as error:
                if self.user_lookup == "email":
                    raise BadRequestError(str(error)) from error
                self._fall_back_to_listing(str(error))
            else:
                if raw is None:
                    self.known.discard(email)
                    return None
                return _user(raw), raw
        return self._search_listing(email)

    def _by_id(self, account_id: str, email: str) -> tuple[TargetUser, dict[str, Any]] | None:
        """`GET admin/users/{id}`: the paired account, whatever its email is now; None on a
        404 (deleted in Tines). Found under the very email the lookup missed, the tenant
        does not look users up by email: list from now on."""
        try:
            raw = self.http.get(
                f"{USERS}/{quote(account_id, safe='')}", params={"include": "team_memberships"}
            )
        except NotFoundError:
            return None
        if not isinstance(raw, dict) or str(raw.get("id")) != account_id:
            raise BadRequestError(f"GET {USERS}/{account_id} answered for another user")
        if self.user_lookup == "auto" and str(raw.get("email", "")).lower() == email.lower():
            self._fall_back_to_listing(f"{email} was not found by email, yet by its id")
        return _user(raw), raw

    def _by_email(self, email: str) -> dict[str, Any] | None:
        """`GET admin/users/{email}`: the user, or None on a 404."""
        try:
            raw = self.http.get(
                f"{USERS}/{quote(email.strip(), safe='@+')}",
                params={"include": "team_memberships"},
            )
        except NotFoundError:
            return None
        except BadRequestError as error:
            raise _LookupUnsupportedError(f"{USERS}/{{email}} was refused: {error}") from error
        if not isinstance(raw, dict) or str(raw.get("email", "")).lower() != email.strip().lower():
            raise _LookupUnsupportedError(f"{USERS}/{{email}} answered for another user")
        return raw

    def _search_listing(self, email: str) -> tuple[TargetUser, dict[str, Any]] | None:
        """Page through `admin/users` until the email turns up; a search that reaches the
        last page has seen every email, which `known` keeps for later misses."""
        wanted = email.strip().lower()
        seen: list[str] = []
        started = self.known.begin_listing()
        for raw in self._pages(USERS, USERS, include="team_memberships"):
            address = str(raw.get("email", ""))
            if address.lower() == wanted:
                self.known.add(address)
                return _user(raw), raw
            seen.append(address)
        self.known.replace(seen, started)
        return None

    def _check_lookup_after_conflict(self, email: str) -> None:
        """The email is taken although the read before the plan did not find it: a race, a
        stale `known`, or a tenant that answers 404 to every lookup by email. Ask once."""
        try:
            if self._by_email(email) is None:
                self._fall_back_to_listing(f"a lookup of {email} says 404, yet it is taken")
        except _LookupUnsupportedError as error:
            self._fall_back_to_listing(str(error))
        except TargetError as error:
            log.info("could not check how Tines looks up %s: %s", email, error)

    def _fall_back_to_listing(self, why: str) -> None:
        if self.user_lookup != "list":
            log.warning(
                "Tines does not look users up by email here (%s); finding users by listing "
                '%s from now on (set tines_user_lookup = "list" to start that way)',
                why,
                USERS,
            )
            self.user_lookup = "list"

    def _pages(self, path: str, key: str, **params: str) -> Iterator[dict[str, Any]]:
        """Every item of a paginated list. Follows `meta.next_page_number` (or `next_page`)
        until it is null; a bare JSON array (how Tines documents `members`) is read until a
        page comes back short."""
        page = 1
        while True:
            body = self.http.get(path, params={**params, "page": page, "per_page": PER_PAGE})
            if isinstance(body, list):
                items: list[dict[str, Any]] = body
                next_page = page + 1 if len(items) >= PER_PAGE else None
            elif isinstance(body, dict) and isinstance(body.get(key), list):
                items = body[key]
                next_page = _next_page(body.get("meta"), page)
            else:
                raise BadRequestError(
                    f"GET {path} page {page}: expected a JSON list under {key!r}; "
                    "is the URL a Tines tenant's?"
                )
            yield from items
            if next_page is None:
                return
            page = next_page


class _LookupUnsupportedError(Exception):
    """The tenant does not answer `GET admin/users/{email}` as documented."""


def _next_page(meta: Any, page: int) -> int | None:
    if not isinstance(meta, Mapping):
        return None
    number = meta.get("next_page_number")
    if isinstance(number, int):
        if number <= page:
            raise BadRequestError(f"pagination went from page {page} back to page {number}")
        return number
    return page + 1 if meta.get("next_page") else None


def _user(raw: Mapping[str, Any]) -> TargetUser:
    """A user of `admin/users`, checked as validating the record would (a full read holds
    every user of the tenant: `TargetUser.trusted` spares validating each twice)."""
    try:
        permissions = list(raw.get("tenant_permissions") or [])
        return TargetUser.trusted(
            id=str(raw["id"]),
            email=_text(raw, "email"),
            first_name=_text_or_none(raw, "first_name"),
            last_name=_text_or_none(raw, "last_name"),
            tenant_owner=bool(raw.get("admin", False)),
            tenant_permissions=[_checked_text(p, "tenant_permissions") for p in permissions],
            active=bool(raw.get("is_active", True)),
        )
    except (KeyError, TypeError) as exc:
        raise BadRequestError(f"GET {USERS}: malformed user {_excerpt(raw)}: {exc}") from None


def _member(raw: Mapping[str, Any], where: str) -> Member:
    try:
        return Member.trusted(user_id=str(raw["id"]), role=_text(raw, "role"))
    except (KeyError, TypeError) as exc:
        raise BadRequestError(f"{where}: malformed member {_excerpt(raw)}: {exc}") from None


def _shared_member(
    raw: Mapping[str, Any], where: str, shared: dict[tuple[object, object], Member]
) -> Member:
    """`_member`, the same record for the same (id, role) as any read before it in `shared`
    (records are never changed once read, so sharing them is safe)."""
    try:
        key = (raw["id"], raw["role"])
        found = shared.get(key)
    except (KeyError, TypeError):  # a missing or unhashable (malformed) field
        return _member(raw, where)
    if found is None:
        found = shared[key] = _member(raw, where)
    return found


def _text(raw: Mapping[str, Any], key: str) -> str:
    return _checked_text(raw[key], key)


def _text_or_none(raw: Mapping[str, Any], key: str) -> str | None:
    value = raw.get(key)
    return None if value is None else _checked_text(value, key)


def _checked_text(value: Any, key: str) -> str:
    if not isinstance(value, str):
        raise TypeError(f"'{key}' is a {type(value).__name__}, not a string")
    return value


def _excerpt(raw: Any) -> str:
    return repr(raw)[:120]


def _team_with(
    raw: Mapping[str, Any],
    members: list[Member],
    group_members: Callable[[str], list[Member]],
) -> Team:
    """A team from its `GET teams` entry, with the members given and each case group's
    members from `group_members(case_group_id)`."""
    return Team(
        id=str(raw["id"]),
        name=raw["name"],
        members=members,
        case_groups=[
            CaseGroup(
                id=str(group["id"]), name=group["name"], members=group_members(str(group["id"]))
            )
            for group in raw.get("groups") or []
        ],
    )


def _wire_id(target_id: str) -> int | str:
    """Tines ids are integers; the model keeps every target id as a string."""
    return int(target_id) if target_id.isdigit() else target_id


def _without_none(fields: dict[str, Any]) -> dict[str, Any]:
    return {name: value for name, value in fields.items() if value is not None}

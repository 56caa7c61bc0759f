"""Keycloak as the identity source, read through the Admin REST API as a service account.

The bridge's client needs these `realm-management` roles on its service account:
`view-users` (users, groups, members, a user's role mappings; it includes `query-users` and
`query-groups`) and `view-events` (for the event poller). Role selectors additionally need
`view-realm` (list realm roles, their composites and holders) and `view-clients` (find a
client by clientId and list its roles; `query-clients` alone lists nothing); without them
those selectors are reported unreadable and nothing they grant is removed. Organization
selectors need `view-organizations` (Keycloak 26.7; see `keycloak_organizations`).

Costs, so a full reconcile stays cheap on large realms (docs/design.md: Flow, Performance):
- `read_all`: users / page_size requests for the user list, plus per selector: one search
  (name) or lookup (path), one children page per group that has subgroups, and one members
  page per group per page_size members. Role selectors add, once per read, the listing of
  realm roles, of the clients and of each client's roles, and one composites request per
  composite role; then per selector its holders/groups pages.
  A group reached by several selectors (a department and its mapped subgroups) has its
  members read once. Nothing is requested per user. Selectors are read `read_concurrency`
  at a time (default 8), since a full reconcile's time is mostly waiting for answers.
- `read_user`: the user, their groups (paged), effective realm roles, and effective client
  roles for every client that a client-role selector of the mapping names.

One read contract: `read_user(ref, mapping)` and `read_all(mapping)` return the same user,
both cut down to what the mapping can see (`Mapping.project`): direct groups inside a mapped
group's subtree, and the mapped realm and client roles the user holds, directly, through a
group (and its ancestors' role mappings, as Keycloak computes effective roles), or through a
composite role of the realm or of any client, transitively. A login therefore never plans
what the next full reconcile undoes.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import Any, cast
from urllib.parse import quote

from keycloak.exceptions import (
    KeycloakAuthenticationError,
    KeycloakConnectionError,
    KeycloakError,
)
from keycloak.keycloak_admin import KeycloakAdmin
from keycloak.openid_connection import KeycloakOpenIDConnection

from bridge.httpenv import settle_environment
from bridge.keys import UserRef
from bridge.mapping import GroupSelector, Mapping
from bridge.model import IdentityView, IdpUser
from bridge.sources.base import IdentitySource, SourceError, SourceRefusedError
from bridge.sources.keycloak_errors import NotFoundError as _NotFoundError
from bridge.sources.keycloak_errors import SelectorUnreadableError as _SelectorUnreadableError
from bridge.sources.keycloak_organizations import (
    ORGANIZATION_KINDS,
    OrganizationReader,
    Organizations,
    organization_selectors,
)

Json = dict[str, Any]


@dataclass
class ReadStats:
    """Requests sent to Keycloak, for benchmarks and the status page."""

    requests: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def count(self) -> None:
        with self._lock:
            self.requests += 1


@dataclass
class _Membership:
    """What one selector contributes: user id → group paths / role names."""

    groups: dict[str, set[str]]
    realm_roles: dict[str, set[str]]
    client_roles: dict[str, dict[str, set[str]]]
    organizations: Organizations = field(default_factory=dict)


class KeycloakSource(IdentitySource):
    """Reads one realm."""

    def __init__(
        self,
        server_url: str,
        realm: str,
        client_id: str,
        client_secret: str,
        verify_tls: bool = True,
        timeout: float = 10,
        *,
        page_size: int = 500,
        read_concurrency: int = 8,
        observe: Callable[[int | None], None] | None = None,
    ) -> None:
        """`observe` is told the status code of every read (None: no answer came)."""
        self.server_url = server_url.rstrip("/")
        self.realm = realm
        self.client_id = client_id
        self.page_size = page_size
        self.read_concurrency = max(1, read_concurrency)
        self.stats = ReadStats()
        self._observe = observe or (lambda status: None)
        self._client_ids: dict[str, str | None] = {}
        connection = KeycloakOpenIDConnection(
            server_url=self.server_url,
            realm_name=realm,
            client_id=client_id,
            client_secret_key=client_secret,
            verify=verify_tls,
            timeout=int(timeout),
        )
        self._admin = KeycloakAdmin(connection=connection)
        settle_environment(connection._s)  # requests' environment, read once (bridge.httpenv)
        self._base = f"admin/realms/{quote(realm, safe='')}"
        self._organizations = OrganizationReader(self._get, self._pages)

    # ----------------------------------------------------------------------------------
    # HTTP

    def _get(self, path: str, **params: Any) -> Any:
        """GET a realm-relative admin path; translate every failure into SourceError."""
        where = f"GET {self.server_url}/{self._base}/{path}"
        self.stats.count()
        try:
            response = self._send(path, params)
        except KeycloakAuthenticationError as exc:
            raise SourceRefusedError(
                f"Keycloak at {self.server_url} refused the credentials of client "
                f"'{self.client_id}' in realm '{self.realm}' ({exc.response_code}): check the "
                "client id and secret and that the client has service accounts enabled"
            ) from None
        except KeycloakConnectionError as exc:
            cause = exc.__cause__ or exc
            if "CERTIFICATE_VERIFY_FAILED" in str(cause):
                raise SourceRefusedError(
                    f"{where}: TLS certificate verification failed; trust Keycloak's CA "
                    "(REQUESTS_CA_BUNDLE) or, for testing only, set verify_tls = false"
                ) from None
            raise SourceError(f"cannot reach Keycloak ({where}): {cause}") from None
        except KeycloakError as exc:
            raise SourceError(
                f"Keycloak at {self.server_url} gave client '{self.client_id}' no token "
                f"({exc.response_code}): {exc.error_message!s:.200}"
            ) from None
        status = response.status_code
        if status == 404:
            raise _NotFoundError(where)
        if status == 403:
            raise SourceRefusedError(
                f"{where}: 403 forbidden; give the service account of client '{self.client_id}' "
                "the realm-management role view-users (view-realm and view-clients for role "
                "selectors, view-organizations for organization selectors)"
            )
        if status == 401:
            raise SourceRefusedError(
                f"{where}: 401 unauthorized; check the secret of client '{self.client_id}'"
            )
        if status != 200:
            raise SourceError(f"{where}: HTTP {status} {response.text[:200]}")
        try:
            return response.json()
        except ValueError:
            raise SourceError(f"{where}: response is not JSON") from None

    def _send(self, path: str, params: dict[str, Any]) -> Any:
        try:
            response = self._admin.connection.raw_get(f"{self._base}/{path}", **params)
        except KeycloakError as exc:  # no answer, or the token request was refused
            self._observe(exc.response_code if isinstance(exc.response_code, int) else None)
            raise
        self._observe(response.status_code)
        return response

    def _get_list(self, path: str, **params: Any) -> list[Json]:
        body = self._get(path, **params)
        if not isinstance(body, list) or not all(isinstance(item, dict) for item in body):
            raise SourceError(f"GET {self._base}/{path}: expected a JSON list of objects")
        return cast(list[Json], body)

    def _pages(self, path: str, **params: Any) -> Iterator[Json]:
        """Every item of a paged list; a short page ends it."""
        first = 0
        while True:
            page = self._get_list(path, first=first, max=self.page_size, **params)
            yield from page
            if len(page) < self.page_size:
                return
            first += self.page_size

    def ping(self) -> None:
        """Readiness: the credentials work and the realm's users can be listed."""
        self._get_list("users", max=1, briefRepresentation="true")

    # ----------------------------------------------------------------------------------
    # One user

    def read_user(self, ref: UserRef, mapping: Mapping) -> IdentityView:
        if ref.user_id:
            try:
                user = self._get(f"users/{quote(ref.user_id, safe='')}")
            except _NotFoundError:
                return IdentityView(deleted_ids=[ref.user_id])
            if not isinstance(user, dict):
                raise SourceError(f"GET users/{ref.user_id}: expected a user object")
        else:
            email = ref.email or ""
            found = [
                u
                for u in self._get_list(
                    "users", email=email, exact="true", briefRepresentation="false"
                )
                if str(u.get("email", "")).lower() == email.lower()
            ]
            if not found:
                return IdentityView()
            user = found[0]
        try:
            return self._read_user_details(user, mapping)
        except _NotFoundError:  # deleted between the two reads
            return IdentityView(deleted_ids=[str(user["id"])])

    def _read_user_details(self, user: Json, mapping: Mapping) -> IdentityView:
        user_id = quote(str(user["id"]), safe="")
        groups = [
            str(g["path"])
            for g in self._pages(f"users/{user_id}/groups", briefRepresentation="true")
        ]
        realm_roles = [
            str(r["name"]) for r in self._get_list(f"users/{user_id}/role-mappings/realm/composite")
        ]
        client_roles: dict[str, list[str]] = {}
        unreadable: dict[str, str] = {}
        failed: dict[str, str] = {}  # client → why its roles cannot be read
        read_clients: set[str] = set()
        for selector in _client_role_selectors(mapping):
            client = selector.client or ""
            if client in failed:
                unreadable[selector.raw] = failed[client]
                continue
            if client in read_clients:
                continue
            try:
                uuid = self._client_uuid(client)
            except _SelectorUnreadableError as exc:
                failed[client] = unreadable[selector.raw] = str(exc)
                continue
            read_clients.add(client)
            path = f"users/{user_id}/role-mappings/clients/{uuid}/composite"
            names = [str(r["name"]) for r in self._get_list(path)]
            if names:
                client_roles[client] = sorted(names)
        selectors = organization_selectors(mapping.selectors())
        organizations, org_unreadable = self._organizations.of_user(str(user["id"]), selectors)
        unreadable.update(org_unreadable)
        profile = _profile(
            user, groups=sorted(groups), realm_roles=sorted(realm_roles), client_roles=client_roles
        ).model_copy(update={"organizations": organizations})
        return IdentityView(users=[mapping.project(profile)], unreadable_groups=unreadable)

    def _client_uuid(self, client_id: str) -> str:
        """The internal id of a client, which role URLs need (view-clients)."""
        if client_id not in self._client_ids:
            try:
                found = self._get_list("clients", clientId=client_id, search="false")
            except SourceError as exc:
                raise _SelectorUnreadableError(
                    f"cannot look up client '{client_id}': {exc}"
                ) from None
            match = [c for c in found if c.get("clientId") == client_id]
            self._client_ids[client_id] = str(match[0]["id"]) if match else None
        uuid = self._client_ids[client_id]
        if uuid is None:
            raise _SelectorUnreadableError(
                f"client '{client_id}' does not exist in realm '{self.realm}'"
            )
        return uuid

    def check_selectors(self, selectors: Sequence[GroupSelector]) -> dict[str, str]:
        """One lookup per selector: the group by path, groups by exact name, the role."""
        missing: dict[str, str] = {}
        for selector in selectors:
            try:
                self._check_selector(selector)
            except (_SelectorUnreadableError, SourceError) as exc:
                missing[selector.raw] = str(exc)
            except _NotFoundError as exc:
                missing[selector.raw] = f"not found: {exc}"
        return missing

    def _check_selector(self, selector: GroupSelector) -> None:
        if selector.kind in ORGANIZATION_KINDS:
            return  # the per-user organization read already proves them (fail closed there)
        if selector.kind in ("name", "path"):
            self._groups_for(selector)
            return
        if selector.kind == "client_role":
            uuid = self._client_uuid(selector.client or "")
            path = f"clients/{quote(uuid, safe='')}/roles/{quote(selector.name, safe='')}"
        else:
            path = f"roles/{quote(selector.name, safe='')}"
        try:
            self._get(path)
        except _NotFoundError:
            raise _SelectorUnreadableError(
                f"role {selector.raw.partition(':')[2]} does not exist"
            ) from None

    # ----------------------------------------------------------------------------------
    # Everyone, in bulk

    def read_all(self, mapping: Mapping) -> IdentityView:
        groups: dict[str, set[str]] = {}
        realm_roles: dict[str, set[str]] = {}
        client_roles: dict[str, dict[str, set[str]]] = {}
        unreadable: dict[str, str] = {}
        selectors = sorted(mapping.selectors(), key=lambda s: s.raw)
        members_of: dict[str, list[str]] = {}  # group id → member ids, for this read only
        organization_ids = self._organization_ids_or_why(selectors)
        graph = _LazyRoleGraph()
        # The user list is read beside the selectors (its pages one after another, each kept
        # only as the compact record a user needs), the selectors `read_concurrency` at once.
        with ThreadPoolExecutor(1, thread_name_prefix="keycloak-users") as users_pool:
            users_read = users_pool.submit(self._read_user_records)
            try:
                with ThreadPoolExecutor(
                    self.read_concurrency, thread_name_prefix="keycloak"
                ) as pool:
                    outcomes = list(
                        pool.map(
                            lambda s: self._read_selector_or_why(
                                s, members_of, organization_ids, graph
                            ),
                            selectors,
                        )
                    )
            except BaseException:
                wait([users_read])
                raise
            users = users_read.result()
        organizations: Organizations = {}
        for selector, found in zip(selectors, outcomes, strict=True):
            if isinstance(found, str):
                unreadable[selector.raw] = found
                continue
            for user_id, paths in found.groups.items():
                groups.setdefault(user_id, set()).update(paths)
            for user_id, roles in found.realm_roles.items():
                realm_roles.setdefault(user_id, set()).update(roles)
            for user_id, by_client in found.client_roles.items():
                for client, roles in by_client.items():
                    client_roles.setdefault(user_id, {}).setdefault(client, set()).update(roles)
            for user_id, by_alias in found.organizations.items():
                for alias, paths in by_alias.items():
                    organizations.setdefault(user_id, {}).setdefault(alias, set()).update(paths)
        outcomes.clear()  # merged: free them before the users are built
        members_of.clear()
        # Most users hold no realm role, client role or organization the mapping names:
        # they share one empty list and dict each (100,000 users: ~20 MB). Records are
        # frozen and nothing changes a record's lists or dicts in place.
        no_roles: list[str] = []
        no_mapping: dict[str, list[str]] = {}
        read = [
            mapping.project(
                record.user(
                    groups=sorted(groups.get(record.id, ())),
                    realm_roles=sorted(r) if (r := realm_roles.get(record.id)) else no_roles,
                    client_roles={c: sorted(r) for c, r in sorted(c_roles.items())}
                    if (c_roles := client_roles.get(record.id))
                    else no_mapping,
                    organizations={a: sorted(p) for a, p in sorted(orgs.items())}
                    if (orgs := organizations.get(record.id))
                    else no_mapping,
                )
            )
            for record in users
        ]
        return IdentityView(users=read, unreadable_groups=unreadable, complete=True)

    def _read_user_records(self) -> list[_UserRecord]:
        """Every user of the realm (service accounts aside), checked as they arrive."""
        return [
            _UserRecord.of(raw)
            for raw in self._pages("users", briefRepresentation="false")
            if not raw.get("serviceAccountClientId")
        ]

    def _organization_ids_or_why(self, selectors: list[GroupSelector]) -> dict[str, str] | str:
        """The realm's organizations by alias, read once per bulk read when the mapping has
        organization selectors; or why they could not be listed."""
        if not organization_selectors(selectors):
            return {}
        try:
            return self._organizations.ids_by_alias()
        except (_SelectorUnreadableError, SourceError) as exc:
            return str(exc)

    def _read_selector_or_why(
        self,
        selector: GroupSelector,
        members_of: dict[str, list[str]],
        organization_ids: dict[str, str] | str,
        graph: _LazyRoleGraph,
    ) -> _Membership | str:
        """What the selector grants, or why it could not be read completely."""
        try:
            return self._read_selector(selector, members_of, organization_ids, graph)
        except (_SelectorUnreadableError, SourceError) as exc:
            return str(exc)
        except _NotFoundError as exc:
            return f"disappeared while reading: {exc}"

    def _read_selector(
        self,
        selector: GroupSelector,
        members_of: dict[str, list[str]],
        organization_ids: dict[str, str] | str,
        graph: _LazyRoleGraph,
    ) -> _Membership:
        found = _Membership(groups={}, realm_roles={}, client_roles={})
        if selector.kind in ORGANIZATION_KINDS:
            if isinstance(organization_ids, str):
                raise _SelectorUnreadableError(organization_ids)
            self._organizations.members(selector, organization_ids, found.organizations)
            return found
        if selector.kind in ("name", "path"):
            roots = self._groups_for(selector)
            for group in roots:
                self._collect_members(group, found.groups, members_of)
            return found
        holders = self._role_holders(selector, graph, members_of)
        for user_id in holders:
            if selector.kind == "realm_role":
                found.realm_roles.setdefault(user_id, set()).add(selector.name)
            else:
                client = selector.client or ""
                found.client_roles.setdefault(user_id, {}).setdefault(client, set()).add(
                    selector.name
                )
        return found

    def _groups_for(self, selector: GroupSelector) -> list[Json]:
        if selector.kind == "path":
            try:
                group = self._get(f"group-by-path/{quote(selector.name.lstrip('/'), safe='/')}")
            except _NotFoundError:
                raise _SelectorUnreadableError(f"group {selector.name} does not exist") from None
            if not isinstance(group, dict) or group.get("path") != selector.name:
                raise _SelectorUnreadableError(f"group {selector.name} does not exist")
            return [group]
        matches = [
            g
            for top in self._pages(
                "groups", search=selector.name, exact="true", briefRepresentation="true"
            )
            for g in _walk(top)
            if g.get("name") == selector.name
        ]
        if not matches:
            raise _SelectorUnreadableError(f"no group named '{selector.name}' exists")
        return matches

    def _collect_members(
        self, group: Json, into: dict[str, set[str]], members_of: dict[str, list[str]]
    ) -> None:
        """Direct members of `group` and of every descendant, with the path they are in.

        `members_of` remembers each group's members for the rest of one bulk read, so a
        group under several mapped selectors is read once (two threads may both read it;
        both get the same answer)."""
        for group_ in self._subtree(group):
            path = str(group_["path"])
            gid = str(group_["id"])
            if gid not in members_of:
                try:
                    members_of[gid] = [
                        str(member["id"])
                        for member in self._pages(
                            f"groups/{quote(gid, safe='')}/members", briefRepresentation="true"
                        )
                    ]
                except _NotFoundError:
                    raise _SelectorUnreadableError(
                        f"group {path} disappeared while reading it"
                    ) from None
            for member_id in members_of[gid]:
                into.setdefault(member_id, set()).add(path)

    def _subtree(self, group: Json) -> Iterator[Json]:
        yield group
        if not group.get("subGroupCount", 1):
            return
        gid = quote(str(group["id"]), safe="")
        try:
            children = list(self._pages(f"groups/{gid}/children", briefRepresentation="true"))
        except _NotFoundError:
            raise _SelectorUnreadableError(f"group {group.get('path')} disappeared") from None
        for child in children:
            yield from self._subtree(child)

    # Roles

    def _role_holders(
        self, selector: GroupSelector, graph: _LazyRoleGraph, members_of: dict[str, list[str]]
    ) -> set[str]:
        """Users holding the role directly, through groups, or through composites."""
        roles = graph.get(self)
        if selector.kind == "client_role":
            uuid = roles.client_uuids.get(selector.client or "")
            if uuid is None:
                raise _SelectorUnreadableError(
                    f"client '{selector.client}' does not exist in realm '{self.realm}'"
                )
            wanted = f"{uuid}:{selector.name}"
        else:
            wanted = f":{selector.name}"
        if wanted not in roles.by_key:
            raise _SelectorUnreadableError(f"role {selector.raw.partition(':')[2]} does not exist")
        # Composite parents, transitively: a role that includes the wanted role grants it.
        granting = {wanted}
        changed = True
        while changed:
            changed = False
            for parent, children in roles.includes.items():
                if parent not in granting and children & granting:
                    granting.add(parent)
                    changed = True
        holders: set[str] = set()
        for key in sorted(granting):
            container, role = roles.by_key[key]
            name = quote(str(role["name"]), safe="")
            holders.update(str(u["id"]) for u in self._pages(f"{container}/{name}/users"))
            for group in self._pages(f"{container}/{name}/groups", briefRepresentation="true"):
                members: dict[str, set[str]] = {}
                self._collect_members(group, members, members_of)
                holders.update(members)
        return holders

    def _read_role_graph(self) -> _RoleGraph:
        """Every role of the realm and of every client, and what each composite includes:
        a composite of any client may include the role a selector names."""
        containers = [("roles", self._roles("roles"))]
        client_uuids: dict[str, str] = {}
        for client in self._pages("clients", briefRepresentation="true"):
            uuid = str(client["id"])
            client_uuids[str(client.get("clientId", ""))] = uuid
            path = f"clients/{quote(uuid, safe='')}/roles"
            containers.append((path, self._roles(path)))
        by_key: dict[str, tuple[str, Json]] = {}
        includes: dict[str, set[str]] = {}
        for container, roles in containers:
            for role in roles:
                by_key[_role_key(role)] = (container, role)
                if role.get("composite"):
                    rid = quote(str(role["id"]), safe="")
                    included = self._get_list(f"roles-by-id/{rid}/composites")
                    includes[_role_key(role)] = {_role_key(c) for c in included}
        return _RoleGraph(client_uuids=client_uuids, by_key=by_key, includes=includes)

    def _roles(self, path: str) -> list[Json]:
        try:
            return list(self._pages(path, briefRepresentation="true"))
        except _NotFoundError:
            raise _SelectorUnreadableError(f"cannot list roles at {path}") from None


@dataclass(frozen=True)
class _RoleGraph:
    client_uuids: dict[str, str]  # clientId → internal id
    by_key: dict[str, tuple[str, Json]]  # role key → (container path, role)
    includes: dict[str, set[str]]  # composite role key → keys it includes


class _LazyRoleGraph:
    """The role graph of one bulk read, read once, on first use, by whichever thread asks."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._graph: _RoleGraph | None = None
        self._error: str | None = None

    def get(self, source: KeycloakSource) -> _RoleGraph:
        with self._lock:
            if self._graph is None and self._error is None:
                try:
                    self._graph = source._read_role_graph()
                except (_SelectorUnreadableError, SourceError, _NotFoundError) as exc:
                    self._error = f"cannot read the realm's roles: {exc}"
            if self._error is not None:
                raise _SelectorUnreadableError(self._error)
            assert self._graph is not None
            return self._graph


def _client_role_selectors(mapping: Mapping) -> list[GroupSelector]:
    chosen = (s for s in mapping.selectors() if s.kind == "client_role")
    return sorted(chosen, key=lambda s: s.raw)


def _role_key(role: Json) -> str:
    """`:name` for realm roles, `<client uuid>:name` for client roles."""
    container = role.get("containerId", "") if role.get("clientRole") else ""
    return f"{container}:{role['name']}"


def _walk(group: Json) -> Iterator[Json]:
    yield group
    for child in group.get("subGroups") or []:
        yield from _walk(child)


#: Shared by every user record without attributes (records are frozen; never changed).
_NO_ATTRIBUTES: dict[str, list[str]] = {}


@dataclass(frozen=True, slots=True)
class _UserRecord:
    """What a user representation says that an `IdpUser` keeps, checked at the trust
    boundary as validating the `IdpUser` would (a full read builds 100,000 of them; see
    `IdpUser.trusted`), without the rest of the representation."""

    id: str
    username: str
    email: str | None
    email_verified: bool
    first_name: str | None
    last_name: str | None
    enabled: bool
    attributes: dict[str, list[str]]

    @classmethod
    def of(cls, user: Json) -> _UserRecord:
        try:
            email, first, last = (user.get(k) for k in ("email", "firstName", "lastName"))
            for name, value in (("email", email), ("firstName", first), ("lastName", last)):
                if value is not None and not isinstance(value, str):
                    raise TypeError(f"'{name}' is a {type(value).__name__}, not a string")
            attributes = user.get("attributes") or {}
            if not isinstance(attributes, dict):
                raise TypeError(f"'attributes' is a {type(attributes).__name__}, not an object")
            return cls(
                id=str(user["id"]),
                username=str(user.get("username", "")),
                email=email,
                email_verified=bool(user.get("emailVerified", False)),
                first_name=first,
                last_name=last,
                enabled=bool(user.get("enabled", True)),
                attributes={k: [str(v) for v in vs] for k, vs in attributes.items()}
                if attributes
                else _NO_ATTRIBUTES,
            )
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise SourceError(f"Keycloak returned a malformed user record: {exc}") from None

    def user(
        self,
        *,
        groups: list[str],
        realm_roles: list[str],
        client_roles: dict[str, list[str]],
        organizations: dict[str, list[str]],
    ) -> IdpUser:
        """The `IdpUser`; group paths and role names come from the bridge's own reading."""
        return IdpUser.trusted(
            id=self.id,
            username=self.username,
            email=self.email,
            email_verified=self.email_verified,
            first_name=self.first_name,
            last_name=self.last_name,
            enabled=self.enabled,
            attributes=self.attributes,
            groups=groups,
            realm_roles=realm_roles,
            client_roles=client_roles,
            organizations=organizations,
        )


def _profile(
    user: Json,
    *,
    groups: list[str],
    realm_roles: list[str],
    client_roles: dict[str, list[str]] | None = None,
    organizations: dict[str, list[str]] | None = None,
) -> IdpUser:
    return _UserRecord.of(user).user(
        groups=groups,
        realm_roles=realm_roles,
        client_roles=client_roles or {},
        organizations=organizations or {},
    )

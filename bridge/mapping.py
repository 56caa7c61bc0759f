"""The mapping: which IdP groups grant which teams, case groups, roles and tenant rights.

This module holds the *resolved* mapping the planner works with. Reading and validating the
Tines-compatible JSON (legacy keys, JSON-pointer errors, the JSON Schema) lives in
`bridge.mapping_file`.
"""

from __future__ import annotations

from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field
from functools import cached_property, lru_cache
from typing import Literal

from pydantic import BaseModel, ConfigDict

from bridge.model import IdpUser

SelectorKind = Literal[
    "name", "path", "realm_role", "client_role", "organization", "organization_group"
]


def ancestor_paths(path: str) -> list[str]:
    """`/Eng/SRE/Oncall` → `['/Eng', '/Eng/SRE', '/Eng/SRE/Oncall']`."""
    return list(_ancestors(path))


@lru_cache(maxsize=1 << 16)
def _ancestors(path: str) -> tuple[str, ...]:
    parts = [p for p in path.split("/") if p]
    return tuple("/" + "/".join(parts[: i + 1]) for i in range(len(parts)))


def user_paths(user: IdpUser, inherit_parent_groups: bool) -> frozenset[str]:
    """The group paths `user` is a member of: the direct ones, and with inheritance every
    ancestor of them (a member of `/Eng/SRE` is a member of `/Eng`)."""
    if not inherit_parent_groups:
        return frozenset(user.groups)
    if len(user.groups) == 1:
        return frozenset(_ancestors(user.groups[0]))
    return frozenset(path for direct in user.groups for path in _ancestors(direct))


def _valid_path(path: str) -> bool:
    return path.startswith("/") and path != "/" and "//" not in path and not path.endswith("/")


class GroupSelector(BaseModel):
    """One `group_name` value: a plain name, a `/path`, `realm-role:X`, `client-role:C/X`,
    `organization:ALIAS` or `organization:ALIAS/GROUP PATH` (a group of that organization)."""

    model_config = ConfigDict(frozen=True)

    raw: str
    kind: SelectorKind
    name: str
    client: str | None = None
    organization: str | None = None

    @classmethod
    def parse(cls, raw: str) -> GroupSelector:
        """Interpret a `group_name`; raises ValueError with a reason for a malformed one."""
        if raw.startswith("realm-role:"):
            role = raw.removeprefix("realm-role:")
            if not role:
                raise ValueError("'realm-role:' needs a role name after the colon")
            return cls(raw=raw, kind="realm_role", name=role)
        if raw.startswith("client-role:"):
            rest = raw.removeprefix("client-role:")
            client, sep, role = rest.partition("/")
            if not sep or not client or not role:
                raise ValueError("'client-role:' must be followed by CLIENT/ROLE")
            return cls(raw=raw, kind="client_role", name=role, client=client)
        if raw.startswith("organization:"):
            return cls._organization(raw)
        if raw.startswith("/"):
            if not _valid_path(raw):
                raise ValueError(f"'{raw}' is not a valid group path")
            return cls(raw=raw, kind="path", name=raw)
        if not raw.strip():
            raise ValueError("group name is empty")
        return cls(raw=raw, kind="name", name=raw)

    @classmethod
    def _organization(cls, raw: str) -> GroupSelector:
        rest = raw.removeprefix("organization:")
        alias, sep, path = rest.partition("/")
        if not alias.strip():
            raise ValueError("'organization:' must be followed by an organization alias")
        if alias != alias.strip():
            raise ValueError(f"organization alias '{alias}' has leading or trailing spaces")
        if not sep:
            return cls(raw=raw, kind="organization", name=alias, organization=alias)
        group = "/" + path
        if not _valid_path(group):
            raise ValueError(
                f"'{group}' is not a valid group path of organization '{alias}' "
                "(write organization:ALIAS/GROUP/SUBGROUP)"
            )
        return cls(raw=raw, kind="organization_group", name=group, organization=alias)

    def matching_groups(self, user: IdpUser, inherit_parent_groups: bool) -> list[str]:
        """The user's group paths (or role names) through which this selector matches.

        Empty when it does not match. With inheritance, a member of `/Eng/SRE` is also a
        member of `/Eng`, so `/Eng` (or plain `Eng`) matches through `/Eng/SRE`; the path
        returned is the one that matched (`/Eng`), which is what `because` should name.
        """
        if self.kind in ("realm_role", "client_role", "organization", "organization_group"):
            return self.matching_paths(frozenset(), user, inherit_parent_groups)
        paths = user_paths(user, inherit_parent_groups)
        return self.matching_paths(paths, user, inherit_parent_groups)

    def _matching_organization_group(self, user: IdpUser, inherit_parent_groups: bool) -> list[str]:
        direct = user.organizations.get(self.organization or "")
        if direct is None:
            return []
        if inherit_parent_groups:
            member_of = {path for group in direct for path in _ancestors(group)}
        else:
            member_of = set(direct)
        return [self.raw] if self.name in member_of else []

    def matching_paths(
        self, paths: AbstractSet[str], user: IdpUser, inherit_parent_groups: bool
    ) -> list[str]:
        """`matching_groups` for a user whose group paths (`user_paths`) are known already.
        `inherit_parent_groups` matters for organization groups, which `paths` never holds."""
        if self.kind == "realm_role":
            return [f"realm-role:{self.name}"] if self.name in user.realm_roles else []
        if self.kind == "client_role":
            roles = user.client_roles.get(self.client or "", [])
            return [self.raw] if self.name in roles else []
        if self.kind == "organization":
            return [self.raw] if self.name in user.organizations else []
        if self.kind == "organization_group":
            return self._matching_organization_group(user, inherit_parent_groups)
        if self.kind == "path":
            return [self.name] if self.name in paths else []
        return sorted(p for p in paths if p.rsplit("/", 1)[-1] == self.name)


@dataclass(frozen=True)
class _Projection:
    """What `Mapping.project` keeps, computed once per mapping."""

    paths: frozenset[str]
    names: frozenset[str]
    realm_roles: frozenset[str]
    client_roles: frozenset[tuple[str, str]]
    _seen: dict[str, bool] = field(default_factory=dict, compare=False, repr=False)
    """`seen` by path, so each distinct path is looked at once (a full read projects every
    user, and users share a few thousand paths)."""

    def seen(self, path: str) -> bool:
        found = self._seen.get(path)
        if found is None:
            found = self._seen[path] = self._sees(path)
        return found

    def _sees(self, path: str) -> bool:
        segments = [p for p in path.split("/") if p]
        if self.names.intersection(segments):
            return True
        return any(a in self.paths for a in ancestor_paths(path))

    def apply(self, user: IdpUser) -> IdpUser:
        """`user` cut down to what the mapping sees; `user` itself when that is all of it
        (as a bulk read's users are, which read only what the mapping names)."""
        groups = sorted(g for g in user.groups if self.seen(g))
        realm_roles = sorted(r for r in user.realm_roles if r in self.realm_roles)
        clients = {
            client: sorted(r for r in roles if (client, r) in self.client_roles)
            for client, roles in user.client_roles.items()
        }
        client_roles = {c: r for c, r in sorted(clients.items()) if r}
        if (
            groups == user.groups
            and realm_roles == user.realm_roles
            and list(client_roles.items()) == list(user.client_roles.items())
        ):
            return user
        return user.model_copy(
            update={"groups": groups, "realm_roles": realm_roles, "client_roles": client_roles}
        )


class MappingEntry(BaseModel):
    """One `mappings[]` entry. `number` is its 1-based position, as `because` shows it."""

    model_config = ConfigDict(frozen=True)

    number: int
    group: GroupSelector
    team: str
    case_group: str | None = None
    role: str


class PermissionGrant(BaseModel):
    model_config = ConfigDict(frozen=True)

    number: int
    group: GroupSelector
    permissions: tuple[str, ...]


class Mapping(BaseModel):
    model_config = ConfigDict(frozen=True)

    entries: tuple[MappingEntry, ...]
    tenant_owner_groups: tuple[GroupSelector, ...] = ()
    tenant_permissions: tuple[PermissionGrant, ...] = ()

    def managed_teams(self) -> frozenset[str]:
        """Team names the mapping names; with `manage_teams = "mapped"` only these are managed."""
        return frozenset(e.team for e in self.entries)

    def project(self, user: IdpUser) -> IdpUser:
        """`user` with only what this mapping can see: the direct groups inside a mapped
        group's subtree (a `/path`, or any group a plain name names, with every descendant),
        the realm roles and client roles role selectors name. A user read on their own and
        the same user read in bulk (which only reads what the mapping names) then agree."""
        return self._projection.apply(user)

    @cached_property
    def _projection(self) -> _Projection:
        selectors = self.selectors()
        return _Projection(
            paths=frozenset(s.name for s in selectors if s.kind == "path"),
            names=frozenset(s.name for s in selectors if s.kind == "name"),
            realm_roles=frozenset(s.name for s in selectors if s.kind == "realm_role"),
            client_roles=frozenset(
                (s.client or "", s.name) for s in selectors if s.kind == "client_role"
            ),
        )

    def selectors(self) -> frozenset[GroupSelector]:
        """Every group selector the mapping uses: what a full reconcile must read."""
        found = {e.group for e in self.entries} | set(self.tenant_owner_groups)
        found |= {g.group for g in self.tenant_permissions}
        return frozenset(found)

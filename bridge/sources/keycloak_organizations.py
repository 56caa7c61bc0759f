"""Keycloak Organizations: who is a member of an organization, and of its groups.

Keycloak 26 keeps organizations apart from the realm's groups: an organization has members
and (from 26.6) its own group tree, whose paths (`/Sales/EMEA`) are relative to the
organization and never appear among a user's realm groups. A selector names the organization
by its alias: `organization:acme` (its members) or `organization:acme/Sales/EMEA` (members of
that organization group or, with inheritance, of a group below it).

The service account needs the `realm-management` role `view-organizations` (with `view-users`)
to read them. Both reads fail closed: an organization (or organization group) that does not
exist, or cannot be read, makes the selector unreadable, so nothing it grants is removed.

Costs: listing the realm's organizations (one request per page, usually one), then for the
bulk read one members page per organization and per organization group per page of members,
and for one user one request for their organizations plus one for their groups in each
organization a group selector names.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Any
from urllib.parse import quote

from bridge.mapping import GroupSelector
from bridge.sources.base import SourceError
from bridge.sources.keycloak_errors import NotFoundError, SelectorUnreadableError

Json = dict[str, Any]
Pages = Callable[..., Iterator[Json]]
Get = Callable[..., Any]

#: user id → organization alias → full paths of the organization groups the user is in
Organizations = dict[str, dict[str, set[str]]]

ORGANIZATION_KINDS = ("organization", "organization_group")


def organization_selectors(selectors: Iterable[GroupSelector]) -> list[GroupSelector]:
    return sorted((s for s in selectors if s.kind in ORGANIZATION_KINDS), key=lambda s: s.raw)


class OrganizationReader:
    """Reads organizations through the source's `get` and `pages` (which count requests
    and turn failures into SourceError or NotFoundError)."""

    def __init__(self, get: Get, pages: Pages) -> None:
        self._get = get
        self._pages = pages

    def ids_by_alias(self) -> dict[str, str]:
        """Every organization of the realm, alias → id (read whole each time it is asked,
        so a deleted or renamed organization is seen at once)."""
        try:
            found = list(self._pages("organizations", briefRepresentation="true"))
        except NotFoundError:
            raise SelectorUnreadableError(
                "this Keycloak has no organizations API (Keycloak 26 or newer is needed)"
            ) from None
        return {str(o["alias"]): str(o["id"]) for o in found if o.get("alias")}

    # ----------------------------------------------------------------------------------
    # Everyone, in bulk

    def members(self, selector: GroupSelector, ids: dict[str, str], into: Organizations) -> None:
        """Record in `into` every member the selector selects, with the paths it saw."""
        alias = selector.organization or ""
        org_id = _org_id(alias, ids)
        base = f"organizations/{quote(org_id, safe='')}"
        try:
            if selector.kind == "organization":
                for member in self._pages(f"{base}/members", briefRepresentation="true"):
                    into.setdefault(str(member["id"]), {}).setdefault(alias, set())
                return
            group = self._group_by_path(base, alias, selector.name)
            for node in self._subtree(base, group):
                path = str(node["path"])
                gid = quote(str(node["id"]), safe="")
                for member in self._pages(
                    f"{base}/groups/{gid}/members", briefRepresentation="true"
                ):
                    into.setdefault(str(member["id"]), {}).setdefault(alias, set()).add(path)
        except NotFoundError:
            raise SelectorUnreadableError(
                f"organization '{alias}' or one of its groups disappeared while reading it"
            ) from None

    def _group_by_path(self, base: str, alias: str, path: str) -> Json:
        try:
            group = self._get(f"{base}/groups/group-by-path/{quote(path.lstrip('/'), safe='/')}")
        except NotFoundError:
            group = None
        if not isinstance(group, dict) or group.get("path") != path:
            raise SelectorUnreadableError(f"organization '{alias}' has no group {path}")
        return group

    def _subtree(self, base: str, group: Json) -> Iterator[Json]:
        yield group
        gid = quote(str(group["id"]), safe="")
        for child in list(self._pages(f"{base}/groups/{gid}/children", briefRepresentation="true")):
            yield from self._subtree(base, child)

    # ----------------------------------------------------------------------------------
    # One user

    def of_user(
        self, user_id: str, selectors: list[GroupSelector]
    ) -> tuple[dict[str, list[str]], dict[str, str]]:
        """The organizations (by alias) the mapping's selectors ask about that the user is a
        member of, each with the user's direct organization groups; and the selectors that
        could not be read, with why."""
        unreadable: dict[str, str] = {}
        if not selectors:
            return {}, unreadable
        try:
            ids = self.ids_by_alias()
            mine = {
                str(o["alias"])
                for o in self._get_list(
                    f"organizations/members/{quote(user_id, safe='')}/organizations"
                )
                if o.get("alias")
            }
        except (SelectorUnreadableError, SourceError) as exc:
            # As in the bulk read: these selectors are unreadable, the rest of the user is not.
            return {}, {s.raw: str(exc) for s in selectors}
        wanted = {s.organization or "" for s in selectors}
        found: dict[str, list[str]] = {alias: [] for alias in sorted(wanted & mine)}
        for selector in selectors:
            alias = selector.organization or ""
            try:
                org_id = _org_id(alias, ids)
                if selector.kind == "organization_group":
                    # The group must exist even when the user is not in it: a renamed or
                    # deleted group proves nothing about its members (fail closed).
                    base = f"organizations/{quote(org_id, safe='')}"
                    self._group_by_path(base, alias, selector.name)
            except (SelectorUnreadableError, SourceError) as exc:
                unreadable[selector.raw] = str(exc)
        with_groups = {s.organization for s in selectors if s.kind == "organization_group"}
        for alias in sorted(found):
            if alias not in with_groups:
                continue
            org_id = quote(ids[alias], safe="")
            try:
                groups = self._pages(
                    f"organizations/{org_id}/members/{quote(user_id, safe='')}/groups",
                    briefRepresentation="true",
                )
                found[alias] = sorted(str(g["path"]) for g in groups)
            except (NotFoundError, SourceError) as exc:
                why = (
                    f"organization '{alias}' disappeared while reading"
                    if isinstance(exc, NotFoundError)
                    else str(exc)
                )
                for s in selectors:
                    if s.organization == alias:
                        unreadable[s.raw] = why
        return found, unreadable

    def _get_list(self, path: str) -> list[Json]:
        try:
            body = self._get(path)
        except NotFoundError:
            raise SelectorUnreadableError(
                "this Keycloak has no organizations API (Keycloak 26 or newer is needed)"
            ) from None
        if not isinstance(body, list):
            raise SelectorUnreadableError(f"GET {path}: expected a JSON list")
        return [item for item in body if isinstance(item, dict)]


def _org_id(alias: str, ids: dict[str, str]) -> str:
    org_id = ids.get(alias)
    if org_id is None:
        raise SelectorUnreadableError(f"organization '{alias}' does not exist")
    return org_id

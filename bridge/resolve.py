"""Desired state for one IdP user: the teams, roles and tenant rights the mapping grants.

Pure: a function of (mapping, policy, user). The planner diffs its result against the target;
`jit-bridge explain` prints `explain()`, which walks the same rules entry by entry.

Conflict rule (docs/design.md, Mapping), when several entries grant one team (or one case
group), set by `policy.role_conflict`:
- `highest` (default): the role ranked highest by `policy.role_precedence` wins; a role the
  precedence does not list ranks below every listed one, and between equal ranks the entry
  that comes first in the file wins. `because` names every matching entry that grants the
  winning role (not only the first), so an operator can see every group that would have to go
  before the role changes.
- `first_entry` (Tines' documented rule): the first matching entry in file order wins, whatever
  its role; `because` names that entry, since it alone decides.
When entries with other roles lost, `because` ends with the rule that decided and the losers.
The tenant-owner flag and tenant permissions are unions and have no conflict.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache

from bridge.mapping import GroupSelector, Mapping, MappingEntry, user_paths
from bridge.model import IdpUser
from bridge.policy import Policy, RoleConflict

MembershipKey = tuple[str, str | None]
"""(team name, case group name or None for the team itself)."""

AccessKey = tuple[
    tuple[str, ...],
    tuple[str, ...],
    tuple[tuple[str, tuple[str, ...]], ...],
    tuple[tuple[str, tuple[str, ...]], ...],
]
"""What a user's desired access depends on: (group paths, realm roles, client roles,
organizations with their organization groups), each sorted and without repeats."""


def role_rank(role: str, precedence: tuple[str, ...]) -> int:
    """Position of `role` in the precedence, 0 = highest; unlisted roles share the lowest rank.

    Compared case-insensitively, because legacy mappings and some targets write roles in
    lower case while the precedence is upper case.
    """
    order = [r.upper() for r in precedence]
    upper = role.upper()
    return order.index(upper) if upper in order else len(order)


def is_downgrade(from_role: str, to_role: str, precedence: tuple[str, ...]) -> bool:
    """True unless `to_role` ranks strictly above `from_role`.

    A change between two roles of equal rank (two roles the precedence does not list) counts
    as a downgrade: nothing says it is not one, and the safety rules treat unknowns as risky.
    """
    if from_role.upper() == to_role.upper():
        return False
    return role_rank(to_role, precedence) >= role_rank(from_role, precedence)


def describe_source(matched: str) -> str:
    """`/Analysts` → `group /Analysts`; role selectors (`realm-role:x`) read as they are."""
    return f"group {matched}" if matched.startswith("/") else matched


@dataclass(frozen=True, slots=True)
class DesiredMembership:
    role: str
    because: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class DesiredAccess:
    """What the mapping grants one user. Empty for a user no entry matches."""

    memberships: dict[MembershipKey, DesiredMembership] = field(default_factory=dict)
    tenant_owner: bool = False
    owner_because: tuple[str, ...] = ()
    permissions: dict[str, tuple[str, ...]] = field(default_factory=dict)
    """Permission name → the groups that grant it."""


@dataclass(frozen=True)
class EntryMatch:
    """One mapping entry considered for a membership, and whether (and through what) it matched."""

    number: int
    group: str
    role: str
    matched_through: tuple[str, ...]
    won: bool

    @property
    def matched(self) -> bool:
        return bool(self.matched_through)


@dataclass(frozen=True)
class Explanation:
    """Every entry that names one (team, case group), in file order, and the one that won.

    `role` is None when no entry for this team matched the user: the membership is not desired.
    """

    team: str
    case_group: str | None
    role: str | None
    entries: tuple[EntryMatch, ...]
    rule: RoleConflict = "highest"
    """The conflict rule that picked the winner among several matching entries."""

    @property
    def matched(self) -> tuple[EntryMatch, ...]:
        return tuple(e for e in self.entries if e.matched)

    @property
    def unmatched(self) -> tuple[EntryMatch, ...]:
        return tuple(e for e in self.entries if not e.matched)

    def __str__(self) -> str:
        """One line for `jit-bridge explain`: the result, then every entry and how it fared."""
        where = self.team if self.case_group is None else f"{self.team} / {self.case_group}"
        contested = len(self.matched) > 1
        parts = []
        for e in self.entries:
            if e.won:
                rule = f" ({RULE_TEXT[self.rule]})" if contested else ""
                how = f"won{rule}, through {', '.join(e.matched_through)}"
            elif e.matched:
                how = f"matched through {', '.join(e.matched_through)}, {self._lost_because(e)}"
            else:
                how = "no match"
            parts.append(f"mapping {e.number} ({e.group} → {e.role}): {how}")
        return f"{where}: {self.role or 'not granted'} — {'; '.join(parts)}"

    def _lost_because(self, entry: EntryMatch) -> str:
        if self.rule == "first_entry":
            return "a matching entry comes first"
        if self.role is not None and entry.role.upper() == self.role.upper():
            return "same role, later entry"
        return "lower role"


def _matches(selector: GroupSelector, user: IdpUser, policy: Policy) -> list[str]:
    return selector.matching_groups(user, policy.inherit_parent_groups)


@dataclass(frozen=True)
class _EntryIndex:
    """A mapping's entries by the group path or name their selector needs, so resolving a
    user looks only at entries that can match instead of at every entry: a full reconcile
    resolves every user, and scanning 300 entries per user cost 1.5 ms each (bench/)."""

    mapping: Mapping
    by_path: dict[str, list[MappingEntry]]
    by_name: dict[str, list[MappingEntry]]
    by_role: list[MappingEntry]

    @classmethod
    def of(cls, mapping: Mapping) -> _EntryIndex:
        index = cls(mapping, {}, {}, [])
        for entry in mapping.entries:
            kind = entry.group.kind
            if kind == "path":
                index.by_path.setdefault(entry.group.name, []).append(entry)
            elif kind == "name":
                index.by_name.setdefault(entry.group.name, []).append(entry)
            else:
                index.by_role.append(entry)
        return index

    def matches(
        self, user: IdpUser, paths: frozenset[str], inherit_parent_groups: bool
    ) -> list[tuple[MappingEntry, list[str]]]:
        """The entries that match `user` (whose group paths are `paths`), in file order,
        each with what it matched through (as `GroupSelector.matching_paths` would say)."""
        found: dict[int, tuple[MappingEntry, list[str]]] = {}
        for entry in self.by_role:
            through = entry.group.matching_paths(paths, user, inherit_parent_groups)
            if through:
                found[entry.number] = (entry, through)
        for path in paths:
            for entry in self.by_path.get(path, ()):
                found[entry.number] = (entry, [path])
            for entry in self.by_name.get(path.rsplit("/", 1)[-1], ()):
                found.setdefault(entry.number, (entry, []))[1].append(path)
        for entry, through in found.values():
            if entry.group.kind == "name":
                through.sort()
        return [found[number] for number in sorted(found)]


_last_index: _EntryIndex | None = None


def _index_for(mapping: Mapping) -> _EntryIndex:
    """The index of `mapping`, rebuilt only when the mapping object changes."""
    global _last_index
    index = _last_index
    if index is None or index.mapping is not mapping:
        index = _last_index = _EntryIndex.of(mapping)
    return index


RULE_TEXT = {"highest": "highest role wins", "first_entry": "first matching entry wins"}


def _winner(candidates: list[tuple[MappingEntry, list[str]]], policy: Policy) -> MappingEntry:
    entries = (entry for entry, _ in candidates)
    if policy.role_conflict == "first_entry":
        return min(entries, key=lambda e: e.number)
    return min(entries, key=lambda e: (_rank(e.role, policy.role_precedence), e.number))


def _decisive(
    candidates: list[tuple[MappingEntry, list[str]]], won: MappingEntry, policy: Policy
) -> list[tuple[MappingEntry, list[str]]]:
    """The matching entries that decide the role: under `highest` every entry granting the
    winning role (all would have to go before it changes), under `first_entry` the winner."""
    if policy.role_conflict == "first_entry":
        return [(entry, through) for entry, through in candidates if entry is won]
    return [(e, through) for e, through in candidates if e.role.upper() == won.role.upper()]


def _reasons(
    candidates: list[tuple[MappingEntry, list[str]]], won: MappingEntry, policy: Policy
) -> tuple[str, ...]:
    """`because` of a desired membership: the deciding entries, then the rule when others lost."""
    reasons = [
        _because(path, entry.number)
        for entry, through in _decisive(candidates, won, policy)
        for path in through
    ]
    lost = [e for e, _ in candidates if e.role.upper() != won.role.upper()]
    if lost:
        losers = ", ".join(f"mapping {e.number} ({e.role})" for e in lost)
        reasons.append(f"{RULE_TEXT[policy.role_conflict]} over {losers}")
    return tuple(reasons)


@lru_cache(maxsize=1 << 14)
def _because(path: str, number: int) -> str:
    """`group /Analysts → mapping 3`, one string however many users it explains."""
    return f"{describe_source(path)} → mapping {number}"


@lru_cache(maxsize=1024)
def _rank(role: str, precedence: tuple[str, ...]) -> int:
    return role_rank(role, precedence)


def _membership_candidates(
    mapping: Mapping, policy: Policy, user: IdpUser, paths: frozenset[str]
) -> dict[MembershipKey, list[tuple[MappingEntry, list[str]]]]:
    """Matching entries with the paths they matched through, grouped by membership, file order."""
    found: dict[MembershipKey, list[tuple[MappingEntry, list[str]]]] = {}
    for entry, through in _index_for(mapping).matches(user, paths, policy.inherit_parent_groups):
        found.setdefault(_membership_key(entry.team, entry.case_group), []).append((entry, through))
    return found


@lru_cache(maxsize=1 << 14)
def _membership_key(team: str, case_group: str | None) -> MembershipKey:
    """One (team, case group) tuple however many desired accesses hold it."""
    return (team, case_group)


@lru_cache(maxsize=1 << 16)
def _desired_membership(role: str, because: tuple[str, ...]) -> DesiredMembership:
    """One record per (role, because): a full plan holds a desired access for each of tens
    of thousands of combinations of groups, and most grant the same memberships for the same
    reasons (records are frozen, so sharing them is safe)."""
    return DesiredMembership(role=role, because=because)


def desired_access(mapping: Mapping, policy: Policy, user: IdpUser) -> DesiredAccess:
    """The memberships, tenant-owner flag and tenant permissions the mapping grants `user`."""
    paths = user_paths(user, policy.inherit_parent_groups)
    memberships: dict[MembershipKey, DesiredMembership] = {}
    for key, candidates in _membership_candidates(mapping, policy, user, paths).items():
        won = _winner(candidates, policy)
        memberships[key] = _desired_membership(won.role, _reasons(candidates, won, policy))

    owner_because = tuple(
        describe_source(path)
        for selector in mapping.tenant_owner_groups
        for path in selector.matching_paths(paths, user, policy.inherit_parent_groups)
    )

    permissions: dict[str, list[str]] = {}
    for grant in sorted(mapping.tenant_permissions, key=lambda g: g.number):
        for path in grant.group.matching_paths(paths, user, policy.inherit_parent_groups):
            for permission in grant.permissions:
                permissions.setdefault(permission, []).append(describe_source(path))

    return DesiredAccess(
        memberships=memberships,
        tenant_owner=bool(owner_because),
        owner_because=owner_because,
        permissions={p: tuple(dict.fromkeys(b)) for p, b in permissions.items()},
    )


def access_key(user: IdpUser) -> AccessKey:
    """The part of `user` that `desired_access` reads, order and repeats aside: two users
    with the same key are granted exactly the same (selectors only ask whether a path or
    role is among the user's)."""
    return (
        _canonical(user.groups),
        _canonical(user.realm_roles),
        tuple(
            sorted(
                (client, _canonical(roles)) for client, roles in user.client_roles.items() if roles
            )
        ),
        tuple(sorted((alias, _canonical(paths)) for alias, paths in user.organizations.items())),
    )


def _canonical(values: list[str]) -> tuple[str, ...]:
    return tuple(sorted(set(values)))


class DesiredAccessMemo:
    """`desired_access` computed once per distinct (group paths, realm roles, client roles)
    and shared by every user who has that combination.

    A full plan resolves every user, but people in one department mostly share their groups
    and roles, so there are far fewer combinations than users and resolving costs the
    combinations, not the users. Still pure: the memo lives as long as one plan, for one
    (mapping, policy). The results are shared, so callers must not change them.
    """

    def __init__(self, mapping: Mapping, policy: Policy) -> None:
        self.mapping = mapping
        self.policy = policy
        self._known: dict[AccessKey, DesiredAccess] = {}
        # The same, by the lists exactly as the user holds them: cheaper to build than the
        # key, and users of one combination mostly list it in the same order.
        self._as_listed: dict[tuple[object, ...], DesiredAccess] = {}

    def __call__(self, user: IdpUser) -> DesiredAccess:
        listed = (
            tuple(user.groups),
            tuple(user.realm_roles),
            tuple((c, tuple(r)) for c, r in user.client_roles.items()),
            tuple((a, tuple(p)) for a, p in user.organizations.items()),
        )
        found = self._as_listed.get(listed)
        if found is None:
            key = access_key(user)
            # A bulk read lists groups and roles sorted, so the key mostly equals the
            # listing: keep one of the two (tens of thousands of combinations at 100,000).
            if key == listed:
                key = listed
            found = self._known.get(key)
            if found is None:
                found = self._known[key] = desired_access(self.mapping, self.policy, user)
            self._as_listed[listed] = found
        return found

    def __len__(self) -> int:
        """Distinct combinations resolved so far."""
        return len(self._known)


def explain(mapping: Mapping, policy: Policy, user: IdpUser) -> list[Explanation]:
    """For every (team, case group) the mapping names: each entry, matched or not, and the winner.

    Sorted by team, then case group (the team itself first), like plan operations. The
    tenant-owner flag and permissions are explained by `desired_access(...).owner_because`
    and `.permissions`, which already name each granting group.
    """
    desired = desired_access(mapping, policy, user)
    by_key: dict[MembershipKey, list[MappingEntry]] = {}
    for entry in sorted(mapping.entries, key=lambda e: e.number):
        by_key.setdefault((entry.team, entry.case_group), []).append(entry)

    candidates = _membership_candidates(
        mapping, policy, user, user_paths(user, policy.inherit_parent_groups)
    )
    explanations = []
    for key in sorted(by_key, key=lambda k: (k[0], k[1] is not None, k[1] or "")):
        matched = candidates.get(key, [])
        winner = _winner(matched, policy).number if matched else None
        entries = tuple(
            EntryMatch(
                number=entry.number,
                group=entry.group.raw,
                role=entry.role,
                matched_through=tuple(_matches(entry.group, user, policy)),
                won=entry.number == winner,
            )
            for entry in by_key[key]
        )
        wanted = desired.memberships.get(key)
        explanations.append(
            Explanation(
                team=key[0],
                case_group=key[1],
                role=wanted.role if wanted else None,
                entries=entries,
                rule=policy.role_conflict,
            )
        )
    return explanations

"""Any SCIM 2.0 service (RFC 7643/7644) as a team-and-role target.

SCIM knows users and groups, not teams and roles, so memberships are groups named by a
template (`scim_groups.GroupNaming`): being a member of "Analytics:EDITOR" *is* having the role
EDITOR in the team Analytics, and of "Incident Response/Tier 1:VIEWER" the role VIEWER in the
case group Tier 1 of that team. Consequences worth knowing:

- Team and case group ids are their names (`Team.id == Team.name`); a team exists as soon as
  one of its role groups does. Groups whose names match no template are not ours and ignored.
- A user found in several role groups of one team (a hand edit, or a change_role interrupted
  half-way) is reported with the roles joined by "+" ("EDITOR+VIEWER"): a role no mapping
  grants, so enhanced mode plans a change_role that leaves exactly one.
- Tenant owners are the members of `owner_group` (when set). SCIM has no tenant permissions:
  they always read as empty and setting any is refused.
- Several groups with the same displayName (SCIM does not require it to be unique) count as
  one: a member of any is a member; removal removes from all; additions go to the first by id.
- A user is found by `userName` (the email; SCIM compares it case-insensitively, and so do we).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar, cast

import requests
from pydantic import ValidationError
from scim2_models import (
    Email,
    Group,
    GroupMember,
    ListResponse,
    Name,
    PatchOp,
    PatchOperation,
    Photo,
    Resource,
    SearchRequest,
    User,
)

from bridge.model import CaseGroup, Member, TargetState, TargetUser, Team
from bridge.targets.base import (
    Addition,
    AdditionDone,
    AdditionSending,
    AlreadyExistsError,
    BadRequestError,
    NotFoundError,
    Target,
    TargetError,
    TransientError,
    UnauthorizedError,
)
from bridge.targets.http import Backoff, RequestObserver, RequestStats
from bridge.targets.scim_groups import GroupKey, GroupNaming
from bridge.targets.scim_transport import SCIM_MAX_RETRIES, ScimHttpClient

log = logging.getLogger(__name__)

ResourceT = TypeVar("ResourceT", bound=Resource[Any])
#: Owners are read by id in chunks of this many `id eq` clauses per request.
_OWNER_CHUNK = 50
#: Members added to one group per request, unless the service is configured otherwise.
DEFAULT_PATCH_MAX_MEMBERS = 100


class BatchRefusedError(BadRequestError):
    """The service refused a request adding several members; which one it minded is unknown."""


@dataclass(frozen=True)
class _GroupRef:
    id: str
    name: str
    member_ids: frozenset[str]


def filter_value(value: str) -> str:
    """A SCIM filter string literal (RFC 7644 §3.4.2.2 uses JSON string syntax)."""
    escaped = value.replace("\\", "\\\\").replace('"', '\\"')
    return f'"{escaped}"'


class ScimTarget(Target):
    """A SCIM 2.0 service whose groups, named by template, carry teams and roles."""

    name = "scim"
    supports_email_change = True
    names_are_ids = True
    batches_memberships = True

    def __init__(
        self,
        base_url: str,
        token: str,
        *,
        group_template: str = "{team}:{role}",
        case_group_template: str = "{team}/{case_group}:{role}",
        owner_group: str | None = None,
        create_groups: bool = True,
        dry_run: bool = False,
        verify_tls: bool = True,
        timeout: float = 10,
        page_size: int = 100,
        patch_max_members: int = DEFAULT_PATCH_MAX_MEMBERS,
        max_retries: int = SCIM_MAX_RETRIES,
        backoff: Backoff | None = None,
        sleep: Callable[[float], None] = time.sleep,
        session: requests.Session | None = None,
        observe: RequestObserver | None = None,
    ) -> None:
        self.naming = GroupNaming(group_template, case_group_template)
        self.owner_group = owner_group
        self.create_groups = create_groups
        self.creates_missing_teams = create_groups
        self.holds_tenant_permissions = False
        self.holds_tenant_owners = owner_group is not None
        self.page_size = page_size
        if patch_max_members < 1:
            raise ValueError("patch_max_members must be at least 1")
        self.members_per_request = patch_max_members
        self._scim = ScimHttpClient(
            base_url,
            token,
            dry_run=dry_run,
            verify_tls=verify_tls,
            timeout=timeout,
            max_retries=max_retries,
            backoff=backoff,
            sleep=sleep,
            session=session,
            observe=observe,
        )
        # displayName → group ids, learnt from reads and creations; a miss asks the server.
        self._group_ids: dict[str, list[str]] = {}
        self._member_filter = True
        self._creating = threading.Lock()

    def __repr__(self) -> str:
        return f"ScimTarget({self._scim.base_url!r}, dry_run={self._scim.dry_run})"

    @property
    def stats(self) -> RequestStats:
        """Requests sent so far: reads and writes (one per call) and the retries they cost."""
        return self._scim.stats

    def close(self) -> None:
        self._scim.close()

    def name_problem(self, team: str, case_group: str | None, role: str) -> str | None:
        try:
            self.naming.group_name(GroupKey(team, case_group, role))
        except BadRequestError as exc:
            return str(exc)
        return None

    # -- reads ----------------------------------------------------------------------------
    def ping(self) -> None:
        self._scim.query(User, SearchRequest(count=1))

    def read_state(self) -> TargetState:
        """Every user and every group, page by page: 2 + pages requests, whatever the size."""
        users = list(self._pages(User))
        self._group_ids.clear()  # a full read replaces what we knew about group ids
        groups = self._remember(self._pages(Group))
        owners = self._owner_ids(groups)
        return TargetState(
            users=sorted(
                (_target_user(user, user.id in owners) for user in users if user.id),
                key=lambda user: user.email.lower(),
            ),
            teams=self._teams(groups),
        )

    def read_user_state(
        self, email: str, *, creating: bool = False, account_id: str | None = None
    ) -> TargetState:
        """That user, every owner, every team with only that user's memberships.

        Costs: one filtered user read, the group names page by page (members left out,
        `excludedAttributes=members`), one `members.value eq` group filter for the user's
        groups (scim2-server supports it; it saves reading every member list), the owner
        group, and one read per 50 owners.
        """
        found = self._find_user(email)
        if found is None and account_id is not None:
            found = next(iter(self._users_by_id([account_id])), None)
        all_groups = self._remember(self._pages(Group, excluded_attributes=["members"]))
        mine = self._groups_of(found.id) if found and found.id else []
        owner_groups = self._owner_groups()
        owners = self._owner_ids(owner_groups)
        users = {user.id: user for user in self._users_by_id(owners) if user.id}
        if found and found.id:
            users[found.id] = found
        mine_ids = {group.id for group in mine}
        only_user = frozenset([found.id]) if found and found.id else frozenset()
        groups = [
            _GroupRef(group.id, group.name, only_user if group.id in mine_ids else frozenset())
            for group in all_groups
        ]
        return TargetState(
            users=sorted(
                (_target_user(user, user_id in owners) for user_id, user in users.items()),
                key=lambda user: user.email.lower(),
            ),
            teams=self._teams(groups),
        )

    # -- writes ---------------------------------------------------------------------------
    def create_user(
        self,
        email: str,
        first_name: str | None,
        last_name: str | None,
        avatar_url: str | None,
    ) -> TargetUser:
        """POST /Users; a taken userName (409, compared case-insensitively) → AlreadyExistsError."""
        try:
            user = self._new_user(email, first_name, last_name, avatar_url)
        except ValidationError as exc:
            raise BadRequestError(
                f"cannot create SCIM user {email!r}: {exc.errors()[0]['msg']}"
            ) from exc
        created = cast(User[Any], self._scim.create(user))
        return _target_user(created, False)

    @staticmethod
    def _new_user(
        email: str, first_name: str | None, last_name: str | None, avatar_url: str | None
    ) -> User[Any]:
        return User(
            user_name=email,
            name=Name(given_name=first_name, family_name=last_name)
            if first_name or last_name
            else None,
            emails=[Email(value=email, type=Email.Type.work, primary=True)],
            photos=[Photo(value=avatar_url, type=Photo.Type.photo)] if avatar_url else None,
            active=True,
        )

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
        """Names and active in one PATCH; the owner flag is membership of `owner_group`."""
        if tenant_permissions:
            raise BadRequestError(
                f"SCIM has no tenant permissions; cannot grant {tenant_permissions} to "
                f"{user.email}. Remove tenant_permission from the mapping for a SCIM target."
            )
        replace = {
            "name.givenName": first_name,
            "name.familyName": last_name,
            "active": active,
        }
        operations = [
            PatchOperation[User[Any]](op=PatchOperation.Op.replace_, path=path, value=value)
            for path, value in replace.items()
            if value is not None
        ]
        if operations:
            self._scim.modify(User, user.id, PatchOp[User[Any]](operations=operations))
        if tenant_owner is not None:
            self._set_owner(user, tenant_owner)
        changes = {
            "first_name": first_name,
            "last_name": last_name,
            "tenant_owner": tenant_owner,
            "active": active,
        }
        return user.model_copy(update={k: v for k, v in changes.items() if v is not None})

    def change_email(self, user: TargetUser, email: str) -> TargetUser:
        """One PATCH replacing `userName` (the email, for this connector) and `emails`."""
        operations = [
            PatchOperation[User[Any]](op=PatchOperation.Op.replace_, path="userName", value=email),
            PatchOperation[User[Any]](
                op=PatchOperation.Op.replace_,
                path="emails",
                value=[Email(value=email, type=Email.Type.work, primary=True)],
            ),
        ]
        self._scim.modify(User, user.id, PatchOp[User[Any]](operations=operations))
        return user.model_copy(update={"email": email})

    def add_membership(
        self, user: TargetUser, team_id: str, case_group_id: str | None, role: str
    ) -> None:
        """PATCH `add members` on the role group, creating it if missing (`create_groups`)."""
        self._join(self.naming.group_name(GroupKey(team_id, case_group_id, role)), user)

    def add_memberships(
        self, additions: Sequence[Addition], done: AdditionDone, sending: AdditionSending
    ) -> None:
        """Additions to one role group go in one PATCH (or the POST that creates the group),
        at most `patch_max_members` members each. A request the service refuses is sent
        again one member at a time, so one member it will not take (an id it does not know,
        say) costs only that member; each addition's own outcome goes to `done`."""
        by_group: dict[str, list[int]] = {}
        for index, addition in enumerate(additions):
            key = GroupKey(addition.team_id, addition.case_group_id, addition.role)
            try:
                name = self.naming.group_name(key)
            except BadRequestError as exc:
                done(index, exc)
                continue
            by_group.setdefault(name, []).append(index)
        for name, indexes in by_group.items():
            for start in range(0, len(indexes), self.members_per_request):
                chunk = indexes[start : start + self.members_per_request]
                if not sending(chunk):
                    return
                self._add_chunk(name, [(i, additions[i].user) for i in chunk], done, sending)

    def _add_chunk(
        self,
        group_name: str,
        members: list[tuple[int, TargetUser]],
        done: AdditionDone,
        sending: AdditionSending,
    ) -> None:
        try:
            self._join_all(group_name, [user for _, user in members])
        except (TransientError, UnauthorizedError) as exc:
            for index, _ in members:
                done(index, exc)
            raise
        except TargetError as exc:
            if len(members) == 1:
                done(members[0][0], exc)
                return
            log.warning(
                "SCIM group %r refused %d members in one request (%s); adding them one by one",
                group_name,
                len(members),
                exc,
            )
            for index, user in members:
                if not sending([index]):
                    return
                try:
                    self._join(group_name, user)
                except (TransientError, UnauthorizedError) as single:
                    done(index, single)
                    raise
                except TargetError as single:
                    done(index, single)
                else:
                    done(index, None)
        else:
            for index, _ in members:
                done(index, None)

    def change_role(
        self, user: TargetUser, team_id: str, case_group_id: str | None, role: str
    ) -> None:
        """Join the new role group first, then leave every other role group of that place.

        Granting before revoking: if the second step fails, the user holds both roles — the
        one they had and the one the IdP now grants, never anything beyond either — and the
        next read reports "OLD+NEW", which plans the change again. Revoking first would leave
        a failure with no access at all: a locked-out user mid-incident, for a window no
        safer than the one we accept, since the old role was theirs until this very call.
        """
        key = GroupKey(team_id, case_group_id, role)
        name = self.naming.group_name(key)
        current = self._place_groups(user, team_id, case_group_id)
        if not any(group.name == name for group in current):
            self._join(name, user)
        self._leave((group for group in current if group.name != name), user)

    def remove_membership(self, user: TargetUser, team_id: str, case_group_id: str | None) -> None:
        """Leave every role group of that team (or case group). Not a member: no write."""
        self._leave(self._place_groups(user, team_id, case_group_id), user)

    # -- groups ---------------------------------------------------------------------------
    def _join(self, group_name: str, user: TargetUser) -> None:
        self._join_all(group_name, [user])

    def _join_all(self, group_name: str, users: list[TargetUser]) -> None:
        """Add the users to the group in one request, creating it when missing.

        What we knew about the group can be stale (deleted since: 404 on the PATCH; created
        by someone else meanwhile: 409 on the POST); both are resolved by re-reading once.
        """
        for attempt in range(2):
            ids = self._group_ids_named(group_name)
            try:
                if ids:
                    self._add_members(ids[0], group_name, users)
                    return
                with self._creating:  # two writers must not both create the group
                    ids = self._group_ids_named(group_name)
                    if ids:
                        self._add_members(ids[0], group_name, users)
                    else:
                        self._create_group(group_name, users)
                return
            except (NotFoundError, AlreadyExistsError):
                if attempt:
                    raise
                self._group_ids.pop(group_name, None)

    def _add_members(self, group_id: str, group_name: str, users: list[TargetUser]) -> None:
        add = PatchOp[Group](
            operations=[
                PatchOperation[Group](
                    op=PatchOperation.Op.add,
                    path="members",
                    value=[GroupMember(value=user.id) for user in users],
                )
            ]
        )
        try:
            self._scim.modify(Group, group_id, add)
        except AlreadyExistsError as exc:
            if len(users) > 1:
                # Which member was present, and were the others added? Unknown: one by one.
                raise BatchRefusedError(str(exc)) from exc
            # Some servers answer 409 to adding a present member; for us it is done.
            log.info("%s is already a member of SCIM group %r", users[0].email, group_name)

    def _create_group(self, group_name: str, users: list[TargetUser]) -> None:
        if not self.create_groups:
            raise BadRequestError(
                f"SCIM group {group_name!r} does not exist, so "
                f"{', '.join(user.email for user in users)} cannot be added; "
                "create it on the SCIM service or set scim_create_groups = true"
            )
        members = [GroupMember(value=user.id) for user in users]
        created = cast(Group, self._scim.create(Group(display_name=group_name, members=members)))
        if created.id:
            self._group_ids[group_name] = [created.id]

    def _leave(self, groups: Iterable[_GroupRef], user: TargetUser) -> None:
        path = f"members[value eq {filter_value(user.id)}]"
        remove = PatchOp[Group](
            operations=[PatchOperation[Group](op=PatchOperation.Op.remove, path=path)]
        )
        for group in groups:
            try:
                self._scim.modify(Group, group.id, remove)
            except NotFoundError:
                log.info("SCIM group %r is gone; %s is not in it", group.name, user.email)

    def _set_owner(self, user: TargetUser, owner: bool) -> None:
        if self.owner_group is None:
            raise BadRequestError(
                f"cannot change the tenant owner flag of {user.email}: no scim_owner_group is "
                "set, so this SCIM target has no owners"
            )
        if owner:
            self._join(self.owner_group, user)
            return
        groups = self._owner_groups()
        self._leave((group for group in groups if user.id in group.member_ids), user)

    def _place_groups(
        self, user: TargetUser, team_id: str, case_group_id: str | None
    ) -> list[_GroupRef]:
        """The user's role groups in one team (or case group)."""
        groups = []
        for group in self._groups_of(user.id):
            key = self._key(group.name)
            if key and key.team == team_id and key.case_group == case_group_id:
                groups.append(group)
        return groups

    def _groups_of(self, user_id: str) -> list[_GroupRef]:
        """The groups listing the user: one filtered read where the server can filter on
        `members.value` (scim2-server can), else every group read to find them."""
        if self._member_filter:
            query: SearchRequest[Any] = SearchRequest(
                filter=f"members.value eq {filter_value(user_id)}"
            )
            try:
                return self._remember(self._pages(Group, query))
            except BadRequestError:
                log.warning("the SCIM service cannot filter groups by member; reading them all")
                self._member_filter = False
        return [
            group for group in self._remember(self._pages(Group)) if user_id in group.member_ids
        ]

    def _owner_groups(self) -> list[_GroupRef]:
        if self.owner_group is None:
            return []
        query: SearchRequest[Any] = SearchRequest(
            filter=f"displayName eq {filter_value(self.owner_group)}"
        )
        return self._remember(self._pages(Group, query))

    def _group_ids_named(self, group_name: str) -> list[str]:
        if group_name not in self._group_ids:
            query: SearchRequest[Any] = SearchRequest(
                filter=f"displayName eq {filter_value(group_name)}", excluded_attributes=["members"]
            )
            self._group_ids[group_name] = []
            self._remember(self._pages(Group, query))
        return self._group_ids[group_name]

    def _remember(self, groups: Iterable[Group]) -> list[_GroupRef]:
        """Turn groups into refs and learn their ids (sorted, so "the first" is stable)."""
        refs = []
        for group in groups:
            if not group.id or group.display_name is None:
                continue
            members = frozenset(m.value for m in group.members or [] if m.value)
            refs.append(_GroupRef(group.id, group.display_name, members))
        ids: dict[str, set[str]] = defaultdict(set)
        for ref in refs:
            ids[ref.name].add(ref.id)
        for group_name, found in ids.items():
            self._group_ids[group_name] = sorted(found | set(self._group_ids.get(group_name, ())))
        return refs

    def _key(self, group_name: str) -> GroupKey | None:
        if group_name == self.owner_group:
            return None
        return self.naming.parse(group_name)

    def _owner_ids(self, groups: Iterable[_GroupRef]) -> frozenset[str]:
        owners: set[str] = set()
        for group in groups:
            if group.name == self.owner_group:
                owners |= group.member_ids
        return frozenset(owners)

    def _teams(self, groups: Iterable[_GroupRef]) -> list[Team]:
        """Teams, their case groups and members from the groups that are ours."""
        roles: dict[tuple[str, str | None], dict[str, set[str]]] = defaultdict(
            lambda: defaultdict(set)
        )
        for group in groups:
            key = self._key(group.name)
            if key is None:
                continue
            place = roles[(key.team, key.case_group)]
            for user_id in group.member_ids:
                place[user_id].add(key.role)
        teams = sorted({team for team, _case_group in roles})

        def members(team: str, case_group: str | None) -> list[Member]:
            held = roles.get((team, case_group), {})
            return [
                Member(user_id=user_id, role="+".join(sorted(held[user_id])))
                for user_id in sorted(held)
            ]

        return [
            Team(
                id=team,
                name=team,
                members=members(team, None),
                case_groups=[
                    CaseGroup(id=case_group, name=case_group, members=members(team, case_group))
                    for owner, case_group in sorted(roles, key=lambda k: (k[0], k[1] or ""))
                    if owner == team and case_group is not None
                ],
            )
            for team in teams
        ]

    # -- users and paging -----------------------------------------------------------------
    def _find_user(self, email: str) -> User[Any] | None:
        query: SearchRequest[Any] = SearchRequest(filter=f"userName eq {filter_value(email)}")
        for user in self._pages(User, query):
            if (user.user_name or "").lower() == email.lower():
                return user
        return None

    def _users_by_id(self, user_ids: Iterable[str]) -> Iterator[User[Any]]:
        wanted = sorted(user_ids)
        for start in range(0, len(wanted), _OWNER_CHUNK):
            chunk = wanted[start : start + _OWNER_CHUNK]
            clauses = " or ".join(f"id eq {filter_value(user_id)}" for user_id in chunk)
            yield from self._pages(User, SearchRequest(filter=clauses))

    def _pages(
        self,
        model: type[ResourceT],
        query: SearchRequest[Any] | None = None,
        excluded_attributes: list[str] | None = None,
    ) -> Iterator[ResourceT]:
        """Every resource a list request matches, `page_size` at a time (startIndex/count).

        Stops at totalResults, or at an empty or short page for servers that count wrong.
        """
        base = query or SearchRequest()
        if excluded_attributes:
            base = base.model_copy(update={"excluded_attributes": excluded_attributes})
        start = 1
        while True:
            page = base.model_copy(update={"start_index": start, "count": self.page_size})
            response = cast(ListResponse[ResourceT], self._scim.query(model, page))
            resources = response.resources or []
            yield from resources
            start += len(resources)
            total = response.total_results or 0
            if not resources or len(resources) < self.page_size or start > total:
                return


def _target_user(user: User[Any], tenant_owner: bool) -> TargetUser:
    name = user.name
    return TargetUser(
        id=user.id or "",
        email=user.user_name or "",
        first_name=name.given_name if name else None,
        last_name=name.family_name if name else None,
        tenant_owner=tenant_owner,
        active=user.active is not False,
    )

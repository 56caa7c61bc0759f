"""The planner: desired state (from the mapping) against actual state (from the target) → a Plan.

Pure: a function of (mapping, policy, identity view, target state, trigger, scope). It knows
the modes and the protections (docs/design.md: Modes, Safety) that are about *what* may change (fail
closed, protected users, the last tenant owner). The removal budget, which is about *how
much* may change at once, is `bridge.guard`.

Rules chosen where the contract is silent:
- A mapped team or case group the target does not have is still planned as an addition: the
  apply step reports the error (Tines) or creates the group (SCIM, `scim_create_groups`).
- A Keycloak user without an email is skipped under the pseudo-email `(no email) USERNAME`
  (the id when the username is empty), so the skipped list still names who it is.
- Several Keycloak users sharing one email are all skipped: the email could be anyone's.
- The tenant-owner flag is only managed when the mapping names a `tenant_owners_groups`
  group (as Tines' SCIM guide lets an owner group be mapped later without stripping owners);
  tenant permissions only when the mapping has a `tenant_permission` section. With
  `manage_teams = "mapped"` only the permissions the mapping names are managed.
- A disabled or deleted user loses the owner flag and the managed permissions whatever the
  mapping says about owners (`remove_access` means all access), still under fail closed and
  the last-owner rule.
- A profile field Keycloak leaves empty is not cleared in the target.
- Role names are compared case-insensitively (legacy mappings write them in lower case).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Container, Iterable, Sequence
from dataclasses import dataclass
from functools import cached_property, partial

from bridge.keys import acts_on
from bridge.mapping import Mapping
from bridge.model import (
    AccountPair,
    ActivateUser,
    AddMembership,
    ChangeEmail,
    ChangeRole,
    CreateUser,
    DeactivateUser,
    IdentityView,
    IdpUser,
    Operation,
    Plan,
    RemoveMembership,
    SetTenantOwner,
    SetTenantPermissions,
    Skipped,
    TargetState,
    TargetUser,
    Trigger,
    UpdateProfile,
)
from bridge.policy import Policy
from bridge.resolve import (
    DesiredAccess,
    DesiredAccessMemo,
    MembershipKey,
    desired_access,
    is_downgrade,
)

NOT_GRANTED = "no mapped group grants this"
DELETED = "deleted in Keycloak"
EMAIL_CHANGED = "email changed in Keycloak"
ORPHAN = "orphan: no Keycloak user has this email"
LAST_OWNER = "last tenant owner"
SHARED_EMAIL = "several Keycloak users share this email"
NOT_YET_CREATED = "not in target yet; created at first login"


# ------------------------------------------------------------------------------------------
# Reading the inputs


def membership_label(team: str, case_group: str | None) -> str:
    return team if case_group is None else f"{team} / {case_group}"


def target_memberships(target: TargetState) -> dict[str, dict[MembershipKey, str]]:
    """user id → {(team, case group): role} for every membership the target lists."""
    found: dict[str, dict[MembershipKey, str]] = {}
    for team in target.teams:
        key: MembershipKey = (team.name, None)  # one tuple per team, not per member
        for member in team.members:
            found.setdefault(member.user_id, {})[key] = member.role
        for case_group in team.case_groups:
            key = (team.name, case_group.name)
            for member in case_group.members:
                found.setdefault(member.user_id, {})[key] = member.role
    return found


def target_users_by_email(target: TargetState) -> dict[str, TargetUser]:
    """Lower-case email → user; the first listed wins if the target holds the same email twice."""
    found: dict[str, TargetUser] = {}
    for user in target.users:
        found.setdefault(user.email.lower(), user)
    return found


@dataclass(frozen=True)
class _Unreadable:
    """What a selector that could not be read might grant: none of it may be taken away."""

    memberships: dict[MembershipKey, str]
    owner: str | None
    permissions: dict[str, str]

    @classmethod
    def of(cls, mapping: Mapping, identity: IdentityView) -> _Unreadable:
        unreadable = identity.unreadable_groups

        def why(raw: str) -> str:
            return f"mapped group {raw} could not be read ({unreadable[raw]})"

        memberships: dict[MembershipKey, str] = {}
        for entry in mapping.entries:
            if entry.group.raw in unreadable:
                memberships.setdefault((entry.team, entry.case_group), why(entry.group.raw))
        owner = next((why(s.raw) for s in mapping.tenant_owner_groups if s.raw in unreadable), None)
        permissions: dict[str, str] = {}
        for grant in mapping.tenant_permissions:
            if grant.group.raw in unreadable:
                for permission in grant.permissions:
                    permissions.setdefault(permission, why(grant.group.raw))
        return cls(memberships=memberships, owner=owner, permissions=permissions)


@dataclass(frozen=True)
class _Context:
    mapping: Mapping
    policy: Policy
    unreadable: _Unreadable
    trigger: Trigger
    #: A user's desired access: `desired_access`, memoised per combination of groups and roles.
    desired: Callable[[IdpUser], DesiredAccess]
    #: Emails whose first login began and did not finish (bridge.store.first_logins).
    unfinished: frozenset[str] = frozenset()
    #: Emails of the orphan accounts of this plan (see `_identities`).
    orphans: frozenset[str] = frozenset()

    @cached_property
    def managed_teams(self) -> frozenset[str]:
        return self.mapping.managed_teams()


@dataclass
class _UserPlan:
    operations: list[Operation]
    skipped: list[Skipped]


def _skip(email: str, reason: str) -> _UserPlan:
    return _UserPlan(operations=[], skipped=[Skipped(email=email, reason=reason)])


# ------------------------------------------------------------------------------------------
# One user


def _new_user(ctx: _Context, email: str, user: IdpUser) -> list[Operation]:
    """create_user, then everything the mapping grants: the whole of JIT's first login."""
    desired = ctx.desired(user)
    avatars = user.attributes.get(ctx.policy.avatar_attribute, [])
    ops: list[Operation] = [
        CreateUser(
            email=email,
            first_name=user.first_name,
            last_name=user.last_name,
            avatar_url=avatars[0] if avatars else None,
        )
    ]
    for (team, case_group), want in desired.memberships.items():
        ops.append(
            AddMembership(
                email=email,
                team=team,
                case_group=case_group,
                role=want.role,
                because=list(want.because),
            )
        )
    if desired.tenant_owner:
        ops.append(SetTenantOwner(email=email, value=True, because=list(desired.owner_because)))
    if desired.permissions:
        ops.append(
            SetTenantPermissions(
                email=email,
                add=sorted(desired.permissions),
                because=_permission_because(desired, desired.permissions),
            )
        )
    return ops


def _permission_because(desired: DesiredAccess, permissions: Iterable[str]) -> list[str]:
    """The groups that grant `permissions`, each named once."""
    return list(dict.fromkeys(b for p in sorted(permissions) for b in desired.permissions[p]))


def _is_managed(ctx: _Context, key: MembershipKey) -> bool:
    return ctx.policy.manage_teams == "all" or key[0] in ctx.managed_teams


def _same_role(want: str, have: str) -> bool:
    return want == have or want.upper() == have.upper()


def _membership_changes(
    ctx: _Context,
    email: str,
    desired: DesiredAccess,
    actual: dict[MembershipKey, str],
    removal_because: list[str],
) -> _UserPlan:
    result = _UserPlan(operations=[], skipped=[])
    wanted = desired.memberships
    if len(wanted) == len(actual) and all(
        (want := wanted.get(key)) is not None and _same_role(want.role, have)
        for key, have in actual.items()
    ):
        return result  # already as the mapping wants: most users of a full reconcile
    precedence = ctx.policy.role_precedence
    for key in wanted.keys() | actual.keys():
        team, case_group = key
        want = wanted.get(key)
        have = actual.get(key)
        held_by = ctx.unreadable.memberships.get(key)
        label = membership_label(team, case_group)
        if want is not None and have is None:
            result.operations.append(
                AddMembership(
                    email=email,
                    team=team,
                    case_group=case_group,
                    role=want.role,
                    because=list(want.because),
                )
            )
        elif want is not None and have is not None and not _same_role(want.role, have):
            if held_by and is_downgrade(have, want.role, precedence):
                result.skipped.append(
                    Skipped(email=email, reason=f"{label}: {have} kept, {held_by}")
                )
                continue
            result.operations.append(
                ChangeRole(
                    email=email,
                    team=team,
                    case_group=case_group,
                    from_role=have,
                    to_role=want.role,
                    because=list(want.because),
                )
            )
        elif want is None and have is not None and _is_managed(ctx, key):
            if held_by:
                result.skipped.append(
                    Skipped(email=email, reason=f"{label}: {have} kept, {held_by}")
                )
                continue
            result.operations.append(
                RemoveMembership(
                    email=email,
                    team=team,
                    case_group=case_group,
                    role=have,
                    because=removal_because,
                )
            )
    return result


def _owner_change(
    ctx: _Context, email: str, desired: DesiredAccess, current: TargetUser, gone: str | None
) -> _UserPlan:
    managed = gone is not None or bool(ctx.mapping.tenant_owner_groups)
    if not managed or desired.tenant_owner == current.tenant_owner:
        return _UserPlan(operations=[], skipped=[])
    if desired.tenant_owner:
        op = SetTenantOwner(email=email, value=True, because=list(desired.owner_because))
        return _UserPlan(operations=[op], skipped=[])
    if ctx.unreadable.owner:
        return _skip(email, f"tenant owner kept, {ctx.unreadable.owner}")
    because = [gone] if gone else ["no tenant_owners_groups group"]
    return _UserPlan(
        operations=[SetTenantOwner(email=email, value=False, because=because)], skipped=[]
    )


def _managed_permissions(ctx: _Context, current: list[str], gone: str | None) -> set[str]:
    if gone is None and not ctx.mapping.tenant_permissions:
        return set()
    if ctx.policy.manage_teams == "all":
        return set(current)
    return {p for grant in ctx.mapping.tenant_permissions for p in grant.permissions}


def _permission_change(
    ctx: _Context, email: str, desired: DesiredAccess, current: TargetUser, gone: str | None
) -> _UserPlan:
    result = _UserPlan(operations=[], skipped=[])
    if not desired.permissions and not current.tenant_permissions:
        return result  # nothing to add, nothing to remove: the common case, kept cheap
    have = set(current.tenant_permissions)
    add = sorted(set(desired.permissions) - have)
    remove = []
    for permission in sorted(
        (have & _managed_permissions(ctx, current.tenant_permissions, gone))
        - set(desired.permissions)
    ):
        held_by = ctx.unreadable.permissions.get(permission)
        if held_by:
            result.skipped.append(
                Skipped(email=email, reason=f"permission {permission} kept, {held_by}")
            )
        else:
            remove.append(permission)
    if add or remove:
        because = _permission_because(desired, add)
        if remove:
            because.append(gone or NOT_GRANTED)
        result.operations.append(
            SetTenantPermissions(email=email, add=add, remove=remove, because=because)
        )
    return result


def _profile_change(email: str, user: IdpUser, current: TargetUser) -> list[Operation]:
    changes: dict[str, str | None] = {}
    if user.first_name is not None and user.first_name != current.first_name:
        changes["first_name"] = user.first_name
    if user.last_name is not None and user.last_name != current.last_name:
        changes["last_name"] = user.last_name
    return [UpdateProfile(email=email, changes=changes)] if changes else []


def _existing_user(
    ctx: _Context,
    email: str,
    user: IdpUser | None,
    current: TargetUser,
    actual: dict[MembershipKey, str],
    gone: str | None,
) -> _UserPlan:
    """Enhanced mode: make an existing user match the mapping, or strip a gone user's access."""
    policy = ctx.policy
    if gone and policy.on_idp_user_disabled == "ignore":
        return _skip(email, f"{gone}; on_idp_user_disabled = ignore")
    desired = DesiredAccess()
    if user is not None and not gone:
        desired = ctx.desired(user)

    result = _UserPlan(operations=[], skipped=[])
    manages_active = policy.on_idp_user_disabled == "deactivate"
    if manages_active and not gone and not current.active:
        result.operations.append(ActivateUser(email=email, because=["enabled in Keycloak"]))
    parts = [
        _membership_changes(ctx, email, desired, actual, [gone] if gone else [NOT_GRANTED]),
        _owner_change(ctx, email, desired, current, gone),
        _permission_change(ctx, email, desired, current, gone),
    ]
    for part in parts:
        result.operations.extend(part.operations)
        result.skipped.extend(part.skipped)
    if policy.sync_profile and user is not None and not gone:
        result.operations.extend(_profile_change(email, user, current))
    if manages_active and gone and current.active:
        result.operations.append(DeactivateUser(email=email, because=[gone]))
    return result


def _gone_reason(user: IdpUser | None, gone: str | None) -> str | None:
    if user is not None and user.enabled:
        return None
    if user is not None:
        return "disabled in Keycloak"
    return gone


def _plan_email(
    ctx: _Context,
    email: str,
    user: IdpUser | None,
    gone_because: str | None,
    current: TargetUser | None,
    actual: dict[MembershipKey, str],
    target_only_known: bool,
) -> _UserPlan:
    policy = ctx.policy
    if policy.is_protected(email):
        return _skip(email, "protected")
    if user is not None and policy.require_verified_email and not user.email_verified:
        return _skip(email, "email not verified")
    gone = _gone_reason(user, gone_because)
    if user is None and gone is None:
        if target_only_known and email not in ctx.orphans:
            return _skip(email, "not in Keycloak; left alone")
        return _UserPlan(operations=[], skipped=[])
    if current is None:
        if gone:
            return (
                _skip(email, f"{gone}; not created")
                if user and ctx.trigger == "login"
                else (_UserPlan(operations=[], skipped=[]))
            )
        if ctx.trigger == "login" and user is not None:
            return _UserPlan(operations=_new_user(ctx, email, user), skipped=[])
        return _skip(email, NOT_YET_CREATED)
    if policy.mode == "jit":
        if email in ctx.unfinished and user is not None and ctx.trigger == "login":
            return _UserPlan(
                operations=_finish_first_login(ctx, email, user, current, actual), skipped=[]
            )
        return _UserPlan(operations=[], skipped=[])
    return _existing_user(ctx, email, user, current, actual, gone)


def _finish_first_login(
    ctx: _Context,
    email: str,
    user: IdpUser,
    current: TargetUser,
    actual: dict[MembershipKey, str],
) -> list[Operation]:
    """The rest of a first login that was cut short after the user was created: what it
    grants and the target does not have yet. Only additions: anything already there (even
    with another role) was put there by someone and is left alone, as jit leaves existing
    users alone."""
    ops: list[Operation] = []
    for op in _new_user(ctx, email, user)[1:]:
        if isinstance(op, AddMembership) and (op.team, op.case_group) in actual:
            continue
        if isinstance(op, SetTenantOwner) and current.tenant_owner:
            continue
        if isinstance(op, SetTenantPermissions):
            missing = sorted(set(op.add) - set(current.tenant_permissions))
            if not missing:
                continue
            op = op.model_copy(update={"add": missing})
        ops.append(op)
    return ops


# ------------------------------------------------------------------------------------------
# Across users


def _revokes_owner(op: Operation) -> bool:
    return isinstance(op, DeactivateUser) or (isinstance(op, SetTenantOwner) and not op.value)


def _owner_after(email: str, ops: list[Operation], current: TargetUser | None) -> bool:
    """Whether `email` is an active tenant owner once `ops` are applied."""
    if any(_revokes_owner(op) for op in ops):
        return False
    owner = any(isinstance(op, SetTenantOwner) for op in ops) or bool(
        current and current.tenant_owner
    )
    active = any(isinstance(op, CreateUser | ActivateUser) for op in ops) or bool(
        current and current.active
    )
    return owner and active


def _protect_last_owner(by_email: dict[str, _UserPlan], target: TargetState) -> None:
    """Stop the revocations that would leave the tenant with no active owner (docs/design.md,
    Safety).

    New owners the same plan creates count: the tenant is not left ownerless. When none
    remain, the current owner with the lowest email keeps the flag and stays active.
    """
    users = target_users_by_email(target)
    owners_now = sorted(e for e, u in users.items() if u.tenant_owner and u.active)
    if not owners_now:
        return
    for email in by_email.keys() | users.keys():
        ops = by_email[email].operations if email in by_email else []
        if _owner_after(email, ops, users.get(email)):
            return
    keeper = by_email[owners_now[0]]
    for op in [op for op in keeper.operations if _revokes_owner(op)]:
        keeper.operations.remove(op)
        keeper.skipped.append(Skipped(email=op.email, reason=f"{LAST_OWNER}: {op.op} not planned"))


_KIND_ORDER = {
    "change_email": 0,
    "create_user": 0,
    "activate_user": 1,
    "add_membership": 2,
    "change_role": 2,
    "remove_membership": 2,
    "set_tenant_owner": 3,
    "set_tenant_permissions": 4,
    "update_profile": 5,
    "deactivate_user": 6,
}


def operation_order(op: Operation) -> tuple[str, int, str, bool, str]:
    """The order of docs/design.md, Formats: email, then kind, memberships by team and case group
    (none first)."""
    team = getattr(op, "team", "")
    case_group = getattr(op, "case_group", None)
    return (op.email, _KIND_ORDER[op.op], team, case_group is not None, case_group or "")


def _identity_by_email(
    identity: IdentityView, wanted: Callable[[str], bool], full: bool
) -> tuple[dict[str, IdpUser], list[Skipped], Container[str]]:
    """Keycloak users by lower-case email, those that cannot be matched to a target user,
    and every lower-case email a Keycloak user has (shared ones too).

    A user without an email can never be in a per-user scope, so is only listed in full plans.
    """
    emails = [(u.email or "").strip().lower() for u in identity.users]
    counts = Counter(emails)
    found: dict[str, IdpUser] = {}
    skipped: list[Skipped] = []
    for email, user in zip(emails, identity.users, strict=True):
        if not email:
            if full:
                name = user.username or user.id
                skipped.append(Skipped(email=f"(no email) {name}", reason="no email"))
        elif counts[email] == 1:
            found[email] = user
    skipped += [
        Skipped(email=email, reason=SHARED_EMAIL)
        for email, n in counts.items()
        if email and n > 1 and wanted(email)
    ]
    counts.pop("", None)
    return found, skipped, counts.keys()


@dataclass(frozen=True)
class _Identities:
    """What the stored pairs (Keycloak id ↔ account) say about the accounts of one plan."""

    #: lower-case email of an account → why its Keycloak user is gone (deleted, email
    #: changed where the target cannot follow, orphan under remove_access).
    gone: dict[str, str]
    #: new lower-case email → the account (under its old email) that takes it.
    renames: dict[str, TargetUser]
    orphans: frozenset[str]


def _identities(
    policy: Policy,
    identity: IdentityView,
    idp: dict[str, IdpUser],
    target: TargetState,
    pairs: Sequence[AccountPair],
    email_changes: bool,
    complete: bool,
    by_email: dict[str, TargetUser],
    living: Container[str],
) -> _Identities:
    """Follow the Keycloak id, not the email (docs/design.md, Identity):

    - a paired account whose Keycloak user is confirmed deleted (a 404 for the id, or absent
      from a complete read) is gone, unless a living Keycloak user has its email now;
    - a paired account whose user's email changed is renamed where the target can, else it
      is gone (the new email is provisioned at its next login): never two accounts with
      access for one Keycloak user;
    - in a complete read, an account never paired whose email no Keycloak user has, in a
      managed email domain, is an orphan (gone too with orphan_accounts = remove_access).
    """
    gone = {e.lower(): DELETED for e in identity.deleted_users}
    renames: dict[str, TargetUser] = {}
    by_id = {u.id: u for u in target.users}
    idp_by_id = {u.id: u for u in identity.users}
    deleted_ids = set(identity.deleted_ids)
    for pair in sorted(pairs, key=lambda p: p.user_id):
        account = by_id.get(pair.account_id)
        if account is None:
            continue
        old = account.email.lower()
        user = idp_by_id.get(pair.user_id)
        if user is None:
            if (pair.user_id in deleted_ids or complete) and old not in living:
                gone.setdefault(old, DELETED)
            continue
        new = (user.email or "").strip().lower()
        if not new or new == old or new not in idp or old in living or policy.is_protected(old):
            continue
        if email_changes and new not in by_email and new not in renames:
            renames[new] = account
        else:
            gone.setdefault(old, f"{EMAIL_CHANGED} (now {new})")
    orphans: set[str] = set()
    if complete:
        paired = {p.account_id for p in pairs}
        renamed = {a.email.lower() for a in renames.values()}
        for email, account in by_email.items():
            if account.id in paired or email in living or email in gone or email in renamed:
                continue
            if policy.in_managed_domain(email) and not policy.is_protected(email):
                orphans.add(email)
                if policy.orphan_accounts == "remove_access":
                    gone[email] = ORPHAN
    return _Identities(gone=gone, renames=renames, orphans=frozenset(orphans))


def plan(
    mapping: Mapping,
    policy: Policy,
    identity: IdentityView,
    target: TargetState,
    trigger: Trigger,
    scope: frozenset[str] | None,
    unfinished: frozenset[str] = frozenset(),
    *,
    share_desired: bool = True,
    pairs: Sequence[AccountPair] = (),
    email_changes: bool = False,
) -> Plan:
    """What a sync would do. `scope` None plans for everyone; otherwise for those lower-case emails.

    Users outside the scope are not considered at all. In jit mode only a login trigger plans
    anything (a changed email is followed in both modes). `unfinished`: emails whose first
    login began and did not finish; in jit mode a login finishes it (adds what it grants and
    the target lacks). `share_desired` False resolves every user on their own instead of
    once per combination of groups and roles (the same plan, slower: the reference the memo
    is tested against). `pairs`: the stored Keycloak id ↔ account pairs for the users in
    scope (all of them for a full plan); `email_changes`: the target can change an
    account's email.
    """
    empty = Plan(mode=policy.mode, trigger=trigger)
    if not acts_on(policy.mode, trigger):
        return empty
    in_scope = None if scope is None else {e.lower() for e in scope}

    def wanted(email: str) -> bool:
        return in_scope is None or email in in_scope

    idp, skipped, living = _identity_by_email(identity, wanted, full=scope is None)

    users = target_users_by_email(target)
    memberships = target_memberships(target)
    desired: Callable[[IdpUser], DesiredAccess] = (
        DesiredAccessMemo(mapping, policy)
        if share_desired
        else partial(desired_access, mapping, policy)
    )
    target_only_known = identity.complete and scope is None
    ids = _identities(
        policy, identity, idp, target, pairs, email_changes, target_only_known, users, living
    )
    ctx = _Context(
        mapping,
        policy,
        _Unreadable.of(mapping, identity),
        trigger,
        desired,
        unfinished,
        ids.orphans,
    )
    renamed_from = {a.email.lower(): new for new, a in ids.renames.items()}

    by_email: dict[str, _UserPlan] = {}
    shared = {s.email for s in skipped}
    for email in sorted(idp.keys() | ids.gone.keys() | users.keys()):
        if email in shared or not wanted(email) or email in renamed_from:
            continue
        current = users.get(email)
        renamed = ids.renames.get(email)
        if renamed is not None:
            current = renamed.model_copy(update={"email": email})
        actual = memberships.get(current.id, {}) if current else {}
        part = _plan_email(
            ctx, email, idp.get(email), ids.gone.get(email), current, actual, target_only_known
        )
        if renamed is not None:
            change = ChangeEmail(email=renamed.email.lower(), to=email, because=[EMAIL_CHANGED])
            part = _UserPlan(operations=[change, *part.operations], skipped=part.skipped)
        if part.operations or part.skipped:  # most users need nothing: keep only the rest
            by_email[email] = part

    _protect_last_owner(by_email, target)

    operations = [op for part in by_email.values() for op in part.operations]
    skipped += [s for part in by_email.values() for s in part.skipped]
    return Plan(
        mode=policy.mode,
        trigger=trigger,
        operations=sorted(operations, key=operation_order),
        skipped=sorted(skipped, key=lambda s: (s.email, s.reason)),
        orphans=sorted(e for e in ids.orphans if wanted(e)),
    )

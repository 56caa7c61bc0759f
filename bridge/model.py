"""The domain's data: what the identity provider says, what the target holds, and plans.

Every type here is a plain pydantic model with no behaviour that touches the network, the
database or the clock. The snapshot types double as the JSON formats of docs/design.md, Formats, so
the same classes load `--idp-snapshot` / `--target-snapshot` files and carry live reads.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, Self

from pydantic import BaseModel, ConfigDict, Field

# --------------------------------------------------------------------------------------
# Identity provider side (Keycloak, or any IdP through a snapshot)


_FIELD_SETS: dict[frozenset[str], set[str]] = {}


_TRUSTED_FIELDS: dict[type[BaseModel], tuple[tuple[str, ...], set[str]]] = {}


def _trusted_fields(cls: type[BaseModel]) -> tuple[tuple[str, ...], set[str]]:
    """A record class's field names in order, and the shared set of all of them."""
    found = _TRUSTED_FIELDS.get(cls)
    if found is None:
        names = tuple(cls.model_fields)
        given = set(names)
        found = _TRUSTED_FIELDS[cls] = (names, _FIELD_SETS.setdefault(frozenset(given), given))
    return found


class _Record(BaseModel):
    """A frozen record that the bulk reads can also build without validating (`trusted`)."""

    @classmethod
    def trusted(cls, **values: Any) -> Self:
        """A record from values its reader has already checked and converted, every field
        given: equal in every way to `cls(**values)`, without validating again.

        For the bulk reads' hot paths only (100,000 users and their memberships per full
        reconcile): validating costs 5 - 15 µs a record, this under 2. The reader checks at
        the trust boundary what validation would have (types of what the service sent), so
        a malformed answer still fails there, with the reader's message.
        """
        names, shared = _trusted_fields(cls)
        if values.keys() != shared:
            raise TypeError(f"{cls.__name__}.trusted needs exactly the fields {names}")
        record = cls.__new__(cls)
        # What `model_construct` sets; fields in declared order (dumps follow the dict's).
        ordered = values if tuple(values) == names else {name: values[name] for name in names}
        object.__setattr__(record, "__dict__", ordered)
        object.__setattr__(record, "__pydantic_fields_set__", shared)
        object.__setattr__(record, "__pydantic_extra__", None)
        object.__setattr__(record, "__pydantic_private__", None)
        return record


class _Strict(_Record):
    """Snapshot records refuse unknown keys so a typo in a hand-written file is caught.

    A full read holds hundreds of thousands of these (every user twice, every membership),
    and pydantic gives each its own set of the field names it was given, 200 - 700 bytes,
    up to a third of the record. Records are frozen, so nothing adds to that set in place
    (pydantic's `model_copy` copies it first): records given the same fields share one.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    def model_post_init(self, context: Any, /) -> None:
        given = self.__pydantic_fields_set__
        shared = _FIELD_SETS.setdefault(frozenset(given), given)
        object.__setattr__(self, "__pydantic_fields_set__", shared)


class IdpUser(_Strict):
    """One user as the identity provider sees them.

    `groups` holds direct memberships as full paths (`/Eng/SRE`); ancestors are implied by
    the planner when `inherit_parent_groups` is on. Roles are effective roles.
    """

    id: str
    username: str = ""
    email: str | None = None
    email_verified: bool = False
    first_name: str | None = None
    last_name: str | None = None
    enabled: bool = True
    attributes: dict[str, list[str]] = Field(default_factory=dict)
    groups: list[str] = Field(default_factory=list)
    realm_roles: list[str] = Field(default_factory=list)
    client_roles: dict[str, list[str]] = Field(default_factory=dict)
    organizations: dict[str, list[str]] = Field(default_factory=dict)
    """Keycloak Organizations the user is a member of, by alias, each with the full paths of
    the organization groups the user is a direct member of (empty when none)."""


class IdpSnapshot(_Strict):
    """The IdP snapshot file format (docs/design.md, Formats)."""

    users: list[IdpUser] = Field(default_factory=list)


class IdentityView(BaseModel):
    """What one read of the identity provider established, including what it could not.

    `users` are the users read. `deleted_ids` are ids of users the IdP confirmed no longer
    exist (a 404 for the user id); the planner treats the target account paired with such an
    id like a disabled user's, and never looks an account up by an email for it.
    `deleted_users` are emails treated the same way (snapshots and offline use).
    `unreadable_groups` maps a mapping group selector (as written in the mapping, e.g.
    `/Ops/Tier1` or `Managers`) to the reason it could not be read completely; the planner
    never removes or downgrades anything such a selector could grant (fail closed).
    `complete` is true when `users` is every user of the realm (a full reconcile), so a
    target user missing from it is known to be target-only.
    """

    model_config = ConfigDict(frozen=True)

    users: list[IdpUser] = Field(default_factory=list)
    deleted_users: list[str] = Field(default_factory=list)
    deleted_ids: list[str] = Field(default_factory=list)
    unreadable_groups: dict[str, str] = Field(default_factory=dict)
    complete: bool = False


# --------------------------------------------------------------------------------------
# Target side (Tines, SCIM)


class TargetUser(_Strict):
    id: str
    email: str
    first_name: str | None = None
    last_name: str | None = None
    tenant_owner: bool = False
    tenant_permissions: list[str] = Field(default_factory=list)
    active: bool = True


class Member(_Strict):
    user_id: str
    role: str


class CaseGroup(_Strict):
    id: str
    name: str
    members: list[Member] = Field(default_factory=list)


class Team(_Strict):
    id: str
    name: str
    members: list[Member] = Field(default_factory=list)
    case_groups: list[CaseGroup] = Field(default_factory=list)


class AccountPair(_Record):
    """The identity of one target account: the Keycloak user it belongs to (the id is the
    identity; emails change) and the account's id and email as last seen or set."""

    model_config = ConfigDict(frozen=True)

    user_id: str
    account_id: str
    email: str


class TargetState(_Strict):
    """The target snapshot format (docs/design.md, Formats), and the result of a target read.

    A bulk read holds every user and every membership. A per-user read holds that user (if
    they exist), every tenant owner (so the last-owner protection can count them) and every
    team and case group, with only that user's memberships listed.
    """

    users: list[TargetUser] = Field(default_factory=list)
    teams: list[Team] = Field(default_factory=list)


# --------------------------------------------------------------------------------------
# Plans (docs/design.md, Formats)

Trigger = Literal["login", "reconcile"]
Mode = Literal["jit", "enhanced"]


class _Op(BaseModel):
    """Operations put `op` first, then `email`, as docs/design.md, Formats, shows them."""

    model_config = ConfigDict(frozen=True, populate_by_name=True)


class CreateUser(_Op):
    op: Literal["create_user"] = "create_user"
    email: str
    first_name: str | None = None
    last_name: str | None = None
    avatar_url: str | None = None


class AddMembership(_Op):
    op: Literal["add_membership"] = "add_membership"
    email: str
    team: str
    case_group: str | None = None
    role: str
    because: list[str] = Field(default_factory=list)


class ChangeRole(_Op):
    op: Literal["change_role"] = "change_role"
    email: str
    team: str
    case_group: str | None = None
    from_role: str = Field(alias="from")
    to_role: str = Field(alias="to")
    because: list[str] = Field(default_factory=list)


class RemoveMembership(_Op):
    op: Literal["remove_membership"] = "remove_membership"
    email: str
    team: str
    case_group: str | None = None
    role: str
    because: list[str] = Field(default_factory=list)


class SetTenantOwner(_Op):
    op: Literal["set_tenant_owner"] = "set_tenant_owner"
    email: str
    value: bool
    because: list[str] = Field(default_factory=list)


class SetTenantPermissions(_Op):
    op: Literal["set_tenant_permissions"] = "set_tenant_permissions"
    email: str
    add: list[str] = Field(default_factory=list)
    remove: list[str] = Field(default_factory=list)
    because: list[str] = Field(default_factory=list)


class UpdateProfile(_Op):
    op: Literal["update_profile"] = "update_profile"
    email: str
    changes: dict[str, str | None]


class DeactivateUser(_Op):
    op: Literal["deactivate_user"] = "deactivate_user"
    email: str
    because: list[str] = Field(default_factory=list)


class ActivateUser(_Op):
    """Reactivates a user the bridge deactivated once they are enabled in the IdP again.

    Only planned with `on_idp_user_disabled = "deactivate"`, the one setting under which the
    bridge manages the target's active flag.
    """

    op: Literal["activate_user"] = "activate_user"
    email: str
    because: list[str] = Field(default_factory=list)


class ChangeEmail(_Op):
    """The Keycloak user's email changed: the account keeps its id, history and memberships.
    `email` is the account's current (old) email, `to` the new one."""

    op: Literal["change_email"] = "change_email"
    email: str
    to: str
    because: list[str] = Field(default_factory=list)


Operation = Annotated[
    ChangeEmail
    | CreateUser
    | AddMembership
    | ChangeRole
    | RemoveMembership
    | SetTenantOwner
    | SetTenantPermissions
    | UpdateProfile
    | DeactivateUser
    | ActivateUser,
    Field(discriminator="op"),
]

MembershipOp = AddMembership | ChangeRole | RemoveMembership


class Skipped(BaseModel):
    model_config = ConfigDict(frozen=True)

    email: str
    reason: str


class Plan(BaseModel):
    """A plan is a value: printable, comparable, storable, approvable."""

    model_config = ConfigDict(frozen=True)

    mode: Mode
    trigger: Trigger
    operations: list[Operation] = Field(default_factory=list)
    skipped: list[Skipped] = Field(default_factory=list)
    #: Target accounts in `managed_email_domains` never paired with a Keycloak user and
    #: whose email no Keycloak user has (full plans only).
    orphans: list[str] = Field(default_factory=list)
    held: list[Operation] = Field(default_factory=list)

    def to_json(self) -> str:
        """The byte-stable JSON of docs/design.md, Formats (aliases, fixed key order, two-space
        indent)."""
        return self.model_dump_json(by_alias=True, indent=2)

    @property
    def has_changes(self) -> bool:
        return bool(self.operations or self.held)

"""Where the truth about users comes from: Keycloak live, or a snapshot file.

A source either answers completely or says what it could not read; it never guesses. A
per-user read that fails raises SourceError (the worker retries later, nothing is removed);
a bulk read that fails for some mapped groups reports them in
`IdentityView.unreadable_groups` so the planner holds every removal they could affect.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass

from bridge.mapping import Mapping
from bridge.model import IdentityView, IdpSnapshot


class SourceError(Exception):
    """Reading the identity provider failed; the message says what and where, no secrets."""


@dataclass(frozen=True)
class UserRef:
    """Who a trigger is about. Keycloak events name the user id; the CLI names an email.

    `email` is also a hint remembered from earlier reads, so a user Keycloak reports as
    deleted can still be found in the target.
    """

    user_id: str | None = None
    email: str | None = None

    def __post_init__(self) -> None:
        if not self.user_id and not self.email:
            raise ValueError("a user reference needs an id or an email")

    @property
    def key(self) -> str:
        """The queue key: one entry per user, whatever the trigger said about them."""
        return f"id:{self.user_id}" if self.user_id else f"email:{(self.email or '').lower()}"

    @classmethod
    def from_key(cls, key: str) -> UserRef:
        kind, _, value = key.partition(":")
        if kind == "id" and value:
            return cls(user_id=value)
        if kind == "email" and value:
            return cls(email=value)
        raise ValueError(f"not a user key: {key!r}")


class IdentitySource(ABC):
    @abstractmethod
    def read_user(self, ref: UserRef) -> IdentityView:
        """One user's state. A user the IdP confirms does not exist comes back in
        `deleted_users` (when their email is known) or as an empty view."""

    @abstractmethod
    def read_all(self, mapping: Mapping) -> IdentityView:
        """Every user of the realm with their memberships of the mapped groups, in bulk."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release connections."""


class SnapshotSource(IdentitySource):
    """The identity side from an IdP snapshot file (SPEC §7), for offline use and for IdPs
    other than Keycloak. A snapshot is complete by definition."""

    def __init__(self, snapshot: IdpSnapshot) -> None:
        self._snapshot = snapshot

    def read_user(self, ref: UserRef) -> IdentityView:
        users = [
            u
            for u in self._snapshot.users
            if (ref.user_id and u.id == ref.user_id)
            or (ref.email and u.email and u.email.lower() == ref.email.lower())
        ]
        return IdentityView(users=users, complete=False)

    def read_all(self, mapping: Mapping) -> IdentityView:
        return IdentityView(users=list(self._snapshot.users), complete=True)

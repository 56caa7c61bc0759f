"""Where the truth about users comes from: Keycloak live, or a snapshot file.

A source either answers completely or says what it could not read; it never guesses. A
per-user read that fails raises SourceError (the worker retries later, nothing is removed);
a bulk read that fails for some mapped groups reports them in
`IdentityView.unreadable_groups` so the planner holds every removal they could affect.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

from bridge.keys import UserRef
from bridge.mapping import Mapping
from bridge.model import IdentityView, IdpSnapshot


class SourceError(Exception):
    """Reading the identity provider failed; the message says what and where, no secrets."""


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
    """The identity side from an IdP snapshot file (docs/design.md, Formats), for offline use and
    for IdPs other than Keycloak. A snapshot is complete by definition."""

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

"""Where the truth about users comes from: Keycloak live, or a snapshot file.

A source either answers completely or says what it could not read; it never guesses. A
per-user read that fails raises SourceError (the worker retries later, nothing is removed);
a bulk read that fails for some mapped groups reports them in
`IdentityView.unreadable_groups` so the planner holds every removal they could affect.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence

from bridge.keys import UserRef
from bridge.mapping import GroupSelector, Mapping
from bridge.model import IdentityView, IdpSnapshot


class SourceError(Exception):
    """Reading the identity provider failed; the message says what and where, no secrets."""


class SourceRefusedError(SourceError):
    """Keycloak refused the bridge's credentials or rights (401, 403), or its TLS certificate
    did not verify: a settings problem that no retry fixes."""


class IdentitySource(ABC):
    @abstractmethod
    def read_user(self, ref: UserRef, mapping: Mapping) -> IdentityView:
        """One user's state, as `read_all(mapping)` would give it. A user id the IdP confirms
        does not exist comes back in `deleted_ids`; an unknown email as an empty view."""

    @abstractmethod
    def read_all(self, mapping: Mapping) -> IdentityView:
        """Every user of the realm with their memberships of the mapped groups, in bulk."""

    def check_selectors(self, selectors: Sequence[GroupSelector]) -> dict[str, str]:
        """Which of `selectors` no longer exist or cannot be read, with the reason (by
        `selector.raw`). A per-user read asks this before it removes what they could grant,
        so a renamed or deleted mapped group removes nothing on any path. A snapshot is
        complete by definition: nothing is missing."""
        return {}

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release connections."""


class SnapshotSource(IdentitySource):
    """The identity side from an IdP snapshot file (docs/design.md, Formats), for offline use and
    for IdPs other than Keycloak. A snapshot is complete by definition."""

    def __init__(self, snapshot: IdpSnapshot) -> None:
        self._snapshot = snapshot

    def read_user(self, ref: UserRef, mapping: Mapping) -> IdentityView:
        users = [
            mapping.project(u)
            for u in self._snapshot.users
            if (ref.user_id and u.id == ref.user_id)
            or (ref.email and u.email and u.email.lower() == ref.email.lower())
        ]
        return IdentityView(users=users, complete=False)

    def read_all(self, mapping: Mapping) -> IdentityView:
        users = [mapping.project(u) for u in self._snapshot.users]
        return IdentityView(users=users, complete=True)

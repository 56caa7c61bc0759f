"""Failures inside one Keycloak read, shared by the modules that read Keycloak.

Neither leaves the source: `KeycloakSource` turns them into an unreadable selector (nothing
it could grant is removed) or into a deleted user, where a complete read proves it.
"""

from __future__ import annotations


class NotFoundError(Exception):
    """A 404 on a path: the thing is gone, not the read broken."""


class SelectorUnreadableError(Exception):
    """One selector could not be read completely; the reason is for people."""

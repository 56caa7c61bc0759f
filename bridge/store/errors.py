"""Errors the state store raises. Each message says what went wrong and what to do about it;
none contains a database password."""

from __future__ import annotations


class StoreError(Exception):
    """Base of every store error."""


class StoreUnavailableError(StoreError):
    """The database did not answer (readiness fails; the caller retries later)."""


class RunNotFoundError(StoreError):
    """No run has the given id."""


class RunNotHeldError(StoreError):
    """The run exists but holds nothing for approval."""


class RunAlreadyApprovedError(StoreError):
    """The run's held operations were approved before; approving again would apply them twice."""

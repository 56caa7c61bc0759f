"""What every target connector offers, and the errors that drive the worker's behaviour.

Modelled on authentik's outgoing sync: one client class per destination with a handful of
verbs and a small exception taxonomy. The reconciler only ever talks to `Target`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from bridge.model import TargetState, TargetUser


class TargetError(Exception):
    """Base of every connector error. The message never contains a secret."""


class TransientError(TargetError):
    """Worth retrying later (429, 5xx, connection reset, timeout) once retries ran out here.

    `retry_after` is the delay the target asked for, in seconds, when it said.
    """

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class NotFoundError(TargetError):
    """The object the call named does not exist (any more)."""


class AlreadyExistsError(TargetError):
    """A conflict: the object exists already. Resolved by re-reading, never by failing."""


class BadRequestError(TargetError):
    """The target refused the request as invalid. Permanent: retrying will not help."""


class UnauthorizedError(TargetError):
    """401/403: the credentials are wrong or lack rights. Stop and report; do not retry."""


class TlsVerificationError(UnauthorizedError):
    """The target's certificate did not verify. A configuration error: stop, never retry."""


def tls_failure(where: str, exc: Exception) -> TlsVerificationError:
    return TlsVerificationError(
        f"{where}: TLS certificate verification failed ({type(exc).__name__}); trust the "
        "target's CA (REQUESTS_CA_BUNDLE) or, for testing only, set verify_tls = false"
    )


class DryRunRejectedError(TargetError):
    """A mutating request was about to be sent while dry run is on. It was not sent."""


@dataclass(frozen=True)
class Addition:
    """One membership to add: `add_membership`'s arguments."""

    user: TargetUser
    team_id: str
    case_group_id: str | None
    role: str


AdditionDone = Callable[[int, TargetError | None], None]
"""Told the outcome of one addition, by its index: None when it was made."""

AdditionSending = Callable[[list[int]], bool]
"""Told the additions (indexes) one request is about to carry; False: send nothing more."""


class Target(ABC):
    """A team-and-role application. Identity is the email, compared case-insensitively.

    Reads return the snapshot model; writes take target ids (from a read), not names, so the
    reconciler resolves names once per plan. Every write is idempotent where the target
    allows it, and raises one of the errors above otherwise.
    """

    name: str
    #: True when teams and case groups are addressed by name and come into being with their
    #: first member (SCIM role groups): a team missing from a read is then not an error.
    names_are_ids: bool = False
    #: Whether a team the mapping names and the target lacks is made when it gets its first
    #: member (SCIM with `scim_create_groups`); otherwise someone must create it first.
    creates_missing_teams: bool = False
    #: Whether the target has tenant permissions to grant.
    holds_tenant_permissions: bool = True
    #: Whether the target has a tenant-owner flag to set.
    holds_tenant_owners: bool = True

    def name_problem(self, team: str, case_group: str | None, role: str) -> str | None:
        """Why the target could not hold this membership by name (None: it can). Checked by
        `validate --against-target` before any write would find out."""
        return None

    #: True when `add_memberships` sends many additions in one request: a run then makes
    #: every user's additions together (after the creates) instead of user by user.
    batches_memberships: bool = False
    #: How many members `add_memberships` puts in one request at most: a full reconcile
    #: under per-user claims takes this many users at a time (one request per group each).
    members_per_request: int = 1
    #: True when `change_email` works: an account keeps its id, history and memberships
    #: when its Keycloak user's email changes.
    supports_email_change: bool = False

    # -- reads ----------------------------------------------------------------------------
    @abstractmethod
    def read_state(self) -> TargetState:
        """Everything: all users, teams, case groups and memberships, read in bulk pages."""

    @abstractmethod
    def read_user_state(
        self, email: str, *, creating: bool = False, account_id: str | None = None
    ) -> TargetState:
        """One user's view: that user (if any), every tenant owner when that user is one
        (for the last-owner rule), every team and case group, with only that user's
        memberships listed.

        `creating`: the caller creates the user if the read shows none (a login). The target
        may then answer "no such user" from what it remembers, since a wrong answer costs a
        create the target refuses (and a re-plan), never a change it should not make. Without
        it, an answer of "no such user" must come from the target itself: a caller that will
        not create would otherwise miss the user's removals.

        `account_id`: the id of the account the store paired with this user. When no account
        has `email`, the account with that id is read instead (whatever its email is now),
        so a lookup by email that fails or lags never makes a paired user look absent."""

    @abstractmethod
    def ping(self) -> None:
        """One cheap read that proves the target answers and accepts our credentials; raises
        the taxonomy's errors otherwise. Used by `/readyz`, so it must not page."""

    # -- writes ---------------------------------------------------------------------------
    @abstractmethod
    def create_user(
        self,
        email: str,
        first_name: str | None,
        last_name: str | None,
        avatar_url: str | None,
    ) -> TargetUser:
        """Create the user. Raises AlreadyExistsError if the email is taken."""

    @abstractmethod
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
        """Change only the fields given (None = leave alone); returns the user as stored."""

    def change_email(self, user: TargetUser, email: str) -> TargetUser:
        """Give the account another email; returns it as stored. Only when
        `supports_email_change`."""
        raise BadRequestError(f"{self.name} cannot change the email of {user.email}")

    @abstractmethod
    def add_membership(
        self, user: TargetUser, team_id: str, case_group_id: str | None, role: str
    ) -> None:
        """Make the user a member of the team (or case group) with this role."""

    def add_memberships(
        self, additions: Sequence[Addition], done: AdditionDone, sending: AdditionSending
    ) -> None:
        """Make several additions; `sending(indexes)` before each request with the additions
        it carries (False: stop, send nothing more), `done(index, error or None)` as each
        outcome is known.

        Targets that can add many members to one group in one request (SCIM) do; this
        default adds them one by one. A TransientError or UnauthorizedError stops it: the
        additions of the request that failed are reported with it, then it is raised, and
        the additions not reported were not sent.
        """
        for index, addition in enumerate(additions):
            if not sending([index]):
                return
            try:
                self.add_membership(
                    addition.user, addition.team_id, addition.case_group_id, addition.role
                )
            except (TransientError, UnauthorizedError) as exc:
                done(index, exc)
                raise
            except TargetError as exc:
                done(index, exc)
            else:
                done(index, None)

    @abstractmethod
    def change_role(
        self, user: TargetUser, team_id: str, case_group_id: str | None, role: str
    ) -> None:
        """Give an existing member another role, as one logical operation."""

    @abstractmethod
    def remove_membership(self, user: TargetUser, team_id: str, case_group_id: str | None) -> None:
        """Remove the user from the team (or case group). Not a member is not an error."""

    def refresh_caches(self) -> None:  # noqa: B027 - optional hook, most targets keep nothing
        """Refresh what the target keeps between reads to make per-user reads cheaper. The
        service calls it at start and every `bridge.service.CACHE_REFRESH_SECONDS`. Skipping
        it costs reads, never correctness: no write is decided on a cache alone."""

    def close(self) -> None:  # noqa: B027 - optional hook, most targets hold nothing
        """Release connections."""

"""Which emails a Tines tenant has, remembered between logins.

Every `admin/users` call counts against Tines' 500 requests a minute on that endpoint, and a
first login would otherwise spend one of them only to learn that the user does not exist yet.
`KnownEmails` holds the tenant's emails as of the last complete listing (a full reconcile's
read, or a search that paged through every user), plus the users the bridge created or found
since. While it is fresh, an email it lacks is taken as absent without asking Tines.

That belief can be wrong: a person (or another bridge process) may have created the user
after the listing. It is never acted on blindly: creating a user whose email is taken fails,
and the reconciler then re-plans from a fresh read (`bridge.apply.UserAppearedError`), so a
stale entry costs one refused create, never a wrong change to an existing user.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable

#: How long a complete listing is trusted to say who is absent. A full reconcile refreshes it
#: (every 15 minutes by default); past this age, lookups ask Tines again.
MAX_AGE_SECONDS = 3600.0


class KnownEmails:
    """The tenant's emails (lower-cased), with the time of the listing they came from."""

    def __init__(
        self, *, max_age: float = MAX_AGE_SECONDS, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.max_age = max_age
        self._clock = clock
        self._lock = threading.Lock()
        self._emails: set[str] = set()
        self._added: dict[str, float] = {}  # learnt since the last listing, and when
        self._listed_at: float | None = None

    def begin_listing(self) -> float:
        """Call before the first page of a complete listing; pass the result to `replace`."""
        return self._clock()

    def replace(self, emails: Iterable[str], started_at: float) -> None:
        """Every email of the tenant, from a listing begun at `started_at` that has just
        read its last page. Users learnt of while it ran are kept: a page read before one
        was created does not show them. The listing counts from when it began."""
        fresh = {e.strip().lower() for e in emails}
        with self._lock:
            fresh.update(e for e, at in self._added.items() if at >= started_at)
            self._added = {e: at for e, at in self._added.items() if at >= started_at}
            self._emails = fresh
            self._listed_at = started_at

    def add(self, email: str) -> None:
        address = email.strip().lower()
        with self._lock:
            self._emails.add(address)
            self._added[address] = self._clock()

    def discard(self, email: str) -> None:
        with self._lock:
            self._emails.discard(email.strip().lower())

    def absent(self, email: str) -> bool:
        """True only when a fresh complete listing (plus what was learnt since) lacks it."""
        with self._lock:
            if self._listed_at is None or self._clock() - self._listed_at > self.max_age:
                return False
            return email.strip().lower() not in self._emails

    def forget(self) -> None:
        """Trust nothing until the next complete listing."""
        with self._lock:
            self._emails = set()
            self._added = {}
            self._listed_at = None

    def __len__(self) -> int:
        with self._lock:
            return len(self._emails)

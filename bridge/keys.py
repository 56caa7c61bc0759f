"""The queue's vocabulary: which key names whom, and why it was queued.

A queue key is one user (`id:<keycloak user id>` or `email:<lower-case address>`) or
`EVERYONE` (a full reconcile). Triggers for one key merge into one queue entry; the
strongest trigger survives (`TRIGGER_STRENGTH`). Pure: no I/O, importable from anywhere.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from bridge.model import Mode, Trigger

EVERYONE = "all"
"""The queue key of a full reconcile: every user of the realm and of the target."""

TriggerKind = Literal["login", "change", "reconcile"]
"""Why a key was queued: a login, a change seen in an admin event, or a (scheduled) reconcile."""

TRIGGER_STRENGTH: dict[str, int] = {"login": 3, "change": 2, "reconcile": 1}
"""When triggers for one key merge, the strongest survives: a login may create the user."""


def acts_on(mode: Mode, trigger: TriggerKind) -> bool:
    """The jit rule, decided here and nowhere else: jit acts only on logins (it creates who
    logs in and changes nobody else); enhanced acts on every trigger. A trigger it does not
    act on is not queued, not read for, and plans nothing."""
    return mode == "enhanced" or trigger == "login"


def plan_trigger(trigger: TriggerKind) -> Trigger:
    """What a queued trigger plans as: a login as a login, anything else as a reconcile. With
    `EVERYONE`, a login plans "as if everyone logged in now"."""
    return "login" if trigger == "login" else "reconcile"


EnqueueResult = Literal["queued", "merged", "duplicate"]
"""`queued`: a new entry; `merged`: folded into the key's waiting entry (or its re-run);
`duplicate`: the event id was seen within the retention window, nothing was queued."""


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

"""Keycloak events in one shape, and the triggers they ask for.

Three senders describe the same Keycloak event differently: the project's own listener
(docs/design.md, Listener), Phase Two's keycloak-events webhooks, and Keycloak's REST event store
(read by the poller). Each parser turns its format into a `KeycloakEvent` or raises `EventError`
naming the field and the reason. `triggers_for` then decides which queue keys the event asks to
look at again (docs/design.md, Triggers).

An event is only a hint: nothing here decides access. A trigger names a user (or everyone) to
re-read; the worker reads the truth from Keycloak and the target.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from bridge.keys import EVERYONE, TriggerKind, UserRef, acts_on
from bridge.model import Mode

EventKind = Literal["user", "admin", "system"]

LOGIN_EVENT_TYPES = frozenset(
    {"LOGIN", "IDENTITY_PROVIDER_LOGIN", "IDENTITY_PROVIDER_FIRST_LOGIN", "REGISTER"}
)
# Keycloak Organizations (26+): a member added to or removed from an organization, or from
# one of its groups. The user id ends the path (`organizations/<org>/members/<user>`), except
# for an added organization member, whose path ends at `members`: Keycloak names that user
# only in the event's details (username, email), which say whom to read again.
ORGANIZATION_MEMBERSHIP_EVENTS = (
    ("ORGANIZATION_MEMBERSHIP", "CREATE"),
    ("ORGANIZATION_MEMBERSHIP", "DELETE"),
    ("ORGANIZATION_GROUP_MEMBERSHIP", "CREATE"),
    ("ORGANIZATION_GROUP_MEMBERSHIP", "DELETE"),
)
# (resource type, operation) of admin events about one user, named by the resource path.
USER_CHANGE_EVENTS = frozenset(
    {
        ("GROUP_MEMBERSHIP", "CREATE"),
        ("GROUP_MEMBERSHIP", "DELETE"),
        ("USER", "UPDATE"),
        ("USER", "DELETE"),
        *ORGANIZATION_MEMBERSHIP_EVENTS,
    }
)
# A group renamed, moved or deleted changes the membership of everyone in it, and Keycloak
# emits no per-member event for that, so only a full reconcile can follow it. The same holds
# for an organization (its alias is what a mapping names) and an organization's group.
GROUP_CHANGE_EVENTS = frozenset(
    {
        ("GROUP", "UPDATE"),
        ("GROUP", "DELETE"),
        ("ORGANIZATION", "UPDATE"),
        ("ORGANIZATION", "DELETE"),
        ("ORGANIZATION_GROUP", "UPDATE"),
        ("ORGANIZATION_GROUP", "DELETE"),
    }
)


class EventError(ValueError):
    """An event body is not valid. `field` is a dotted path into the body (`authDetails.userId`)."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason


@dataclass(frozen=True, slots=True)
class KeycloakEvent:
    """One Keycloak event, whatever format it arrived in.

    `type` is the Keycloak event type for user events (`LOGIN`) and `<RESOURCE>-<OPERATION>`
    for admin events (`GROUP_MEMBERSHIP-CREATE`). `user_id` is the user the event is about:
    the acting user of a user event, the user in `resource_path` of an admin event (never
    the admin who made the change). `email_hint` is what the sender said the user's email
    is; it helps find a deleted user in the target but is never trusted as identity.
    """

    id: str | None
    time_ms: int
    realm: str
    kind: EventKind
    type: str
    operation: str | None = None
    resource_type: str | None = None
    resource_path: str | None = None
    user_id: str | None = None
    email_hint: str | None = None
    session_id: str | None = None

    @property
    def dedupe_key(self) -> str:
        """The event id, or a stable hash of what identifies it when the sender has no id
        (Keycloak before 26.2 stored events without one)."""
        if self.id:
            return self.id
        parts = (
            str(self.time_ms),
            self.kind,
            self.type,
            self.user_id or "",
            self.session_id or "",
            self.resource_path or "",
        )
        return "sha256:" + hashlib.sha256("\x1f".join(parts).encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class TriggerRequest:
    """Look at `key` (`id:<user id>`, `email:<addr>` or `all`) again, because of `trigger`."""

    key: str
    trigger: TriggerKind
    email_hint: str | None = None


class TriggerSink(Protocol):
    """The durable queue. `enqueue` returns only once the entry is committed, and de-duplicates
    by `event_id`."""

    def enqueue(
        self,
        key: str,
        trigger: TriggerKind,
        *,
        event_id: str | None = None,
        source: str | None = None,
        email_hint: str | None = None,
    ) -> str: ...


@dataclass(frozen=True, slots=True)
class EnqueueOutcome:
    """What the queue said about one event's triggers."""

    queued: int = 0
    merged: int = 0
    duplicates: int = 0

    @property
    def all_duplicates(self) -> bool:
        return self.duplicates > 0 and self.queued == 0 and self.merged == 0


def enqueue_triggers(
    sink: TriggerSink, event: KeycloakEvent, triggers: list[TriggerRequest], *, source: str
) -> EnqueueOutcome:
    """Enqueue every trigger of one event. An exception from the sink propagates: the caller
    must then not acknowledge the event (the sender or the next poll retries it)."""
    counts = {"queued": 0, "merged": 0, "duplicate": 0}
    for trigger in triggers:
        result = sink.enqueue(
            trigger.key,
            trigger.trigger,
            event_id=event.dedupe_key,
            source=source,
            email_hint=trigger.email_hint,
        )
        counts[result if result in counts else "queued"] += 1
    return EnqueueOutcome(counts["queued"], counts["merged"], counts["duplicate"])


# --------------------------------------------------------------------------------------
# Triggers


def triggers_for(event: KeycloakEvent, mode: Mode) -> list[TriggerRequest]:
    """The queue entries an event asks for (docs/design.md, Triggers); an empty list means
    "ignored".

    Raises EventError when the event type calls for a user but the event does not name one.
    """
    if event.kind == "user":
        if event.type not in LOGIN_EVENT_TYPES:
            return []
        return [TriggerRequest(_user_key(event, "user_id"), "login", event.email_hint)]
    if event.kind != "admin" or not acts_on(mode, "change"):
        return []
    change = (event.resource_type or "", event.operation or "")
    if change in ORGANIZATION_MEMBERSHIP_EVENTS and not (event.user_id or event.email_hint):
        # Nothing names the member: look at everyone again rather than miss them.
        return [TriggerRequest(EVERYONE, "reconcile")]
    if change in USER_CHANGE_EVENTS:
        return [TriggerRequest(_user_key(event, "resource_path"), "change", event.email_hint)]
    if change in GROUP_CHANGE_EVENTS:
        return [TriggerRequest(EVERYONE, "reconcile")]
    return []


def _user_key(event: KeycloakEvent, field: str) -> str:
    if event.user_id:
        return UserRef(user_id=event.user_id).key
    if event.email_hint:
        return UserRef(email=event.email_hint).key
    if field == "resource_path":
        raise EventError(field, f"a {event.type} event needs a path 'users/<id>/…'")
    raise EventError(field, f"a {event.type} event must name the user")


def user_id_from_path(path: str | None) -> str | None:
    """The user id in a realm-relative resource path (`users/<id>/groups/<gid>` → `<id>`).

    Only the segment right after a leading `users/` counts, so group names or ids elsewhere
    in the path (which may hold any character) can never be mistaken for a user; and for an
    organization's membership, the segment after `members/` in exactly
    `organizations/<org>/members/<id>` or `organizations/<org>/groups/<group>/members/<id>`.
    """
    if not path:
        return None
    parts = path.lstrip("/").split("/")
    if parts[0] == "users" and len(parts) > 1:
        user_id = parts[1]
    elif parts[0] == "organizations" and len(parts) in (4, 6) and parts[-2] == "members":
        if len(parts) == 6 and parts[2] != "groups":
            return None
        user_id = parts[-1]
    else:
        return None
    return user_id if _is_plain_id(user_id) else None


def _is_plain_id(value: str) -> bool:
    return bool(value) and value not in {".", ".."} and value.isprintable() and " " not in value


# --------------------------------------------------------------------------------------
# Parsers


def parse_listener_event(body: Any) -> KeycloakEvent:
    """The project's own listener body (docs/design.md, Listener):
    `{"id", "time", "realm", "kind", "type", "user_id", "operation", "resource_type",
    "resource_path"}`, optionally `"email"`. Unknown keys are tolerated so the listener can
    grow without breaking older bridges."""
    raw = _object(body, "body")
    kind = _required_str(raw, "kind")
    event_id = _required_str(raw, "id")
    time_ms = _time_ms(raw, "time")
    realm = _required_str(raw, "realm")
    email = _optional_str(raw, "email")
    if kind == "user":
        return KeycloakEvent(
            id=event_id,
            time_ms=time_ms,
            realm=realm,
            kind="user",
            type=_required_str(raw, "type"),
            user_id=_user_id(raw, "user_id"),
            email_hint=_email(email),
        )
    if kind == "admin":
        _optional_str(raw, "type")
        _optional_str(raw, "user_id")
        return _admin_event(
            event_id,
            time_ms,
            realm,
            operation=_required_str(raw, "operation"),
            resource_type=_required_str(raw, "resource_type"),
            resource_path=_optional_str(raw, "resource_path"),
            path_field="resource_path",
            email=email,
        )
    raise EventError("kind", "must be 'user' or 'admin'")


def parse_phasetwo_event(body: Any) -> KeycloakEvent:
    """A Phase Two keycloak-events webhook body (`ExtendedAdminEvent`).

    `type` is `access.<EventType>` or `admin.<RESOURCE_TYPE>-<OPERATION>`; other prefixes
    (`system.…`) parse to kind "system" and trigger nothing. `id` is Keycloak's event id and
    is preferred to `uid` (a per-delivery id) so redeliveries of one event de-duplicate.
    """
    raw = _object(body, "body")
    full_type = _required_str(raw, "type")
    event_id = _optional_str(raw, "id") or _optional_str(raw, "uid")
    time_ms = _time_ms(raw, "time")
    auth = _optional_object(raw, "authDetails")
    details = _string_map(raw, "details")
    # The realm's name: `realmName` (Phase Two always sends it), else `realmId` (an id, equal
    # to the name only when the realm was imported so). Not `authDetails.realmId`: for an
    # admin event that is the acting admin's realm (often master), not the event's.
    realm = _optional_str(raw, "realmName") or _optional_str(raw, "realmId") or ""
    _optional_str(auth, "realmId", "authDetails.")
    prefix, _, name = full_type.partition(".")
    if not name:
        raise EventError("type", "must look like 'access.LOGIN' or 'admin.USER-UPDATE'")
    if prefix == "access":
        return KeycloakEvent(
            id=event_id,
            time_ms=time_ms,
            realm=realm,
            kind="user",
            type=name,
            user_id=_user_id(auth, "userId", "authDetails.") or _user_id(raw, "userId"),
            email_hint=_email(details.get("email"))
            or _email(details.get("username"))
            or _email(_optional_str(auth, "username", "authDetails.")),
            session_id=_optional_str(auth, "sessionId", "authDetails."),
        )
    if prefix == "admin":
        resource_type, dash, operation = name.rpartition("-")
        if not dash:
            raise EventError("type", "an admin type must look like 'admin.<RESOURCE>-<OPERATION>'")
        return _admin_event(
            event_id,
            time_ms,
            realm,
            operation=_optional_str(raw, "operationType") or operation,
            resource_type=_optional_str(raw, "resourceType") or resource_type,
            resource_path=_optional_str(raw, "resourcePath"),
            path_field="resourcePath",
            email=details.get("email") or _representation_email(raw),
        )
    return KeycloakEvent(id=event_id, time_ms=time_ms, realm=realm, kind="system", type=full_type)


def parse_rest_user_event(body: Any, *, realm: str) -> KeycloakEvent:
    """One `EventRepresentation` from `GET /admin/realms/{realm}/events`. Its `realmId` is an
    id, not the name, so the caller says which realm it read."""
    raw = _object(body, "event")
    details = _string_map(raw, "details")
    return KeycloakEvent(
        id=_optional_str(raw, "id"),
        time_ms=_time_ms(raw, "time"),
        realm=realm,
        kind="user",
        type=_required_str(raw, "type"),
        user_id=_user_id(raw, "userId"),
        email_hint=_email(details.get("email")) or _email(details.get("username")),
        session_id=_optional_str(raw, "sessionId"),
    )


def parse_rest_admin_event(body: Any, *, realm: str) -> KeycloakEvent:
    """One `AdminEventRepresentation` from `GET /admin/realms/{realm}/admin-events`."""
    raw = _object(body, "event")
    _optional_object(raw, "authDetails")
    details = _string_map(raw, "details")
    return _admin_event(
        _optional_str(raw, "id"),
        _time_ms(raw, "time"),
        realm,
        operation=_required_str(raw, "operationType"),
        resource_type=_required_str(raw, "resourceType"),
        resource_path=_optional_str(raw, "resourcePath"),
        path_field="resourcePath",
        email=details.get("email") or _representation_email(raw),
    )


def _admin_event(
    event_id: str | None,
    time_ms: int,
    realm: str,
    *,
    operation: str,
    resource_type: str,
    resource_path: str | None,
    path_field: str,
    email: str | None,
) -> KeycloakEvent:
    user_id = user_id_from_path(resource_path)
    if resource_path and resource_path.lstrip("/").startswith("users/") and user_id is None:
        raise EventError(path_field, "the segment after 'users/' is not a user id")
    return KeycloakEvent(
        id=event_id,
        time_ms=time_ms,
        realm=realm,
        kind="admin",
        type=f"{resource_type}-{operation}",
        operation=operation,
        resource_type=resource_type,
        resource_path=resource_path,
        user_id=user_id,
        # Only a user resource's own representation or details say whose email it is; a
        # GROUP_MEMBERSHIP representation is the group. An added organization member is
        # named only by the details (the member's username and email): whom to read again.
        email_hint=_email(email) if user_id or resource_type == "ORGANIZATION_MEMBERSHIP" else None,
    )


def _representation_email(raw: Mapping[str, Any]) -> str | None:
    """The email inside a USER admin event's representation (a JSON string), if any."""
    if raw.get("resourceType") != "USER":
        return None
    representation = raw.get("representation")
    if isinstance(representation, str):
        try:
            representation = json.loads(representation)
        except (ValueError, RecursionError):
            return None
    if isinstance(representation, dict):
        email = representation.get("email")
        return email if isinstance(email, str) else None
    return None


# --------------------------------------------------------------------------------------
# Field checks: each names the field and the reason, never the value.


def _object(value: Any, name: str) -> Mapping[str, Any]:
    if not isinstance(value, dict):
        raise EventError(name, "must be a JSON object")
    return value


def _optional_object(raw: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    value = raw.get(key)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise EventError(key, "must be an object")
    return value


def _required_str(raw: Mapping[str, Any], key: str) -> str:
    value = raw.get(key)
    if value is None:
        raise EventError(key, "is required")
    if not isinstance(value, str) or not value:
        raise EventError(key, "must be a non-empty string")
    return value


def _optional_str(raw: Mapping[str, Any], key: str, prefix: str = "") -> str | None:
    value = raw.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise EventError(prefix + key, "must be a string or null")
    return value or None


def _user_id(raw: Mapping[str, Any], key: str, prefix: str = "") -> str | None:
    value = _optional_str(raw, key, prefix)
    if value is not None and not _is_plain_id(value):
        raise EventError(
            prefix + key, "is not a user id (empty, '.', '..', spaces or control chars)"
        )
    return value


def _time_ms(raw: Mapping[str, Any], key: str) -> int:
    value = raw.get(key)
    if value is None:
        raise EventError(key, "is required")
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise EventError(key, "must be a non-negative integer (epoch milliseconds)")
    return value


def _string_map(raw: Mapping[str, Any], key: str) -> dict[str, str]:
    value = _optional_object(raw, key)
    return {k: v for k, v in value.items() if isinstance(v, str)}


def _email(value: str | None) -> str | None:
    """Keep a hint only if it looks like an address; usernames are often not emails."""
    if value and "@" in value and value.isprintable() and " " not in value:
        return value
    return None

"""What `jit-bridge init` sets up in Keycloak, each step idempotent, and how it is undone.

Each `ensure_*` reads the current state, does only what differs from what the bridge needs,
records every change in the `Record` as soon as Keycloak accepted it, and in a dry run only
says what it would do (`Outcome.would`).

The bridge's service account gets exactly these `realm-management` roles (docs/security.md):
`view-users` always, `view-events` when it polls the event store (the poller also reads the
realm's event settings), `view-realm` for `realm-role:` selectors, `view-clients` for
`client-role:` selectors, `view-organizations` for `organization:` selectors (Keycloak 26.7 and
later have the role). Any other `realm-management` role held directly is taken away.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import quote

from bridge.init.admin_api import AdminApiError, Json, KeycloakAdminApi
from bridge.init.record import Record
from bridge.intake.events import GROUP_CHANGE_EVENTS, LOGIN_EVENT_TYPES, USER_CHANGE_EVENTS
from bridge.mapping import Mapping

EventsWay = Literal["listener", "phasetwo", "poll"]

LISTENER_ID = "jit-bridge"
PHASETWO_LISTENER_ID = "ext-event-webhook"
REALM_MANAGEMENT = "realm-management"

#: The client's flows: a confidential client with a service account and nothing a user can
#: log in through.
CLIENT_FLOWS: dict[str, Any] = {
    "enabled": True,
    "protocol": "openid-connect",
    "publicClient": False,
    "bearerOnly": False,
    "clientAuthenticatorType": "client-secret",
    "serviceAccountsEnabled": True,
    "standardFlowEnabled": False,
    "implicitFlowEnabled": False,
    "directAccessGrantsEnabled": False,
}
#: Realm event settings the bridge needs turned on, whichever way it hears of events.
EVENT_SWITCHES = ("eventsEnabled", "adminEventsEnabled", "adminEventsDetailsEnabled")
PHASETWO_EVENT_TYPES = sorted(
    [f"access.{t}" for t in LOGIN_EVENT_TYPES]
    + [f"admin.{r}-{o}" for r, o in USER_CHANGE_EVENTS | GROUP_CHANGE_EVENTS]
)


def service_account_roles(mapping: Mapping, events: EventsWay) -> list[str]:
    """The least-privilege `realm-management` roles for this mapping and way of hearing."""
    kinds = {selector.kind for selector in mapping.selectors()}
    roles = {"view-users"}
    if events == "poll":
        roles.add("view-events")
    if "realm_role" in kinds:
        roles.add("view-realm")
    if "client_role" in kinds:
        roles.add("view-clients")
    if kinds & {"organization", "organization_group"}:
        roles.add("view-organizations")
    return sorted(roles)


@dataclass
class Outcome:
    """What one run did (`record.done_now`) or, in a dry run, would do."""

    would: list[str] = field(default_factory=list)
    client_uuid: str | None = None
    client_created: bool = False
    client_secret: str | None = field(default=None, repr=False)


class KeycloakSetup:
    def __init__(self, api: KeycloakAdminApi, record: Record, *, dry_run: bool) -> None:
        self.api = api
        self.record = record
        self.dry_run = dry_run
        self.outcome = Outcome()

    # -- events ----------------------------------------------------------------------------
    def ensure_events(self, way: EventsWay) -> None:
        path = f"{self.api.realm_path}/events/config"
        config: Json = self.api.get(path, "reading the realm's event settings") or {}
        before = {name: bool(config.get(name)) for name in EVENT_SWITCHES if not config.get(name)}
        types = list(config.get("enabledEventTypes") or [])
        # An empty list stores every type Keycloak saves by default, ours among them.
        added_types = sorted(LOGIN_EVENT_TYPES - set(types)) if types else []
        listeners = list(config.get("eventsListeners") or [])
        wanted_listener = {"listener": LISTENER_ID, "phasetwo": PHASETWO_LISTENER_ID}.get(way)
        added_listeners = (
            [wanted_listener] if wanted_listener and wanted_listener not in listeners else []
        )
        said = []
        if "eventsEnabled" in before:
            said.append("turn on saving user events")
        if added_types:
            said.append(f"save user events {', '.join(added_types)}")
        if "adminEventsEnabled" in before:
            said.append("turn on saving admin events")
        if "adminEventsDetailsEnabled" in before:
            said.append("include the representation in admin events")
        if added_listeners:
            said.append(f"add event listener '{added_listeners[0]}'")
        if not said:
            return
        text = f"realm '{self.api.realm}': " + "; ".join(said)
        if self.dry_run:
            self.outcome.would.append(text)
            return
        updated = {
            **config,
            **dict.fromkeys(EVENT_SWITCHES, True),
            "eventsListeners": listeners + added_listeners,
        }
        # Keycloak shows a realm that stores the default types as a list of them all; sending
        # that list back would pin it. Left out, the types stay as they are.
        updated.pop("enabledEventTypes", None)
        if added_types:
            updated["enabledEventTypes"] = types + added_types
        self.api.request("PUT", path, "changing the realm's event settings", json=updated)
        self.record.add(
            {
                "step": "events",
                "did": text,
                "before": before,
                "added_types": added_types,
                "added_listeners": added_listeners,
            }
        )

    # -- the client ------------------------------------------------------------------------
    def ensure_client(self, client_id: str) -> None:
        existing = self.api.find_client(client_id)
        before: dict[str, Any] = {}
        if existing is None:
            text = (
                f"create client '{client_id}' (confidential, service account, no user-facing flows)"
            )
            if self.dry_run:
                self.outcome.would.append(text)
                return
            body = {
                "clientId": client_id,
                "name": "jit-bridge",
                "description": "jit-bridge's service account (set up by jit-bridge init)",
                **CLIENT_FLOWS,
            }
            self.api.request(
                "POST",
                f"{self.api.realm_path}/clients",
                f"creating client '{client_id}'",
                json=body,
            )
            created = self.api.find_client(client_id)
            if created is None:
                raise AdminApiError(f"client '{client_id}' is missing right after its creation")
            uuid = str(created["id"])
            self.record.add(
                {"step": "create_client", "did": text, "id": uuid, "client_id": client_id}
            )
            self.outcome.client_uuid = uuid
            self.outcome.client_created = True
        else:
            uuid = str(existing["id"])
            self.outcome.client_uuid = uuid
            before = {k: existing.get(k) for k, v in CLIENT_FLOWS.items() if existing.get(k) != v}
            if before:
                text = f"client '{client_id}': set " + ", ".join(
                    f"{k} = {str(CLIENT_FLOWS[k]).lower()}" for k in sorted(before)
                )
                if self.dry_run:
                    self.outcome.would.append(text)
                else:
                    self.api.request(
                        "PUT",
                        f"{self.api.realm_path}/clients/{uuid}",
                        f"updating client '{client_id}'",
                        json={**existing, **CLIENT_FLOWS},
                    )
                    self.record.add(
                        {"step": "update_client", "did": text, "id": uuid, "before": before}
                    )
        if self.outcome.client_uuid is not None and not (self.dry_run and before):
            # A dry run reads it too, to compare the secret file.
            secret = self.api.get(
                f"{self.api.realm_path}/clients/{uuid}/client-secret",
                f"reading the secret of client '{client_id}'",
            )
            value = (secret or {}).get("value")
            if not value:
                raise AdminApiError(f"client '{client_id}' has no secret")
            self.outcome.client_secret = str(value)

    # -- the service account's roles -------------------------------------------------------
    def ensure_roles(self, client_id: str, wanted: list[str]) -> None:
        uuid = self.outcome.client_uuid
        if uuid is None:  # a dry run that would create the client
            self.outcome.would.append(
                f"grant its service account {REALM_MANAGEMENT} roles {', '.join(wanted)}"
            )
            return
        account = self.api.get(
            f"{self.api.realm_path}/clients/{uuid}/service-account-user",
            f"reading the service account of client '{client_id}'",
        )
        if account is None:
            if self.dry_run:  # the service account appears once the update above is made
                self.outcome.would.append(
                    f"grant its service account {REALM_MANAGEMENT} roles {', '.join(wanted)}"
                )
                return
            raise AdminApiError(f"client '{client_id}' has no service account")
        user = str(account["id"])
        management = self.api.realm_management_id()
        mappings_path = f"{self.api.realm_path}/users/{user}/role-mappings/clients/{management}"
        held = self.api.get(mappings_path, "reading the service account's roles") or []
        held_names = {str(role["name"]) for role in held}
        grant = [name for name in wanted if name not in held_names]
        revoke = sorted(held_names - set(wanted))
        account_name = f"service-account-{client_id}"
        if grant:
            text = f"grant {account_name} {REALM_MANAGEMENT} roles {', '.join(grant)}"
            if self.dry_run:
                self.outcome.would.append(text)
            else:
                reps = [self.api.realm_management_role(management, n) for n in grant]
                self.api.request("POST", mappings_path, "granting the roles", json=reps)
                self.record.add(
                    {
                        "step": "grant_roles",
                        "did": text,
                        "client": uuid,
                        "user": user,
                        "roles": grant,
                    }
                )
        if revoke:
            text = f"take {REALM_MANAGEMENT} roles {', '.join(revoke)} from {account_name}"
            if self.dry_run:
                self.outcome.would.append(text)
            else:
                reps = [r for r in held if r["name"] in revoke]
                self.api.request("DELETE", mappings_path, "taking the roles", json=reps)
                self.record.add(
                    {
                        "step": "revoke_roles",
                        "did": text,
                        "client": uuid,
                        "user": user,
                        "roles": revoke,
                    }
                )

    # -- Phase Two's webhook ---------------------------------------------------------------
    def ensure_phasetwo_webhook(self, url: str, secret: str) -> None:
        """A Phase Two keycloak-events webhook to the bridge, signed with `secret`."""
        path = f"realms/{quote(self.api.realm, safe='')}/webhooks"
        hooks = self.api.get(path, "listing Phase Two webhooks") or []
        mine = next((h for h in hooks if h.get("url") == url), None)
        body = {"enabled": True, "url": url, "secret": secret, "eventTypes": PHASETWO_EVENT_TYPES}
        if mine is None:
            text = (
                f"create a Phase Two webhook to {url} for {len(PHASETWO_EVENT_TYPES)} event types"
            )
            if self.dry_run:
                self.outcome.would.append(text)
                return
            self.api.request("POST", path, "creating the Phase Two webhook", json=body)
            hooks = self.api.get(path, "listing Phase Two webhooks") or []
            created = next((h for h in hooks if h.get("url") == url), None)
            if created is None:
                raise AdminApiError(f"the Phase Two webhook to {url} is missing after creation")
            self.record.add({"step": "create_webhook", "did": text, "id": str(created["id"])})
            return
        differs = not mine.get("enabled") or sorted(mine.get("eventTypes") or []) != sorted(
            PHASETWO_EVENT_TYPES
        )
        if "secret" in mine and mine["secret"] != secret:
            differs = True
        if not differs:
            return
        text = f"update the Phase Two webhook to {url} (enabled, event types, secret)"
        if self.dry_run:
            self.outcome.would.append(text)
            return
        before = {k: mine.get(k) for k in ("enabled", "eventTypes")}
        self.api.request(
            "PUT", f"{path}/{mine['id']}", "updating the Phase Two webhook", json={**mine, **body}
        )
        self.record.add(
            {"step": "update_webhook", "did": text, "id": str(mine["id"]), "before": before}
        )


# -- undo ----------------------------------------------------------------------------------


def undo(api: KeycloakAdminApi, record: Record, *, dry_run: bool) -> list[str]:
    """Take back the recorded Keycloak changes, newest first; returns what was (or would be)
    undone. Each undone change leaves the record at once, so an interrupted undo resumes."""
    said: list[str] = []
    deleted_clients = {e["id"] for e in record.keycloak if e["step"] == "create_client"}
    for entry in list(reversed(record.keycloak)):
        text = _undo_one(api, entry, deleted_clients, dry_run=dry_run)
        if text:
            said.append(text)
        if not dry_run:
            record.keycloak.remove(entry)
            record.save()
    return said


def _undo_one(
    api: KeycloakAdminApi, entry: dict[str, Any], deleted_clients: set[str], *, dry_run: bool
) -> str | None:
    step = entry["step"]
    base = api.realm_path
    if step == "create_client":
        text = f"delete client '{entry.get('client_id', entry['id'])}' (init created it)"
        if not dry_run:
            api.request("DELETE", f"{base}/clients/{entry['id']}", "deleting the client")
        return text
    if step == "update_client":
        client = api.get(f"{base}/clients/{entry['id']}", "reading the client")
        if client is None:
            return None
        if not dry_run:
            api.request(
                "PUT",
                f"{base}/clients/{entry['id']}",
                "restoring the client",
                json={**client, **entry["before"]},
            )
        return "restore the client's " + ", ".join(sorted(entry["before"]))
    if step in ("grant_roles", "revoke_roles"):
        if entry["client"] in deleted_clients:
            return None  # its service account goes with the client
        management = api.realm_management_id()
        path = f"{base}/users/{entry['user']}/role-mappings/clients/{management}"
        held = api.get(path, "reading the service account's roles")
        if held is None:
            return None
        held_names = {str(r["name"]) for r in held}
        if step == "grant_roles":
            names = [n for n in entry["roles"] if n in held_names]
            if names and not dry_run:
                reps = [r for r in held if r["name"] in names]
                api.request("DELETE", path, "taking back the roles", json=reps)
            return f"take back roles {', '.join(names)}" if names else None
        names = [n for n in entry["roles"] if n not in held_names]
        if names and not dry_run:
            reps = [api.realm_management_role(management, n) for n in names]
            api.request("POST", path, "giving back the roles", json=reps)
        return f"give back roles {', '.join(names)}" if names else None
    if step == "events":
        path = f"{base}/events/config"
        config: Json = api.get(path, "reading the realm's event settings") or {}
        restored = {
            **config,
            **entry["before"],
            "eventsListeners": _without(config.get("eventsListeners"), entry["added_listeners"]),
        }
        restored.pop("enabledEventTypes", None)
        if entry["added_types"]:
            restored["enabledEventTypes"] = _without(
                config.get("enabledEventTypes"), entry["added_types"]
            )
        if not dry_run:
            api.request("PUT", path, "restoring the realm's event settings", json=restored)
        return (
            "restore the realm's event settings (taking back: "
            + str(entry["did"]).split(": ", 1)[-1]
            + ")"
        )
    if step == "create_webhook":
        path = f"realms/{quote(api.realm, safe='')}/webhooks/{entry['id']}"
        if not dry_run:
            api.request("DELETE", path, "deleting the Phase Two webhook")
        return "delete the Phase Two webhook init created"
    if step == "update_webhook":
        path = f"realms/{quote(api.realm, safe='')}/webhooks/{entry['id']}"
        hook = api.get(path, "reading the Phase Two webhook")
        if hook is None:
            return None
        if not dry_run:
            api.request(
                "PUT", path, "restoring the Phase Two webhook", json={**hook, **entry["before"]}
            )
        return "restore the Phase Two webhook's settings"
    raise AdminApiError(f"unknown step '{step}' in the init record")


def _without(values: Iterable[str] | None, removed: list[str]) -> list[str]:
    return [v for v in values or [] if v not in removed]

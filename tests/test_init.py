"""`jit-bridge init` against the real Keycloak: a fresh realm with nothing configured for the
bridge becomes a working bridge (a login provisioned through `jit-bridge run`), a second run
changes nothing, `--undo` leaves the realm as it was; the prompts, a refused step and an
unreachable target."""

from __future__ import annotations

import io
import json
import os
import pty
import select
import stat
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests

from bridge.init.command import _events_way
from bridge.init.prompts import Prompter
from bridge.settings import SettingsError
from tests.fixtures.bridge import BridgeProcess, free_port
from tests.fixtures.keycloak import TestKeycloak
from tests.tines_fake import TinesFake

JIT_BRIDGE = str(Path(sys.executable).parent / "jit-bridge")
PASSWORD = "init-user-password"
MAPPING = {
    "mappings": [{"group_name": "Analysts", "team_name": "Analytics", "role_name": "EDITOR"}]
}


#: The realm's own administrator (realm-management's realm-admin), whom init logs in as.
ADMIN = "boss"
ADMIN_PASSWORD = "boss-" + uuid.uuid4().hex


@dataclass
class FreshRealm:
    """A realm created for one test: a login client, a group, a user in it; nothing for
    the bridge."""

    keycloak: TestKeycloak
    name: str

    def raw(self, method: str, path: str, body: Any = None) -> Any:
        conn = self.keycloak.admin.connection
        url = f"admin/realms/{self.name}{path}"
        if method == "GET":
            answer = conn.raw_get(url)
        elif method == "POST":
            answer = conn.raw_post(url, data=json.dumps(body))
        elif method == "PUT":
            answer = conn.raw_put(url, data=json.dumps(body))
        else:
            answer = conn.raw_delete(url, data=json.dumps(body) if body is not None else None)
        assert answer.status_code < 300, (method, url, answer.status_code, answer.text)
        return answer.json() if answer.text and method == "GET" else None

    def state(self) -> dict[str, Any]:
        """What init may touch: the realm, its event settings, its clients and users."""
        clients = {c["clientId"]: c for c in self.raw("GET", "/clients")}
        for client in clients.values():
            client.pop("access", None)
        realm, events = self.raw("GET", ""), self.raw("GET", "/events/config")
        for settings in (realm, events):  # sets, in any order
            for key in ("enabledEventTypes", "eventsListeners"):
                if key in settings:
                    settings[key] = sorted(settings[key])
        return {
            "realm": realm,
            "events": events,
            "clients": clients,
            "users": sorted(u["username"] for u in self.raw("GET", "/users?max=1000")),
        }

    def client(self, client_id: str) -> dict[str, Any] | None:
        found = [c for c in self.raw("GET", "/clients") if c["clientId"] == client_id]
        return found[0] if found else None

    def service_account_roles(self, client_id: str) -> set[str]:
        client = self.client(client_id)
        assert client is not None
        account = self.raw("GET", f"/clients/{client['id']}/service-account-user")
        management = self.client("realm-management")
        assert management is not None
        held = self.raw("GET", f"/users/{account['id']}/role-mappings/clients/{management['id']}")
        return {r["name"] for r in held}

    def login(self, username: str) -> None:
        answer = requests.post(
            f"{self.keycloak.url}/realms/{self.name}/protocol/openid-connect/token",
            data={
                "grant_type": "password",
                "client_id": "login",
                "username": username,
                "password": PASSWORD,
            },
            timeout=30,
        )
        assert answer.status_code == 200, answer.text


@pytest.fixture
def fresh_realm(keycloak: TestKeycloak) -> Iterator[FreshRealm]:
    name = "init-" + uuid.uuid4().hex[:8]
    keycloak.admin.create_realm({"realm": name, "enabled": True}, skip_exists=False)
    realm = FreshRealm(keycloak, name)
    try:
        realm.raw(
            "POST",
            "/clients",
            {
                "clientId": "login",
                "publicClient": True,
                "directAccessGrantsEnabled": True,
                "standardFlowEnabled": False,
            },
        )
        realm.raw("POST", "/groups", {"name": "Analysts"})
        realm.raw("POST", "/roles", {"name": "auditor"})
        add_user(realm, ADMIN, [], password=ADMIN_PASSWORD)
        grant(realm, ADMIN, ["realm-admin"])
        yield realm
    finally:
        keycloak.admin.connection.raw_delete(f"admin/realms/{name}")


def changed(before: dict[str, Any], after: dict[str, Any]) -> dict[str, Any]:
    """What differs between two `FreshRealm.state()`s, by part and key: {} when equal."""
    found: dict[str, Any] = {}
    for part in before.keys() | after.keys():
        old, new = before.get(part), after.get(part)
        if isinstance(old, dict) and isinstance(new, dict):
            keys = [k for k in old.keys() | new.keys() if old.get(k) != new.get(k)]
            found.update({f"{part}.{k}": (old.get(k), new.get(k)) for k in sorted(keys)})
        elif old != new:
            found[part] = (old, new)
    return found


def add_user(realm: FreshRealm, username: str, groups: list[str], password: str = PASSWORD) -> str:
    realm.raw(
        "POST",
        "/users",
        {
            "username": username,
            "email": f"{username}@example.com",
            "firstName": "Init",
            "lastName": "Test",
            "emailVerified": True,
            "enabled": True,
            "requiredActions": [],
            "groups": groups,
            "credentials": [{"type": "password", "value": password, "temporary": False}],
        },
    )
    return f"{username}@example.com"


def grant(realm: FreshRealm, username: str, roles: list[str]) -> None:
    """realm-management roles for a user of the realm."""
    management = realm.client("realm-management")
    assert management is not None
    user = realm.raw("GET", f"/users?username={username}&exact=true")[0]
    reps = [realm.raw("GET", f"/clients/{management['id']}/roles/{name}") for name in roles]
    realm.raw("POST", f"/users/{user['id']}/role-mappings/clients/{management['id']}", reps)


@dataclass
class InitFiles:
    workdir: Path
    mapping: Path
    admin_password: Path
    tines_key: Path

    @property
    def settings_dir(self) -> Path:
        return self.workdir / "jit-bridge"


@pytest.fixture
def init_files(tmp_path: Path, tines_fake: TinesFake) -> InitFiles:
    mapping = tmp_path / "mapping.json"
    mapping.write_text(json.dumps(MAPPING), encoding="utf-8")
    password = tmp_path / "admin-password"
    password.write_text(ADMIN_PASSWORD + "\n", encoding="utf-8")
    key = tmp_path / "tines-key"
    key.write_text(tines_fake.api_key, encoding="utf-8")
    return InitFiles(tmp_path, mapping, password, key)


def clean_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("JIT_BRIDGE_")}


def jit_bridge(
    workdir: Path, *args: str, stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [JIT_BRIDGE, *args],
        cwd=workdir,
        env=clean_env(),
        input=stdin if stdin is not None else "",
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )


def init_args(
    realm: FreshRealm, files: InitFiles, tines: TinesFake, *extra: str, admin: str | None = None
) -> list[str]:
    return [
        "init",
        "--non-interactive",
        "--keycloak-url",
        realm.keycloak.url,
        "--realm",
        realm.name,
        "--admin-user",
        admin or ADMIN,
        "--admin-realm",
        realm.name,
        "--admin-password-file",
        str(files.admin_password),
        "--target",
        "tines",
        "--tines-url",
        tines.url,
        "--tines-api-key-file",
        str(files.tines_key),
        "--mapping",
        str(files.mapping),
        *extra,
    ]


def tines_role(tines: TinesFake, email: str, team: str) -> str | None:
    state = tines.state.export()
    user = next((u for u in state.users if u.email == email), None)
    found = next((t for t in state.teams if t.name == team), None)
    if user is None or found is None:
        return None
    return next((m.role for m in found.members if m.user_id == user.id), None)


@pytest.mark.slow
@pytest.mark.bridge_process  # `jit-bridge run`, started here from what init wrote
def test_init_then_run_provisions_a_login_and_undo_restores_the_realm(
    fresh_realm: FreshRealm, init_files: InitFiles, tines_fake: TinesFake
) -> None:
    tines_fake.state.add_team("Analytics")
    email = add_user(fresh_realm, "ann", ["/Analysts"])
    before = fresh_realm.state()

    # The session Keycloak has the project's listener installed (posting to listener_port,
    # signed with listener_secret): init must find it. An external Keycloak may not.
    extra: list[str] = []
    if fresh_realm.keycloak.listener_port is not None:
        port = fresh_realm.keycloak.listener_port
        secret_file = init_files.workdir / "listener-secret"
        secret_file.write_text(fresh_realm.keycloak.listener_secret or "", encoding="utf-8")
        extra = ["--webhook-secret-file", str(secret_file)]
        expected_roles = {"view-users"}
    else:
        port = free_port()
        extra = ["--events", "poll"]
        expected_roles = {"view-users", "view-events"}
    args = init_args(fresh_realm, init_files, tines_fake, "--listen", f"127.0.0.1:{port}", *extra)

    dry = jit_bridge(init_files.workdir, *args, "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert "would change:" in dry.stdout
    assert "create client 'jit-bridge'" in dry.stdout
    assert changed(before, fresh_realm.state()) == {}, "a dry run changed the realm"
    assert not init_files.settings_dir.exists()

    first = jit_bridge(init_files.workdir, *args)
    assert first.returncode == 0, first.stdout + first.stderr
    out = first.stdout
    assert "changed:" in out
    assert "create client 'jit-bridge'" in out
    assert "ok   Keycloak login as the service account" in out
    assert "ok   validate --against-target" in out
    assert "ok   plan --all:" in out
    assert "mode jit, trigger reconcile:" in out  # the plan summary, printed
    assert "jit-bridge --settings" in out
    assert " run" in out
    # Never an echo of a secret init did not generate.
    for secret in (tines_fake.api_key, ADMIN_PASSWORD, fresh_realm.keycloak.listener_secret):
        if secret:
            assert secret not in out + first.stderr

    # Keycloak: the client, exactly the least-privilege roles, events on, the listener.
    client = fresh_realm.client("jit-bridge")
    assert client is not None
    assert client["serviceAccountsEnabled"]
    assert not client["publicClient"]
    assert not client["standardFlowEnabled"]
    assert not client["directAccessGrantsEnabled"]
    assert fresh_realm.service_account_roles("jit-bridge") == expected_roles
    events = fresh_realm.raw("GET", "/events/config")
    assert events["eventsEnabled"]
    assert events["adminEventsEnabled"]
    assert events["adminEventsDetailsEnabled"]
    if fresh_realm.keycloak.listener_port is not None:
        assert "jit-bridge" in events["eventsListeners"]
        assert "'jit-bridge' listener" in out

    # The settings directory: owner-only, secrets out of the TOML, no admin password.
    settings_dir = init_files.settings_dir
    secrets_dir = settings_dir / "secrets"
    assert stat.S_IMODE(secrets_dir.stat().st_mode) == 0o700
    assert stat.S_IMODE(settings_dir.stat().st_mode) == 0o700
    for path in [*secrets_dir.iterdir(), settings_dir / "bridge.toml"]:
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    toml = (settings_dir / "bridge.toml").read_text()
    assert tines_fake.api_key not in toml
    assert "keycloak_client_secret_file" in toml
    for path in settings_dir.rglob("*"):
        if path.is_file():
            assert ADMIN_PASSWORD not in path.read_text(errors="replace"), path
    after_first = fresh_realm.state()

    # Again: nothing changes, and it says so.
    second = jit_bridge(init_files.workdir, *args)
    assert second.returncode == 0, second.stdout + second.stderr
    assert "nothing to change" in second.stdout
    assert "changed:" not in second.stdout
    assert changed(after_first, fresh_realm.state()) == {}
    again_dry = jit_bridge(init_files.workdir, *args, "--dry-run")
    assert "nothing would change" in again_dry.stdout, again_dry.stdout
    as_env = jit_bridge(init_files.workdir, *args, "--print-env")
    assert as_env.returncode == 0, as_env.stdout + as_env.stderr
    assert f"JIT_BRIDGE_KEYCLOAK_REALM={fresh_realm.name}" in as_env.stdout
    assert "# JIT_BRIDGE_TINES_API_KEY: the value you gave init (not shown)" in as_env.stdout
    assert "# JIT_BRIDGE_KEYCLOAK_CLIENT_SECRET:" in as_env.stdout  # not made by this run
    assert tines_fake.api_key not in as_env.stdout

    # `jit-bridge run` with only what init wrote provisions a login.
    bridge = BridgeProcess(
        settings={"JIT_BRIDGE_SETTINGS": str(settings_dir / "bridge.toml")},
        workdir=init_files.workdir,
        port=port,
    )
    try:
        bridge.start()
        fresh_realm.login("ann")
        bridge.wait_until(
            lambda: tines_role(tines_fake, email, "Analytics") == "EDITOR",
            timeout=60,
            what="ann provisioned into Analytics as EDITOR",
        )
    finally:
        bridge.kill()

    # Undo (the record names the admin; only the password is given): the realm as it was,
    # the settings gone.
    undone = jit_bridge(
        init_files.workdir,
        "init",
        "--undo",
        "--non-interactive",
        "--admin-password-file",
        str(init_files.admin_password),
    )
    assert undone.returncode == 0, undone.stdout + undone.stderr
    assert "delete client 'jit-bridge'" in undone.stdout
    assert changed(before, fresh_realm.state()) == {}
    assert not (settings_dir / "bridge.toml").exists()
    assert not secrets_dir.exists()


def test_a_refused_step_stops_lists_what_was_done_and_undo_takes_it_back(
    fresh_realm: FreshRealm, init_files: InitFiles, tines_fake: TinesFake
) -> None:
    """An admin who may change the event settings but not create clients."""
    tines_fake.state.add_team("Analytics")
    add_user(fresh_realm, "limited", [])
    grant(
        fresh_realm,
        "limited",
        ["view-realm", "view-clients", "view-users", "view-events", "manage-events"],
    )
    limited_password = init_files.workdir / "limited-password"
    limited_password.write_text(PASSWORD, encoding="utf-8")
    before = fresh_realm.state()

    args = init_args(fresh_realm, init_files, tines_fake, "--events", "poll", admin="limited")
    args[args.index("--admin-password-file") + 1] = str(limited_password)
    refused = jit_bridge(init_files.workdir, *args)
    assert refused.returncode == 1, refused.stdout + refused.stderr
    err = refused.stderr
    assert "creating client 'jit-bridge': Keycloak refused (HTTP 403)" in err
    assert "'limited' lacks the admin rights" in err
    assert "already done" in err
    assert "turn on saving user events" in err
    assert f"jit-bridge init --undo --dir {init_files.settings_dir}" in err
    assert fresh_realm.raw("GET", "/events/config")["eventsEnabled"] is True
    assert fresh_realm.client("jit-bridge") is None

    undone = jit_bridge(
        init_files.workdir,
        "init",
        "--undo",
        "--non-interactive",
        "--admin-user",
        ADMIN,
        "--admin-realm",
        fresh_realm.name,
        "--admin-password-file",
        str(init_files.admin_password),
    )
    assert undone.returncode == 0, undone.stdout + undone.stderr
    assert "restore the realm's event settings" in undone.stdout
    assert changed(before, fresh_realm.state()) == {}


def test_organization_selectors_get_the_service_account_view_organizations(
    fresh_realm: FreshRealm, init_files: InitFiles, tines_fake: TinesFake
) -> None:
    """Without `view-organizations` every organization selector would read as unreadable
    (fail closed: nothing it grants is ever given)."""
    tines_fake.state.add_team("Analytics")
    mapping = {
        "mappings": [
            {"group_name": "Analysts", "team_name": "Analytics", "role_name": "EDITOR"},
            {"group_name": "organization:acme", "team_name": "Analytics", "role_name": "VIEWER"},
        ]
    }
    init_files.mapping.write_text(json.dumps(mapping), encoding="utf-8")
    done = jit_bridge(
        init_files.workdir, *init_args(fresh_realm, init_files, tines_fake, "--events", "poll")
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "view-organizations" in done.stdout
    assert fresh_realm.service_account_roles("jit-bridge") == {
        "view-users",
        "view-events",
        "view-organizations",
    }


def test_an_unreachable_target_stops_before_keycloak_is_touched(
    fresh_realm: FreshRealm, init_files: InitFiles, tines_fake: TinesFake
) -> None:
    before = fresh_realm.state()
    args = init_args(fresh_realm, init_files, tines_fake)
    args[args.index("--tines-url") + 1] = f"http://127.0.0.1:{free_port()}"
    done = jit_bridge(init_files.workdir, *args)
    assert done.returncode == 1
    assert "the target is not usable, nothing was changed" in done.stderr
    assert changed(before, fresh_realm.state()) == {}
    assert not init_files.settings_dir.exists()


def test_without_a_terminal_every_missing_value_is_named(tmp_path: Path) -> None:
    done = jit_bridge(tmp_path, "init", "--non-interactive")
    assert done.returncode == 2
    for flag in ("--keycloak-url", "--realm", "--admin-password-file", "--tines-url", "--mapping"):
        assert flag in done.stderr


# -- on a terminal ---------------------------------------------------------------------------


class Terminal:
    """`jit-bridge` on a pseudo-terminal: what it printed (with the terminal's echo)."""

    def __init__(self, args: list[str], cwd: Path) -> None:
        self.transcript = ""
        pid, fd = pty.fork()
        if pid == 0:  # the child
            os.chdir(cwd)
            os.execve(JIT_BRIDGE, [JIT_BRIDGE, *args], clean_env())
        self.pid, self.fd = pid, fd

    def _read(self, timeout: float) -> bool:
        ready, _, _ = select.select([self.fd], [], [], timeout)
        if not ready:
            return True
        try:
            chunk = os.read(self.fd, 4096)
        except OSError:
            return False
        if not chunk:
            return False
        self.transcript += chunk.decode(errors="replace")
        return True

    def expect(self, text: str, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while text not in self.transcript:
            if time.monotonic() > deadline or not self._read(0.5):
                raise AssertionError(f"no {text!r} on the terminal:\n{self.transcript}")

    def answer(self, prompt: str, reply: str) -> None:
        self.expect(prompt)
        self.transcript = self.transcript.replace(prompt, f"<{prompt}>", 1)
        os.write(self.fd, reply.encode() + b"\r")

    def finish(self, timeout: float = 180) -> int:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and self._read(0.5):
            pass
        _, status = os.waitpid(self.pid, 0)
        os.close(self.fd)
        return os.waitstatus_to_exitcode(status)


@pytest.mark.slow
def test_on_a_terminal_init_asks_hides_secrets_and_grants_role_selector_rights(
    fresh_realm: FreshRealm, init_files: InitFiles, tines_fake: TinesFake
) -> None:
    tines_fake.state.add_team("Analytics")
    mapping = {
        "mappings": [
            {"group_name": "Analysts", "team_name": "Analytics", "role_name": "EDITOR"},
            {"group_name": "realm-role:auditor", "team_name": "Analytics", "role_name": "VIEWER"},
        ]
    }
    init_files.mapping.write_text(json.dumps(mapping), encoding="utf-8")
    before = fresh_realm.state()
    user, password = ADMIN, ADMIN_PASSWORD

    term = Terminal(
        ["init", "--events", "poll", "--admin-realm", fresh_realm.name], init_files.workdir
    )
    term.answer("Keycloak URL: ", fresh_realm.keycloak.url)
    term.answer("Realm: ", fresh_realm.name)
    term.answer("Keycloak admin user [admin]: ", user)
    term.answer(f"Password of {user} (not shown): ", password)
    term.answer("Target (tines/scim) [tines]: ", "tinez")
    term.answer("answer one of: tines, scim", "tines")
    term.answer("Tines tenant URL: ", tines_fake.url)
    term.answer("Tines API key (a tenant owner's) (not shown): ", tines_fake.api_key)
    term.answer("Mapping file: ", str(init_files.mapping))
    term.answer("Mode (jit/enhanced) [jit]: ", "enhanced")
    code = term.finish()
    assert code == 0, term.transcript
    assert "ok   validate --against-target" in term.transcript
    assert password not in term.transcript
    assert tines_fake.api_key not in term.transcript
    assert fresh_realm.service_account_roles("jit-bridge") == {
        "view-users",
        "view-events",
        "view-realm",
    }
    toml = (init_files.settings_dir / "bridge.toml").read_text()
    assert 'mode = "enhanced"' in toml
    assert "poll_events = true" in toml

    undone = jit_bridge(
        init_files.workdir,
        "init",
        "--undo",
        "--admin-user",
        user,
        "--admin-realm",
        fresh_realm.name,
        "--admin-password-file",
        "-",
        stdin=password,
    )
    assert undone.returncode == 0, undone.stdout + undone.stderr
    assert changed(before, fresh_realm.state()) == {}


# -- choosing how the bridge hears of events ---------------------------------------------------


def answering(*replies: str) -> Prompter:
    """A terminal prompter whose user types `replies` in turn."""
    queue = list(replies)
    return Prompter(True, read_line=lambda _prompt: queue.pop(0), out=io.StringIO())


def test_events_come_from_the_listener_then_phase_two_then_polling() -> None:
    no_terminal = Prompter(False)
    assert _events_way("auto", {"jboss-logging", "jit-bridge"}, no_terminal) == "listener"
    both = {"jit-bridge", "ext-event-webhook"}
    assert _events_way("auto", both, no_terminal) == "listener"
    assert _events_way("auto", {"ext-event-webhook"}, no_terminal) == "phasetwo"
    assert _events_way("auto", {"ext-event-webhook"}, answering("maybe", "n")) == "poll"
    assert _events_way("auto", {"ext-event-webhook"}, answering("")) == "phasetwo"
    assert _events_way("auto", {"jboss-logging"}, no_terminal) == "poll"
    assert _events_way("poll", {"jit-bridge"}, no_terminal) == "poll"
    with pytest.raises(SettingsError, match="no 'jit-bridge' event listener installed"):
        _events_way("listener", {"jboss-logging"}, no_terminal)

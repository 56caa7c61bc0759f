"""`make demo`: jit-bridge end to end on this machine, in about a minute, then gone.

Starts a local Keycloak (the `jit-bridge` realm of deploy/keycloak/, with the project's event
listener), a scim2-server as the target application, and `jit-bridge run` in enhanced mode on
SQLite. Then alice, bob and carol log in and an administrator takes bob out of a group, and
after each step the SCIM server's teams and roles are printed, so a newcomer sees access
follow Keycloak without anyone touching the application. Ends with the audit trail.

Everything runs in a temporary directory on free ports and is stopped and removed at the end,
also on Ctrl-C or an error, so the demo can run again at once.

    python deploy/demo/demo.py                  # what `make demo` runs (after `make setup`)
    python deploy/demo/demo.py --keep-running   # leave everything up until Ctrl-C
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import importlib.util
import json
import os
import secrets
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType, ModuleType
from typing import TYPE_CHECKING, Any

import requests

from bridge.model import TargetState
from bridge.targets.scim import ScimTarget

if TYPE_CHECKING:
    from keycloak.keycloak_admin import KeycloakAdmin

REPO = Path(__file__).resolve().parents[2]
HARNESS_PATH = REPO / "deploy" / "keycloak" / "keycloak.py"
PROVIDER_BUILD = REPO / "deploy" / "keycloak-provider" / "build.sh"
MAPPING_FILE = Path(__file__).resolve().with_name("mapping.json")

BRIDGE_CLIENT_ID, BRIDGE_CLIENT_SECRET = "jit-bridge", "jit-bridge-secret"
LOGIN_CLIENT_ID, LOGIN_CLIENT_SECRET = "jit-bridge-login", "jit-bridge-login-secret"
OWNER_GROUP = "Tenant Owners"
ORGANIZATION = "acme"  # a Keycloak organization alice is a member of (seeded at start)
SCIM_TENANT = "demo"

START_TIMEOUT = 60.0  # scim2-server and jit-bridge each
STEP_TIMEOUT = 60.0  # from a login or group change to the finished reconcile
POLL_EVERY = 0.2
LOG_TAIL_LINES = 30
NO_ROLE = "-"


class DemoError(Exception):
    """A step did not work; the message says which and what to look at."""


# --------------------------------------------------------------------------------------
# Processes


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _die_with_parent() -> None:
    """Runs in the child before exec: SIGTERM it if the demo itself is killed (Linux)."""
    with contextlib.suppress(OSError, AttributeError):
        pr_set_pdeathsig = 1
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(pr_set_pdeathsig, signal.SIGTERM)


@dataclass
class Child:
    """A process the demo started, in its own process group, logging to a file."""

    name: str
    process: subprocess.Popen[bytes]
    log_path: Path

    @classmethod
    def start(cls, name: str, command: Sequence[str], log_path: Path, env: dict[str, str]) -> Child:
        with log_path.open("wb") as log:
            process = subprocess.Popen(
                list(command),
                cwd=log_path.parent,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
                preexec_fn=_die_with_parent,
            )
        return cls(name, process, log_path)

    def check_running(self) -> None:
        code = self.process.poll()
        if code is not None:
            raise DemoError(f"{self.name} exited with code {code}; its log is below")

    def log_tail(self, lines: int = LOG_TAIL_LINES) -> str:
        if not self.log_path.exists():
            return "(no log)"
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def stop(self, timeout: float = 15.0) -> None:
        """SIGTERM the process group, SIGKILL it if it does not go within `timeout`."""
        if self.process.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(10)


def wait_until(what: str, ready: Callable[[], bool], timeout: float, hint: str) -> None:
    """Poll `ready` until it holds; a DemoError naming `what` and `hint` after `timeout`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if ready():
            return
        time.sleep(POLL_EVERY)
    raise DemoError(f"{what} did not happen within {timeout:.0f} s; {hint}")


def answers(url: str, headers: dict[str, str] | None = None) -> requests.Response | None:
    try:
        return requests.get(url, headers=headers, timeout=2)
    except requests.RequestException:
        return None


def load_harness() -> ModuleType:
    """deploy/keycloak/keycloak.py is a script, not a package (and `keycloak` would shadow
    python-keycloak), so it is loaded from its file under another name."""
    name = "jit_bridge_keycloak_harness"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, HARNESS_PATH)
    if spec is None or spec.loader is None:
        raise DemoError(f"cannot load the Keycloak harness {HARNESS_PATH}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def build_listener_jar() -> Path:
    """The listener jar; build.sh rebuilds only when its sources changed and prints the path."""
    done = subprocess.run(
        ["bash", str(PROVIDER_BUILD)], capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        raise DemoError(
            f"building the Keycloak listener failed ({PROVIDER_BUILD}); run `make setup` and "
            f"read its output:\n{done.stderr[-2000:]}"
        )
    return Path(done.stdout.strip().splitlines()[-1])


def jit_bridge_command() -> list[str]:
    script = Path(sys.executable).with_name("jit-bridge")
    return [str(script)] if script.exists() else [sys.executable, "-m", "bridge.cli"]


def child_env(extra: dict[str, str]) -> dict[str, str]:
    """This environment without the caller's own JIT_BRIDGE_* settings, plus `extra`:
    a JIT_BRIDGE_SETTINGS or JIT_BRIDGE_MODE left in the shell must not change the demo."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("JIT_BRIDGE_")}
    env.update(extra)
    return env


# --------------------------------------------------------------------------------------
# The pieces


@dataclass
class Stack:
    """Keycloak, scim2-server and jit-bridge for one demo run, and how to reach them."""

    workdir: Path
    scim_token: str = field(default_factory=lambda: secrets.token_urlsafe(24))
    listener_secret: str = field(default_factory=lambda: secrets.token_urlsafe(24))
    admin_token: str = field(default_factory=lambda: secrets.token_urlsafe(24))
    bridge_port: int = field(default_factory=free_port)
    scim: Child | None = None
    bridge: Child | None = None
    keycloak: Any = None  # the harness's KeycloakServer
    organization_id: str = ""  # the seeded organization's id
    scim_url: str = ""

    # -- scim2-server ---------------------------------------------------------------------
    def start_scim(self) -> None:
        port = free_port()
        executable = shutil.which("scim2-server", path=str(Path(sys.executable).parent))
        if executable is None:
            raise DemoError("scim2-server is not installed in this environment; run `make setup`")
        command = [executable, "--hostname", "127.0.0.1", "--port", str(port)]
        # One argument with '=': a token starting with '-' would read as an option otherwise.
        command += [f"--bearer-token={self.scim_token}", "--dynamic-tenants"]
        self.scim = Child.start(
            "scim2-server", command, self.workdir / "scim2-server.log", child_env({})
        )
        self.scim_url = f"http://127.0.0.1:{port}/{SCIM_TENANT}/v2"
        scim = self.scim

        def up() -> bool:
            scim.check_running()
            return answers(f"{self.scim_url}/ServiceProviderConfig") is not None

        wait_until("scim2-server answering", up, START_TIMEOUT, "see its log below")

    # -- Keycloak -------------------------------------------------------------------------
    def start_keycloak(self) -> None:
        jar = build_listener_jar()
        webhook = f"http://127.0.0.1:{self.bridge_port}/webhooks/keycloak"
        # The same option names as the test session's Keycloak, so the harness reuses the
        # Quarkus build it cached for them (a warm start instead of a cold one).
        self.keycloak = load_harness().start_keycloak(
            providers=[jar],
            extra_args=[
                f"--spi-events-listener--jit-bridge--url={webhook}",
                f"--spi-events-listener--jit-bridge--secret={self.listener_secret}",
                "--spi-events-listener--jit-bridge--max-attempts=6",
            ],
        )
        self._enable_listener()
        self._seed_organization()

    def _seed_organization(self) -> None:
        """Keycloak Organizations on, with the organization `acme` (group /Support) that
        alice belongs to, and `view-organizations` for the bridge: the one role organization
        selectors need. Done here, not in the realm file, which older Keycloaks import too."""
        admin = self.admin()
        realm = self.keycloak.realm
        admin.update_realm(realm, {"organizationsEnabled": True})
        management = admin.get_client_id("realm-management")
        account = admin.get_client_service_account_user(admin.get_client_id(BRIDGE_CLIENT_ID))
        role = admin.get_client_role(management, "view-organizations")
        admin.assign_client_role(account["id"], management, [role])
        base = f"admin/realms/{realm}/organizations"
        body = {"name": "Acme Corp", "alias": ORGANIZATION, "domains": [{"name": "acme.example"}]}
        admin.connection.raw_post(base, data=json.dumps(body))
        org_id = admin.connection.raw_get(base, search="Acme Corp", exact="true").json()[0]["id"]
        admin.connection.raw_post(f"{base}/{org_id}/groups", data=json.dumps({"name": "Support"}))
        alice = admin.get_user_id("alice")
        admin.connection.raw_post(f"{base}/{org_id}/members", data=json.dumps(alice))
        self.organization_id = str(org_id)

    def _enable_listener(self) -> None:
        """Switch the listener on in the realm, keeping the listeners already there."""
        admin = self.admin()
        path = f"admin/realms/{self.keycloak.realm}/events/config"
        config = admin.connection.raw_get(path).json()
        listeners = sorted({*config.get("eventsListeners", []), "jit-bridge"})
        admin.connection.raw_put(path, data=json.dumps({**config, "eventsListeners": listeners}))

    def admin(self) -> KeycloakAdmin:
        admin: KeycloakAdmin = self.keycloak.admin()
        return admin

    # -- jit-bridge -----------------------------------------------------------------------
    def bridge_env(self) -> dict[str, str]:
        settings = {
            "MODE": "enhanced",
            "TARGET": "scim",
            "SCIM_URL": self.scim_url,
            "SCIM_TOKEN": self.scim_token,
            "SCIM_OWNER_GROUP": OWNER_GROUP,
            "KEYCLOAK_URL": self.keycloak.url,
            "KEYCLOAK_REALM": self.keycloak.realm,
            "KEYCLOAK_CLIENT_ID": BRIDGE_CLIENT_ID,
            "KEYCLOAK_CLIENT_SECRET": BRIDGE_CLIENT_SECRET,
            "WEBHOOK_SECRET": self.listener_secret,
            "ADMIN_TOKEN": self.admin_token,
            "DATABASE_URL": f"sqlite:///{self.workdir / 'jit-bridge.db'}",
            "MAPPING_FILE": str(MAPPING_FILE),
            "LISTEN": f"127.0.0.1:{self.bridge_port}",
            # Only the listener drives this demo, so each step shows the effect of one event.
            "RECONCILE_INTERVAL": "0",
        }
        return child_env({f"JIT_BRIDGE_{name}": value for name, value in settings.items()})

    def start_bridge(self) -> None:
        command = [*jit_bridge_command(), "run"]
        self.bridge = Child.start(
            "jit-bridge", command, self.workdir / "jit-bridge.log", self.bridge_env()
        )
        bridge = self.bridge

        def ready() -> bool:
            bridge.check_running()
            response = answers(f"http://127.0.0.1:{self.bridge_port}/readyz")
            return response is not None and response.status_code == 200

        wait_until(
            "jit-bridge ready (/readyz answering 200)",
            ready,
            START_TIMEOUT,
            "its log below says which dependency is failing",
        )

    def bridge_cli(self, *args: str) -> str:
        """Run a `jit-bridge` command with the service's settings; its output."""
        done = subprocess.run(
            [*jit_bridge_command(), *args],
            env=self.bridge_env(),
            cwd=self.workdir,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        if done.returncode != 0:
            raise DemoError(f"`jit-bridge {' '.join(args)}` failed:\n{done.stderr[-2000:]}")
        return done.stdout

    def status(self) -> dict[str, Any]:
        response = requests.get(
            f"http://127.0.0.1:{self.bridge_port}/api/v1/status",
            headers={"Authorization": f"Bearer {self.admin_token}"},
            timeout=5,
        )
        response.raise_for_status()
        status: dict[str, Any] = response.json()
        return status

    # -- teardown -------------------------------------------------------------------------
    def children(self) -> list[Child]:
        return [c for c in (self.bridge, self.scim) if c is not None]

    def print_log_tails(self) -> None:
        for child in self.children():
            print(
                f"\n--- last lines of {child.name}'s log ---\n{child.log_tail()}", file=sys.stderr
            )
        if self.keycloak is not None:
            print(
                f"\n--- last lines of Keycloak's log ---\n{self.keycloak.log_tail(LOG_TAIL_LINES)}",
                file=sys.stderr,
            )

    def stop(self) -> None:
        """Bridge first (so it is not left retrying), then Keycloak, then the SCIM server."""
        if self.bridge is not None:
            self.bridge.stop()
        if self.keycloak is not None:
            self.keycloak.stop()
        if self.scim is not None:
            self.scim.stop()


# --------------------------------------------------------------------------------------
# Showing what happened


def role_table(state: TargetState) -> str:
    """Users down, teams (and case groups) across, the role in each cell."""
    emails = {user.id: user.email for user in state.users}
    owners = {user.email for user in state.users if user.tenant_owner}
    roles: dict[tuple[str, str], str] = {}
    places: list[str] = []
    for team in state.teams:
        groups = [(team.name, team.members)]
        groups += [(f"{team.name} / {cg.name}", cg.members) for cg in team.case_groups]
        for place, members in groups:
            if members:
                places.append(place)
            for member in members:
                roles[(emails.get(member.user_id, member.user_id), place)] = member.role
    users = sorted(set(emails.values()) | {email for email, _ in roles}, key=str.lower)
    if not users:
        return "  (no users in the SCIM server yet)"
    rows = [["user", *places]]
    for email in users:
        label = f"{email} (tenant owner)" if email in owners else email
        rows.append([label, *(roles.get((email, place), NO_ROLE) for place in places)])
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = [
        "  " + "   ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
        for row in rows
    ]
    lines.insert(1, "  " + "   ".join("-" * w for w in widths))
    return "\n".join(lines)


def say(text: str = "") -> None:
    print(textwrap.fill(text, width=92) if text else "", flush=True)


def heading(text: str) -> None:
    print(f"\n== {text} " + "=" * max(0, 88 - len(text)), flush=True)


# --------------------------------------------------------------------------------------
# The story


@dataclass
class Demo:
    stack: Stack

    def target_state(self) -> TargetState:
        target = ScimTarget(self.stack.scim_url, self.stack.scim_token, owner_group=OWNER_GROUP)
        try:
            return target.read_state()
        finally:
            target.close()

    def show_target(self) -> None:
        print("\nSCIM server now (user x team -> role):", flush=True)
        print(role_table(self.target_state()), flush=True)

    def groups_of(self, username: str) -> list[str]:
        admin = self.stack.admin()
        return sorted(str(g["path"]) for g in admin.get_user_groups(self.user_id(username)))

    def user_id(self, username: str) -> str:
        user_id = self.stack.admin().get_user_id(username)
        if user_id is None:
            raise DemoError(f"the demo realm has no user {username!r}; is the realm file changed?")
        return user_id

    def run_ids(self) -> set[str]:
        return {str(run["id"]) for run in self.stack.status()["recent_runs"]}

    def await_reconcile(self, who: str, before: set[str]) -> None:
        """Wait until a new reconcile ran to the end and nothing is queued; fail on errors."""
        assert self.stack.bridge is not None
        bridge = self.stack.bridge
        finished: list[dict[str, Any]] = []

        def done() -> bool:
            bridge.check_running()
            status = self.stack.status()
            new = [r for r in status["recent_runs"] if str(r["id"]) not in before]
            if status["queue_depth"] or not new or any(r["finished_at"] is None for r in new):
                return False
            finished[:] = new
            return True

        wait_until(
            f"jit-bridge finishing the reconcile of {who}",
            done,
            STEP_TIMEOUT,
            "the Keycloak log shows whether the listener delivered the event, the jit-bridge "
            "log whether it arrived",
        )
        for run in finished:
            if run["status"] in ("failed", "partial"):
                raise DemoError(f"the reconcile of {who} {run['status']}: {run['summary']}")

    def login(self, username: str) -> None:
        from keycloak.keycloak_openid import KeycloakOpenID

        keycloak = self.stack.keycloak
        openid = KeycloakOpenID(
            server_url=keycloak.url,
            realm_name=keycloak.realm,
            client_id=LOGIN_CLIENT_ID,
            client_secret_key=LOGIN_CLIENT_SECRET,
        )
        before = self.run_ids()
        openid.token(username, f"{username}-password")
        self.await_reconcile(username, before)

    def remove_from_group(self, username: str, group_path: str) -> None:
        admin = self.stack.admin()
        before = self.run_ids()
        admin.group_user_remove(self.user_id(username), admin.get_group_by_path(group_path)["id"])
        self.await_reconcile(username, before)

    def add_to_organization_group(self, username: str, group_path: str) -> None:
        admin = self.stack.admin()
        base = f"admin/realms/{self.stack.keycloak.realm}/organizations/"
        base += self.stack.organization_id
        path = group_path.lstrip("/")
        group = admin.connection.raw_get(f"{base}/groups/group-by-path/{path}").json()
        before = self.run_ids()
        admin.connection.raw_put(
            f"{base}/groups/{group['id']}/members/{self.user_id(username)}", data="{}"
        )
        self.await_reconcile(username, before)

    def step(self, number: int, title: str, explanation: str, action: Callable[[], None]) -> None:
        heading(f"Step {number}: {title}")
        say(explanation)
        began = time.monotonic()
        action()
        print(f"(done in {time.monotonic() - began:.1f} s)", flush=True)
        self.show_target()

    def run(self) -> None:
        heading("The mapping (deploy/demo/mapping.json)")
        say(
            "Keycloak groups decide teams and roles in the application. This demo's "
            "application is a SCIM 2.0 server; a role in a team is membership of a SCIM group "
            "named 'Team:ROLE'."
        )
        for entry in json.loads(MAPPING_FILE.read_text())["mappings"]:
            place = entry["team_name"] + (
                f" / {entry['case_group_name']}" if "case_group_name" in entry else ""
            )
            print(f"  {entry['group_name']:<24} -> {place:<28} {entry['role_name']}")
        self.show_target()

        self.step(
            1,
            "alice logs in",
            f"alice is in {', '.join(self.groups_of('alice'))}. She signs in to Keycloak; the "
            "event listener tells jit-bridge, which re-reads her groups, works out her teams "
            "and creates her in the application with them.",
            lambda: self.login("alice"),
        )
        self.step(
            2,
            "bob logs in",
            f"bob is in {', '.join(self.groups_of('bob'))}. /Ops/Tier1 gives a role in the "
            "case group 'Tier 1' of Incident Response.",
            lambda: self.login("bob"),
        )
        self.step(
            3,
            "carol logs in",
            f"carol is in {', '.join(self.groups_of('carol'))}. 'Analysts' in the mapping "
            "matches a group of that name anywhere, and /Eng/SRE/Oncall counts as /Eng/SRE "
            "too (nested groups inherit).",
            lambda: self.login("carol"),
        )
        self.step(
            4,
            "an administrator takes bob out of /Analysts",
            "No login this time: an admin changes bob's groups in Keycloak. In enhanced mode "
            "the group-membership event alone makes jit-bridge re-check bob, and his Analytics "
            "role goes away. (Plain JIT, like Tines, would wait for his next login.)",
            lambda: self.remove_from_group("bob", "/Analysts"),
        )
        self.step(
            5,
            f"alice joins the group /Support of the organization '{ORGANIZATION}'",
            f"Keycloak Organizations group users by customer or partner. alice is a member of "
            f"the organization '{ORGANIZATION}'; an administrator now adds her to its /Support "
            f"group. 'organization:{ORGANIZATION}/Support' in the mapping gives the Customer "
            "Support team, and the organization event re-checks alice at once.",
            lambda: self.add_to_organization_group("alice", "/Support"),
        )

        heading("The audit trail (`jit-bridge audit`)")
        say("Every change, with before and after, the run and the Keycloak event that caused it:")
        print(textwrap.indent(self.stack.bridge_cli("audit").rstrip(), "  "), flush=True)


WHERE_NEXT = """\
- Your own Keycloak and your own SCIM or Tines tenant: README.md, "Point jit-bridge at your
  own Keycloak and your own Tines or SCIM tenant" (the Keycloak client, events, settings,
  then `jit-bridge validate MAPPING --against-target` and `jit-bridge plan --all`).
- See a change before it happens: `jit-bridge plan --user alice@example.com`, and why someone
  gets a team: `jit-bridge explain --user alice@example.com`.
- Events from Keycloak within a second: docs/keycloak-listener.md (or poll_events = true).
- Your own mapping: README.md, "The mapping"; mappings/example.json; mappings/schema.json.
- Look around: `python deploy/demo/demo.py --keep-running` leaves Keycloak (admin/admin),
  the SCIM server and jit-bridge up until Ctrl-C, and prints the settings for the CLI."""


# --------------------------------------------------------------------------------------
# Entry point


def _terminate(signum: int, frame: FrameType | None) -> None:
    """SIGTERM (e.g. from a CI timeout) ends the demo the way Ctrl-C does."""
    raise KeyboardInterrupt


@contextlib.contextmanager
def uninterruptible() -> Iterator[None]:
    """Cleanup must finish: a second Ctrl-C would otherwise leave processes and files."""
    previous = {sig: signal.signal(sig, signal.SIG_IGN) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def keep_running(stack: Stack) -> None:
    heading("Still running (Ctrl-C stops everything)")
    print(
        f"  Keycloak    {stack.keycloak.url}/admin  (admin / admin), realm {stack.keycloak.realm}"
    )
    print(f"  SCIM server {stack.scim_url}  (Authorization: Bearer {stack.scim_token})")
    print(
        f"  jit-bridge  http://127.0.0.1:{stack.bridge_port}  (admin API token {stack.admin_token})"
    )
    print("\nThe CLI works against this bridge with its settings; in another shell:")
    for name, value in stack.bridge_env().items():
        if name.startswith("JIT_BRIDGE_"):
            print(f"  export {name}={shlex.quote(value)}")
    print("  jit-bridge plan --all --trigger login", flush=True)
    while True:
        for child in stack.children():
            child.check_running()
        time.sleep(1)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--keep-running", action="store_true", help="leave everything running until Ctrl-C"
    )
    args = parser.parse_args(argv)
    # Explicit, because a shell starts background jobs with SIGINT ignored and Python keeps that.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, _terminate)
    workdir = Path(tempfile.mkdtemp(prefix="jit-bridge-demo-"))
    stack = Stack(workdir)
    code = 0
    try:
        heading("Starting Keycloak, a SCIM server and jit-bridge")
        print(f"temporary files: {workdir}", flush=True)
        stack.start_scim()
        print(f"scim2-server ready at {stack.scim_url}", flush=True)
        print(
            "starting Keycloak (about 30 s; the very first start takes a minute or two) ...",
            flush=True,
        )
        stack.start_keycloak()
        print(
            f"Keycloak ready at {stack.keycloak.url} in {stack.keycloak.started_in:.0f} s",
            flush=True,
        )
        stack.start_bridge()
        print(
            f"jit-bridge ready on 127.0.0.1:{stack.bridge_port} (enhanced mode, SCIM target)",
            flush=True,
        )
        Demo(stack).run()
        heading("Where to go next")
        print(WHERE_NEXT, flush=True)
        if args.keep_running:
            keep_running(stack)
    except KeyboardInterrupt:
        print("\ninterrupted; stopping everything ...", file=sys.stderr, flush=True)
        code = 130
    except Exception as exc:  # any failure: say what, show the logs, clean up
        with uninterruptible():
            print(f"\ndemo failed: {type(exc).__name__}: {exc}", file=sys.stderr)
            stack.print_log_tails()
        code = 1
    finally:
        with uninterruptible():
            stack.stop()
            shutil.rmtree(workdir, ignore_errors=True)
            print(
                "\nstopped Keycloak, scim2-server and jit-bridge; removed the temporary files",
                flush=True,
            )
    return code


if __name__ == "__main__":
    sys.exit(main())

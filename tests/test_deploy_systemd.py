"""deploy/systemd: the unit passes `systemd-analyze verify` and its hardening check, the example
environment file names only real settings, and the settings the unit gives (environment file,
credentials, state directory, stop timeout) start the real service, which stops on SIGTERM.

systemd is not PID 1 here, so the service is started the way the unit would start it: its
ExecStart command line with the environment systemd would build (Environment= with %d
expanded, then the environment file), a $CREDENTIALS_DIRECTORY holding each LoadCredential=
file, and the unit's paths moved under a temporary root.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from bridge.settings import ENV_PREFIX, FILE_FIELDS, load_settings, unknown_environment
from tests.fixtures.bridge import free_port

REPO = Path(__file__).resolve().parents[1]
UNIT = REPO / "deploy" / "systemd" / "jit-bridge.service"
ENV_EXAMPLE = REPO / "deploy" / "systemd" / "jit-bridge.env.example"
#: Where the unit expects the pip-installed command (README: a venv in /opt/jit-bridge).
INSTALLED_COMMAND = "/opt/jit-bridge/bin/jit-bridge"
#: The checkout's own `jit-bridge`, a real install of the same package, stands in for it.
CHECKOUT_COMMAND = Path(sys.executable).parent / "jit-bridge"
#: Seconds between the bridge's own stop deadline and systemd's SIGKILL, at least.
STOP_MARGIN = 10


def systemd_analyze() -> str:
    found = shutil.which("systemd-analyze")
    if found is None:
        pytest.fail(
            "systemd-analyze is not installed: run `make setup` (it installs Debian's systemd "
            "package through deploy/system-packages.sh)"
        )
    return found


@dataclass(frozen=True)
class Unit:
    """A unit file's assignments: section -> key -> every value, in order."""

    sections: dict[str, dict[str, list[str]]]

    @classmethod
    def read(cls, path: Path) -> Unit:
        sections: dict[str, dict[str, list[str]]] = {}
        current: dict[str, list[str]] | None = None
        for number, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            line = raw.strip()
            if not line or line.startswith(("#", ";")):
                continue
            if line.startswith("[") and line.endswith("]"):
                current = sections.setdefault(line[1:-1], {})
                continue
            key, sep, value = line.partition("=")
            assert current is not None, f"{path}:{number}: outside a [section]: {raw!r}"
            assert sep, f"{path}:{number}: not KEY=VALUE: {raw!r}"
            current.setdefault(key.strip(), []).append(value.strip())
        return cls(sections)

    def values(self, key: str, section: str = "Service") -> list[str]:
        return self.sections.get(section, {}).get(key, [])

    def value(self, key: str, section: str = "Service") -> str:
        found = self.values(key, section)
        assert len(found) == 1, f"{UNIT.name}: expected one {key}= in [{section}], got {found}"
        return found[0]


def read_environment_file(path: Path) -> dict[str, str]:
    """The assignments systemd's EnvironmentFile= takes from `path` (comments skipped)."""
    found: dict[str, str] = {}
    for number, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        key, sep, value = line.partition("=")
        assert sep, f"{path}:{number}: not KEY=VALUE: {raw!r}"
        assert re.fullmatch(r"[A-Z_][A-Z0-9_]*", key), f"{path}:{number}: bad name: {raw!r}"
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
            value = value[1:-1]
        found[key] = value
    return found


def commented_settings(path: Path) -> dict[str, str]:
    """The `#JIT_BRIDGE_X=...` lines: alternatives an operator un-comments."""
    pattern = re.compile(rf"^#\s*({ENV_PREFIX}[A-Z0-9_]+)=(.*)$")
    return {
        m.group(1): m.group(2)
        for line in path.read_text(encoding="utf-8").splitlines()
        if (m := pattern.match(line.strip()))
    }


@dataclass(frozen=True)
class Installed:
    """The unit's files and directories, moved under a temporary root."""

    root: Path
    unit: Unit
    credentials: dict[str, str]

    @property
    def credentials_dir(self) -> Path:
        return self.root / "run" / "credentials" / "jit-bridge.service"

    @property
    def state_dir(self) -> Path:
        return self.root / "var" / "lib" / self.unit.value("StateDirectory")

    def path(self, absolute: str) -> Path:
        """Where an absolute path the unit or environment file names lies in this root."""
        assert absolute.startswith("/"), absolute
        return self.root / absolute.lstrip("/")

    def specifiers(self, value: str) -> str:
        """Expand the specifiers the unit uses (%d credentials, %S state root, %%)."""
        table = {"d": str(self.credentials_dir), "S": str(self.root / "var" / "lib"), "%": "%"}

        def one(match: re.Match[str]) -> str:
            letter = match.group(1)
            assert letter in table, f"{UNIT.name}: specifier %{letter} not handled by this test"
            return table[letter]

        return re.sub(r"%(.)", one, value)

    def relocate(self, value: str) -> str:
        """A setting's value with the unit's absolute directories moved under the root."""
        for directory in ("/etc/jit-bridge", f"/var/lib/{self.unit.value('StateDirectory')}"):
            value = value.replace(directory, str(self.path(directory)))
        return value

    def environment(self) -> dict[str, str]:
        """What systemd gives the service: a few basics, Environment= (specifiers expanded),
        then the environment file, whose assignments win."""
        env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": "/", "LANG": "C.UTF-8"}
        for assignment in self.unit.values("Environment"):
            for word in shlex.split(assignment):
                key, _, value = word.partition("=")
                env[key] = self.specifiers(value)
        env_file = self.path(self.unit.value("EnvironmentFile"))
        env.update({k: self.relocate(v) for k, v in read_environment_file(env_file).items()})
        env["CREDENTIALS_DIRECTORY"] = str(self.credentials_dir)
        env["STATE_DIRECTORY"] = str(self.state_dir)
        return env


@pytest.fixture
def installed(tmp_path: Path) -> Installed:
    """The install the unit's header describes: environment file, mapping, one secret file per
    LoadCredential=, state directory; then systemd's copies of the credentials."""
    unit = Unit.read(UNIT)
    root = tmp_path / "root"
    setup = Installed(root=root, unit=unit, credentials={})
    env_file = setup.path(unit.value("EnvironmentFile"))
    env_file.parent.mkdir(parents=True)
    shutil.copy(ENV_EXAMPLE, env_file)
    settings = read_environment_file(ENV_EXAMPLE)
    shutil.copy(REPO / "mappings" / "mapping.json", setup.path(settings["JIT_BRIDGE_MAPPING_FILE"]))
    setup.credentials_dir.mkdir(parents=True)
    for entry in unit.values("LoadCredential"):
        name, _, source = entry.partition(":")
        secret = f"{name}-value-{len(setup.credentials)}"
        source_path = setup.path(source)
        source_path.parent.mkdir(parents=True, exist_ok=True)
        source_path.write_text(secret + "\n", encoding="utf-8")
        # systemd copies each file into the credentials directory under its name.
        shutil.copy(source_path, setup.credentials_dir / name)
        setup.credentials[name] = secret
    setup.state_dir.mkdir(parents=True)
    return setup


def test_unit_passes_systemd_analyze_verify(tmp_path: Path) -> None:
    """`systemd-analyze verify` with the unit's ExecStart at a real `jit-bridge` (verify refuses
    a command that does not exist): no error and no warning (an unknown key or a bad value is
    only a warning, with exit code 0, so the output must be empty too)."""
    tool = systemd_analyze()
    text = UNIT.read_text(encoding="utf-8")
    assert f"ExecStart={INSTALLED_COMMAND} " in text
    copy = tmp_path / UNIT.name
    copy.write_text(text.replace(INSTALLED_COMMAND, str(CHECKOUT_COMMAND)), encoding="utf-8")
    done = subprocess.run(
        [tool, "verify", str(copy)], capture_output=True, text=True, timeout=120, check=False
    )
    assert (done.returncode, done.stdout + done.stderr) == (0, ""), done.stdout + done.stderr


def test_unit_hardening_exposure_is_low(tmp_path: Path) -> None:
    """`systemd-analyze security` rates the sandbox (0 best, 10 worst); 2.0 or less keeps the
    hardening from being dropped unnoticed."""
    tool = systemd_analyze()
    copy = tmp_path / UNIT.name
    copy.write_text(
        UNIT.read_text(encoding="utf-8").replace(INSTALLED_COMMAND, str(CHECKOUT_COMMAND)),
        encoding="utf-8",
    )
    done = subprocess.run(
        [tool, "security", "--offline=true", "--threshold=20", "--no-pager", str(copy)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, f"exposure above 2.0:\n{done.stdout}{done.stderr}"


def test_unit_names_hardening_and_stop_policy() -> None:
    unit = Unit.read(UNIT)
    for key, expected in {
        "DynamicUser": "yes",
        "ProtectSystem": "strict",
        "ProtectHome": "yes",
        "PrivateTmp": "yes",
        "NoNewPrivileges": "yes",
        "CapabilityBoundingSet": "",
        "MemoryDenyWriteExecute": "yes",
        "RestrictAddressFamilies": "AF_INET AF_INET6 AF_UNIX",
        "Restart": "on-failure",
        "KillSignal": "SIGTERM",
        "RestartPreventExitStatus": "2",  # bad settings: a restart cannot help
    }.items():
        assert unit.value(key) == expected, key
    assert unit.values("SystemCallFilter")[0] == "@system-service"


def test_env_example_names_only_settings() -> None:
    """Every variable of the example, and of its commented alternatives, is one jit-bridge
    reads: a typo would otherwise only be warned about at start."""
    names = {**read_environment_file(ENV_EXAMPLE), **commented_settings(ENV_EXAMPLE)}
    assert len(names) > 10
    assert unknown_environment(names) == []
    # The unit's own Environment= lines too, and those commented out as alternatives.
    commented = re.findall(r"^#Environment=(.*)$", UNIT.read_text(encoding="utf-8"), re.M)
    unit_names = {
        word.partition("=")[0]: ""
        for assignment in [*Unit.read(UNIT).values("Environment"), *commented]
        for word in shlex.split(assignment)
    }
    assert len(unit_names) > len(Unit.read(UNIT).values("Environment"))
    assert unknown_environment(unit_names) == []


def test_credentials_feed_the_file_settings() -> None:
    """Each LoadCredential= is read through its setting's _FILE variable, at %d/<name>."""
    unit = Unit.read(UNIT)
    environment = dict(
        word.partition("=")[::2]
        for assignment in unit.values("Environment")
        for word in shlex.split(assignment)
    )
    loaded = [entry.partition(":")[0] for entry in unit.values("LoadCredential")]
    assert loaded, "the unit loads no credential"
    for name in loaded:
        assert name in FILE_FIELDS, f"credential {name} is no setting with a _FILE variable"
        assert environment.get(f"{ENV_PREFIX}{name.upper()}_FILE") == f"%d/{name}", name
        source = dict(e.split(":", 1) for e in unit.values("LoadCredential"))[name]
        assert source == f"/etc/jit-bridge/secrets/{name}", name


def test_unit_settings_load_through_the_real_loader(
    installed: Installed, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The environment the unit builds, read by the bridge's own settings loader: secrets from
    the credentials directory, the store in the state directory, a stop that ends before
    systemd's TimeoutStopSec."""
    for name in list(os.environ):
        if name.startswith(ENV_PREFIX):
            monkeypatch.delenv(name)
    for name, value in installed.environment().items():
        monkeypatch.setenv(name, value)
    settings = load_settings()
    for name, secret in installed.credentials.items():
        assert settings.secret(name) == secret, name
    assert settings.database_url == f"sqlite:///{installed.state_dir}/jit-bridge.db"
    assert settings.mapping_file == installed.path("/etc/jit-bridge/mapping.json")
    assert settings.target == "tines"
    stop_timeout = float(installed.unit.value("TimeoutStopSec"))
    assert settings.shutdown_timeout + STOP_MARGIN <= stop_timeout, (
        f"shutdown_timeout {settings.shutdown_timeout} s leaves systemd's TimeoutStopSec "
        f"{stop_timeout} s less than {STOP_MARGIN} s to spare"
    )


@pytest.mark.bridge_process
def test_unit_command_line_starts_the_service_and_sigterm_stops_it(installed: Installed) -> None:
    """The unit's ExecStart with the unit's environment: the service comes up on the
    credentials (the admin API takes the admin_token credential and nothing else), keeps its
    store in the state directory, and exits 0 on SIGTERM before TimeoutStopSec."""
    env = installed.environment()
    # Only the addresses change: nothing outside this machine is called, and any free port.
    port = free_port()
    closed = f"http://127.0.0.1:{free_port()}"
    env.update(
        {
            f"{ENV_PREFIX}LISTEN": f"127.0.0.1:{port}",
            f"{ENV_PREFIX}KEYCLOAK_URL": closed,
            f"{ENV_PREFIX}TINES_URL": closed,
        }
    )
    command = shlex.split(installed.unit.value("ExecStart"))
    assert command[0] == INSTALLED_COMMAND
    command[0] = str(CHECKOUT_COMMAND)
    cwd = Path(installed.specifiers(installed.unit.value("WorkingDirectory")))
    assert cwd == installed.state_dir
    log_path = installed.root / "journal.log"
    with log_path.open("wb") as journal:
        process = subprocess.Popen(
            command, cwd=cwd, env=env, stdout=journal, stderr=subprocess.STDOUT
        )
    try:
        url = f"http://127.0.0.1:{port}"
        _wait_healthy(process, url, log_path)
        token = installed.credentials["admin_token"]
        status = httpx.get(
            f"{url}/api/v1/status", headers={"Authorization": f"Bearer {token}"}, timeout=30
        )
        assert status.status_code == 200, status.text
        refused = httpx.get(
            f"{url}/api/v1/status", headers={"Authorization": "Bearer wrong"}, timeout=30
        )
        assert refused.status_code == 401
        assert (installed.state_dir / "jit-bridge.db").is_file()

        process.send_signal(signal.SIGTERM)
        stop_timeout = float(installed.unit.value("TimeoutStopSec"))
        try:
            code = process.wait(stop_timeout)
        except subprocess.TimeoutExpired:
            pytest.fail(
                f"still running {stop_timeout} s after SIGTERM (systemd would SIGKILL it):\n"
                + log_path.read_text(errors="replace")[-4000:]
            )
        assert code == 0, log_path.read_text(errors="replace")[-4000:]
        assert "stopped" in log_path.read_text(errors="replace")
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(10)


def _wait_healthy(process: subprocess.Popen[bytes], url: str, log_path: Path) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(
                f"jit-bridge exited with {process.returncode}:\n"
                + log_path.read_text(errors="replace")[-4000:]
            )
        try:
            if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    pytest.fail("not healthy within 60 s:\n" + log_path.read_text(errors="replace")[-4000:])

"""A real Keycloak for tests and demos, without Docker.

Fetches the `keycloak-quarkus-dist` archive through Maven (so CI on a clean machine gets it
from Maven Central), verifies its SHA-1, unpacks it once into a cache outside the repository
and starts `kc.sh start-dev` from a fresh per-run home: a small directory that copies the
few files Keycloak writes to (bin/kc.sh, conf, lib/quarkus, providers, data) and symlinks the
168 MB of read-only jars. Every start therefore imports the realm file into an empty H2
database, and runs never share state.

The Quarkus augmentation (about 40 s on two cores) depends only on the build-time inputs
(provider jars and CLI options), so its output is cached per input hash and later starts
skip it.

    python deploy/keycloak/keycloak.py fetch
    python deploy/keycloak/keycloak.py start [--realm-file F] [--port N]   # until Ctrl-C
    python deploy/keycloak/keycloak.py stop

Every supported release line has one pinned release in `SUPPORTED` (oldest first); the
newest is the default, and `start_keycloak(version=...)` runs any other, each on the JDK it
names (`java_home=` overrides). The README's and docs/keycloak-listener.md's version tables are
checked against `SUPPORTED` by tests/test_keycloak_versions.py.

    python deploy/keycloak/keycloak.py fetch --all      # every supported release (make setup)
    python deploy/keycloak/keycloak.py start --version 24.0.5

Environment: JIT_BRIDGE_KEYCLOAK_CACHE (cache dir, default ~/.cache/jit-bridge),
JIT_BRIDGE_KEYCLOAK_HOME (an unpacked distribution of the default release to use as is),
JIT_BRIDGE_KEYCLOAK_JAVA_HOME (the JDK for every release; default: the release's own JDK when
installed, else JAVA_HOME),
JIT_BRIDGE_KEYCLOAK_START_TIMEOUT (seconds to wait for a start, default 240).
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import ctypes
import fcntl
import hashlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tarfile
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from keycloak.keycloak_admin import KeycloakAdmin

JAVA_17 = Path("/usr/lib/jvm/java-17-openjdk-amd64")
JAVA_25 = Path("/usr/lib/jvm/temurin-25-jdk-amd64")
#: Where each Java feature release is looked for (a release's `java` names one of these).
JDKS: dict[int, Path] = {17: JAVA_17, 25: JAVA_25}


@dataclass(frozen=True)
class Release:
    """One pinned Keycloak release: the newest served patch of a supported release line."""

    version: str
    #: The Java feature release CI runs it on (a key of JDKS).
    java: int = 17

    @property
    def line(self) -> str:
        """`24.0`, `26.4`: the release line this release stands for."""
        return ".".join(self.version.split(".")[:2])

    @property
    def major(self) -> int:
        return int(self.version.split(".")[0])

    @property
    def artifact(self) -> str:
        return f"org.keycloak:keycloak-quarkus-dist:{self.version}:tar.gz"

    @property
    def has_management_port(self) -> bool:
        """Health and metrics moved to a separate management port in Keycloak 25."""
        return self.major >= 25


#: Every supported release line, oldest first; the last one is the default everywhere.
SUPPORTED: tuple[Release, ...] = (
    Release("24.0.5"),
    Release("25.0.6"),
    Release("26.0.8"),
    Release("26.2.5"),
    Release("26.4.7"),
    Release("26.7.3"),
)
NEWEST = SUPPORTED[-1]
OLDEST = SUPPORTED[0]
VERSION = NEWEST.version
ARTIFACT = NEWEST.artifact
REALM_FILE = Path(__file__).with_name("realm-jit-bridge.json")
ADMIN_USERNAME = "admin"
ADMIN_PASSWORD = "admin"
#: Seconds to wait for a start; JIT_BRIDGE_KEYCLOAK_START_TIMEOUT raises it on a loaded machine.
DEFAULT_TIMEOUT = float(os.environ.get("JIT_BRIDGE_KEYCLOAK_START_TIMEOUT", "240"))
RUN_PREFIX = "jit-bridge-keycloak-"
OWNER_FILE = "owner.pid"


class KeycloakHarnessError(RuntimeError):
    """Keycloak could not be fetched, unpacked or started; the message says what to do."""


def release(version: str | Release | None = None) -> Release:
    """The supported release for `version` (default: the newest)."""
    if version is None:
        return NEWEST
    if isinstance(version, Release):
        return version
    for candidate in SUPPORTED:
        if candidate.version == version:
            return candidate
    known = ", ".join(r.version for r in SUPPORTED)
    raise KeycloakHarnessError(f"Keycloak {version} is not a supported release; use one of {known}")


# --------------------------------------------------------------------------------------
# Fetch and unpack


def cache_dir() -> Path:
    return Path(os.environ.get("JIT_BRIDGE_KEYCLOAK_CACHE", Path.home() / ".cache" / "jit-bridge"))


def maven_archive(version: str = VERSION) -> Path:
    repo = Path(os.environ.get("MAVEN_REPO_LOCAL", Path.home() / ".m2" / "repository"))
    folder = repo / "org" / "keycloak" / "keycloak-quarkus-dist" / version
    return folder / f"keycloak-quarkus-dist-{version}.tar.gz"


@contextlib.contextmanager
def _locked(name: str) -> Iterator[None]:
    """Serialise fetch/unpack between concurrent test sessions on one machine."""
    cache_dir().mkdir(parents=True, exist_ok=True)
    with open(cache_dir() / f"{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def _download_archive(rel: Release) -> Path:
    archive = maven_archive(rel.version)
    if archive.exists():
        return archive
    mvn = shutil.which("mvn")
    if mvn is None:
        raise KeycloakHarnessError(
            f"{archive} is missing and Maven is not installed; "
            f"install Maven or fetch {rel.artifact}"
        )
    # -Dtransitive=false: the dist's own dependencies are not needed and some of their
    # repositories are unreachable from CI.
    cmd = [mvn, "-q", "dependency:get", "-Dtransitive=false", f"-Dartifact={rel.artifact}"]
    if "MAVEN_REPO_LOCAL" in os.environ:
        cmd.append(f"-Dmaven.repo.local={os.environ['MAVEN_REPO_LOCAL']}")
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if done.returncode != 0 or not archive.exists():
        tail = (done.stdout + done.stderr)[-2000:]
        raise KeycloakHarnessError(f"`{' '.join(cmd)}` failed (exit {done.returncode}):\n{tail}")
    return archive


def _verify_sha1(archive: Path) -> None:
    sha1_file = archive.with_name(archive.name + ".sha1")
    if not sha1_file.exists():
        raise KeycloakHarnessError(f"{sha1_file} is missing; delete {archive} and fetch again")
    expected = sha1_file.read_text().split()[0].strip().lower()
    digest = hashlib.sha1()  # noqa: S324 - Maven Central publishes SHA-1 checksums
    with archive.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    if digest.hexdigest() != expected:
        raise KeycloakHarnessError(
            f"{archive} has SHA-1 {digest.hexdigest()}, expected {expected}; "
            "delete it and fetch again"
        )


def fetch(version: str | Release | None = None) -> Path:
    """The unpacked distribution, fetching and unpacking it first if needed."""
    rel = release(version)
    if "JIT_BRIDGE_KEYCLOAK_HOME" in os.environ and rel == NEWEST:
        home = Path(os.environ["JIT_BRIDGE_KEYCLOAK_HOME"])
        if not (home / "bin" / "kc.sh").exists():
            raise KeycloakHarnessError(f"JIT_BRIDGE_KEYCLOAK_HOME={home} has no bin/kc.sh")
        return home
    home = cache_dir() / f"keycloak-{rel.version}"
    if (home / "bin" / "kc.sh").exists():
        return home
    with _locked("unpack"):
        if (home / "bin" / "kc.sh").exists():
            return home
        archive = _download_archive(rel)
        _verify_sha1(archive)
        staging = Path(tempfile.mkdtemp(prefix="unpack-", dir=cache_dir()))
        try:
            with tarfile.open(archive) as tar:
                tar.extractall(staging, filter="tar")
            (staging / f"keycloak-{rel.version}").rename(home)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    return home


# --------------------------------------------------------------------------------------
# Start and stop


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def choose_jdk(rel: Release, explicit: Path | str | None = None) -> str | None:
    """The JDK to run `rel` on: `explicit`, else JIT_BRIDGE_KEYCLOAK_JAVA_HOME, else the
    release's own JDK (JDKS) when installed, else JAVA_HOME."""
    if explicit:
        if not (Path(explicit) / "bin" / "java").exists():
            raise KeycloakHarnessError(f"java_home={explicit} has no bin/java")
        return str(explicit)
    from_env = os.environ.get("JIT_BRIDGE_KEYCLOAK_JAVA_HOME")
    if from_env:
        return from_env
    own = JDKS.get(rel.java)
    if own is not None and (own / "bin" / "java").exists():
        return str(own)
    return os.environ.get("JAVA_HOME")


def _die_with_parent() -> None:
    """Runs in the child before exec: SIGTERM it when the Python process dies (Linux)."""
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        pr_set_pdeathsig = 1
        libc.prctl(pr_set_pdeathsig, signal.SIGTERM)


def _build_key(
    rel: Release, java: str | None, providers: Sequence[Path], extra_args: Sequence[str]
) -> str:
    digest = hashlib.sha256(f"{rel.version} {java}".encode())
    for jar in sorted(providers, key=lambda p: p.name):
        digest.update(jar.name.encode() + jar.read_bytes())
    for arg in extra_args:
        # Values (ports, URLs) differ per run and are mostly runtime options, so only names
        # count. A wrong guess costs time, not correctness: Keycloak re-augments by itself
        # whenever the restored build does not match its build-time options.
        digest.update(arg.split("=", 1)[0].encode())
    return digest.hexdigest()[:16]


def _sweep_orphaned_run_homes() -> None:
    """Remove run homes whose Python owner was killed before it could clean up."""
    for run in Path(tempfile.gettempdir()).glob(f"{RUN_PREFIX}*"):
        try:
            owner = int((run / OWNER_FILE).read_text())
        except (OSError, ValueError):
            continue  # being created right now, or not ours
        try:
            os.kill(owner, 0)
        except ProcessLookupError:
            shutil.rmtree(run, ignore_errors=True)
        except PermissionError:
            continue


def _prepare_run_home(home: Path, run: Path, realm_file: Path, providers: Sequence[Path]) -> None:
    (run / "bin").mkdir(parents=True)
    (run / "lib").mkdir()
    (run / "data" / "import").mkdir(parents=True)
    shutil.copy2(home / "bin" / "kc.sh", run / "bin" / "kc.sh")
    shutil.copytree(home / "conf", run / "conf")
    shutil.copytree(home / "providers", run / "providers")
    shutil.copytree(home / "lib" / "quarkus", run / "lib" / "quarkus")
    shutil.copytree(home / "lib" / "app", run / "lib" / "app")
    shutil.copy2(home / "lib" / "quarkus-run.jar", run / "lib" / "quarkus-run.jar")
    shutil.copy2(home / "version.txt", run / "version.txt")
    (run / "lib" / "lib").symlink_to(home / "lib" / "lib")
    (run / "themes").symlink_to(home / "themes")
    for jar in providers:
        shutil.copy2(jar, run / "providers" / jar.name)
    shutil.copy2(realm_file, run / "data" / "import" / realm_file.name)


def _restore_build(run: Path, key: str) -> bool:
    cached = cache_dir() / "builds" / key / "quarkus"
    if not cached.is_dir():
        return False
    shutil.rmtree(run / "lib" / "quarkus")
    shutil.copytree(cached, run / "lib" / "quarkus")
    return True


def _save_build(run: Path, key: str) -> None:
    target = cache_dir() / "builds" / key / "quarkus"
    if target.exists():
        return
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix="build-", dir=target.parent))
    shutil.copytree(run / "lib" / "quarkus", staging / "quarkus")
    with contextlib.suppress(OSError):  # another session saved it first
        (staging / "quarkus").rename(target)
    shutil.rmtree(staging, ignore_errors=True)


def _realm_name(realm_file: Path) -> str:
    try:
        name = json.loads(realm_file.read_text())["realm"]
    except (OSError, ValueError, KeyError) as exc:
        raise KeycloakHarnessError(f"{realm_file} is not a realm export: {exc}") from exc
    return str(name)


def _http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:  # noqa: S310 - local URL
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError):
        return False


@dataclass
class KeycloakServer:
    """A running Keycloak. `url` is the base URL (no `/auth`), `realm` the imported realm."""

    url: str
    version: str
    realm: str
    management_url: str
    process: subprocess.Popen[bytes] | None
    run_dir: Path | None
    log_path: Path | None
    admin_username: str = ADMIN_USERNAME
    admin_password: str = ADMIN_PASSWORD
    started_in: float = 0.0
    _stopped: bool = field(default=False, repr=False)

    def admin(self) -> KeycloakAdmin:
        """The bootstrap admin (master realm user) working on the test realm."""
        from keycloak.keycloak_admin import KeycloakAdmin
        from keycloak.openid_connection import KeycloakOpenIDConnection

        connection = KeycloakOpenIDConnection(
            server_url=self.url,
            username=self.admin_username,
            password=self.admin_password,
            realm_name=self.realm,
            user_realm_name="master",
            client_id="admin-cli",
            verify=True,
            timeout=30,
        )
        return KeycloakAdmin(connection=connection)

    def log_tail(self, lines: int = 40) -> str:
        if self.log_path is None or not self.log_path.exists():
            return "(no log)"
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def stop(self, timeout: float = 30.0) -> None:
        """SIGTERM the process group, then SIGKILL it; remove the per-run home."""
        if self._stopped:
            return
        self._stopped = True
        if self.process is not None and self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(10)
        if self.run_dir is not None:
            shutil.rmtree(self.run_dir, ignore_errors=True)


def start_keycloak(
    realm_file: Path = REALM_FILE,
    providers: Sequence[Path] = (),
    extra_args: Sequence[str] = (),
    *,
    port: int | None = None,
    timeout: float = DEFAULT_TIMEOUT,
    env: dict[str, str] | None = None,
    version: str | Release | None = None,
    java_home: Path | str | None = None,
) -> KeycloakServer:
    """Start `kc.sh start-dev` on 127.0.0.1 with `realm_file` imported fresh; wait until ready.

    `providers` are jars copied into providers/ (e.g. the project's event listener);
    `extra_args` are appended to the command line (e.g.
    `--spi-events-listener--jit-bridge--url=...`). `version` picks a supported release
    (default the newest) and `java_home` its JDK (default: see `java_home()`). The process
    dies with this Python process (parent-death signal, own process group, atexit).
    """
    rel = release(version)
    java = choose_jdk(rel, java_home)
    home = fetch(rel)
    realm_file = Path(realm_file)
    realm = _realm_name(realm_file)
    providers = [Path(p) for p in providers]
    _sweep_orphaned_run_homes()
    run = Path(tempfile.mkdtemp(prefix=RUN_PREFIX))
    (run / OWNER_FILE).write_text(str(os.getpid()))
    _prepare_run_home(home, run, realm_file, providers)
    key = _build_key(rel, java, providers, extra_args)
    prebuilt = _restore_build(run, key)
    http_port = port or _free_port()
    # Keycloak 24 serves health on the HTTP port; 25+ on a separate management port.
    management_port = _free_port() if rel.has_management_port else http_port
    command = [
        str(run / "bin" / "kc.sh"),
        "start-dev",
        "--http-host=127.0.0.1",
        f"--http-port={http_port}",
        *([f"--http-management-port={management_port}"] if rel.has_management_port else []),
        "--health-enabled=true",
        "--import-realm",
        *extra_args,
    ]
    child_env = dict(os.environ)
    child_env.update(
        KC_BOOTSTRAP_ADMIN_USERNAME=ADMIN_USERNAME,
        KC_BOOTSTRAP_ADMIN_PASSWORD=ADMIN_PASSWORD,
    )
    if rel.major < 26:  # the bootstrap admin variables before Keycloak 26
        child_env.update(KEYCLOAK_ADMIN=ADMIN_USERNAME, KEYCLOAK_ADMIN_PASSWORD=ADMIN_PASSWORD)
    if java:
        child_env["JAVA_HOME"] = java
    child_env.update(env or {})
    log_path = run / "keycloak.log"
    began = time.monotonic()
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            command,
            cwd=run,
            env=child_env,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            preexec_fn=_die_with_parent,
        )
    server = KeycloakServer(
        url=f"http://127.0.0.1:{http_port}",
        version=rel.version,
        realm=realm,
        management_url=f"http://127.0.0.1:{management_port}",
        process=process,
        run_dir=run,
        log_path=log_path,
    )
    atexit.register(server.stop)
    try:
        _wait_ready(server, timeout)
    except KeycloakHarnessError as exc:
        tail = server.log_tail()
        server.stop()
        raise KeycloakHarnessError(
            f"{exc}\n--- Keycloak log tail ({log_path}) ---\n{tail}"
        ) from None
    except BaseException:
        server.stop()
        raise
    server.started_in = time.monotonic() - began
    if not prebuilt:
        _save_build(run, key)
    return server


def _wait_ready(server: KeycloakServer, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    discovery = f"{server.url}/realms/{server.realm}/.well-known/openid-configuration"
    while time.monotonic() < deadline:
        assert server.process is not None
        code = server.process.poll()
        if code is not None:
            raise KeycloakHarnessError(f"Keycloak exited with code {code} before it was ready")
        if _http_ok(f"{server.management_url}/health/ready") and _http_ok(discovery):
            return
        time.sleep(0.5)
    raise KeycloakHarnessError(
        f"Keycloak was not ready within {timeout:.0f} s ({discovery}); a slow machine may need a "
        "longer timeout"
    )


# --------------------------------------------------------------------------------------
# Command line (demo)


def _state_file() -> Path:
    return cache_dir() / "demo-keycloak.json"


def _cmd_start(args: argparse.Namespace) -> int:
    server = start_keycloak(
        Path(args.realm_file), port=args.port, timeout=args.timeout, version=args.version
    )
    assert server.process is not None
    _state_file().write_text(json.dumps({"pid": server.process.pid, "url": server.url}))
    print(f"Keycloak {server.version} ready in {server.started_in:.1f} s")
    print(f"  URL:    {server.url}  (admin console {server.url}/admin, admin/admin)")
    print(f"  realm:  {server.realm}")
    print(f"  log:    {server.log_path}")
    print("Ctrl-C or `keycloak.py stop` to stop.", flush=True)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        while server.process.poll() is None:
            time.sleep(1)
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
        _state_file().unlink(missing_ok=True)
    return 0


def _cmd_stop(_: argparse.Namespace) -> int:
    if not _state_file().exists():
        print("no demo Keycloak is running")
        return 1
    state = json.loads(_state_file().read_text())
    with contextlib.suppress(ProcessLookupError):
        os.killpg(int(state["pid"]), signal.SIGTERM)
    _state_file().unlink(missing_ok=True)
    print(f"stopped Keycloak at {state['url']}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    versions = [r.version for r in SUPPORTED]
    fetch_cmd = sub.add_parser("fetch", help="fetch, verify and unpack the distribution")
    which = fetch_cmd.add_mutually_exclusive_group()
    which.add_argument("--version", choices=versions, default=VERSION)
    which.add_argument("--all", action="store_true", help="every supported release")
    start = sub.add_parser("start", help="start Keycloak and keep it running")
    start.add_argument("--version", choices=versions, default=VERSION)
    start.add_argument("--realm-file", default=str(REALM_FILE))
    start.add_argument("--port", type=int, default=None, help="HTTP port (default: a free one)")
    start.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT)
    sub.add_parser("stop", help="stop the Keycloak started by `start`")
    args = parser.parse_args(argv)
    try:
        if args.command == "fetch":
            for rel in SUPPORTED if args.all else (release(args.version),):
                print(fetch(rel))
            return 0
        if args.command == "start":
            return _cmd_start(args)
        return _cmd_stop(args)
    except KeycloakHarnessError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())

"""deploy/container/Containerfile, built with buildah as an operator would build it with podman:
the image runs `jit-bridge --version` as its non-root user, carries the health check, and runs
the service, which its own health check finds healthy and which stops on SIGTERM.

No registry is reachable here, so the image is built on a Debian 12 base that `make setup`
makes with debootstrap (deploy/container/base-image.sh) instead of python:3.11-slim-bookworm,
and its Python dependencies come from the wheelhouse `make setup` fills instead of PyPI.
buildah keeps its images under ~/.cache/jit-bridge/containers; the image built here is removed
at the end, the base stays.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from bridge import __version__
from bridge.settings import unknown_environment
from tests.fixtures.bridge import free_port
from tests.fixtures.tls import TestCA

pytestmark = [pytest.mark.bridge_process, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[1]
CONTAINERFILE = REPO / "deploy" / "container" / "Containerfile"
BASE_IMAGE_SCRIPT = REPO / "deploy" / "container" / "base-image.sh"
WHEELHOUSE = Path.home() / ".cache" / "jit-bridge" / "wheels"
CACHE = Path.home() / ".cache" / "jit-bridge" / "containers"
STORAGE = [
    f"--root={CACHE / 'storage'}",
    f"--runroot={CACHE / 'run'}",
    "--storage-driver=overlay",
]
#: The image's user (the Helm chart's runAsUser too).
IMAGE_UID = 10001


def buildah(*args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    tool = shutil.which("buildah")
    if tool is None:
        pytest.fail("buildah is not installed: run `make setup` (deploy/system-packages.sh)")
    return subprocess.run(
        [tool, *STORAGE, *args], capture_output=True, text=True, timeout=timeout, check=False
    )


def checked(done: subprocess.CompletedProcess[str]) -> str:
    assert done.returncode == 0, f"{' '.join(done.args)}:\n{done.stdout}{done.stderr}"
    return done.stdout


@pytest.fixture(scope="module")
def image(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The image built from the Containerfile with a wheel of this checkout."""
    found = subprocess.run(
        ["bash", str(BASE_IMAGE_SCRIPT), "--existing"],
        capture_output=True,
        text=True,
        check=False,
    )
    if found.returncode != 0:
        pytest.fail(found.stderr or "no base image: run `make setup`")
    base = found.stdout.strip()
    if not any(WHEELHOUSE.glob("*.whl")):
        pytest.fail(f"no dependency wheels in {WHEELHOUSE}; run `make setup`")
    context = tmp_path_factory.mktemp("context")
    wheels = context / "dist"
    built = subprocess.run(
        [sys.executable, "-m", "build", "--wheel", "--no-isolation", "--outdir", str(wheels), REPO],
        capture_output=True,
        text=True,
        cwd=REPO,
        check=False,
    )
    assert built.returncode == 0, f"building the wheel failed:\n{built.stdout[-3000:]}"
    # The checkout's ignore file, as with the documented build from the checkout's root.
    shutil.copy(REPO / ".dockerignore", context / ".dockerignore")
    tag = f"localhost/jit-bridge-test:{os.getpid()}"
    checked(
        buildah(
            "bud",
            "--isolation=chroot",
            "--format=docker",  # the OCI format has no HEALTHCHECK
            f"--build-arg=BASE={base}",
            "--build-arg=PIP_NO_INDEX=1",
            "--build-arg=PIP_FIND_LINKS=/wheels",
            f"--volume={WHEELHOUSE}:/wheels:ro",
            f"--file={CONTAINERFILE}",
            f"--tag={tag}",
            str(context),
            timeout=900,
        )
    )
    try:
        yield tag
    finally:
        buildah("rmi", tag)


@dataclass
class Container:
    name: str

    def run(
        self, *command: str, env: dict[str, str] | None = None, volumes: tuple[str, ...] = ()
    ) -> list[str]:
        args = ["run", "--isolation=chroot"]
        args += [f"--env={k}={v}" for k, v in (env or {}).items()]
        args += [f"--volume={v}" for v in volumes]
        return [*args, self.name, "--", *command]


@pytest.fixture
def container(image: str) -> Iterator[Container]:
    name = checked(buildah("from", image)).strip()
    try:
        yield Container(name)
    finally:
        buildah("rm", name)


def image_config(image: str) -> dict[str, Any]:
    config: dict[str, Any] = json.loads(checked(buildah("inspect", "--type=image", image)))
    return dict(config["Docker"]["config"])


def test_image_runs_the_installed_command_as_its_own_user(container: Container) -> None:
    assert checked(buildah(*container.run("jit-bridge", "--version"))).strip() == (
        f"jit-bridge {__version__}"
    )
    assert checked(buildah(*container.run("id", "-u"))).strip() == str(IMAGE_UID)


def test_image_config_is_non_root_with_a_health_check(image: str) -> None:
    config = image_config(image)
    assert config["User"] == f"{IMAGE_UID}:{IMAGE_UID}"
    assert config["Entrypoint"] == ["jit-bridge"]
    assert config["Cmd"] == ["run"]
    assert config["StopSignal"] == "SIGTERM"
    assert "8080/tcp" in config["ExposedPorts"]
    assert config["Healthcheck"]["Test"][:2] == ["CMD", "python3"]
    assert "/healthz" in " ".join(config["Healthcheck"]["Test"])
    env = dict(item.partition("=")[::2] for item in config["Env"])
    # The store's default (sqlite:///jit-bridge.db) lands in the volume through the working
    # directory; a JIT_BRIDGE_DATABASE_URL here would clash with a pod's _FILE variant.
    assert "JIT_BRIDGE_DATABASE_URL" not in env
    assert config["WorkingDir"] == "/var/lib/jit-bridge"
    assert unknown_environment(env) == []  # every JIT_BRIDGE_* it sets is a setting


@pytest.mark.parametrize("scheme", ["http", "https"])
def test_service_in_the_image_is_healthy_and_stops_on_sigterm(
    image: str, container: Container, tmp_path: Path, scheme: str
) -> None:
    """The image's own command, configured as a pod would (variables, a mounted mapping,
    secrets in mounted files; over HTTPS, a mounted certificate and key): its health check
    passes while it runs and fails once it has stopped; SIGTERM stops it cleanly."""
    config = image_config(image)
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    for name in ("keycloak_client_secret", "tines_api_key", "admin_token"):
        (secrets / name).write_text(f"{name}-in-a-file\n", encoding="utf-8")
    # Over HTTPS the database URL comes from a mounted file too, as the Helm chart gives a
    # PostgreSQL URL; the store must then be where that file says, not the default.
    store = "jit-bridge.db" if scheme == "http" else "from-file.db"
    (secrets / "database_url").write_text(f"sqlite:////var/lib/jit-bridge/{store}\n", "utf-8")
    extra_env: dict[str, str] = {}
    extra_volumes: tuple[str, ...] = ()
    verify: ssl.SSLContext | bool = True
    if scheme == "https":
        ca = TestCA.create(tmp_path / "ca")
        cert = ca.issue(tmp_path / "tls")
        os.chown(cert.key_file, IMAGE_UID, IMAGE_UID)  # the key is the container user's
        extra_env = {
            "JIT_BRIDGE_TLS_CERT_FILE": f"/run/tls/{cert.cert_file.name}",
            "JIT_BRIDGE_TLS_KEY_FILE": f"/run/tls/{cert.key_file.name}",
            "JIT_BRIDGE_DATABASE_URL_FILE": "/run/secrets/database_url",
        }
        extra_volumes = (f"{cert.cert_file.parent}:/run/tls:ro",)
        verify = ssl.create_default_context(cafile=str(ca.cert_file))
    port = free_port()
    closed = f"http://127.0.0.1:{free_port()}"  # nothing outside this machine is called
    env = {
        "JIT_BRIDGE_LISTEN": f"127.0.0.1:{port}",
        "JIT_BRIDGE_KEYCLOAK_URL": closed,
        "JIT_BRIDGE_KEYCLOAK_REALM": "acme",
        "JIT_BRIDGE_KEYCLOAK_CLIENT_ID": "jit-bridge",
        "JIT_BRIDGE_KEYCLOAK_CLIENT_SECRET_FILE": "/run/secrets/keycloak_client_secret",
        "JIT_BRIDGE_TINES_URL": closed,
        "JIT_BRIDGE_TINES_API_KEY_FILE": "/run/secrets/tines_api_key",
        "JIT_BRIDGE_ADMIN_TOKEN_FILE": "/run/secrets/admin_token",
        **extra_env,
    }
    volumes = (
        f"{REPO / 'mappings' / 'mapping.json'}:/etc/jit-bridge/mapping.json:ro",
        f"{secrets}:/run/secrets:ro",
        *extra_volumes,
    )
    health = container.run(*config["Healthcheck"]["Test"][1:], env=env)
    log_path = tmp_path / "container.log"
    tool = shutil.which("buildah")
    assert tool is not None
    with log_path.open("wb") as sink:
        outer = subprocess.Popen(
            [
                tool,
                *STORAGE,
                *container.run(*config["Entrypoint"], *config["Cmd"], env=env, volumes=volumes),
            ],
            stdout=sink,
            stderr=subprocess.STDOUT,
        )
    try:
        url = f"{scheme}://127.0.0.1:{port}"
        _wait_healthy(outer, url, log_path, verify)
        status = httpx.get(
            f"{url}/api/v1/status",
            headers={"Authorization": "Bearer admin_token-in-a-file"},
            timeout=30,
            verify=verify,
        )
        assert status.status_code == 200, status.text
        assert buildah(*health).returncode == 0, "the health check fails on a healthy bridge"
        # buildah does not pass SIGTERM on to the command: signal the bridge itself, as a
        # container runtime does.
        bridge = _descendant(outer.pid, "/opt/jit-bridge/bin/jit-bridge")
        os.kill(bridge, signal.SIGTERM)
        assert outer.wait(60) == 0, log_path.read_text(errors="replace")[-4000:]
        text = log_path.read_text(errors="replace")
        assert "SIGTERM: stopping" in text
        assert "stopped" in text
        assert buildah(*health).returncode != 0, "the health check passes with no bridge"
        # The store is in the image's state directory, written by its user.
        listing = checked(buildah(*container.run("ls", "-n", "/var/lib/jit-bridge")))
        assert store in listing
        assert f" {IMAGE_UID} {IMAGE_UID} " in listing
    finally:
        if outer.poll() is None:
            outer.kill()
            outer.wait(30)


def _descendant(root: int, needle: str) -> int:
    """The process under `root` whose command line holds `needle`."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            parents[int(entry.name)] = int(stat.rpartition(")")[2].split()[1])
    for pid in parents:
        ancestor = pid
        while ancestor in parents and ancestor != root:
            ancestor = parents[ancestor]
        if ancestor == root and pid != root:
            try:
                command = (Path("/proc") / str(pid) / "cmdline").read_bytes()
            except OSError:
                continue
            words = command.split(b"\0")
            if words and words[0].endswith(b"python3") and needle.encode() in command:
                return pid
    pytest.fail(f"no process running {needle} under {root}")


def _wait_healthy(
    process: subprocess.Popen[bytes], url: str, log_path: Path, verify: ssl.SSLContext | bool
) -> None:
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(
                f"the container exited with {process.returncode}:\n"
                + log_path.read_text(errors="replace")[-4000:]
            )
        try:
            if httpx.get(f"{url}/healthz", timeout=1, verify=verify).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    pytest.fail("not healthy within 90 s:\n" + log_path.read_text(errors="replace")[-4000:])

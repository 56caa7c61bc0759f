"""The Keycloak harness (deploy/keycloak/keycloak.py) and the realm it imports."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest
from keycloak.exceptions import KeycloakError
from keycloak.keycloak_admin import KeycloakAdmin
from keycloak.openid_connection import KeycloakOpenIDConnection

from tests.fixtures.keycloak import HARNESS_PATH, REPO, TestKeycloak, load_harness
from tests.waiting import wait_until

harness = load_harness()


def _fake_distribution(root: Path, kc_sh: str) -> Path:
    """Just enough of a Keycloak layout for the harness, with our own kc.sh."""
    home = root / "fake-keycloak"
    for folder in ("bin", "conf", "providers", "lib/quarkus", "lib/app", "lib/lib", "themes"):
        (home / folder).mkdir(parents=True)
    (home / "lib" / "quarkus-run.jar").write_bytes(b"")
    (home / "version.txt").write_text("fake")
    script = home / "bin" / "kc.sh"
    script.write_text("#!/bin/sh\n" + textwrap.dedent(kc_sh))
    script.chmod(0o755)
    return home


def _running(pid: int) -> bool:
    """Alive and not a zombie waiting for a reaper (PID 1 in a container may never reap)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return False
    return "State:\tZ" not in status


def _bridge_connection(keycloak: TestKeycloak) -> KeycloakOpenIDConnection:
    """Logged in as the bridge's service account (client credentials)."""
    return KeycloakOpenIDConnection(
        server_url=keycloak.url,
        realm_name=keycloak.realm,
        client_id=keycloak.client_id,
        client_secret_key=keycloak.client_secret,
    )


@pytest.fixture
def isolated_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("JIT_BRIDGE_KEYCLOAK_CACHE", str(tmp_path / "cache"))
    return tmp_path


def test_slow_start_times_out_with_log_tail_and_leaves_no_process(
    isolated_cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pid_file = isolated_cache / "child.pid"
    home = _fake_distribution(
        isolated_cache,
        f"""
        echo "booting slowly"
        sleep 300 &
        echo $! > {pid_file}
        wait
        """,
    )
    monkeypatch.setenv("JIT_BRIDGE_KEYCLOAK_HOME", str(home))
    with pytest.raises(harness.KeycloakHarnessError) as info:
        harness.start_keycloak(timeout=3)
    message = str(info.value)
    assert "not ready within 3 s" in message
    assert "booting slowly" in message
    assert not _running(int(pid_file.read_text()))


def test_early_exit_is_reported_with_exit_code(
    isolated_cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    home = _fake_distribution(isolated_cache, 'echo "ERROR: port in use"; exit 3\n')
    monkeypatch.setenv("JIT_BRIDGE_KEYCLOAK_HOME", str(home))
    with pytest.raises(harness.KeycloakHarnessError, match="exited with code 3") as info:
        harness.start_keycloak(timeout=30)
    assert "ERROR: port in use" in str(info.value)


def test_orphaned_run_homes_are_swept_on_the_next_start(
    isolated_cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    dead = subprocess.Popen(["true"])
    dead.wait()
    orphan = Path(tempfile.mkdtemp(prefix=harness.RUN_PREFIX))
    (orphan / harness.OWNER_FILE).write_text(str(dead.pid))
    home = _fake_distribution(isolated_cache, "exit 3\n")
    monkeypatch.setenv("JIT_BRIDGE_KEYCLOAK_HOME", str(home))
    with pytest.raises(harness.KeycloakHarnessError):
        harness.start_keycloak(timeout=30)
    assert not orphan.exists()


def test_keycloak_dies_with_the_python_process_that_started_it(
    isolated_cache: Path,
) -> None:
    pid_file = isolated_cache / "server.pid"
    run_file = isolated_cache / "run.dir"
    home = _fake_distribution(
        isolated_cache, f"pwd > {run_file}\necho $$ > {pid_file}\nexec sleep 300\n"
    )
    code = (
        "import sys; sys.path.insert(0, sys.argv[1]);"
        "from tests.fixtures.keycloak import load_harness;"
        "load_harness().start_keycloak(timeout=300)"
    )
    env = dict(os.environ, JIT_BRIDGE_KEYCLOAK_HOME=str(home))
    starter = subprocess.Popen([sys.executable, "-c", code, str(REPO)], env=env)
    try:
        _wait_for(pid_file.exists)
        server = int(pid_file.read_text())
        assert _running(server)
    finally:
        starter.kill()
        starter.wait()
    _wait_for(lambda: not _running(server))
    assert not _running(server)
    harness._sweep_orphaned_run_homes()  # what the next start does
    assert not Path(run_file.read_text().strip()).exists()


def _wait_for(condition: Callable[[], bool], limit: float = 30.0) -> None:
    wait_until(condition, limit, "the condition")


def test_archive_with_wrong_checksum_is_refused(
    isolated_cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("JIT_BRIDGE_KEYCLOAK_HOME", raising=False)
    monkeypatch.setenv("MAVEN_REPO_LOCAL", str(isolated_cache / "m2"))
    archive = harness.maven_archive()
    archive.parent.mkdir(parents=True)
    archive.write_bytes(b"not really a tarball")
    archive.with_name(archive.name + ".sha1").write_text("0" * 40 + "\n")
    with pytest.raises(harness.KeycloakHarnessError, match="expected 0000"):
        harness.fetch()
    assert not (isolated_cache / "cache" / f"keycloak-{harness.VERSION}").exists()


@pytest.mark.keycloak  # needs the Keycloak distribution (`make setup` fetches it)
def test_script_fetch_prints_the_unpacked_distribution() -> None:
    done = subprocess.run(
        [sys.executable, str(HARNESS_PATH), "fetch"],
        capture_output=True,
        text=True,
        check=True,
        timeout=600,
    )
    home = Path(done.stdout.strip())
    assert (home / "bin" / "kc.sh").exists()


def test_realm_records_login_events_readable_by_the_bridge(keycloak: TestKeycloak) -> None:
    keycloak.login("bob", "bob-password")
    bridge = KeycloakAdmin(connection=_bridge_connection(keycloak))
    bob = keycloak.user_id("bob")
    events = bridge.get_events({"type": "LOGIN", "user": bob, "max": 50})
    assert any(e["clientId"] == "jit-bridge-login" for e in events)
    config = keycloak.admin.get_realm(keycloak.realm)
    assert config["eventsEnabled"]
    assert config["adminEventsEnabled"]
    assert config["adminEventsDetailsEnabled"]
    assert {"LOGIN", "REGISTER", "IDENTITY_PROVIDER_LOGIN"} <= set(config["enabledEventTypes"])


def test_seeded_users_can_log_in_and_disabled_cannot(keycloak: TestKeycloak) -> None:
    for username in ("alice", "bob", "carol", "dana", "erin", "frank", "grace"):
        assert keycloak.login(username, f"{username}-password")["access_token"]
    with pytest.raises(KeycloakError, match="Account disabled"):
        keycloak.login("heidi", "heidi-password")


def test_bridge_service_account_holds_only_read_roles(keycloak: TestKeycloak) -> None:
    admin = keycloak.admin
    account = admin.get_client_service_account_user(str(admin.get_client_id("jit-bridge")))
    management = str(admin.get_client_id("realm-management"))
    roles = {r["name"] for r in admin.get_client_roles_of_user(account["id"], management)}
    assert roles == {"view-users", "view-events", "view-realm", "view-clients"}
    assert admin.get_realm_roles_of_user(account["id"]) == []


def test_bridge_client_cannot_change_the_realm(keycloak: TestKeycloak) -> None:
    connection = _bridge_connection(keycloak)
    alice = keycloak.user_id("alice")
    response = connection.raw_put(
        f"admin/realms/{keycloak.realm}/users/{alice}", data='{"firstName": "Mallory"}'
    )
    assert response.status_code == 403


def test_an_unsupported_release_is_refused_naming_the_supported_ones() -> None:
    refused = r"23\.0\.7 is not a supported release; use one of 24\.0\.5"
    with pytest.raises(harness.KeycloakHarnessError, match=refused):
        harness.start_keycloak(version="23.0.7")


def test_each_release_runs_on_the_jdk_it_names(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("JIT_BRIDGE_KEYCLOAK_JAVA_HOME", raising=False)
    monkeypatch.setenv("JAVA_HOME", "/somewhere/else")
    jdk = tmp_path / "jdk-25"
    (jdk / "bin").mkdir(parents=True)
    (jdk / "bin" / "java").write_text("")
    monkeypatch.setattr(harness, "JDKS", {17: tmp_path / "missing", 25: jdk})

    assert harness.choose_jdk(harness.Release("26.7.3", java=25)) == str(jdk)
    assert harness.choose_jdk(harness.Release("24.0.5")) == "/somewhere/else"  # 17 missing
    assert harness.choose_jdk(harness.OLDEST, jdk) == str(jdk)  # asked for explicitly
    with pytest.raises(harness.KeycloakHarnessError, match="has no bin/java"):
        harness.choose_jdk(harness.OLDEST, tmp_path)

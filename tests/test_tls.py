"""HTTPS on the bridge's own endpoint, end to end, with certificates made in the test.

A CA and server certificates for 127.0.0.1/localhost come from tests/fixtures/tls.py. The
bridge is the real `jit-bridge run` process (tests/fixtures/bridge.py); the listener tests run
a Keycloak of their own whose listener delivers to `https://127.0.0.1:<port>` and whose
truststore (`KC_TRUSTSTORE_PATHS`) holds the test CA: the session Keycloak's listener speaks
plain HTTP to every other test, and a listener's URL is fixed when Keycloak starts.
"""

from __future__ import annotations

import os
import re
import socket
import ssl
import subprocess
import sys
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from bridge.init.command import kept_settings
from bridge.settings import Settings, SettingsError, load_settings
from bridge.tls import TlsError, server_context
from bridge.ui.session import LOGIN_COOKIE, SESSION_COOKIE
from tests.fixtures.bridge import ADMIN_TOKEN, BridgeFactory, BridgeProcess
from tests.fixtures.keycloak import KeycloakSandbox, TestKeycloak, started_keycloak
from tests.fixtures.tls import ServerCert, TestCA
from tests.tines_fake import TinesFake

TEAM = "Analytics"
ROLE = "EDITOR"
PASSWORD = "tls-listener-password"
MAPPING = {"mappings": [{"group_name": "/Managers", "team_name": TEAM, "role_name": ROLE}]}
#: Attempts per event of the TLS Keycloak's listener: a refused certificate is given up on
#: after about 1.5 s of backoff, so the untrusted test waits briefly for the give-up.
LISTENER_ATTEMPTS = 3
DELIVERY_TIMEOUT = 60.0


@pytest.fixture
def ca(tmp_path: Path) -> TestCA:
    return TestCA.create(tmp_path / "ca")


@pytest.fixture
def server_cert(ca: TestCA, tmp_path: Path) -> ServerCert:
    return ca.issue(tmp_path / "server")


def tls_settings(cert: ServerCert) -> dict[str, Any]:
    return {"tls_cert_file": cert.cert_file, "tls_key_file": cert.key_file}


def cookie_flags(answer: httpx.Response, name: str) -> list[str]:
    [cookie] = [h for h in answer.headers.get_list("set-cookie") if h.startswith(f"{name}=")]
    return [part.strip().lower() for part in cookie.split(";")]


def console_sign_in(
    base_url: str, verify: ssl.SSLContext | bool, headers: dict[str, str] | None = None
) -> tuple[httpx.Response, httpx.Response]:
    """A browser's sign-in to the console: the form (which sets the login cookie), then the
    post with the admin token. Cookies are sent by hand, as the browser would, whatever
    their `Secure` flag says. Returns (form answer, sign-in answer)."""
    with httpx.Client(
        base_url=base_url, verify=verify, follow_redirects=False, headers=headers, timeout=30
    ) as client:
        form = client.get("/ui/login")
        assert form.status_code == 200, form.text
        nonce = re.search(r'name="nonce" value="([^"]+)"', form.text)
        assert nonce is not None
        client.cookies.clear()
        answer = client.post(
            "/ui/login",
            data={"token": ADMIN_TOKEN, "nonce": nonce[1], "next": "/ui"},
            headers={"Cookie": f"{LOGIN_COOKIE}={nonce[1]}"},
        )
    return form, answer


def handshake(ca: TestCA, port: int, newest: ssl.TLSVersion) -> str | None:
    """A TLS handshake with 127.0.0.1:`port` offering every version up to `newest`;
    returns the version agreed."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # naming TLS 1.0 and 1.1
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.load_verify_locations(cafile=ca.cert_file)
        context.minimum_version = ssl.TLSVersion.TLSv1
        context.maximum_version = newest
        context.set_ciphers("ALL:@SECLEVEL=0")
    with (
        socket.create_connection(("127.0.0.1", port), timeout=10) as raw,
        context.wrap_socket(raw, server_hostname="localhost") as tls,
    ):
        return tls.version()


# -- settings and files (no service needed) ----------------------------------------------


def test_a_certificate_without_its_key_is_refused_by_name(
    server_cert: ServerCert, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("JIT_BRIDGE_TLS_CERT_FILE", str(server_cert.cert_file))

    with pytest.raises(SettingsError) as refused:
        load_settings()

    assert "tls_key_file" in str(refused.value)
    assert "JIT_BRIDGE_TLS_KEY_FILE" in str(refused.value)
    monkeypatch.delenv("JIT_BRIDGE_TLS_CERT_FILE")
    monkeypatch.setenv("JIT_BRIDGE_TLS_KEY_FILE", str(server_cert.key_file))
    with pytest.raises(SettingsError, match="JIT_BRIDGE_TLS_CERT_FILE"):
        load_settings()


def test_tls_settings_come_from_the_environment_and_the_password_from_a_file(
    server_cert: ServerCert, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    password_file = tmp_path / "key-password"
    password_file.write_text("s3cret\n", encoding="utf-8")
    monkeypatch.setenv("JIT_BRIDGE_TLS_CERT_FILE", str(server_cert.cert_file))
    monkeypatch.setenv("JIT_BRIDGE_TLS_KEY_FILE", str(server_cert.key_file))
    monkeypatch.setenv("JIT_BRIDGE_TLS_KEY_PASSWORD_FILE", str(password_file))
    monkeypatch.setenv("JIT_BRIDGE_FORWARDED_ALLOW_IPS", "10.0.0.0/8, 127.0.0.1")

    settings = load_settings()

    assert settings.https
    assert settings.secret("tls_key_password") == "s3cret"
    assert settings.masked()["tls_key_password"] == "**********"
    assert settings.forwarded_allow_ips == ("10.0.0.0/8", "127.0.0.1")
    monkeypatch.setenv("JIT_BRIDGE_FORWARDED_ALLOW_IPS", "10.0.0.0/8,proxy.example.com")
    with pytest.raises(SettingsError, match=re.escape("'proxy.example.com' is not an IP address")):
        load_settings()
    for name in ("TLS_CERT_FILE", "TLS_KEY_FILE", "FORWARDED_ALLOW_IPS"):
        monkeypatch.delenv(f"JIT_BRIDGE_{name}")
    assert not Settings().https  # the default: plain HTTP, no forwarded headers believed
    assert Settings().forwarded_allow_ips == ()


def test_unusable_certificate_or_key_files_are_named(ca: TestCA, tmp_path: Path) -> None:
    good = ca.issue(tmp_path / "good")
    other = ca.issue(tmp_path / "other")
    locked = ca.issue(tmp_path / "locked", key_password="right")
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n")
    cases: list[tuple[tuple[Path, Path, str | None], str]] = [
        ((tmp_path / "absent.pem", good.key_file, None), f"tls_cert_file {tmp_path}/absent.pem"),
        ((good.cert_file, tmp_path / "absent.key", None), f"tls_key_file {tmp_path}/absent.key"),
        ((good.key_file, good.key_file, None), f"tls_cert_file {good.key_file}: no PEM"),
        ((garbage, good.key_file, None), f"tls_cert_file {garbage}: not a valid PEM"),
        ((good.cert_file, good.cert_file, None), f"tls_key_file {good.cert_file}: not a valid"),
        ((good.cert_file, other.key_file, None), f"{other.key_file} is not the private key"),
        ((locked.cert_file, locked.key_file, None), "encrypted; set tls_key_password"),
        ((locked.cert_file, locked.key_file, "wrong"), "tls_key_password does not decrypt"),
    ]

    for args, expected in cases:
        with pytest.raises(TlsError) as refused:
            server_context(*args)
        assert expected in str(refused.value), args

    context = server_context(locked.cert_file, locked.key_file, "right")
    assert context.minimum_version == ssl.TLSVersion.TLSv1_2


def test_running_init_again_keeps_serving_https() -> None:
    """`jit-bridge init` rewrites bridge.toml and its secret files; the certificate and key
    an operator added to the earlier bridge.toml stay."""
    earlier = {
        "mode": "enhanced",
        "listen": "0.0.0.0:8443",
        "mapping_file": "/etc/jit-bridge/mapping.json",
        "tls_cert_file": "/etc/jit-bridge/tls.crt",
        "tls_key_file": "/etc/jit-bridge/tls.key",
        "tines_api_key_file": "secrets/tines_api_key",
        "admin_token_file": "secrets/admin_token",
    }

    kept = kept_settings(earlier)

    assert kept == {
        "mode": "enhanced",
        "listen": "0.0.0.0:8443",
        "mapping_file": "/etc/jit-bridge/mapping.json",
        "tls_cert_file": "/etc/jit-bridge/tls.crt",
        "tls_key_file": "/etc/jit-bridge/tls.key",
    }


@pytest.mark.parametrize("problem", ["mismatched key", "unreadable certificate"])
def test_run_stops_at_once_naming_the_bad_file(problem: str, ca: TestCA, tmp_path: Path) -> None:
    cert = ca.issue(tmp_path / "server")
    cert_file, key_file = cert.cert_file, cert.key_file
    if problem == "mismatched key":
        key_file = ca.issue(tmp_path / "other").key_file
    else:
        cert_file = tmp_path / "missing.pem"
    env = {k: v for k, v in os.environ.items() if not k.startswith("JIT_BRIDGE_")}
    env |= {
        "JIT_BRIDGE_TLS_CERT_FILE": str(cert_file),
        "JIT_BRIDGE_TLS_KEY_FILE": str(key_file),
        "JIT_BRIDGE_DATABASE_URL": f"sqlite:///{tmp_path / 'state.db'}",
        "JIT_BRIDGE_LISTEN": "127.0.0.1:1",  # never reached: the files are checked first
    }

    done = subprocess.run(
        [sys.executable, "-m", "bridge.cli", "run"],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    named = str(key_file) if problem == "mismatched key" else str(cert_file)
    assert named in done.stderr
    assert not (tmp_path / "state.db").exists()  # nothing started


# -- the bridge serving HTTPS ------------------------------------------------------------


def https_bridge(
    start: BridgeFactory,
    keycloak: TestKeycloak,
    tines: TinesFake,
    cert: ServerCert,
    ca: TestCA,
    **settings: Any,
) -> BridgeProcess:
    return start(
        mapping=MAPPING,
        tines=tines,
        keycloak=keycloak,
        ca_file=ca.cert_file,
        **tls_settings(cert),
        **settings,
    )


def test_the_bridge_serves_https_to_a_client_trusting_its_ca(
    bridge_service: BridgeFactory,
    tines_fake: TinesFake,
    keycloak: TestKeycloak,
    ca: TestCA,
    server_cert: ServerCert,
) -> None:
    bridge = https_bridge(bridge_service, keycloak, tines_fake, server_cert, ca)

    health = bridge.get("/healthz")
    ready = bridge.get("/readyz")
    status = bridge.admin("GET", "status")
    no_token = httpx.get(f"{bridge.url}/api/v1/status", verify=bridge.verify, timeout=30)

    assert bridge.url.startswith("https://")
    assert health.status_code == 200
    assert health.headers["strict-transport-security"] == "max-age=31536000"
    assert ready.status_code == 200, ready.text
    assert status.status_code == 200
    assert status.json()["queue_depth"] == 0
    assert no_token.status_code == 401
    assert f"listening on https://127.0.0.1:{bridge.port}" in bridge.log()
    # A graceful stop works as over HTTP: exit 0 after "stopped".
    assert bridge.stop() == 0
    assert "stopped" in bridge.log()
    assert "Traceback" not in bridge.log()


def test_plain_http_unknown_cas_and_old_tls_versions_are_refused(
    bridge_service: BridgeFactory,
    tines_fake: TinesFake,
    keycloak: TestKeycloak,
    ca: TestCA,
    server_cert: ServerCert,
) -> None:
    bridge = https_bridge(bridge_service, keycloak, tines_fake, server_cert, ca)

    with pytest.raises(httpx.TransportError):
        httpx.get(f"http://127.0.0.1:{bridge.port}/healthz", timeout=10)
    with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
        httpx.get(f"{bridge.url}/healthz", verify=ssl.create_default_context(), timeout=10)
    # A client willing to speak TLS 1.0/1.1 (and weak ciphers) cannot complete a handshake;
    # one that stops at TLS 1.2 can.
    assert handshake(ca, bridge.port, ssl.TLSVersion.TLSv1_2) == "TLSv1.2"
    with pytest.raises(ssl.SSLError):
        handshake(ca, bridge.port, ssl.TLSVersion.TLSv1_1)
    # The bridge is unharmed by the refused connections.
    assert bridge.get("/healthz").status_code == 200


def test_console_cookies_are_secure_over_https(
    bridge_service: BridgeFactory,
    tines_fake: TinesFake,
    keycloak: TestKeycloak,
    ca: TestCA,
    server_cert: ServerCert,
) -> None:
    bridge = https_bridge(bridge_service, keycloak, tines_fake, server_cert, ca)

    form, signed_in = console_sign_in(bridge.url, bridge.verify)

    assert signed_in.status_code == 303, signed_in.text
    assert "secure" in cookie_flags(form, LOGIN_COOKIE)
    flags = cookie_flags(signed_in, SESSION_COOKIE)
    assert {"secure", "httponly", "samesite=strict", "path=/ui"} <= set(flags)
    assert signed_in.headers["strict-transport-security"] == "max-age=31536000"


def test_behind_a_proxy_cookies_are_secure_only_when_the_proxy_is_trusted(
    bridge_service: BridgeFactory,
    tines_fake: TinesFake,
    keycloak: TestKeycloak,
) -> None:
    """A proxy that ended TLS says so in X-Forwarded-Proto; the bridge believes it only from
    the addresses in forwarded_allow_ips."""
    untrusting = bridge_service(mapping=MAPPING, tines=tines_fake, keycloak=keycloak)
    trusting = bridge_service(
        mapping=MAPPING, tines=tines_fake, keycloak=keycloak, forwarded_allow_ips=["127.0.0.1"]
    )

    def proxied(bridge: BridgeProcess, browser: bool) -> dict[str, str]:
        """What the proxy adds; a browser's form post also names its page's origin."""
        headers = {"X-Forwarded-Proto": "https", "X-Forwarded-For": "203.0.113.7"}
        if browser:
            headers["Origin"] = f"https://127.0.0.1:{bridge.port}"
        return headers

    _, plain = console_sign_in(untrusting.url, True)
    _, spoofed = console_sign_in(untrusting.url, True, proxied(untrusting, browser=False))
    _, refused = console_sign_in(untrusting.url, True, proxied(untrusting, browser=True))
    _, direct = console_sign_in(trusting.url, True)
    _, forwarded = console_sign_in(trusting.url, True, proxied(trusting, browser=True))

    assert [a.status_code for a in (plain, spoofed, direct, forwarded)] == [303] * 4
    assert "secure" not in cookie_flags(plain, SESSION_COOKIE)
    assert "secure" not in cookie_flags(spoofed, SESSION_COOKIE)
    assert "strict-transport-security" not in spoofed.headers
    # A browser behind a TLS-ending proxy the bridge does not trust: its https:// page
    # does not match the http:// request the bridge sees, so the sign-in is refused.
    assert refused.status_code == 403
    assert "did not come from this console" in refused.text
    assert "secure" not in cookie_flags(direct, SESSION_COOKIE)
    assert "secure" in cookie_flags(forwarded, SESSION_COOKIE)
    assert forwarded.headers["strict-transport-security"] == "max-age=31536000"
    # The log names the browser's address the trusted proxy forwarded, not the proxy's.
    assert "signed in from 203.0.113.7" in trusting.log()
    assert "signed in from 127.0.0.1" in untrusting.log()
    assert "203.0.113.7" not in untrusting.log()


# -- the Keycloak listener delivering over HTTPS -----------------------------------------


@pytest.fixture(scope="module")
def tls_ca(tmp_path_factory: pytest.TempPathFactory) -> TestCA:
    return TestCA.create(tmp_path_factory.mktemp("listener-ca"), "jit-bridge listener test CA")


@pytest.fixture(scope="module")
def tls_keycloak(tls_ca: TestCA) -> Iterator[TestKeycloak]:
    """A Keycloak whose listener delivers to https://127.0.0.1:<listener_port>, trusting
    `tls_ca` through Keycloak's own truststore option (no option of the listener's)."""
    with started_keycloak(
        scheme="https",
        max_attempts=LISTENER_ATTEMPTS,
        env={"KC_TRUSTSTORE_PATHS": str(tls_ca.cert_file)},
    ) as started:
        yield started


def listener_bridge(
    start: BridgeFactory,
    keycloak: TestKeycloak,
    tines: TinesFake,
    group: str,
    cert: ServerCert,
    ca: TestCA,
) -> BridgeProcess:
    tines.state.add_team(TEAM)
    return start(
        mapping={"mappings": [{"group_name": group, "team_name": TEAM, "role_name": ROLE}]},
        tines=tines,
        keycloak=keycloak,
        port=keycloak.listener_port,
        ca_file=ca.cert_file,
        poll_events=False,
        **tls_settings(cert),
    )


def tines_has(tines: TinesFake, email: str) -> bool:
    return any(u.email.lower() == email for u in tines.state.export().users)


def login_event_ids(keycloak: TestKeycloak, user_id: str) -> set[str]:
    events = keycloak.admin.get_events({"user": user_id, "type": "LOGIN", "max": 100})
    return {str(e["id"]) for e in events}


def keycloak_log(keycloak: TestKeycloak) -> str:
    path = keycloak.server.log_path
    return str(path.read_text(errors="replace")) if path.exists() else ""


def test_the_listener_delivers_to_an_https_bridge_whose_ca_keycloak_trusts(
    bridge_service: BridgeFactory,
    tines_fake: TinesFake,
    tls_keycloak: TestKeycloak,
    tls_ca: TestCA,
    tmp_path: Path,
) -> None:
    sandbox = KeycloakSandbox(tls_keycloak)
    try:
        group = sandbox.create_group("/Analysts")
        cert = tls_ca.issue(tmp_path / "server")
        bridge = listener_bridge(bridge_service, tls_keycloak, tines_fake, group, cert, tls_ca)
        username, user_id = sandbox.create_user("tls", password=PASSWORD, groups=(group,))
        email = f"{username}@example.com"

        tls_keycloak.login(username, PASSWORD)

        bridge.wait_until(lambda: tines_has(tines_fake, email), DELIVERY_TIMEOUT, email)
        created = bridge.wait_until(
            lambda: {
                cause
                for record in bridge.audit(email)
                if record["op"] == "create_user"
                for cause in record["trigger"].split(",")
            },
            what="create_user audit",
        )
        assert created & login_event_ids(tls_keycloak, user_id)
        assert "url=https://127.0.0.1:" in keycloak_log(tls_keycloak)
    finally:
        sandbox.cleanup()


def test_the_listener_refuses_a_bridge_whose_certificate_it_cannot_verify(
    bridge_service: BridgeFactory,
    tines_fake: TinesFake,
    tls_keycloak: TestKeycloak,
    tmp_path: Path,
) -> None:
    """A certificate from a CA Keycloak does not trust: the listener never sends the event
    (the TLS handshake fails before any byte of it), retries it like any network failure,
    and after `max-attempts` logs that it gave up, naming the event and the cause."""
    stranger = TestCA.create(tmp_path / "stranger", "a CA Keycloak does not trust")
    sandbox = KeycloakSandbox(tls_keycloak)
    try:
        group = sandbox.create_group("/Analysts")
        cert = stranger.issue(tmp_path / "server")
        bridge = listener_bridge(bridge_service, tls_keycloak, tines_fake, group, cert, stranger)
        username, user_id = sandbox.create_user("untrusted", password=PASSWORD, groups=(group,))
        email = f"{username}@example.com"

        tls_keycloak.login(username, PASSWORD)

        [event_id] = login_event_ids(tls_keycloak, user_id)
        gave_up = bridge.wait_until(
            lambda: [
                line
                for line in keycloak_log(tls_keycloak).splitlines()
                if f"Giving up on user event LOGIN (id {event_id})" in line
            ],
            DELIVERY_TIMEOUT,
            "the listener giving up",
        )
        assert f"after {LISTENER_ATTEMPTS} attempts" in gave_up[0]
        assert "SSLHandshakeException" in gave_up[0]
        assert bridge.audit(email) == []
        assert not tines_has(tines_fake, email)
        assert "jit_bridge_webhook_requests_total{" not in bridge.get("/metrics").text
    finally:
        sandbox.cleanup()

"""Secrets stay secret (docs/design.md, Settings and state), TLS is verified by default, and the
Keycloak service account holds no more than docs/security.md documents."""

from __future__ import annotations

import datetime
import ipaddress
import os
import re
import ssl
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from bridge.keys import UserRef
from bridge.mapping import Mapping
from bridge.settings import load_settings
from bridge.sources.base import SourceError
from bridge.sources.keycloak import KeycloakSource
from bridge.targets.base import TlsVerificationError
from bridge.targets.tines import TinesTarget, tines_http
from bridge.wiring import build_source, build_target
from tests.fixtures.faulty_proxy import FaultyProxy
from tests.fixtures.keycloak import TestKeycloak
from tests.test_safety_support import idp_user, make_deployment, seed_tenant
from tests.tines_fake import TinesFake

ROOT = Path(__file__).resolve().parents[1]
SECRETS = {
    "JIT_BRIDGE_TINES_API_KEY": "tines-key-Zq81xLw",
    "JIT_BRIDGE_KEYCLOAK_CLIENT_SECRET": "kc-secret-Hv27pRt",
    "JIT_BRIDGE_WEBHOOK_SECRET": "webhook-secret-Nd55sYc",
    "JIT_BRIDGE_WEBHOOK_SECRET_PREVIOUS": "webhook-previous-Qa72fEm",
    "JIT_BRIDGE_ADMIN_TOKEN": "admin-token-Ux93kBe",
}
DB_PASSWORD = "db-password-Gk40mJa"


def run_cli(env: dict[str, str], *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bridge.cli", *args],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_no_secret_reaches_logs_output_errors_or_the_audit_table(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, keycloak: TestKeycloak
) -> None:
    tines = TinesFake(api_key=SECRETS["JIT_BRIDGE_TINES_API_KEY"]).start()
    try:
        deployment = make_deployment(monkeypatch, tmp_path, tines, log_level="DEBUG")
        seed_tenant(tines, {"Analytics": ["gone"]})
        tines.state.add_user("new@example.com")
        deployment.set_idp([idp_user("gone"), idp_user("new", "/Analysts")])
        env = {k: v for k, v in os.environ.items() if not k.startswith("JIT_BRIDGE_")}
        env |= SECRETS | {
            "JIT_BRIDGE_SETTINGS": str(deployment.settings),
            "JIT_BRIDGE_KEYCLOAK_URL": keycloak.url,
            "JIT_BRIDGE_KEYCLOAK_REALM": keycloak.realm,
            "JIT_BRIDGE_KEYCLOAK_CLIENT_ID": "jit-bridge",
        }
        runs = [
            run_cli(env, "sync", "--all", "--idp-snapshot", str(deployment.idp), cwd=tmp_path),
            run_cli(env, "audit", "--json", cwd=tmp_path),
            run_cli(env, "config", cwd=tmp_path),
            # Keycloak refuses the (distinctive, wrong) client secret: an error path.
            run_cli(env, "plan", "--user", "alice@example.com", cwd=tmp_path),
            # A PostgreSQL URL with a password that cannot connect: another error path.
            run_cli(
                env
                | {
                    "JIT_BRIDGE_DATABASE_URL": f"postgresql+psycopg://bridge:{DB_PASSWORD}@127.0.0.1:1/x"
                },
                "audit",
                cwd=tmp_path,
            ),
            run_cli(
                env
                | {
                    "JIT_BRIDGE_DATABASE_URL": f"postgresql+psycopg://bridge:{DB_PASSWORD}@127.0.0.1:1/x"
                },
                "config",
                cwd=tmp_path,
            ),
        ]
        sync, audit, config, plan, db_audit, db_config = runs
        assert sync.returncode == 0, sync.stderr
        assert "DEBUG" in sync.stderr  # the logs were on at their most verbose
        assert "new@example.com" in audit.stdout
        assert '"tines_api_key": "**********"' in config.stdout
        assert '"webhook_secret_previous": "**********"' in config.stdout
        assert plan.returncode == 1
        assert "refused the credentials" in plan.stderr
        assert db_audit.returncode != 0
        assert "**********" in db_config.stdout
        database = deployment.database.read_bytes()
    finally:
        tines.stop()
    everything = "\n".join(r.stdout + r.stderr for r in runs)
    for secret in [*SECRETS.values(), DB_PASSWORD]:
        assert secret not in everything, secret
        assert secret.encode() not in database, secret
    assert "Traceback" not in db_audit.stderr, db_audit.stderr[-2000:]


# -- TLS ---------------------------------------------------------------------------------


def self_signed(tmp_path: Path) -> ssl.SSLContext:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert_file, key_file)
    return context


def test_built_source_and_targets_verify_tls_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("JIT_BRIDGE_"):
            monkeypatch.delenv(name)
    settings = load_settings(
        None,
        keycloak_url="https://kc.example",
        keycloak_realm="r",
        keycloak_client_id="c",
        keycloak_client_secret="s",
        tines_url="https://tenant.example",
        tines_api_key="k",
        scim_url="https://scim.example",
        scim_token="t",
    )
    source = build_source(settings)
    assert isinstance(source, KeycloakSource)
    assert source._admin.connection.verify is True
    tines = build_target(settings)
    assert isinstance(tines, TinesTarget)
    assert tines.http.verify_tls is True
    scim = build_target(
        load_settings(None, target="scim", scim_url="https://s.example", scim_token="t")
    )
    assert scim._scim.transport.verify_tls is True  # type: ignore[attr-defined]


def test_a_self_signed_tines_is_refused_unless_verification_is_off(
    tmp_path: Path, tines_fake: TinesFake, faulty_proxy: Callable[..., FaultyProxy]
) -> None:
    proxy = faulty_proxy(tines_fake.url, tls=self_signed(tmp_path))
    checked = TinesTarget(
        proxy.url, "x", http=tines_http(proxy.url, tines_fake.api_key, sleep=lambda s: None)
    )
    with pytest.raises(TlsVerificationError, match="SSLError"):
        checked.read_state()
    # A certificate problem is configuration, not load: one attempt, no retries.
    assert checked.http.stats.retries == 0
    assert tines_fake.requests == []
    trusting = tines_http(proxy.url, tines_fake.api_key, verify_tls=False, sleep=lambda s: None)
    assert TinesTarget(proxy.url, "x", http=trusting).read_state().users == []


def test_a_self_signed_keycloak_is_refused_unless_verification_is_off(
    tmp_path: Path, keycloak: TestKeycloak, faulty_proxy: Callable[..., FaultyProxy]
) -> None:
    proxy = faulty_proxy(keycloak.url, tls=self_signed(tmp_path))
    with pytest.raises(SourceError, match=r"(?i)certificate|ssl"):
        keycloak.source(server_url=proxy.url).read_user(
            UserRef(email="alice@example.com"), Mapping(entries=())
        )
    view = keycloak.source(server_url=proxy.url, verify_tls=False).read_user(
        UserRef(email="alice@example.com"), Mapping(entries=())
    )
    assert [u.username for u in view.users] == ["alice"]


# -- least privilege ----------------------------------------------------------------------


def documented_roles() -> set[str]:
    text = (ROOT / "docs" / "security.md").read_text(encoding="utf-8")
    section = text.split("<!-- keycloak-roles -->")[1]
    return set(re.findall(r"^\| `([a-z-]+)` \|", section, flags=re.MULTILINE))


def test_the_service_account_holds_only_the_documented_realm_management_roles(
    keycloak_organizations: TestKeycloak,
) -> None:
    """With every selector kind in use (organizations included), the roles are the table's."""
    keycloak = keycloak_organizations
    admin = keycloak.admin
    account = admin.get_client_service_account_user(str(admin.get_client_id(keycloak.client_id)))
    management = str(admin.get_client_id("realm-management"))
    effective = {
        r["name"] for r in admin.get_composite_client_roles_of_user(account["id"], management)
    }
    assert effective == documented_roles()
    realm_roles = {r["name"] for r in admin.get_composite_realm_roles_of_user(account["id"])}
    assert not realm_roles - {"default-roles-jit-bridge", "offline_access", "uma_authorization"}
    for client in admin.get_clients():
        if client["clientId"] in ("realm-management", "broker", "account"):
            continue
        held = admin.get_composite_client_roles_of_user(account["id"], client["id"])
        assert held == [], client["clientId"]

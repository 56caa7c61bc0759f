"""The Keycloak Operator examples (deploy/keycloak-operator): they parse, their SPI option names
and listener id are the ones the listener's Java sources read, and the realm import sets what
`jit-bridge init` sets (the same constants), so a rename on either side breaks here."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from bridge.cli import main
from bridge.init.keycloak_setup import (
    CLIENT_FLOWS,
    EVENT_SWITCHES,
    LISTENER_ID,
    REALM_MANAGEMENT,
    service_account_roles,
)
from bridge.intake.events import LOGIN_EVENT_TYPES
from bridge.mapping_file import parse_mapping
from bridge.packaged import listener_jar

REPO = Path(__file__).resolve().parents[1]
HERE = REPO / "deploy" / "keycloak-operator"
JAVA = (
    REPO
    / "deploy"
    / "keycloak-provider"
    / "src"
    / "main"
    / "java"
    / "dev"
    / "jitbridge"
    / "keycloak"
)


def load_one(name: str) -> dict[str, Any]:
    docs = list(yaml.safe_load_all((HERE / name).read_text(encoding="utf-8")))
    assert len(docs) == 1, f"{name}: one document expected"
    doc = docs[0]
    assert isinstance(doc, dict)
    assert doc["apiVersion"] == "k8s.keycloak.org/v2alpha1"
    return doc


def java_constant(file: str, name: str) -> str:
    source = (JAVA / file).read_text(encoding="utf-8")
    found = re.search(rf'static final String {name} = "([^"]*)";', source)
    assert found, f"{file}: no constant {name}"
    return found.group(1)


def listener_option_names() -> set[str]:
    """The options ListenerSettings reads (its public String constants but the prefixes)."""
    source = (JAVA / "ListenerSettings.java").read_text(encoding="utf-8")
    return set(re.findall(r'public static final String [A-Z_]+ = "([^"]*)";', source))


@pytest.fixture(scope="module")
def keycloak() -> dict[str, Any]:
    doc = load_one("keycloak.yaml")
    assert doc["kind"] == "Keycloak"
    return doc


@pytest.fixture(scope="module")
def realm_import() -> dict[str, Any]:
    doc = load_one("realm-import.yaml")
    assert doc["kind"] == "KeycloakRealmImport"
    return doc


def test_the_listener_options_are_the_ones_the_listener_reads(keycloak: dict[str, Any]) -> None:
    # The prefix Keycloak 26.3+ resolves itself and the listener looks up on older releases.
    prefix = java_constant("SpiOptions.java", "NEW_PREFIX").removeprefix("kc.")
    assert prefix == f"spi-events-listener--{LISTENER_ID}--"
    assert java_constant("ListenerSettings.java", "OPTION_PREFIX") == f"--{prefix}"
    known = listener_option_names()
    assert {"url", "secret"} <= known
    options = {o["name"]: o for o in keycloak["spec"]["additionalOptions"]}
    named = {name.removeprefix(prefix) for name in options if name.startswith(prefix)}
    assert set(options) == {prefix + n for n in named}, "an option outside the listener's SPI"
    assert named <= known, f"options the listener does not read: {named - known}"
    assert {"url", "secret"} <= named, "the listener is disabled without url and secret"
    # The secret comes from a Secret, never as a value in the CR.
    secret = options[prefix + "secret"]
    assert "value" not in secret
    assert set(secret["secret"]) == {"name", "key"}
    url = options[prefix + "url"]["value"]
    assert re.fullmatch(r"https?://[^/]+/webhooks/keycloak", url), url


def test_the_listener_id_is_the_factorys(
    keycloak: dict[str, Any], realm_import: dict[str, Any]
) -> None:
    assert java_constant("JitBridgeEventListenerProviderFactory.java", "ID") == LISTENER_ID
    assert LISTENER_ID in realm_import["spec"]["realm"]["eventsListeners"]


def test_the_jar_lands_in_keycloaks_providers_directory(
    keycloak: dict[str, Any], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pod = keycloak["spec"]["unsupported"]["podTemplate"]["spec"]
    [init] = pod["initContainers"]
    command = init["command"]
    assert command[:3] == ["jit-bridge", "keycloak-provider", "install"]
    target = command[3]
    shared = {m["mountPath"]: m["name"] for m in init["volumeMounts"]}[target]
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert "emptyDir" in volumes[shared]
    [keycloak_container] = pod["containers"]
    mounts = {m["name"]: m["mountPath"] for m in keycloak_container["volumeMounts"]}
    assert mounts[shared] == "/opt/keycloak/providers"
    # The stock image is not built with the provider: Keycloak must build at start.
    assert keycloak["spec"]["startOptimized"] is False
    assert init["securityContext"]["allowPrivilegeEscalation"] is False
    assert init["securityContext"]["runAsNonRoot"] is True
    # The init container's command, run by the real CLI into a stand-in for the emptyDir.
    empty_dir = tmp_path / "providers"
    empty_dir.mkdir()
    assert main([*command[1:3], str(empty_dir)]) == 0, capsys.readouterr().err
    [jar] = empty_dir.iterdir()
    assert jar.suffix == ".jar"
    assert jar.read_bytes() == listener_jar().read_bytes()


def test_the_realm_saves_the_events_init_turns_on(realm_import: dict[str, Any]) -> None:
    realm = realm_import["spec"]["realm"]
    for switch in EVENT_SWITCHES:
        assert realm[switch] is True, switch
    assert set(realm["enabledEventTypes"]) >= LOGIN_EVENT_TYPES
    assert "jboss-logging" in realm["eventsListeners"]


def test_the_bridges_client_is_the_one_init_makes(realm_import: dict[str, Any]) -> None:
    realm = realm_import["spec"]["realm"]
    [client] = realm["clients"]
    for name, value in CLIENT_FLOWS.items():
        assert client[name] == value, name
    # Its secret is a placeholder filled from a Secret at import time.
    placeholder = re.fullmatch(r"\$\{([A-Z_]+)\}", client["secret"])
    assert placeholder, client["secret"]
    source = realm_import["spec"]["placeholders"][placeholder.group(1)]["secret"]
    assert set(source) == {"name", "key"}


def test_the_service_account_holds_only_the_least_privilege_roles(
    realm_import: dict[str, Any],
) -> None:
    realm = realm_import["spec"]["realm"]
    [client] = realm["clients"]
    [account] = realm["users"]
    assert account["serviceAccountClientId"] == client["clientId"]
    assert account["username"] == f"service-account-{client['clientId']}"
    # A mapping of groups, heard through the listener: what init would grant.
    mapping = parse_mapping(
        '{"mappings": [{"group_name": "Analysts", "team_name": "Analytics", '
        '"role_name": "EDITOR"}]}'
    )
    assert account["clientRoles"] == {REALM_MANAGEMENT: service_account_roles(mapping, "listener")}
    assert "realmRoles" not in account

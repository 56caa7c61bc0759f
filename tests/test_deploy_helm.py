"""The Helm chart (deploy/helm/jit-bridge): the real `helm lint` and `helm template`, for the
example values and the options an operator turns on, and what an operator relies on in the
rendered manifests: probes, security context, secrets as files, one SQLite replica with its
volume or several PostgreSQL replicas, and only settings the bridge accepts.

helm is built by `make setup` (deploy/helm/install-helm.sh); a missing helm fails these tests.
"""

from __future__ import annotations

import json
import os
import posixpath
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from bridge.mapping_file import parse_mapping
from bridge.settings import FILE_FIELDS, SECRET_FIELDS, load_settings, unknown_environment

REPO = Path(__file__).resolve().parents[1]
CHART = REPO / "deploy" / "helm" / "jit-bridge"
SQLITE = CHART / "values-sqlite.yaml"
POSTGRESQL = CHART / "values-postgresql.yaml"

#: Direct TLS in the pod, on top of the SQLite example.
TLS = ("--set", "tls.secretName=jit-bridge-tls")
#: Every optional object on, on top of the SQLite example.
OPTIONAL_ON = (
    "--set",
    "serviceMonitor.enabled=true",
    "--set",
    "networkPolicy.enabled=true",
    "--set",
    "podDisruptionBudget.enabled=true",
    "--set",
    "ingress.enabled=true",
    "--set",
    "ingress.tlsSecretName=jit-bridge-ingress-tls",
)

#: name → (values file, extra helm arguments): the renders every manifest check runs on.
VARIANTS: dict[str, tuple[Path, tuple[str, ...]]] = {
    "sqlite": (SQLITE, ()),
    "postgresql": (POSTGRESQL, ()),
    "sqlite-direct-tls": (SQLITE, TLS),
    "postgresql-direct-tls": (POSTGRESQL, TLS),
    "sqlite-all-optional": (SQLITE, OPTIONAL_ON),
}


@pytest.fixture(scope="module")
def helm() -> str:
    where = subprocess.run(
        ["bash", str(REPO / "deploy" / "helm" / "install-helm.sh"), "--print-path"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    if not os.access(where, os.X_OK):
        pytest.fail(f"helm is not built at {where}: run `make setup` (deploy/helm/install-helm.sh)")
    return where


def run_helm(helm: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([helm, *args], capture_output=True, text=True, timeout=120)


def render(helm: str, values: Path, *extra: str) -> list[dict[str, Any]]:
    done = run_helm(
        helm, "template", "jit-bridge", str(CHART), "-n", "bridge", "-f", str(values), *extra
    )
    assert done.returncode == 0, done.stderr
    docs = [doc for doc in yaml.safe_load_all(done.stdout) if doc is not None]
    for doc in docs:
        assert isinstance(doc, dict), doc
        assert doc["apiVersion"], doc
        assert doc["kind"], doc
        assert doc["metadata"]["name"], doc
    return docs


@pytest.fixture(scope="module")
def rendered(helm: str) -> dict[str, list[dict[str, Any]]]:
    return {name: render(helm, values, *extra) for name, (values, extra) in VARIANTS.items()}


def only(docs: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    found = [d for d in docs if d["kind"] == kind]
    assert len(found) == 1, f"expected one {kind}, got {[d['metadata']['name'] for d in found]}"
    return found[0]


def workload(docs: list[dict[str, Any]]) -> dict[str, Any]:
    found = [d for d in docs if d["kind"] in ("Deployment", "StatefulSet")]
    assert len(found) == 1, [d["kind"] for d in found]
    return found[0]


def container(docs: list[dict[str, Any]]) -> dict[str, Any]:
    containers = workload(docs)["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    result: dict[str, Any] = containers[0]
    return result


def env_of(docs: list[dict[str, Any]]) -> dict[str, str]:
    env = container(docs)["env"]
    names = [e["name"] for e in env]
    assert len(names) == len(set(names)), f"an environment variable is set twice: {names}"
    return {e["name"]: e["value"] for e in env}


def mounted_volume(docs: list[dict[str, Any]], path: str) -> tuple[dict[str, Any], str]:
    """The volume holding the file at `path`, and the file's path inside that volume."""
    pod = workload(docs)["spec"]["template"]["spec"]
    best = max(
        (m for m in container(docs)["volumeMounts"] if path.startswith(m["mountPath"] + "/")),
        key=lambda m: len(m["mountPath"]),
        default=None,
    )
    assert best is not None, f"{path} is on no mounted volume"
    volumes = {v["name"]: v for v in pod.get("volumes", [])}
    templates = {
        t["metadata"]["name"]: t for t in workload(docs)["spec"].get("volumeClaimTemplates", [])
    }
    volume = volumes.get(best["name"]) or {
        "name": best["name"],
        "claimTemplate": templates[best["name"]],
    }
    return volume, posixpath.relpath(path, best["mountPath"])


# -- helm lint -----------------------------------------------------------------------------


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_helm_lint_passes_strictly(helm: str, variant: str) -> None:
    values, extra = VARIANTS[variant]
    done = run_helm(helm, "lint", "--strict", str(CHART), "-f", str(values), *extra)
    output = done.stdout + done.stderr
    assert done.returncode == 0, output
    assert "1 chart(s) linted, 0 chart(s) failed" in output
    # helm lint reports a template's `fail` as INFO and passes: a refused value must not hide.
    for sign in ("Fail:", "[WARNING]", "[ERROR]"):
        assert sign not in output, output


#: The oldest Kubernetes the chart supports (Chart.yaml's kubeVersion) and the one helm
#: renders for.
KUBERNETES_VERSIONS = ("1.25", "1.36")
#: Kinds of custom resources, whose schemas come with their operators: checked field by field
#: below instead.
CUSTOM_KINDS = {"ServiceMonitor"}


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_every_manifest_matches_the_kubernetes_schema(
    rendered: dict[str, list[dict[str, Any]]], variant: str
) -> None:
    """Strict: a misspelt or misplaced field is an error, as `kubectl apply` would refuse it."""
    assert 'kubeVersion: ">=1.25.0-0"' in (CHART / "Chart.yaml").read_text(encoding="utf-8")
    for doc in rendered[variant]:
        if doc["kind"] in CUSTOM_KINDS:
            continue
        for version in KUBERNETES_VERSIONS:
            try:
                kubernetes_validate.validate(doc, version, strict=True)
            except kubernetes_validate.ValidationError as exc:
                where = "/".join(str(p) for p in exc.path)
                pytest.fail(f"{doc['kind']} (Kubernetes {version}) at {where}: {exc.message}")


# -- the two ways to run it ----------------------------------------------------------------


def test_sqlite_runs_one_statefulset_pod_with_its_database_on_a_claim(
    rendered: dict[str, list[dict[str, Any]]],
) -> None:
    docs = rendered["sqlite"]
    sts = workload(docs)
    assert sts["kind"] == "StatefulSet"
    assert sts["spec"]["replicas"] == 1
    assert not [d for d in docs if d["kind"] == "Deployment"]
    env = env_of(docs)
    url = env["JIT_BRIDGE_DATABASE_URL"]
    assert url.startswith("sqlite:////"), url
    volume, _ = mounted_volume(docs, url.removeprefix("sqlite:///"))
    claim = volume["claimTemplate"]["spec"]
    assert claim["accessModes"] == ["ReadWriteOnce"]
    assert claim["resources"]["requests"]["storage"] == "2Gi"
    assert "JIT_BRIDGE_DATABASE_URL_FILE" not in env


def test_sqlite_with_an_existing_claim_mounts_that_claim(helm: str) -> None:
    docs = render(helm, SQLITE, "--set", "persistence.existingClaim=bridge-data")
    sts = workload(docs)
    assert "volumeClaimTemplates" not in sts["spec"]
    volume, _ = mounted_volume(
        docs, env_of(docs)["JIT_BRIDGE_DATABASE_URL"].removeprefix("sqlite:///")
    )
    assert volume["persistentVolumeClaim"] == {"claimName": "bridge-data"}


def test_postgresql_runs_several_deployment_pods_with_no_volume_for_state(
    rendered: dict[str, list[dict[str, Any]]],
) -> None:
    docs = rendered["postgresql"]
    deployment = workload(docs)
    assert deployment["kind"] == "Deployment"
    assert deployment["spec"]["replicas"] == 3
    assert deployment["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
    assert not [d for d in docs if d["kind"] in ("StatefulSet", "PersistentVolumeClaim")]
    pod = deployment["spec"]["template"]["spec"]
    assert not [v for v in pod["volumes"] if "persistentVolumeClaim" in v]
    env = env_of(docs)
    assert "JIT_BRIDGE_DATABASE_URL" not in env
    volume, item = mounted_volume(docs, env["JIT_BRIDGE_DATABASE_URL_FILE"])
    sources = [s["secret"] for s in volume["projected"]["sources"]]
    assert {"name": "jit-bridge-db", "items": [{"key": "database-url", "path": item}]} in sources


@pytest.mark.parametrize(
    ("values", "extra", "message"),
    [
        (
            SQLITE,
            ("--set", "replicaCount=2"),
            "replicaCount is 2 but store.kind is sqlite: SQLite is one process's file on one "
            "volume, so it runs exactly one replica",
        ),
        (
            POSTGRESQL,
            ("--set", "secrets.database_url.secretName="),
            "store.kind is postgresql but secrets.database_url.secretName is empty",
        ),
        (
            SQLITE,
            ("--set", "secrets.database_url.secretName=db"),
            "secrets.database_url is set but store.kind is sqlite",
        ),
        (
            SQLITE,
            ("--set", "store.kind=mysql"),
            'store.kind must be sqlite or postgresql, not "mysql"',
        ),
        (
            SQLITE,
            ("--set", "terminationGracePeriodSeconds=30"),
            "terminationGracePeriodSeconds (30) must be larger than settings.shutdown_timeout (30)",
        ),
        (
            POSTGRESQL,
            ("--set", "settings.shutdown_timeout=60"),
            "terminationGracePeriodSeconds (45) must be larger than settings.shutdown_timeout (60)",
        ),
        (
            SQLITE,
            ("--set", "settings.listen=0.0.0.0:9000"),
            "settings.listen: the chart sets listen itself",
        ),
        (
            SQLITE,
            ("--set", "settings.admin_token=x"),
            "settings.admin_token: the chart sets admin_token itself",
        ),
        (
            SQLITE,
            ("--set", "settings.keycloakUrl=x"),
            "settings.keycloakUrl: settings are named in lower case",
        ),
        (
            SQLITE,
            ("--set", "secrets.api_key.secretName=x"),
            "secrets.api_key: not a secret the bridge reads from a file",
        ),
        (SQLITE, ("--set", "mapping.content=null"), "mapping: give the mapping as mapping.content"),
        (
            SQLITE,
            ("--set", "secrets.tls_key_password.secretName=k"),
            "secrets.tls_key_password is set but tls.secretName is empty",
        ),
        (
            POSTGRESQL,
            ("--set", "podDisruptionBudget.maxUnavailable=1"),
            "podDisruptionBudget: give minAvailable or maxUnavailable, not both",
        ),
        (
            SQLITE,
            (
                "--set",
                "secrets.webhook_secret.secretName=",
                "--set",
                "secrets.webhook_secret_previous.secretName=old",
            ),
            "secrets.webhook_secret_previous is set but secrets.webhook_secret is empty",
        ),
    ],
    ids=[
        "sqlite-two-replicas",
        "postgresql-without-url",
        "sqlite-with-url",
        "unknown-store",
        "grace-equal-to-shutdown",
        "grace-below-shutdown",
        "listen-in-settings",
        "secret-in-settings",
        "camel-case-setting",
        "unknown-secret",
        "no-mapping",
        "key-password-without-tls",
        "pdb-both-bounds",
        "previous-webhook-secret-alone",
    ],
)
def test_values_that_cannot_work_are_refused_with_what_to_change(
    helm: str, values: Path, extra: tuple[str, ...], message: str
) -> None:
    done = run_helm(helm, "template", "jit-bridge", str(CHART), "-f", str(values), *extra)
    assert done.returncode != 0, done.stdout
    assert message in done.stderr, done.stderr


# -- probes, ports, TLS ----------------------------------------------------------------------


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_probes_ask_healthz_and_readyz_on_the_port_the_bridge_listens_on(
    rendered: dict[str, list[dict[str, Any]]], variant: str
) -> None:
    docs = rendered[variant]
    main = container(docs)
    listen_port = int(env_of(docs)["JIT_BRIDGE_LISTEN"].rpartition(":")[2])
    ports = {p["name"]: p["containerPort"] for p in main["ports"]}
    scheme = "HTTPS" if variant.endswith("direct-tls") else "HTTP"
    for probe, path in (
        ("livenessProbe", "/healthz"),
        ("readinessProbe", "/readyz"),
        ("startupProbe", "/healthz"),
    ):
        get = main[probe]["httpGet"]
        assert get["path"] == path, probe
        assert get["scheme"] == scheme, probe
        assert ports[get["port"]] == listen_port, probe
    assert main["readinessProbe"]["timeoutSeconds"] >= 5
    service = only(docs, "Service")
    [service_port] = service["spec"]["ports"]
    assert service_port["targetPort"] in ports
    assert service_port["name"] == scheme.lower()
    assert (
        service["spec"]["selector"].items()
        <= workload(docs)["spec"]["template"]["metadata"]["labels"].items()
    )


def test_direct_tls_mounts_the_certificate_secret_and_names_its_files(
    rendered: dict[str, list[dict[str, Any]]],
) -> None:
    docs = rendered["sqlite-direct-tls"]
    env = env_of(docs)
    for name, key in (
        ("JIT_BRIDGE_TLS_CERT_FILE", "tls.crt"),
        ("JIT_BRIDGE_TLS_KEY_FILE", "tls.key"),
    ):
        volume, item = mounted_volume(docs, env[name])
        assert volume["secret"]["secretName"] == "jit-bridge-tls"
        assert {"key": key, "path": item} in volume["secret"]["items"]
    plain = env_of(rendered["sqlite"])
    assert "JIT_BRIDGE_TLS_CERT_FILE" not in plain
    assert "JIT_BRIDGE_TLS_KEY_FILE" not in plain


def test_tls_ended_at_the_ingress_reaches_the_pods_over_http(
    rendered: dict[str, list[dict[str, Any]]],
) -> None:
    docs = rendered["postgresql"]
    ingress = only(docs, "Ingress")
    assert ingress["spec"]["tls"] == [
        {"hosts": ["jit-bridge.example.com"], "secretName": "jit-bridge-ingress-tls"}
    ]
    [rule] = ingress["spec"]["rules"]
    backend = rule["http"]["paths"][0]["backend"]["service"]
    service = only(docs, "Service")
    assert backend == {"name": service["metadata"]["name"], "port": {"name": "http"}}
    assert "JIT_BRIDGE_TLS_CERT_FILE" not in env_of(docs)


# -- security ---------------------------------------------------------------------------------


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_the_pod_runs_non_root_read_only_without_privileges(
    rendered: dict[str, list[dict[str, Any]]], variant: str
) -> None:
    docs = rendered[variant]
    pod = workload(docs)["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] != 0
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert pod["automountServiceAccountToken"] is False
    context = container(docs)["securityContext"]
    assert context["runAsNonRoot"] is True
    assert context["readOnlyRootFilesystem"] is True
    assert context["allowPrivilegeEscalation"] is False
    assert context["capabilities"] == {"drop": ["ALL"]}
    assert context["seccompProfile"] == {"type": "RuntimeDefault"}
    # The read-only root leaves /tmp writable through an emptyDir.
    volume, _ = mounted_volume(docs, "/tmp/x")
    assert "emptyDir" in volume


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_every_secret_is_a_mounted_file_named_by_its_file_setting(
    rendered: dict[str, list[dict[str, Any]]], variant: str
) -> None:
    docs = rendered[variant]
    env = env_of(docs)
    values = yaml.safe_load(VARIANTS[variant][0].read_text(encoding="utf-8"))
    configured = {name for name, ref in values["secrets"].items() if ref.get("secretName")}
    assert configured, "the example values name no secret"
    for name in FILE_FIELDS:
        variable = f"JIT_BRIDGE_{name.upper()}_FILE"
        if name not in configured:
            assert variable not in env
            continue
        volume, item = mounted_volume(docs, env[variable])
        sources = [s["secret"] for s in volume["projected"]["sources"]]
        wanted = {
            "name": values["secrets"][name]["secretName"],
            "items": [{"key": values["secrets"][name]["key"], "path": item}],
        }
        assert wanted in sources, (name, sources)
    mounts = {m["name"]: m for m in container(docs)["volumeMounts"]}
    assert mounts["secrets"]["readOnly"] is True
    # No secret travels in the environment, neither as a value nor from a Secret reference.
    for name in SECRET_FIELDS:
        assert f"JIT_BRIDGE_{name.upper()}" not in env
    assert all("valueFrom" not in e for e in container(docs)["env"])


# -- settings ---------------------------------------------------------------------------------


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_the_environment_the_chart_sets_is_accepted_by_the_bridge(
    rendered: dict[str, list[dict[str, Any]]],
    variant: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Every JIT_BRIDGE_* variable names a setting, and the bridge's own loader builds its
    settings from them (with the mounted files stood in for by files under tmp_path)."""
    docs = rendered[variant]
    env = env_of(docs)
    ours = {k: v for k, v in env.items() if k.startswith("JIT_BRIDGE_")}
    assert unknown_environment(ours) == []
    for name in list(os.environ):
        if name.startswith("JIT_BRIDGE_"):
            monkeypatch.delenv(name)
    # Secrets read from files, and the TLS files (paths the bridge opens): stood in for.
    stood_in = {f"JIT_BRIDGE_{n.upper()}_FILE" for n in FILE_FIELDS}
    stood_in |= {"JIT_BRIDGE_TLS_CERT_FILE", "JIT_BRIDGE_TLS_KEY_FILE"}
    stand_ins = {}
    for name, value in ours.items():
        if name in stood_in:
            stand_in = tmp_path / value.lstrip("/")
            stand_in.parent.mkdir(parents=True, exist_ok=True)
            content = "s3cret"
            if name == "JIT_BRIDGE_DATABASE_URL_FILE":
                content = "postgresql+psycopg://bridge:pw@db:5432/bridge"
            stand_in.write_text(content + "\n", encoding="utf-8")
            stand_ins[name] = stand_in
            monkeypatch.setenv(name, str(stand_in))
        else:
            monkeypatch.setenv(name, value)
    settings = load_settings()
    assert settings.listen == env["JIT_BRIDGE_LISTEN"]
    assert settings.listen_host == "0.0.0.0"
    assert str(settings.mapping_file) == env["JIT_BRIDGE_MAPPING_FILE"]
    values = yaml.safe_load(VARIANTS[variant][0].read_text(encoding="utf-8"))
    for name, value in values["settings"].items():
        got = getattr(settings, name)
        if isinstance(value, list):
            assert sorted(got) == sorted(value), name
        else:
            assert got == value, name
    if "JIT_BRIDGE_DATABASE_URL_FILE" in ours:
        assert settings.database_url.startswith("postgresql+psycopg://")
    else:
        assert settings.database_url == env["JIT_BRIDGE_DATABASE_URL"]
    for name in SECRET_FIELDS:
        if f"JIT_BRIDGE_{name.upper()}_FILE" in ours:
            assert settings.secret(name) == "s3cret", name
    if "JIT_BRIDGE_TLS_CERT_FILE" in ours:
        assert Path(str(settings.tls_cert_file)) == stand_ins["JIT_BRIDGE_TLS_CERT_FILE"]


def test_a_webhook_secret_rotation_mounts_the_old_secret_beside_the_new_one(
    helm: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """secrets.webhook_secret_previous is mounted like every secret, and the bridge reads the
    two files as the new and the old secret (docs/operations.md, Rotating secrets)."""
    docs = render(
        helm, SQLITE, "--set", "secrets.webhook_secret_previous.secretName=jit-bridge-old"
    )
    env = env_of(docs)
    wanted = {
        "webhook_secret": ("jit-bridge", "webhook-secret"),
        "webhook_secret_previous": ("jit-bridge-old", "webhook-secret-previous"),
    }
    for name in list(os.environ):
        if name.startswith("JIT_BRIDGE_"):
            monkeypatch.delenv(name)
    for name, (secret_name, key) in wanted.items():
        variable = f"JIT_BRIDGE_{name.upper()}_FILE"
        volume, item = mounted_volume(docs, env[variable])
        sources = [s["secret"] for s in volume["projected"]["sources"]]
        assert {"name": secret_name, "items": [{"key": key, "path": item}]} in sources
        stand_in = tmp_path / item
        stand_in.write_text(f"{secret_name}-value\n", encoding="utf-8")
        monkeypatch.setenv(variable, str(stand_in))

    settings = load_settings()

    assert settings.secret("webhook_secret") == "jit-bridge-value"
    assert settings.secret("webhook_secret_previous") == "jit-bridge-old-value"


def test_the_grace_period_outlasts_the_bridges_stop(
    rendered: dict[str, list[dict[str, Any]]],
) -> None:
    for variant, docs in rendered.items():
        pod = workload(docs)["spec"]["template"]["spec"]
        assert pod["terminationGracePeriodSeconds"] > float(
            env_of(docs)["JIT_BRIDGE_SHUTDOWN_TIMEOUT"]
        ), variant


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_the_mapping_comes_from_a_configmap_the_bridge_accepts(
    rendered: dict[str, list[dict[str, Any]]], variant: str
) -> None:
    docs = rendered[variant]
    configmap = only(docs, "ConfigMap")
    path = env_of(docs)["JIT_BRIDGE_MAPPING_FILE"]
    volume, item = mounted_volume(docs, path)
    assert volume["configMap"]["name"] == configmap["metadata"]["name"]
    assert volume["configMap"]["items"] == [{"key": item, "path": item}]
    # Mounted as a directory (no subPath), so an edited ConfigMap reaches the running pod.
    assert not [m for m in container(docs)["volumeMounts"] if "subPath" in m]
    mapping = parse_mapping(configmap["data"][item], source=f"{variant} ConfigMap")
    assert mapping.entries


# -- optional objects -----------------------------------------------------------------------


def test_optional_objects_select_the_bridges_pods_and_port(
    rendered: dict[str, list[dict[str, Any]]],
) -> None:
    docs = rendered["sqlite-all-optional"]
    pod_labels = workload(docs)["spec"]["template"]["metadata"]["labels"]
    service = only(docs, "Service")
    port_name = service["spec"]["ports"][0]["name"]

    monitor = only(docs, "ServiceMonitor")
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    assert (
        monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    )
    [endpoint] = monitor["spec"]["endpoints"]
    assert endpoint["path"] == "/metrics"
    assert endpoint["port"] == port_name
    assert endpoint["scheme"] == "http"

    policy = only(docs, "NetworkPolicy")
    assert policy["spec"]["podSelector"]["matchLabels"].items() <= pod_labels.items()
    assert policy["spec"]["policyTypes"] == ["Ingress"]
    assert policy["spec"]["ingress"] == [{"ports": [{"port": port_name, "protocol": "TCP"}]}]

    budget = only(docs, "PodDisruptionBudget")
    assert budget["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()
    assert budget["spec"]["maxUnavailable"] == 1
    assert "minAvailable" not in budget["spec"]

    only(docs, "Ingress")
    # None of them is rendered unless asked for.
    kinds = {d["kind"] for d in rendered["sqlite"]}
    assert not kinds & {"ServiceMonitor", "NetworkPolicy", "Ingress"}


def test_the_postgresql_example_monitors_over_https_only_with_direct_tls(
    rendered: dict[str, list[dict[str, Any]]],
) -> None:
    plain = only(rendered["postgresql"], "ServiceMonitor")["spec"]["endpoints"][0]
    assert plain["scheme"] == "http"
    assert "tlsConfig" not in plain
    tls = only(rendered["postgresql-direct-tls"], "ServiceMonitor")["spec"]["endpoints"][0]
    assert tls["scheme"] == "https"
    assert tls["port"] == "https"
    budget = only(rendered["postgresql"], "PodDisruptionBudget")
    assert budget["spec"] == {**budget["spec"], "minAvailable": 1}
    policy = only(rendered["postgresql"], "NetworkPolicy")
    assert [
        peer["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"]
        for peer in policy["spec"]["ingress"][0]["from"]
    ] == [
        "keycloak",
        "ingress-nginx",
        "monitoring",
    ]


def test_egress_rules_add_dns_and_deny_the_rest(helm: str) -> None:
    rule = {
        "to": [{"ipBlock": {"cidr": "192.0.2.0/24"}}],
        "ports": [{"port": 443, "protocol": "TCP"}],
    }
    docs = render(
        helm,
        SQLITE,
        "--set",
        "networkPolicy.enabled=true",
        "--set-json",
        f"networkPolicy.egress=[{json.dumps(rule)}]",
    )
    policy = only(docs, "NetworkPolicy")["spec"]
    assert policy["policyTypes"] == ["Ingress", "Egress"]
    assert policy["egress"][1:] == [rule]
    assert {p["port"] for p in policy["egress"][0]["ports"]} == {53}


# -- documentation ----------------------------------------------------------------------------


def value_paths(value: Any, prefix: str = "") -> Iterator[tuple[str, bool]]:
    """Every dotted path in values.yaml, with whether it is a leaf."""
    if isinstance(value, dict) and value:
        if prefix:
            yield prefix, False
        for key, inner in value.items():
            yield from value_paths(inner, f"{prefix}.{key}" if prefix else str(key))
    else:
        yield prefix, True


def test_every_value_is_listed_in_the_charts_readme_and_commented() -> None:
    text = (CHART / "values.yaml").read_text(encoding="utf-8")
    paths = dict(value_paths(yaml.safe_load(text)))
    readme = (CHART / "README.md").read_text(encoding="utf-8")
    listed = re.findall(r"^\| `([^`]+)` \|", readme, re.MULTILINE)
    assert len(listed) == len(set(listed)), "a value is listed twice"
    # A row covers its path and everything under it (`livenessProbe`, `settings`).
    unlisted = [
        path
        for path, leaf in paths.items()
        if leaf and not any(path == row or path.startswith(row + ".") for row in listed)
    ]
    assert unlisted == []
    assert [row for row in listed if row not in paths] == []
    # Each top-level value is introduced by a comment in values.yaml.
    lines = text.splitlines()
    for number, line in enumerate(lines):
        if re.match(r"^[a-zA-Z]", line):
            before = [x for x in lines[:number] if x.strip()][-1:]
            assert before, f"values.yaml:{number + 1}: {line} has no comment"
            assert before[0].lstrip().startswith("#"), (
                f"values.yaml:{number + 1}: {line} has no comment"
            )


def test_every_secret_the_bridge_reads_from_a_file_can_be_mounted(helm: str) -> None:
    """The chart knows each `_FILE` setting of the bridge: a new one breaks this test."""
    sets = [
        arg
        for name in FILE_FIELDS
        for arg in (
            "--set",
            f"secrets.{name}.secretName=s-{name}",
            "--set",
            f"secrets.{name}.key=k",
        )
    ]
    docs = render(helm, POSTGRESQL, *TLS, *sets)
    env = env_of(docs)
    for name in FILE_FIELDS:
        volume, item = mounted_volume(docs, env[f"JIT_BRIDGE_{name.upper()}_FILE"])
        sources = [s["secret"] for s in volume["projected"]["sources"]]
        assert {"name": f"s-{name}", "items": [{"key": "k", "path": item}]} in sources

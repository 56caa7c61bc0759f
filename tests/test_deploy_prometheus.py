"""deploy/prometheus/alerts.yml and deploy/grafana/jit-bridge.json, checked by the tools their
users run and against what the bridge really exports.

promtool (`make setup` unpacks it from Debian's prometheus package, deploy/prometheus/
install-promtool.sh) checks the rules and runs their unit tests (alerts.test.yml), and lints a
real bridge's /metrics. Every metric name an alert or a panel uses must be one the bridge
exports: from its registry, and as a series on the /metrics of a running `jit-bridge run` whose
paths (runs, writes, a failure, a 429, a webhook) were exercised.
"""

from __future__ import annotations

import json
import re
import subprocess
import threading
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from bridge.keys import EVERYONE
from bridge.metrics import Metrics
from bridge.model import TargetState, TargetUser, Team
from bridge.overview import check_dependencies
from bridge.store import Store
from tests.fixtures.bridge import BridgeFactory, BridgeProcess
from tests.fixtures.keycloak import KeycloakSandbox, TestKeycloak
from tests.tines_fake import TinesFake

REPO = Path(__file__).resolve().parents[1]
ALERTS = REPO / "deploy" / "prometheus" / "alerts.yml"
ALERT_TESTS = REPO / "deploy" / "prometheus" / "alerts.test.yml"
DASHBOARD = REPO / "deploy" / "grafana" / "jit-bridge.json"
INSTALL_PROMTOOL = REPO / "deploy" / "prometheus" / "install-promtool.sh"

#: Series Prometheus makes itself rather than scraping them.
SYNTHETIC = frozenset({"up"})
#: PromQL words that look like metric names: aggregations, set operators, modifiers.
PROMQL_WORDS = frozenset(
    {
        *("sum", "min", "max", "avg", "count", "stddev", "stdvar", "group", "quantile"),
        *("topk", "bottomk", "count_values", "and", "or", "unless", "bool", "offset"),
    }
)
#: Grafana's variables, replaced by what they stand for when the queries are checked.
GRAFANA_VARIABLES = {"$__rate_interval": "5m", "$job": ".*", "$instance": ".*"}


def promtool() -> str:
    path = subprocess.run(
        ["bash", str(INSTALL_PROMTOOL), "--print-path"], capture_output=True, text=True, check=True
    ).stdout.strip()
    if not Path(path).is_file():
        pytest.fail(f"promtool is missing ({path}): run `make setup`")
    return path


def run_promtool(*args: str, stdin: str | None = None, cwd: Path | None = None) -> str:
    done = subprocess.run(
        [promtool(), *args],
        input=stdin,
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, f"promtool {' '.join(args)}:\n{done.stdout}{done.stderr}"
    return done.stdout


def alert_rules() -> list[dict[str, Any]]:
    groups = yaml.safe_load(ALERTS.read_text(encoding="utf-8"))["groups"]
    return [rule for group in groups for rule in group["rules"]]


def dashboard() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    return loaded


def dashboard_queries() -> list[str]:
    return [
        target["expr"]
        for panel in dashboard()["panels"]
        if panel["type"] != "row"
        for target in panel["targets"]
    ]


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression selects."""
    expr = re.sub(r'"(?:[^"\\]|\\.)*"', "", expr)  # strings: label values
    expr = re.sub(r"\{[^}]*\}", "", expr)  # label matchers
    expr = re.sub(r"\[[^\]]*\]", "", expr)  # ranges
    expr = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", expr)
    names = re.findall(r"(?<![\w$.])([a-zA-Z_:][\w:]*)\b(?!\s*\()", expr)
    return {name for name in names if name not in PROMQL_WORDS}


def used_metric_names() -> dict[str, set[str]]:
    """Metric name → where it is used (alert names, dashboard)."""
    used: dict[str, set[str]] = {}
    for rule in alert_rules():
        for name in metric_names(rule["expr"]):
            used.setdefault(name, set()).add(rule["alert"])
    for expr in dashboard_queries():
        for name in metric_names(expr):
            used.setdefault(name, set()).add("dashboard")
    return used


def exported_names(metrics: Metrics) -> set[str]:
    """The series names the registry exports, whether or not a labelled series exists yet."""
    names: set[str] = set()
    suffixes = {"counter": ("_total",), "histogram": ("_bucket", "_count", "_sum")}
    for family in metrics.registry.collect():
        names |= {sample.name for sample in family.samples}
        names |= {family.name + s for s in suffixes.get(family.type, ("",))}
    return names


def series_on(text: str) -> dict[str, list[tuple[dict[str, str], float]]]:
    """Name → (labels, value) of every series in an exposition."""
    found: dict[str, list[tuple[dict[str, str], float]]] = {}
    for line in text.splitlines():
        matched = re.match(r"^([a-zA-Z_:][\w:]*)(?:\{(.*)\})? (\S+)$", line)
        if matched:
            labels = dict(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', matched.group(2) or ""))
            found.setdefault(matched.group(1), []).append((labels, float(matched.group(3))))
    return found


def value(text: str, name: str, **labels: str) -> float | None:
    for found, number in series_on(text).get(name, []):
        if labels.items() <= found.items():
            return number
    return None


# ------------------------------------------------------------------------------------------
# The rules, by promtool


def test_alert_rules_pass_promtool_check_rules() -> None:
    out = run_promtool("check", "rules", str(ALERTS))
    assert f"SUCCESS: {len(alert_rules())} rules found" in out


def test_alert_rules_unit_tests_pass() -> None:
    out = run_promtool("test", "rules", ALERT_TESTS.name, cwd=ALERT_TESTS.parent)
    assert "SUCCESS" in out


def test_every_alert_has_a_unit_test_that_fires_it_and_one_that_does_not() -> None:
    tests = yaml.safe_load(ALERT_TESTS.read_text(encoding="utf-8"))["tests"]
    evaluations = [e for test in tests for e in test.get("alert_rule_test", [])]
    for rule in alert_rules():
        name = rule["alert"]
        fired = [e for e in evaluations if e["alertname"] == name and e["exp_alerts"]]
        quiet = [e for e in evaluations if e["alertname"] == name and not e["exp_alerts"]]
        assert fired, f"no test in {ALERT_TESTS.name} fires {name}"
        assert quiet, f"no test in {ALERT_TESTS.name} shows {name} staying quiet"


def test_every_alert_says_how_bad_it_is_what_to_do_and_where_its_runbook_is() -> None:
    names = [rule["alert"] for rule in alert_rules()]
    assert len(names) == len(set(names))
    for rule in alert_rules():
        name, annotations = rule["alert"], rule["annotations"]
        assert rule["labels"]["severity"] in ("critical", "warning", "info"), name
        assert annotations["summary"], name
        assert "What to do:" in annotations["description"], name
        assert annotations["runbook_url"] == f"docs/operations.md#{name.lower()}"


# ------------------------------------------------------------------------------------------
# The dashboard


def test_dashboard_has_a_datasource_variable_and_every_panel_a_query() -> None:
    board = dashboard()
    assert board["schemaVersion"] >= 39
    variables = {v["name"]: v for v in board["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    panels = [p for p in board["panels"] if p["type"] != "row"]
    assert panels
    for panel in panels:
        assert panel["datasource"]["uid"] == "${datasource}", panel["title"]
        assert panel["targets"], f"panel {panel['title']!r} has no query"
        for target in panel["targets"]:
            assert target["expr"].strip(), f"panel {panel['title']!r} has an empty query"
    ids = [p["id"] for p in board["panels"]]
    assert len(ids) == len(set(ids))


def test_dashboard_queries_are_valid_promql(tmp_path: Path) -> None:
    """Each query (Grafana's variables filled in) as a recording rule, for promtool to parse."""
    rules = []
    for i, expr in enumerate(dashboard_queries()):
        for variable, meaning in GRAFANA_VARIABLES.items():
            expr = expr.replace(variable, meaning)
        assert "$" not in expr, f"a Grafana variable this test does not know: {expr}"
        rules.append({"record": f"dashboard:query_{i}", "expr": expr})
    check = tmp_path / "dashboard-queries.yml"
    check.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))

    assert f"SUCCESS: {len(rules)} rules found" in run_promtool("check", "rules", str(check))


# ------------------------------------------------------------------------------------------
# The metric names they use are the bridge's


def test_metric_names_the_alerts_and_dashboard_use_are_in_the_bridges_registry() -> None:
    used = used_metric_names()
    exported = exported_names(Metrics()) | SYNTHETIC

    unknown = {name: sorted(where) for name, where in used.items() if name not in exported}

    assert unknown == {}
    # Sanity of the extraction itself: it finds what it must.
    assert {"up", "jit_bridge_ready", "jit_bridge_target_requests_total"} <= set(used)


def test_readiness_checks_report_a_dependency_that_does_not_answer_in_time(
    tmp_path: Path,
) -> None:
    """/metrics waits a bounded time for the readiness checks, so a hung dependency shows as
    down instead of making the scrape time out (which would look like the bridge is down)."""
    store = Store.open(f"sqlite:///{tmp_path / 'state.db'}")
    store.upgrade()
    release = threading.Event()
    try:
        checks = check_dependencies(
            store, {"keycloak": release.wait, "target": lambda: None}, wait=0.2
        )
    finally:
        release.set()
        store.close()

    assert checks == {
        "store": "ok",
        "keycloak": "failing: no answer within 0.2 s",
        "target": "ok",
    }


# ------------------------------------------------------------------------------------------
# A real bridge's /metrics


def test_a_running_bridge_exports_every_series_the_alerts_and_dashboard_use(
    bridge_service: BridgeFactory,
    tines_fake: TinesFake,
    keycloak: TestKeycloak,
    keycloak_sandbox: KeycloakSandbox,
) -> None:
    group = keycloak_sandbox.create_group("/Monitored")
    ana, _ = keycloak_sandbox.create_user("ana", groups=(group,))
    tines_fake.state.load(
        TargetState(
            users=[TargetUser(id="1", email=f"{ana}@example.com")],
            teams=[Team(id="1", name="Analytics")],
        )
    )
    bridge = bridge_service(
        mapping={
            "mappings": [{"group_name": group, "team_name": "Analytics", "role_name": "EDITOR"}]
        },
        tines=tines_fake,
        keycloak=keycloak,
        mode="enhanced",
        reconcile_interval=3600,
    )

    # A full reconcile whose one write the target refuses: the run fails.
    tines_fake.fail_next(1, status=422, path_prefix="teams/1/invite_member")
    assert bridge.admin("POST", "sync", {"all": True}).status_code == 202
    failed = wait_for(bridge, "jit_bridge_runs_total", kind="all", status="failed")
    assert value(failed, "jit_bridge_last_full_reconcile_failed") == 1
    assert value(failed, "jit_bridge_last_full_reconcile_timestamp_seconds") == 0
    assert value(failed, "jit_bridge_failures_total", kind="operation") == 1

    # The next one meets a 429 (retried at once, as Retry-After says) and completes.
    tines_fake.fail_next(1, status=429, retry_after=0, path_prefix="teams/1/invite_member")
    assert bridge.admin("POST", "sync", {"all": True}).status_code == 202
    done = wait_for(bridge, "jit_bridge_operations_total", op="add_membership", outcome="applied")
    assert value(done, "jit_bridge_target_requests_total", method="POST", code="429") == 1
    assert (value(done, "jit_bridge_target_requests_total", method="GET", code="200") or 0) >= 1
    assert (value(done, "jit_bridge_keycloak_requests_total", code="200") or 0) >= 1
    assert value(done, "jit_bridge_last_full_reconcile_failed") == 0
    assert (value(done, "jit_bridge_last_full_reconcile_timestamp_seconds") or 0) > 0
    assert value(done, "jit_bridge_full_reconcile_interval_seconds") == 3600
    assert value(done, "jit_bridge_ready") == 1
    for dependency in ("store", "keycloak", "target"):
        assert value(done, "jit_bridge_dependency_up", dependency=dependency) == 1
    assert (value(done, "process_start_time_seconds") or 0) > 0

    # A delivery the webhook refuses (no signature) is counted too.
    refused = httpx.post(f"{bridge.url}/webhooks/keycloak", json={}, timeout=10)
    assert refused.status_code == 401
    text = bridge.get("/metrics").text
    assert "jit_bridge_webhook_requests_total" in series_on(text)

    missing = {
        name: sorted(where)
        for name, where in used_metric_names().items()
        if name not in SYNTHETIC and name not in series_on(text)
    }
    assert missing == {}
    run_promtool("check", "metrics", stdin=text)

    # The target refuses the key once: that scrape's readiness check says so.
    tines_fake.fail_next(1, status=401, path_prefix="admin/users")
    refusing = bridge.get("/metrics").text
    assert value(refusing, "jit_bridge_ready") == 0
    assert value(refusing, "jit_bridge_dependency_up", dependency="target") == 0
    assert value(refusing, "jit_bridge_dependency_up", dependency="keycloak") == 1
    assert value(bridge.get("/metrics").text, "jit_bridge_ready") == 1


def wait_for(bridge: BridgeProcess, name: str, **labels: str) -> str:
    """The /metrics text once the series is there and the queue is idle (scraped again then:
    a scrape reads the store's gauges before its counters)."""
    bridge.wait_until(
        lambda: value(bridge.get("/metrics").text, name, **labels) and bridge.idle(),
        what=f"{name} {labels}",
    )
    return bridge.get("/metrics").text


def test_a_mapped_group_keycloak_cannot_read_shows_on_metrics(
    bridge_service: BridgeFactory,
    tines_fake: TinesFake,
    keycloak: TestKeycloak,
    keycloak_sandbox: KeycloakSandbox,
) -> None:
    """The gauge behind JitBridgeMappedGroupsUnreadable: from the last full reconcile in the
    store, so every process shows it, whichever ran the reconcile."""
    there = keycloak_sandbox.create_group("/There")
    gone = f"{there}-gone"  # never created
    tines_fake.state.load(TargetState(teams=[Team(id="1", name="Analytics")]))
    bridge = bridge_service(
        mapping={
            "mappings": [
                {"group_name": there, "team_name": "Analytics", "role_name": "EDITOR"},
                {"group_name": gone, "team_name": "Analytics", "role_name": "VIEWER"},
            ]
        },
        tines=tines_fake,
        keycloak=keycloak,
        mode="enhanced",
    )

    assert bridge.admin("POST", "sync", {"all": True}).status_code == 202

    bridge.wait_until(
        lambda: value(bridge.get("/metrics").text, "jit_bridge_unreadable_groups") == 1,
        what="jit_bridge_unreadable_groups 1",
    )
    assert value(bridge.get("/metrics").text, "jit_bridge_last_full_reconcile_failed") == 0


def test_full_reconcile_gauges_come_from_the_store_whichever_process_ran_it(
    tmp_path: Path,
) -> None:
    """A process that ran nothing itself reports the last full reconcile's failure, orphans
    and unreadable groups as the store has them."""
    store = Store.open(f"sqlite:///{tmp_path / 'state.db'}")
    store.upgrade()
    try:
        done = store.start_run(EVERYONE, "reconcile", requested_by="queue:reconcile")
        store.finish_run(
            done,
            "no_changes",
            {"orphans": 2, "unreadable_groups": {"/Gone": "the group does not exist"}},
        )
        later = store.start_run(EVERYONE, "reconcile", requested_by="queue:reconcile")
        store.finish_run(later, "partial", {"error": "one invite refused"})
        metrics = Metrics()
        metrics.refresh_from_store(store)
    finally:
        store.close()
    text = metrics.render().decode()

    assert value(text, "jit_bridge_unreadable_groups") == 1
    assert value(text, "jit_bridge_orphan_accounts") == 2
    assert value(text, "jit_bridge_last_full_reconcile_failed") == 1
    assert (value(text, "jit_bridge_last_full_reconcile_timestamp_seconds") or 0) > 0

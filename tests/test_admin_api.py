"""The admin API (docs/design.md, Webhook and admin API) on the app `jit-bridge run` serves, built
by `Service.build` from real parts: a SQLite store, the session Keycloak and the Tines fake.
Workers are not started, so what a request queues stays visible in the queue."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from bridge.model import Member, TargetState, TargetUser, Team
from bridge.server import create_app
from bridge.service import Service
from bridge.settings import Settings
from tests.fixtures.keycloak import KeycloakSandbox, TestKeycloak
from tests.tines_fake import TinesFake

TOKEN = "admin-api-test-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
MANAGERS_MAPPING = {
    "mappings": [{"group_name": "/Managers", "team_name": "Analytics", "role_name": "TEAM_ADMIN"}]
}
#: Realm users with a verified email who are enabled: a full reconcile manages them all.
ACTIVE_USERS = ("alice", "bob", "carol", "dana", "erin", "frank")

AdminApi = Callable[..., tuple[TestClient, Service]]


@pytest.fixture
def admin_api(tmp_path: Path, keycloak: TestKeycloak, tines_fake: TinesFake) -> Iterator[AdminApi]:
    services: list[Service] = []

    def build(mapping: dict[str, Any], **extra: Any) -> tuple[TestClient, Service]:
        mapping_file = tmp_path / "mapping.json"
        mapping_file.write_text(json.dumps(mapping), encoding="utf-8")
        settings = Settings(
            mode="enhanced",
            mapping_file=mapping_file,
            database_url=f"sqlite:///{tmp_path / 'state.db'}",
            tines_url=tines_fake.url,
            tines_api_key=tines_fake.api_key,
            keycloak_url=keycloak.url,
            keycloak_realm=keycloak.realm,
            keycloak_client_id=keycloak.client_id,
            keycloak_client_secret=keycloak.client_secret,
            admin_token=TOKEN,
            webhook_secret="admin-api-webhook-secret",
            **extra,
        )
        service = Service.build(settings)
        services.append(service)
        return TestClient(create_app(service.context)), service

    try:
        yield build
    finally:
        for service in services:
            service.stop()


def analytics_with_everyone(tines: TinesFake) -> None:
    """Tines has every active realm user as an EDITOR of Analytics."""
    users = [TargetUser(id=str(i), email=f"{n}@example.com") for i, n in enumerate(ACTIVE_USERS, 1)]
    members = [Member(user_id=u.id, role="EDITOR") for u in users]
    tines.state.load(
        TargetState(users=users, teams=[Team(id="1", name="Analytics", members=members)])
    )


ENDPOINTS = [
    ("GET", "/api/v1/status"),
    ("POST", "/api/v1/sync"),
    ("GET", "/api/v1/plan?user=alice@example.com"),
    ("GET", "/api/v1/audit"),
    ("GET", "/api/v1/mapping"),
    ("PUT", "/api/v1/mapping"),
    ("POST", "/api/v1/runs/some-run/approve"),
]


@pytest.mark.parametrize(("method", "path"), ENDPOINTS)
@pytest.mark.parametrize("header", [None, "Bearer not-the-token", f"Basic {TOKEN}"])
def test_admin_api_refuses_requests_without_the_token(
    admin_api: AdminApi, tines_fake: TinesFake, method: str, path: str, header: str | None
) -> None:
    client, service = admin_api(MANAGERS_MAPPING)
    headers = {"Authorization": header} if header else {}

    answer = client.request(method, path, headers=headers, json={"all": True})

    assert answer.status_code == 401
    assert answer.headers["www-authenticate"] == "Bearer"
    assert service.store.queue_depth() == 0
    assert tines_fake.writes() == []


def test_health_endpoints_need_no_token(admin_api: AdminApi) -> None:
    client, _ = admin_api(MANAGERS_MAPPING)

    assert client.get("/healthz").status_code == 200
    assert client.get("/metrics").status_code == 200


def test_status_shows_mode_mapping_version_and_queue(admin_api: AdminApi) -> None:
    client, _ = admin_api(MANAGERS_MAPPING)

    status = client.get("/api/v1/status", headers=AUTH).json()

    assert status["mode"] == "enhanced"
    assert status["target"] == "tines"
    assert status["dry_run"] is False
    assert status["mapping_version"] == 1
    assert status["queue_depth"] == 0
    assert status["in_progress"] == 0
    assert status["held_runs"] == []


def test_sync_queues_a_user_or_everyone_durably(admin_api: AdminApi) -> None:
    client, service = admin_api(MANAGERS_MAPPING)

    user = client.post("/api/v1/sync", headers=AUTH, json={"user": "Alice@Example.com"})
    everyone = client.post("/api/v1/sync", headers=AUTH, json={"all": True})
    again = client.post("/api/v1/sync", headers=AUTH, json={"user": "alice@example.com"})

    assert user.status_code == everyone.status_code == again.status_code == 202
    assert everyone.json()["queued"] == "all"
    assert again.json()["result"] == "merged"
    queued = {(e.key, e.trigger) for e in service.store.queue_items()}
    assert queued == {(user.json()["queued"], "login"), ("all", "reconcile")}
    assert client.get("/api/v1/status", headers=AUTH).json()["queue_depth"] == 2


@pytest.mark.parametrize(
    "body", [{}, {"user": "not-an-email"}, {"all": True, "trigger": "sometimes"}, ["all"]]
)
def test_sync_refuses_a_bad_request(admin_api: AdminApi, body: Any) -> None:
    client, service = admin_api(MANAGERS_MAPPING)

    answer = client.post("/api/v1/sync", headers=AUTH, json=body)

    assert answer.status_code == 400
    assert service.store.queue_depth() == 0


def test_plan_shows_a_login_without_writing(admin_api: AdminApi, tines_fake: TinesFake) -> None:
    tines_fake.state.add_team("Analytics")
    client, _ = admin_api(MANAGERS_MAPPING)

    answer = client.get("/api/v1/plan", headers=AUTH, params={"user": "alice@example.com"})

    assert answer.status_code == 200
    plan = answer.json()
    assert (plan["mode"], plan["trigger"]) == ("enhanced", "login")
    assert [(op["op"], op.get("team"), op.get("role")) for op in plan["operations"]] == [
        ("create_user", None, None),
        ("add_membership", "Analytics", "TEAM_ADMIN"),
    ]
    assert tines_fake.writes() == []
    assert client.get("/api/v1/plan", headers=AUTH).status_code == 400


def test_bad_mapping_is_refused_with_pointers_and_the_old_one_stays(
    admin_api: AdminApi,
) -> None:
    client, _ = admin_api(MANAGERS_MAPPING)
    bad = {
        "mappings": [
            {"group_name": "/Managers", "team_name": "Analytics", "rol_name": "EDITOR"},
            {"group_name": "/Analysts", "team_name": "Analytics", "role_name": "EDITOR"},
        ],
        "tenant_owner_groupz": ["Administrators"],
    }

    refused = client.put("/api/v1/mapping", headers=AUTH, content=json.dumps(bad))

    assert refused.status_code == 422
    pointers = {p["pointer"] for p in refused.json()["problems"]}
    assert "/mappings/0/rol_name" in pointers
    assert "/tenant_owner_groupz" in pointers
    in_force = client.get("/api/v1/mapping", headers=AUTH).json()
    assert in_force["version"] == 1
    assert in_force["mapping"]["mappings"] == [
        {"group_name": "/Managers", "team_name": "Analytics", "role_name": "TEAM_ADMIN"}
    ]
    assert client.put("/api/v1/mapping", headers=AUTH, content=b"{not json").status_code == 422


def test_good_mapping_replaces_the_one_in_force_and_versions_are_kept(
    admin_api: AdminApi, tines_fake: TinesFake
) -> None:
    tines_fake.state.add_team("Analytics")
    client, service = admin_api(MANAGERS_MAPPING)
    newer = {
        "mappings": [{"group_name": "Analysts", "team_name": "Analytics", "role_name": "viewer"}]
    }

    accepted = client.put("/api/v1/mapping", headers=AUTH, content=json.dumps(newer))

    assert accepted.status_code == 200
    assert accepted.json() == {"version": 2, "full_reconcile": "queued"}
    # Everyone is reconciled under the new mapping, not only those who log in next.
    assert [(e.key, e.trigger) for e in service.store.queue_items()] == [("all", "reconcile")]
    in_force = client.get("/api/v1/mapping", headers=AUTH).json()
    assert in_force["version"] == 2
    assert in_force["mapping"]["mappings"][0]["role_name"] == "VIEWER"
    assert client.get("/api/v1/status", headers=AUTH).json()["mapping_version"] == 2
    assert [(v.version, v.source) for v in service.store.mapping_versions()] == [
        (2, "api"),
        (1, "file"),
    ]
    # Plans use the new mapping at once: bob is an Analyst, not a Manager.
    plan = client.get("/api/v1/plan", headers=AUTH, params={"user": "bob@example.com"}).json()
    assert [op.get("role") for op in plan["operations"]] == [None, "VIEWER"]


def test_a_mapping_put_as_a_dry_run_shows_everyones_plan_and_stores_nothing(
    admin_api: AdminApi, tines_fake: TinesFake
) -> None:
    analytics_with_everyone(tines_fake)
    client, service = admin_api(MANAGERS_MAPPING)
    managers_only = {
        "mappings": [{"group_name": "/Managers", "team_name": "Analytics", "role_name": "EDITOR"}]
    }

    preview = client.put(
        "/api/v1/mapping",
        headers=AUTH,
        params={"dry_run": "true"},
        content=json.dumps(managers_only),
    )

    assert preview.status_code == 200
    plan = preview.json()
    removed = sorted(op["email"] for op in plan["operations"] + plan["held"])
    managers = {"alice@example.com"}  # the realm's only member of /Managers
    assert removed == sorted(
        f"{n}@example.com" for n in ACTIVE_USERS if f"{n}@example.com" not in managers
    )
    assert client.get("/api/v1/mapping", headers=AUTH).json()["version"] == 1
    assert [v.version for v in service.store.mapping_versions()] == [1]
    assert service.store.queue_items() == []
    assert tines_fake.applied_writes() == []


def test_an_edited_mapping_file_becomes_the_next_version(admin_api: AdminApi) -> None:
    client, service = admin_api(MANAGERS_MAPPING)
    edited = {"mappings": [{"group_name": "/Managers", "team_name": "Ops", "role_name": "VIEWER"}]}

    service.settings.mapping_file.write_text(json.dumps(edited), encoding="utf-8")
    assert service.context.mappings.record_file_change() == 2

    in_force = client.get("/api/v1/mapping", headers=AUTH).json()
    assert in_force["version"] == 2
    assert in_force["mapping"]["mappings"][0]["team_name"] == "Ops"
    # A broken edit never replaces the version in force.
    service.settings.mapping_file.write_text('{"mappings": [{"group_nam": 1}]}', encoding="utf-8")
    assert service.context.mappings.record_file_change() is None
    assert client.get("/api/v1/mapping", headers=AUTH).json()["version"] == 2


def test_held_run_is_applied_once_when_approved(
    admin_api: AdminApi, keycloak_sandbox: KeycloakSandbox, tines_fake: TinesFake
) -> None:
    empty_group = keycloak_sandbox.create_group("/Nobody")
    analytics_with_everyone(tines_fake)
    client, service = admin_api(
        {"mappings": [{"group_name": empty_group, "team_name": "Analytics", "role_name": "EDITOR"}]}
    )
    # A full reconcile that would remove all six memberships: over the removal budget.
    report = service.context.reconciler().sync_all(
        "reconcile", triggered_by=[], requested_by="test"
    )
    assert report.status == "held"
    assert tines_fake.applied_writes() == []
    held = client.get("/api/v1/status", headers=AUTH).json()["held_runs"]
    assert [r["id"] for r in held] == [report.run_id]
    assert "approve" in held[0]["hold_reason"]
    assert client.get("/metrics").text.count("jit_bridge_held_runs 1.0") == 1

    approved = client.post(f"/api/v1/runs/{report.run_id}/approve", headers=AUTH)

    assert approved.status_code == 200
    assert approved.json()["approved"] == report.run_id
    assert approved.json()["status"] == "succeeded"
    assert tines_fake.state.export().teams[0].members == []
    assert len(tines_fake.applied_writes()) == len(ACTIVE_USERS)
    audit = client.get("/api/v1/audit", headers=AUTH, params={"user": "Alice@example.com"})
    assert sorted((r["op"], r["outcome"], r["team"]) for r in audit.json()) == [
        ("remove_membership", "applied", "Analytics"),
        ("remove_membership", "held", "Analytics"),
    ]
    later = client.get("/api/v1/audit", headers=AUTH, params={"since": "2999-01-01T00:00:00"})
    assert later.json() == []
    assert client.get("/api/v1/status", headers=AUTH).json()["held_runs"] == []

    twice = client.post(f"/api/v1/runs/{report.run_id}/approve", headers=AUTH)

    assert twice.status_code == 409
    assert "already approved by admin-api" in twice.text
    assert len(tines_fake.applied_writes()) == len(ACTIVE_USERS)
    unknown = client.post("/api/v1/runs/no-such-run/approve", headers=AUTH)
    assert unknown.status_code == 404


def test_status_and_metrics_show_the_orphans_of_the_last_full_reconcile(
    admin_api: AdminApi, keycloak_sandbox: KeycloakSandbox, tines_fake: TinesFake
) -> None:
    domain = f"{keycloak_sandbox.prefix}.example.org"
    tines_fake.state.add_user(f"ghost@{domain}")
    tines_fake.state.add_user("partner@elsewhere.example.net")
    client, service = admin_api(MANAGERS_MAPPING, managed_email_domains=[domain])
    assert client.get("/api/v1/status", headers=AUTH).json()["orphans"] is None

    assert client.post("/api/v1/sync", headers=AUTH, json={"all": True}).status_code == 202
    item = service.context.store.claim("test-worker")
    assert item is not None
    service.workers.run_item(item)

    orphans = client.get("/api/v1/status", headers=AUTH).json()["orphans"]
    assert (orphans["count"], orphans["emails"]) == (1, [f"ghost@{domain}"])
    assert "jit_bridge_orphan_accounts 1.0" in client.get("/metrics").text


def test_audit_refuses_a_time_it_cannot_read(admin_api: AdminApi) -> None:
    client, _ = admin_api(MANAGERS_MAPPING)

    bad = client.get("/api/v1/audit", headers=AUTH, params={"since": "yesterday"})

    assert bad.status_code == 400
    assert "ISO" in bad.json()["detail"]

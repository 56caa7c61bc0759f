"""Bulk writes against a real scim2-server: a run adds many members to one group per request,
falls back to one member at a time when the service refuses a request, audits every member
on its own, and writes for several users at once, never two requests for one user at a time."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import requests

from bridge.model import IdpSnapshot, IdpUser
from bridge.policy import Policy
from bridge.reconcile import Reconciler, RunReport
from bridge.sources.base import SnapshotSource
from bridge.store import Store
from bridge.targets.scim import ScimTarget
from tests.fixtures.faulty_proxy import FaultyProxy
from tests.fixtures.scim import ScimServer
from tests.scenarios.builders import mapping, person

pytestmark = pytest.mark.scim

RULES = mapping(("/Eng", "Eng", "EDITOR"), ("/Ops", "Ops", "VIEWER"))
NAMES = ["ann", "ben", "cat", "dan", "eve", "fay", "gus"]


def members_of(server: ScimServer, display_name: str) -> set[str]:
    """userNames of the group's members, read from the server directly."""
    headers = {"Authorization": f"Bearer {server.token}"}
    found = requests.get(
        server.url + "/Groups",
        params={"filter": f'displayName eq "{display_name}"'},
        headers=headers,
        timeout=10,
    ).json()
    if not found["totalResults"]:
        return set()
    ids = {m["value"] for m in found["Resources"][0].get("members", [])}
    users = requests.get(server.url + "/Users", params={"count": 500}, headers=headers, timeout=10)
    return {u["userName"] for u in users.json()["Resources"] if u["id"] in ids}


@pytest.fixture
def store(tmp_path: Path) -> Store:
    opened = Store.open(f"sqlite:///{tmp_path / 'bridge.db'}")
    opened.upgrade()
    return opened


def run(
    target: ScimTarget,
    store: Store,
    users: list[IdpUser],
    *,
    mode: str = "jit",
    concurrency: int = 4,
) -> RunReport:
    reconciler = Reconciler(
        policy=Policy(mode=mode),  # type: ignore[arg-type]
        mapping=lambda: RULES,
        source=SnapshotSource(IdpSnapshot(users=users)),
        target=target,
        store=store,
        write_concurrency=concurrency,
    )
    trigger = "login" if mode == "jit" else "reconcile"
    return reconciler.sync_all(trigger, triggered_by=[], requested_by="test")


def membership_audit(store: Store, run_id: str | None) -> dict[str, tuple[str, str | None]]:
    """email → (outcome, error) of each add_membership the run recorded."""
    records = [r for r in store.audit(run_id=run_id) if r.op == "add_membership"]
    found = {r.email: (r.outcome, r.error) for r in records}
    assert len(found) == len(records), "one record per member"
    return found


def test_additions_to_one_group_are_sent_together_at_most_max_members_at_a_time(
    scim_server: ScimServer, store: Store
) -> None:
    target = ScimTarget(scim_server.url, scim_server.token, patch_max_members=3)
    users = [person(name, "/Eng") for name in NAMES] + [person("hal", "/Ops")]

    report = run(target, store, users)

    assert report.status == "succeeded"
    assert members_of(scim_server, "Eng:EDITOR") == {f"{n}@example.com" for n in NAMES}
    assert members_of(scim_server, "Ops:VIEWER") == {"hal@example.com"}
    # 8 users created one by one; 7 Eng members in 3 requests (the POST that creates the
    # group with 3, then PATCHes of 3 and 1), hal's Ops group in 1.
    assert target.stats.by_method["POST"] == 8 + 2
    assert target.stats.by_method["PATCH"] == 2
    audited = membership_audit(store, report.run_id)
    assert audited == {f"{n}@example.com": ("applied", None) for n in [*NAMES, "hal"]}


def test_a_refused_batch_is_sent_again_one_member_at_a_time(
    scim_server: ScimServer, store: Store, faulty_proxy: Callable[..., FaultyProxy]
) -> None:
    """A service that refuses one member (here: a proxy answering 400 to any request that
    names mallory's id, as services that check member ids do) costs only that member."""
    direct = ScimTarget(scim_server.url, scim_server.token)
    names = [*NAMES, "mallory"]
    ids = {n: direct.create_user(f"{n}@example.com", n.title(), "Example", None).id for n in names}
    proxy = faulty_proxy(scim_server.url.rsplit("/", 2)[0])
    tenant = scim_server.url.removeprefix(scim_server.url.rsplit("/", 2)[0])
    proxy.fail(400, body=json.dumps(ids["mallory"]))
    target = ScimTarget(
        proxy.url + tenant, scim_server.token, patch_max_members=4, sleep=lambda _s: None
    )

    report = run(target, store, [person(n, "/Eng") for n in names], mode="enhanced")

    assert report.status == "partial"
    assert members_of(scim_server, "Eng:EDITOR") == {f"{n}@example.com" for n in NAMES}
    audited = membership_audit(store, report.run_id)
    assert {e: o for e, (o, _) in audited.items()} == {
        **{f"{n}@example.com": "applied" for n in NAMES},
        "mallory@example.com": "failed",
    }
    error = audited["mallory@example.com"][1] or ""
    assert "400" in error
    assert proxy.switch.hits, "the refusal was exercised"


class _Watching(requests.Session):
    """Records which users each request is about and how many are in flight; the first user
    created waits (up to 30 s) until another request is under way, so a run that wrote one
    user at a time fails this test instead of passing it by luck."""

    def __init__(self) -> None:
        super().__init__()
        self.lock = threading.Lock()
        self.in_flight: dict[str, int] = {}
        self.overlaps: list[str] = []
        self.most_at_once = 0
        self.current = 0
        self.second = threading.Event()
        self.email_of: dict[str, str] = {}

    def _who(self, method: str, url: str, body: Any) -> set[str]:
        if method == "POST" and url.endswith("/Users"):
            return {body["userName"]}
        if method in ("POST", "PATCH") and "/Groups" in url:
            values = body.get("members") or [
                m for op in body.get("Operations", []) for m in (op.get("value") or [])
            ]
            return {self.email_of.get(m["value"], m["value"]) for m in values}
        if "/Users/" in url:
            user_id = url.rsplit("/", 1)[-1]
            return {self.email_of.get(user_id, user_id)}
        return set()

    def request(self, method: str, url: str, *args: Any, **kwargs: Any) -> Any:  # type: ignore[override]
        method = method.upper()
        who = self._who(method, str(url), kwargs.get("json") or {}) if method != "GET" else set()
        with self.lock:
            for email in who:
                if self.in_flight.get(email):
                    self.overlaps.append(f"{method} {url} for {email}")
                self.in_flight[email] = self.in_flight.get(email, 0) + 1
            self.current += 1
            self.most_at_once = max(self.most_at_once, self.current)
            if self.current > 1:
                self.second.set()
            first = method == "POST" and str(url).endswith("/Users") and not self.email_of
        if first:
            self.second.wait(30)
        try:
            response = super().request(method, url, *args, **kwargs)
        finally:
            with self.lock:
                self.current -= 1
                for email in who:
                    self.in_flight[email] -= 1
        if method == "POST" and str(url).endswith("/Users") and response.ok:
            with self.lock:
                self.email_of[response.json()["id"]] = next(iter(who))
        return response


def test_writes_for_several_users_go_at_once_never_two_for_one_user(
    scim_server: ScimServer, store: Store
) -> None:
    session = _Watching()
    target = ScimTarget(scim_server.url, scim_server.token, owner_group="Owners", session=session)
    owners = mapping(("/Eng", "Eng", "EDITOR"), ("/Ops", "Ops", "VIEWER"), owners=("/Ops",))
    users = [person(n, "/Eng", "/Ops") for n in NAMES]
    reconciler = Reconciler(
        policy=Policy(mode="jit"),
        mapping=lambda: owners,
        source=SnapshotSource(IdpSnapshot(users=users)),
        target=target,
        store=store,
        write_concurrency=3,
    )

    report = reconciler.sync_all("login", triggered_by=[], requested_by="test")

    assert report.status == "succeeded"
    assert session.most_at_once > 1
    assert session.most_at_once <= 3
    assert session.overlaps == []
    emails = {f"{n}@example.com" for n in NAMES}
    assert members_of(scim_server, "Eng:EDITOR") == emails
    assert members_of(scim_server, "Owners") == emails

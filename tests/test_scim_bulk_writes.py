"""Bulk writes against a real scim2-server: a run adds many members to one group per request,
falls back to one member at a time when the service refuses a request, audits every member
on its own, and writes for several users at once, never two requests for one user at a time.
The service's full reconcile does the same under each user's queue claim."""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import requests

from bridge.apply import LEFT_TO_NEWER_RUN
from bridge.keys import EVERYONE
from bridge.mapping import Mapping
from bridge.model import IdpSnapshot, IdpUser
from bridge.policy import Policy
from bridge.reconcile import Reconciler, RunReport
from bridge.sources.base import SnapshotSource
from bridge.store import Store
from bridge.targets.base import TransientError
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


@pytest.mark.parametrize("way", ["cli", "service"])
def test_additions_to_one_group_are_sent_together_at_most_max_members_at_a_time(
    scim_server: ScimServer, store: Store, way: str
) -> None:
    """The CLI's `sync --all` and the service's full reconcile alike. The service's claims
    users `patch_max_members` at a time, so each group still gets ⌈members / max⌉ requests;
    every write goes out under its users' claims, and no more than one chunk is held."""
    session = _Claimed(store)
    target = ScimTarget(scim_server.url, scim_server.token, patch_max_members=3, session=session)
    users = [person(name, "/Eng") for name in NAMES] + [person("hal", "/Ops")]

    if way == "cli":
        report = run(target, store, users)
    else:
        report = service_run(target, store, snapshot(users))

    assert report.status == "succeeded"
    assert members_of(scim_server, "Eng:EDITOR") == {f"{n}@example.com" for n in NAMES}
    assert members_of(scim_server, "Ops:VIEWER") == {"hal@example.com"}
    # 8 users created one by one; 7 Eng members in ⌈7/3⌉ = 3 requests (the POST that
    # creates the group with 3, then PATCHes of 3 and 1), hal's Ops group in 1.
    assert target.stats.by_method["POST"] == 8 + 2
    assert target.stats.by_method["PATCH"] == 2
    audited = membership_audit(store, report.run_id)
    assert audited == {f"{n}@example.com": ("applied", None) for n in [*NAMES, "hal"]}
    assert session.overlaps == []
    assert len(session.writes) == 8 + 2 + 2
    if way == "service":
        for who, claimed in session.writes:
            assert who
            assert who <= claimed, f"a write for {who - claimed} outside their claim"
            assert len(claimed) <= 3
    assert store.queue_items() == [], "every claim was released"


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
    created waits (up to 30 s, unless `hold_first` is false) until another request is under
    way, so a run that wrote one user at a time fails this test instead of passing it by luck."""

    def __init__(self, *, hold_first: bool = True) -> None:
        super().__init__()
        self.hold_first = hold_first
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
            first = (
                self.hold_first
                and method == "POST"
                and str(url).endswith("/Users")
                and not self.email_of
            )
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


# -- the service's full reconcile: writes under each user's queue claim ----------------------


def service_run(
    target: ScimTarget,
    store: Store,
    source: SnapshotSource,
    *,
    policy: Policy | None = None,
    rules: Mapping = RULES,
    concurrency: int = 4,
    should_stop: Callable[[], bool] | None = None,
) -> RunReport:
    """The service's full reconcile: a worker's reconcile of the queued key `all` with a
    login trigger, each user's writes made under that user's queue claim."""
    reconciler = Reconciler(
        policy=policy or Policy(mode="jit"),
        mapping=lambda: rules,
        source=source,
        target=target,
        store=store,
        write_concurrency=concurrency,
        should_stop=should_stop,
    )
    report = reconciler.reconcile(EVERYONE, "login", causes=[], requested_by="test").report
    assert report is not None
    return report


def snapshot(users: list[IdpUser]) -> SnapshotSource:
    return SnapshotSource(IdpSnapshot(users=users))


class _Claimed(_Watching):
    """Also notes, for each write, whom it names and whom the full reconcile held claimed
    when it went out (by email), and calls `at_write(whom it names)` before sending it."""

    def __init__(self, store: Store) -> None:
        super().__init__(hold_first=False)
        self.store = store
        self.writes: list[tuple[set[str], set[str]]] = []
        self.at_write: Callable[[set[str]], None] = lambda _who: None

    def request(self, method: str, url: str, *args: Any, **kwargs: Any) -> Any:  # type: ignore[override]
        if method.upper() != "GET":
            who = self._who(method.upper(), str(url), kwargs.get("json") or {})
            claimed = {
                entry.key.removeprefix("id:kc-") + "@example.com"
                for entry in self.store.queue_items()
                if (entry.claimed_by or "").endswith("/full-reconcile")
            }
            self.writes.append((who, claimed))
            self.at_write(who)
        return super().request(method, url, *args, **kwargs)


class _OwnReconcilesDuringRead(SnapshotSource):
    """A Keycloak read during which eve's own reconcile runs to its end and dan's login is
    queued: both after the full reconcile's read began."""

    def __init__(self, users: list[IdpUser], store: Store) -> None:
        super().__init__(IdpSnapshot(users=users))
        self.store = store

    def read_all(self, mapping: Mapping) -> Any:
        view = super().read_all(mapping)
        time.sleep(0.01)  # the store's clock moves past the full reconcile's read
        self.store.enqueue("id:kc-eve", "change")
        eve = self.store.claim("worker")
        assert eve is not None
        assert eve.key == "id:kc-eve"
        self.store.complete(eve)
        self.store.enqueue("id:kc-dan", "login")
        return view


def test_a_user_whose_own_reconcile_is_queued_or_newer_gets_nothing_from_the_full_reconcile(
    scim_server: ScimServer, store: Store
) -> None:
    session = _Claimed(store)
    target = ScimTarget(scim_server.url, scim_server.token, patch_max_members=3, session=session)
    users = [person(name, "/Eng") for name in NAMES]
    left = {"dan@example.com", "eve@example.com"}

    report = service_run(target, store, _OwnReconcilesDuringRead(users, store))

    assert report.status == "succeeded"
    theirs = [r for r in report.results if r.op.email in left]
    assert {(r.op.email, r.op.op) for r in theirs} == {
        (email, op) for email in left for op in ("create_user", "add_membership")
    }
    assert {(r.outcome, r.error) for r in theirs} == {("not_run", LEFT_TO_NEWER_RUN)}
    assert not [r for r in store.audit(run_id=report.run_id) if r.email in left]
    assert session.writes
    assert not [who for who, _ in session.writes if who & left], "in no request sent"
    others = {f"{n}@example.com" for n in NAMES} - left
    assert members_of(scim_server, "Eng:EDITOR") == others
    assert {u.email for u in target.read_state().users} == others
    # Their own reconciles follow (dan's login; eve's is queued again by the full reconcile).
    assert {entry.key for entry in store.queue_items()} == {"id:kc-dan", "id:kc-eve"}


def test_a_login_during_the_full_reconcile_waits_for_its_users_chunk_at_most(
    scim_server: ScimServer, store: Store
) -> None:
    """Claimed three at a time, one phase after another: the creates of ann, ben, cat |
    dan, eve, fay | gus, then the additions. When the second chunk's first write goes out, a
    worker takes ann's login at once; fay's waits for her chunk only, and is taken as soon as
    the chunk's claims are released. Their own reconciles began after the full reconcile's
    read, so its additions for ann and fay are left to them (their fresh plans stand) and
    queued again; everyone else's are made."""
    session = _Claimed(store)
    target = ScimTarget(scim_server.url, scim_server.token, patch_max_members=3, session=session)
    second_chunk = {"dan@example.com", "eve@example.com", "fay@example.com"}
    taken: dict[str, str | None] = {}
    lock = threading.Lock()

    def worker_takes(key: str) -> None:
        item = store.claim("worker")
        taken[key] = None if item is None else item.key
        if item is not None:
            store.complete(item)

    def logins(who: set[str]) -> None:
        with lock:
            if "ann" not in taken and who & second_chunk:
                for name in ("ann", "fay"):
                    store.enqueue(f"id:kc-{name}", "login")
                    worker_takes(name)
            if "gus@example.com" in who and "after" not in taken:
                worker_takes("after")

    session.at_write = logins

    report = service_run(target, store, snapshot([person(n, "/Eng") for n in NAMES]))

    # At gus's first write (the third chunk) fay's login was taken: her chunk was done.
    assert taken == {"ann": "id:kc-ann", "fay": None, "after": "id:kc-fay"}
    assert report.status == "succeeded"
    left = {"ann@example.com", "fay@example.com"}
    outcomes = {(r.op.email, r.op.op): (r.outcome, r.error) for r in report.results}
    for email in left:
        assert outcomes[email, "create_user"] == ("applied", None)
        assert outcomes[email, "add_membership"] == ("not_run", LEFT_TO_NEWER_RUN)
    assert members_of(scim_server, "Eng:EDITOR") == {f"{n}@example.com" for n in NAMES} - left
    assert {entry.key for entry in store.queue_items()} == {"id:kc-ann", "id:kc-fay"}


def state_of(target: ScimTarget) -> tuple[set[str], set[tuple[str, str, str]]]:
    """The target's users and their memberships as (team, role, email), read from it."""
    state = target.read_state()
    email = {u.id: u.email for u in state.users}
    held = {(t.name, m.role, email[m.user_id]) for t in state.teams for m in t.members}
    return set(email.values()), held


@pytest.mark.parametrize("concurrency", [1, 4])
def test_the_services_batched_writes_come_to_what_one_request_per_write_and_the_cli_do(
    scim_server: ScimServer, tmp_path: Path, concurrency: int
) -> None:
    """The same login of everyone (enhanced mode: creates, additions, a role change and a
    removal) made three ways, each into its own fresh tenant: the service's full reconcile
    with batched additions, the same with one request per write (as a target that cannot
    batch is written), and the CLI's `sync --all`. The target and the audit agree."""
    root = scim_server.url.rsplit("/", 2)[0]
    policy = Policy(mode="enhanced", max_removal_fraction=1.0)
    users = [person(name, "/Eng") for name in NAMES] + [person("hal", "/Ops", "/Eng")]
    found: dict[str, object] = {}
    for way in ("service, batched", "service, one request per write", "cli"):
        server = ScimServer(url=f"{root}/t{uuid.uuid4().hex}/v2", token=scim_server.token)
        existing = ScimTarget(server.url, server.token)
        ann = existing.create_user("ann@example.com", "Ann", "Example", None)
        existing.add_membership(ann, "Ops", None, "VIEWER")  # to be removed
        ben = existing.create_user("ben@example.com", "Ben", "Example", None)
        existing.add_membership(ben, "Eng", None, "VIEWER")  # to become EDITOR
        target = ScimTarget(server.url, server.token, patch_max_members=3)
        target.batches_memberships = way != "service, one request per write"
        store = Store.open(f"sqlite:///{tmp_path / way.replace(' ', '_')}.db")
        store.upgrade()
        if way == "cli":
            report = Reconciler(
                policy=policy,
                mapping=lambda: RULES,
                source=snapshot(users),
                target=target,
                store=store,
                write_concurrency=concurrency,
            ).sync_all("login", triggered_by=[], requested_by="test")
        else:
            report = service_run(
                target, store, snapshot(users), policy=policy, concurrency=concurrency
            )
        audit = sorted(
            (r.email, r.op, r.team or "", r.outcome) for r in store.audit(run_id=report.run_id)
        )
        found[way] = (report.status, audit, state_of(target))
        store.close()

    assert found["service, batched"] == found["service, one request per write"] == found["cli"]
    status, audit, (emails, held) = found["cli"]  # type: ignore[misc]
    assert status == "succeeded"
    assert ("ann@example.com", "remove_membership", "Ops", "applied") in audit
    assert ("ben@example.com", "change_role", "Eng", "applied") in audit
    assert emails == {f"{n}@example.com" for n in [*NAMES, "hal"]}
    assert held == {("Eng", "EDITOR", e) for e in emails} | {("Ops", "VIEWER", "hal@example.com")}


def test_the_services_full_reconcile_sends_each_group_as_many_requests_as_the_cli(
    scim_server: ScimServer, tmp_path: Path
) -> None:
    """Fifteen new users, one in each combination of four groups, at most three members a
    request (8 members a group: 3 requests each). Taken user by user, three users at a time,
    the chunks would touch most groups each (16 group requests); taken phase by phase
    (additions place by place), the service sends exactly the requests the CLI's `sync
    --all` sends (12), every one under its users' claims, and both end the same."""
    rules = mapping(*((f"/{g}", g, "EDITOR") for g in "ABCD"))
    combinations = [[g for j, g in enumerate("ABCD") if n >> j & 1] for n in range(1, 16)]
    users = [
        person(f"u{n:02d}", *(f"/{g}" for g in groups)) for n, groups in enumerate(combinations)
    ]
    root = scim_server.url.rsplit("/", 2)[0]
    found: dict[str, object] = {}
    for way in ("cli", "service"):
        server = ScimServer(url=f"{root}/t{uuid.uuid4().hex}/v2", token=scim_server.token)
        store = Store.open(f"sqlite:///{tmp_path / way}.db")
        store.upgrade()
        session = _Claimed(store)
        target = ScimTarget(server.url, server.token, patch_max_members=3, session=session)
        if way == "cli":
            report = Reconciler(
                policy=Policy(mode="jit"),
                mapping=lambda: rules,
                source=snapshot(users),
                target=target,
                store=store,
            ).sync_all("login", triggered_by=[], requested_by="test")
        else:
            report = service_run(target, store, snapshot(users), rules=rules)
            for who, claimed in session.writes:
                assert who <= claimed, f"a write for {who - claimed} outside their claim"
                assert len(claimed) <= 3
        assert report.status == "succeeded"
        found[way] = (dict(target.stats.by_method), state_of(target))
        store.close()

    assert found["service"] == found["cli"]
    by_method, (emails, held) = found["cli"]  # type: ignore[misc]
    members = Counter(team for team, _, _ in held)
    # 15 creates, then ⌈8 / 3⌉ = 3 requests per group (the first a POST that creates it).
    assert members == dict.fromkeys("ABCD", 8)
    assert (by_method["POST"], by_method["PATCH"]) == (15 + 4, 4 * 2)
    assert len(emails) == 15


def test_a_target_that_stops_answering_stops_the_full_reconcile_and_releases_every_claim(
    scim_server: ScimServer, store: Store, faulty_proxy: Callable[..., FaultyProxy]
) -> None:
    """Claimed three at a time, one phase after another: the creates of ann, ben, cat |
    dan, eve, fay | gus, then the additions to Eng in the same threes. The second addition
    request (a PATCH) meets a 503: its additions fail, the third is never claimed nor sent
    (`not_run`), the run is retried later, and no claim is left behind."""
    proxy = faulty_proxy(scim_server.url.rsplit("/", 2)[0])
    tenant = scim_server.url.removeprefix(scim_server.url.rsplit("/", 2)[0])
    proxy.fail(503, pattern="/Groups/")  # PATCHes; the POST that creates the group passes
    target = ScimTarget(
        proxy.url + tenant, scim_server.token, patch_max_members=3, sleep=lambda _s: None
    )

    report = service_run(target, store, snapshot([person(n, "/Eng") for n in NAMES]))

    assert report.status == "partial"
    assert isinstance(report.stopped_by, TransientError)
    outcomes = {(r.op.email.split("@")[0], r.op.op): r.outcome for r in report.results}
    assert outcomes == {
        **{(n, "create_user"): "applied" for n in NAMES},
        **{(n, "add_membership"): "applied" for n in NAMES[:3]},
        **{(n, "add_membership"): "failed" for n in NAMES[3:6]},
        ("gus", "add_membership"): "not_run",
    }
    assert members_of(scim_server, "Eng:EDITOR") == {f"{n}@example.com" for n in NAMES[:3]}
    assert store.queue_items() == [], "every claim was released"


def test_a_full_reconcile_whose_process_stops_sends_no_further_chunk_and_releases_its_claims(
    scim_server: ScimServer, store: Store
) -> None:
    """The process begins to stop when the second chunk's first write goes out: nothing
    after it is sent (the additions come after every create: none is), the third chunk is
    never claimed, and the run is handed back."""
    session = _Claimed(store)
    target = ScimTarget(scim_server.url, scim_server.token, patch_max_members=3, session=session)
    stopping = threading.Event()
    session.at_write = lambda who: stopping.set() if who & {"dan@example.com"} else None
    users = [person(n, "/Eng") for n in NAMES]

    report = service_run(target, store, snapshot(users), should_stop=stopping.is_set)

    assert report.status == "interrupted"
    outcomes = {(r.op.email.split("@")[0], r.op.op): (r.outcome, r.error) for r in report.results}
    for name in NAMES[:3]:
        assert outcomes[name, "create_user"] == ("applied", None)
        assert outcomes[name, "add_membership"] == ("not_run", "stopping")
    assert outcomes["gus", "create_user"] == ("not_run", "stopping")
    assert outcomes["gus", "add_membership"] == ("not_run", "stopping")
    assert not [who for who, _ in session.writes if "gus@example.com" in who]
    assert store.queue_items() == [], "every claim was released"

"""What a login costs against Tines' 500/minute `admin/users` limit, and why a cheaper read never
changes a user it did not see: a user who turns out to exist is planned again, from a fresh read.

Against the Tines fake, through `Reconciler.sync_user` as the worker calls it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Literal

import pytest

from bridge.keys import UserRef
from bridge.mapping_file import parse_mapping
from bridge.model import IdpSnapshot
from bridge.policy import Policy
from bridge.reconcile import Reconciler
from bridge.sources.base import SnapshotSource
from bridge.store import Store
from bridge.targets.tines import TinesTarget
from tests.test_safety_support import MAPPING, idp_user, seed_tenant
from tests.tines_fake import TinesFake


def admin_users_requests(fake: TinesFake) -> list[str]:
    return [f"{r.method} {r.path}" for r in fake.requests if "/admin/users" in r.path]


def memberships(fake: TinesFake, email: str) -> dict[str, str]:
    state = fake.state.export()
    [user] = [u for u in state.users if u.email == email]
    return {t.name: m.role for t in state.teams for m in t.members if m.user_id == user.id}


def reconciler(
    fake: TinesFake,
    tmp_path: Path,
    people: list[str],
    mode: Literal["jit", "enhanced"] = "jit",
) -> Reconciler:
    store = Store.open(f"sqlite:///{tmp_path / 'state.db'}")
    store.upgrade()
    snapshot = IdpSnapshot.model_validate({"users": [idp_user(n, "/Analysts") for n in people]})
    return Reconciler(
        policy=Policy(mode=mode),
        mapping=lambda: parse_mapping(json.dumps(MAPPING)),
        source=SnapshotSource(snapshot),
        target=TinesTarget(fake.url, fake.api_key),
        store=store,
    )


def login(bridge: Reconciler, name: str) -> str:
    report = bridge.sync_user(
        UserRef(email=f"{name}@example.com"), "login", triggered_by=["ev"], requested_by="test"
    )
    return report.status


def test_after_a_full_reconcile_a_first_login_costs_one_admin_users_call(
    tines_fake: TinesFake, tmp_path: Path
) -> None:
    seed_tenant(tines_fake, {"Analytics": ["old"]})
    bridge = reconciler(tines_fake, tmp_path, ["old", "amy"], mode="enhanced")
    bridge.sync_all("reconcile", triggered_by=[], requested_by="schedule")
    tines_fake.clear_log()

    # A new person joins the group and logs in.
    bridge.source = SnapshotSource(
        IdpSnapshot.model_validate(
            {"users": [idp_user(n, "/Analysts") for n in ("old", "amy", "newcomer")]}
        )
    )
    assert login(bridge, "newcomer") == "succeeded"

    assert memberships(tines_fake, "newcomer@example.com") == {"Analytics": "EDITOR"}
    assert admin_users_requests(tines_fake) == ["POST /api/v1/admin/users"]

    # Their next login: one read, by email, and nothing to change.
    tines_fake.clear_log()
    assert login(bridge, "newcomer") == "no_changes"
    assert admin_users_requests(tines_fake) == ["GET /api/v1/admin/users/newcomer@example.com"]


def test_a_user_created_in_tines_after_the_listing_is_left_alone_in_jit_mode(
    tines_fake: TinesFake, tmp_path: Path
) -> None:
    seed_tenant(tines_fake, {"Analytics": ["old"], "Ops": []})
    bridge = reconciler(tines_fake, tmp_path, ["old", "zed"])
    bridge.sync_all("reconcile", triggered_by=[], requested_by="schedule")
    # After the listing, a Tines admin invites zed by hand, into Ops only.
    zed = tines_fake.state.add_user("zed@example.com")
    ops = next(c for c in tines_fake.state.containers.values() if c.name == "Ops")
    ops.members[zed] = "VIEWER"
    tines_fake.clear_log()

    assert login(bridge, "zed") == "no_changes"

    # jit: an existing user is never touched; the plan made for a new zed was not followed.
    assert memberships(tines_fake, "zed@example.com") == {"Ops": "VIEWER"}
    assert [r.path for r in tines_fake.applied_writes()] == []
    assert bridge.store is not None
    [refused] = bridge.store.audit(email="zed@example.com")
    assert (refused.op, refused.outcome) == ("create_user", "failed")
    assert "already exists in the target" in (refused.error or "")


def test_a_user_created_in_tines_after_the_listing_is_re_planned_in_enhanced_mode(
    tines_fake: TinesFake, tmp_path: Path
) -> None:
    seed_tenant(tines_fake, {"Analytics": ["old"], "Ops": []})
    bridge = reconciler(tines_fake, tmp_path, ["old", "zed"], mode="enhanced")
    bridge.sync_all("reconcile", triggered_by=[], requested_by="schedule")
    zed = tines_fake.state.add_user("zed@example.com")
    ops = next(c for c in tines_fake.state.containers.values() if c.name == "Ops")
    ops.members[zed] = "VIEWER"

    assert login(bridge, "zed") == "succeeded"

    # The second plan saw the real zed: Ops (mapped, not granted) removed, Analytics added.
    assert memberships(tines_fake, "zed@example.com") == {"Analytics": "EDITOR"}
    assert len([u for u in tines_fake.state.users.values() if u.email == "zed@example.com"]) == 1


@pytest.mark.parametrize("mode", ["jit", "enhanced"])
def test_a_tenant_without_lookup_by_email_is_detected_and_nothing_wrong_is_applied(
    tmp_path: Path, mode: Literal["jit", "enhanced"]
) -> None:
    # An older tenant: `GET admin/users/{email}` is a 404 even for a user it has.
    fake = TinesFake(api_key="k", email_lookup=False).start()
    try:
        seed_tenant(fake, {"Analytics": [], "Ops": ["ann"]})
        bridge = reconciler(fake, tmp_path, ["ann"], mode=mode)

        assert login(bridge, "ann") in ("no_changes", "succeeded")

        expected = {"Ops": "VIEWER"} if mode == "jit" else {"Analytics": "EDITOR"}
        assert memberships(fake, "ann@example.com") == expected
        assert isinstance(bridge.target, TinesTarget)
        assert bridge.target.user_lookup == "list"
        # From now on the listing is used directly; a new user is created once.
        bridge.source = SnapshotSource(
            IdpSnapshot.model_validate(
                {"users": [idp_user(n, "/Analysts") for n in ("ann", "bea")]}
            )
        )
        assert login(bridge, "bea") == "succeeded"
        assert memberships(fake, "bea@example.com") == {"Analytics": "EDITOR"}
    finally:
        fake.stop()


def test_a_user_added_in_tines_after_the_listing_still_loses_access_without_a_login(
    tines_fake: TinesFake, tmp_path: Path
) -> None:
    seed_tenant(tines_fake, {"Analytics": ["old"]})
    bridge = reconciler(tines_fake, tmp_path, ["old"], mode="enhanced")
    bridge.sync_all("reconcile", triggered_by=[], requested_by="schedule")
    # After the listing, someone adds ann to Analytics by hand; she is in no mapped group.
    ann = tines_fake.state.add_user("ann@example.com")
    analytics = next(c for c in tines_fake.state.containers.values() if c.name == "Analytics")
    analytics.members[ann] = "EDITOR"
    bridge.source = SnapshotSource(
        IdpSnapshot.model_validate({"users": [idp_user("old", "/Analysts"), idp_user("ann")]})
    )

    report = bridge.sync_user(
        UserRef(email="ann@example.com"), "reconcile", triggered_by=["ev"], requested_by="t"
    )

    assert report.status == "succeeded"
    assert memberships(tines_fake, "ann@example.com") == {}


def test_a_first_login_cut_short_after_the_create_is_finished_at_the_next_attempt(
    tines_fake: TinesFake, tmp_path: Path
) -> None:
    seed_tenant(tines_fake, {"Analytics": [], "Ops": []})
    bridge = reconciler(tines_fake, tmp_path, ["amy"])
    tines_fake.fail_next(1, status=400, path_prefix="teams/")  # the membership call fails

    assert login(bridge, "amy") == "partial"
    assert memberships(tines_fake, "amy@example.com") == {}  # created, not placed

    # jit leaves existing users alone, but this one's first login never finished.
    assert login(bridge, "amy") == "succeeded"
    assert memberships(tines_fake, "amy@example.com") == {"Analytics": "EDITOR"}

    # Finished: from now on amy is an existing user, as in any jit first login.
    tines_fake.state.containers[
        next(c.id for c in tines_fake.state.containers.values() if c.name == "Analytics")
    ].members.clear()
    assert login(bridge, "amy") == "no_changes"
    assert memberships(tines_fake, "amy@example.com") == {}

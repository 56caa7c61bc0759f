"""KeycloakSource against a real Keycloak with the jit-bridge realm."""

from __future__ import annotations

import http.server
import re
import threading
from collections.abc import Callable, Iterator

import pytest
import requests

from bridge.keys import UserRef
from bridge.mapping import GroupSelector, Mapping, MappingEntry
from bridge.sources.base import SourceError, SourceRefusedError
from tests.fixtures.keycloak import KeycloakSandbox, TestKeycloak


def mapping_of(*group_names: str) -> Mapping:
    return Mapping(
        entries=tuple(
            MappingEntry(number=i, group=GroupSelector.parse(g), team="Analytics", role="EDITOR")
            for i, g in enumerate(group_names, start=1)
        )
    )


EVERY_KIND = (
    "Managers",
    "Analysts",
    "/Eng",
    "/Ops/Tier1",
    "Auditors",
    "Administrators",
    "realm-role:auditor",
    "realm-role:operator",
    "client-role:tines/admin",
    "client-role:tines/viewer",
)


def test_read_user_by_id_gives_mapped_group_paths_roles_and_profile(
    keycloak: TestKeycloak,
) -> None:
    mapping = mapping_of("client-role:tines/viewer", "/Eng", "Managers")
    view = keycloak.source().read_user(UserRef(user_id=keycloak.user_id("alice")), mapping)
    [alice] = view.users
    assert alice.username == "alice"
    assert alice.email == "alice@example.com"
    assert alice.email_verified is True
    assert (alice.first_name, alice.last_name) == ("Alice", "Ng")
    assert alice.attributes["avatar"] == ["https://img.example.com/alice.png"]
    assert alice.groups == ["/Eng/SRE", "/Managers"]
    assert alice.realm_roles == []
    assert view.deleted_ids == []


def test_read_user_by_email_gives_effective_roles(keycloak: TestKeycloak) -> None:
    mapping = mapping_of(
        "client-role:tines/viewer",
        "client-role:tines/admin",
        "realm-role:auditor",
        "realm-role:operator",
        "/Ops",
    )
    source = keycloak.source()
    [frank] = source.read_user(UserRef(email="FRANK@example.com"), mapping).users
    assert frank.groups == ["/Ops/Tier1"]
    # auditor only through the composite security-lead; tines/viewer only through /Ops/Tier1
    assert frank.realm_roles == ["auditor", "operator"]
    assert frank.client_roles == {"tines": ["viewer"]}
    [erin] = source.read_user(UserRef(email="erin@example.com"), mapping).users
    assert "auditor" in erin.realm_roles  # through the group /Auditors
    [dana] = source.read_user(UserRef(email="dana@example.com"), mapping).users
    assert dana.client_roles == {"tines": ["admin"]}


def test_client_roles_are_read_whenever_the_mapping_names_them(keycloak: TestKeycloak) -> None:
    source = keycloak.source()  # nothing configures the source: the mapping is enough
    [dana] = source.read_user(UserRef(email="dana@example.com"), mapping_of("Managers")).users
    assert dana.client_roles == {}
    mapping = mapping_of("client-role:tines/admin")
    [dana] = source.read_user(UserRef(email="dana@example.com"), mapping).users
    assert dana.client_roles == {"tines": ["admin"]}


def test_a_client_role_of_a_missing_client_is_unreadable_on_the_per_user_path(
    keycloak: TestKeycloak,
) -> None:
    mapping = mapping_of("client-role:no-such-client/admin", "Managers")
    view = keycloak.source().read_user(UserRef(email="alice@example.com"), mapping)
    assert set(view.unreadable_groups) == {"client-role:no-such-client/admin"}
    assert view.users[0].groups == ["/Managers"]


def test_unverified_and_disabled_users_are_reported_as_such(keycloak: TestKeycloak) -> None:
    source = keycloak.source()
    mapping = mapping_of("Managers")
    [grace] = source.read_user(UserRef(email="grace@example.com"), mapping).users
    assert grace.email_verified is False
    assert grace.enabled is True
    [heidi] = source.read_user(UserRef(email="heidi@example.com"), mapping).users
    assert heidi.enabled is False
    assert heidi.groups == ["/Managers"]


def test_unknown_email_is_an_empty_view_not_a_deletion(keycloak: TestKeycloak) -> None:
    view = keycloak.source().read_user(UserRef(email="nobody@example.com"), mapping_of("Managers"))
    assert view.users == []
    assert view.deleted_ids == []
    assert view.deleted_users == []


def test_deleted_user_comes_back_by_id_and_no_email_is_taken_from_the_ref(
    keycloak: TestKeycloak, keycloak_sandbox: KeycloakSandbox
) -> None:
    username, user_id = keycloak_sandbox.create_user("leaver")
    keycloak.delete_user(username)
    ref = UserRef(user_id=user_id, email="alice@example.com")
    view = keycloak.source().read_user(ref, mapping_of("Managers"))
    assert view.users == []
    assert view.deleted_ids == [user_id]
    assert view.deleted_users == []


def test_every_user_reads_the_same_alone_and_in_bulk(keycloak: TestKeycloak) -> None:
    """One read contract: for every user of the realm, the per-user read (a login) gives
    exactly what the bulk read (a full reconcile) gives: mapped groups, effective realm
    roles (composites, groups), client roles (direct and through groups), enabled, verified."""
    mapping = mapping_of(*EVERY_KIND)
    source = keycloak.source()
    bulk = source.read_all(mapping)
    assert bulk.complete is True
    assert bulk.unreadable_groups == {}
    by_name = {u.username: u for u in bulk.users}
    seeded = {"alice", "bob", "carol", "dana", "erin", "frank", "grace", "heidi"}
    assert seeded <= set(by_name)
    assert not any(u.username.startswith("service-account-") for u in bulk.users)
    for user in bulk.users:
        single = source.read_user(UserRef(user_id=user.id), mapping)
        assert single.unreadable_groups == {}
        assert single.users == [user], user.username
    # The seeded cases the contract is about, read in bulk:
    assert by_name["carol"].groups == ["/Eng/Analysts", "/Eng/SRE/Oncall"]
    assert by_name["dana"].client_roles == {"tines": ["admin"]}
    assert by_name["bob"].client_roles == {"tines": ["viewer"]}  # through /Ops/Tier1
    assert by_name["frank"].realm_roles == ["auditor", "operator"]  # composite security-lead
    assert by_name["erin"].realm_roles == ["auditor"]  # through /Auditors
    assert by_name["heidi"].enabled is False
    assert by_name["grace"].email_verified is False


def test_a_composite_client_role_of_another_client_grants_in_bulk_as_alone(
    keycloak: TestKeycloak, keycloak_sandbox: KeycloakSandbox
) -> None:
    admin = keycloak.admin
    client_id = keycloak_sandbox.name("app")
    uuid = admin.create_client({"clientId": client_id, "enabled": True}, skip_exists=False)
    try:
        admin.create_client_role(uuid, {"name": "ops"}, skip_exists=False)
        tines = admin.get_client_id("tines")
        viewer = admin.get_client_role(tines, "viewer")
        admin.add_composite_client_roles_to_role(uuid, "ops", [viewer])
        _, user_id = keycloak_sandbox.create_user("composite")
        admin.assign_client_role(user_id, uuid, [admin.get_client_role(uuid, "ops")])
        mapping = mapping_of("client-role:tines/viewer")
        source = keycloak.source()
        [alone] = source.read_user(UserRef(user_id=user_id), mapping).users
        [bulk] = [u for u in source.read_all(mapping).users if u.id == user_id]
        assert alone.client_roles == {"tines": ["viewer"]}
        assert bulk == alone
    finally:
        admin.delete_client(uuid)


def test_plain_name_matches_same_name_groups_at_every_depth(keycloak: TestKeycloak) -> None:
    mapping = mapping_of("Analysts")
    by_name = {u.username: u for u in keycloak.source().read_all(mapping).users}
    assert by_name["bob"].groups == ["/Analysts"]
    assert by_name["carol"].groups == ["/Eng/Analysts"]
    assert by_name["alice"].groups == []


def test_role_selectors_find_holders_directly_through_groups_and_composites(
    keycloak: TestKeycloak,
) -> None:
    mapping = mapping_of("realm-role:auditor", "client-role:tines/viewer")
    view = keycloak.source().read_all(mapping)
    assert view.unreadable_groups == {}
    auditors = {u.username for u in view.users if "auditor" in u.realm_roles}
    viewers = {u.username for u in view.users if u.client_roles.get("tines") == ["viewer"]}
    assert {"erin", "frank"} <= auditors
    assert "alice" not in auditors
    assert {"bob", "frank"} <= viewers
    assert "dana" not in viewers


def test_subgroups_beyond_one_children_page_are_read(
    keycloak: TestKeycloak, keycloak_sandbox: KeycloakSandbox
) -> None:
    parent = keycloak_sandbox.create_group("/Fleet")
    members = []
    for n in range(12):  # Keycloak's default children page is 10
        path = keycloak_sandbox.create_group(f"/Fleet/Ship{n:02d}")
        username, _ = keycloak_sandbox.create_user(f"crew{n:02d}")
        keycloak.add_to_group(username, path)
        members.append((username, path))
    mapping = mapping_of(parent)
    view = keycloak.source(page_size=5).read_all(mapping)
    by_name = {u.username: u for u in view.users}
    for username, path in members:
        assert by_name[username].groups == [path]


def test_members_beyond_one_page_are_read(
    keycloak: TestKeycloak, keycloak_sandbox: KeycloakSandbox
) -> None:
    group = keycloak_sandbox.create_group("/Crowd")
    names = []
    for n in range(7):
        username, _ = keycloak_sandbox.create_user(f"member{n}")
        keycloak.add_to_group(username, group)
        names.append(username)
    mapping = mapping_of(group)
    source = keycloak.source(page_size=3)
    view = source.read_all(mapping)
    assert {u.username for u in view.users if u.groups == [group]} == set(names)


def test_membership_changes_are_seen_on_the_next_read(
    keycloak: TestKeycloak, keycloak_sandbox: KeycloakSandbox
) -> None:
    username, user_id = keycloak_sandbox.create_user("mover")
    source = keycloak.source()
    mapping = mapping_of("/Ops")
    keycloak.add_to_group(username, "/Ops/Tier1")
    assert source.read_user(UserRef(user_id=user_id), mapping).users[0].groups == ["/Ops/Tier1"]
    keycloak.remove_from_group(username, "/Ops/Tier1")
    keycloak.set_enabled(username, False)
    [user] = source.read_user(UserRef(user_id=user_id), mapping).users
    assert user.groups == []
    assert user.enabled is False


def test_missing_group_is_unreadable_and_the_rest_is_read(keycloak: TestKeycloak) -> None:
    mapping = mapping_of("/Eng/Gone", "NoSuchGroup", "Managers", "realm-role:no-such-role")
    view = keycloak.source().read_all(mapping)
    assert set(view.unreadable_groups) == {"/Eng/Gone", "NoSuchGroup", "realm-role:no-such-role"}
    assert "/Eng/Gone" in view.unreadable_groups["/Eng/Gone"]
    assert {u.username for u in view.users if u.groups == ["/Managers"]} >= {"alice", "heidi"}
    assert view.complete is True


def test_bulk_read_cost_grows_with_groups_not_users(
    keycloak: TestKeycloak, keycloak_sandbox: KeycloakSandbox
) -> None:
    mapping = mapping_of("Managers", "/Eng")
    before = keycloak.source()
    before.read_all(mapping)
    for n in range(15):
        username, _ = keycloak_sandbox.create_user(f"manager{n:02d}")
        keycloak.add_to_group(username, "/Managers")
    after = keycloak.source()
    view = after.read_all(mapping)
    assert len([u for u in view.users if "/Managers" in u.groups]) == 17
    assert after.stats.requests == before.stats.requests


def test_unreachable_keycloak_raises_source_error(keycloak: TestKeycloak) -> None:
    source = keycloak.source(server_url="http://127.0.0.1:9", timeout=2)
    with pytest.raises(SourceError, match="cannot reach Keycloak"):
        source.read_user(UserRef(email="alice@example.com"), mapping_of("Managers"))
    with pytest.raises(SourceError):
        source.read_all(mapping_of("Managers"))


def test_wrong_secret_raises_a_clear_error_without_the_secret(keycloak: TestKeycloak) -> None:
    source = keycloak.source(client_secret="not-the-secret")
    refused = "refused the credentials of client 'jit-bridge'"
    # Refused, not unreachable: a worker stops on it instead of retrying on a timer.
    with pytest.raises(SourceRefusedError, match=refused) as info:
        source.ping()
    assert "not-the-secret" not in str(info.value)


class _FailingProxy(http.server.ThreadingHTTPServer):
    """Forwards to Keycloak, but answers 500 for the members of one group."""

    def __init__(self, upstream: str, fail_pattern: str) -> None:
        super().__init__(("127.0.0.1", 0), _ProxyHandler)
        self.upstream = upstream
        self.fail = re.compile(fail_pattern)


class _ProxyHandler(http.server.BaseHTTPRequestHandler):
    server: _FailingProxy

    def _forward(self) -> None:
        if self.server.fail.search(self.path):
            self.send_response(500)
            self.end_headers()
            return
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else None
        headers = {k: v for k, v in self.headers.items() if k.lower() not in {"host"}}
        upstream = requests.request(
            self.command, self.server.upstream + self.path, headers=headers, data=body, timeout=30
        )
        self.send_response(upstream.status_code)
        self.send_header("Content-Type", upstream.headers.get("Content-Type", "application/json"))
        self.send_header("Content-Length", str(len(upstream.content)))
        self.end_headers()
        self.wfile.write(upstream.content)

    def do_GET(self) -> None:
        self._forward()

    def do_POST(self) -> None:
        self._forward()

    def log_message(self, format: str, *args: object) -> None:
        return


@pytest.fixture
def failing_proxy(keycloak: TestKeycloak) -> Iterator[Callable[[str], str]]:
    """Starts proxies to Keycloak that answer 500 where the path matches a pattern."""
    started: list[_FailingProxy] = []

    def start(fail_pattern: str) -> str:
        proxy = _FailingProxy(keycloak.url, fail_pattern)
        threading.Thread(target=proxy.serve_forever, daemon=True).start()
        started.append(proxy)
        return f"http://127.0.0.1:{proxy.server_address[1]}"

    yield start
    for proxy in started:
        proxy.shutdown()
        proxy.server_close()


def test_failed_members_page_makes_that_selector_unreadable(
    keycloak: TestKeycloak, failing_proxy: Callable[[str], str]
) -> None:
    tier1 = keycloak.group_id("/Ops/Tier1")
    url = failing_proxy(rf"/groups/{tier1}/members")
    view = keycloak.source(server_url=url).read_all(mapping_of("/Ops", "Managers"))
    assert list(view.unreadable_groups) == ["/Ops"]
    assert "HTTP 500" in view.unreadable_groups["/Ops"]
    assert {u.username for u in view.users if u.groups == ["/Managers"]} >= {"alice", "heidi"}
    assert not any(u.groups for u in view.users if u.username in {"bob", "frank"})


def test_failed_user_listing_fails_the_whole_bulk_read(
    keycloak: TestKeycloak, failing_proxy: Callable[[str], str]
) -> None:
    url = failing_proxy(r"/admin/realms/jit-bridge/users\?.*first=0")
    with pytest.raises(SourceError, match="HTTP 500"):
        keycloak.source(server_url=url).read_all(mapping_of("Managers"))

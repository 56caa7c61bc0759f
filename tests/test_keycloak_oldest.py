"""The bridge against the oldest supported Keycloak release, not only the newest.

The same tests as for the newest release, re-collected here with `keycloak` pointing at the
oldest pinned release (deploy/keycloak/keycloak.py `OLDEST`, started once per session with the
listener jar, like the newest): the Keycloak source's per-user and bulk reads (group paths,
children paging, members paging, realm and client roles, composites, deleted users) and the
running service's listener and event-store poller paths. Between the oldest and the newest,
Keycloak changed the event-store query (epoch-millisecond `dateFrom` and `direction` arrived
in 26.2), the health endpoint's port (25) and the events' carried realm name (26); the rows
of tests/test_keycloak_versions.py cover the listener on every line in between.
"""

from __future__ import annotations

import inspect

import pytest

from tests import test_keycloak_source as source
from tests import test_service_e2e as service
from tests.fixtures.keycloak import TestKeycloak, load_harness


@pytest.fixture(scope="session")
def keycloak(keycloak_oldest: TestKeycloak) -> TestKeycloak:
    """Every test in this module runs against the oldest supported release."""
    return keycloak_oldest


def test_the_oldest_supported_release_is_the_one_running(keycloak: TestKeycloak) -> None:
    assert keycloak.version == load_harness().OLDEST.version


# The Keycloak source's reads: every test of tests/test_keycloak_source.py that talks to the
# real Keycloak (those behind a failing proxy test the bridge's own error handling only).
for _name, _test in vars(source).items():
    if _name.startswith("test_") and "failing_proxy" not in inspect.signature(_test).parameters:
        globals()[_name] = _test

# The running service: listener path (login, admin group change) and event-store poller path.
test_jit_login_creates_user_with_team_and_role_once = (
    service.test_jit_login_creates_user_with_team_and_role_once
)
test_enhanced_group_removal_syncs_without_login_and_login_resyncs = (
    service.test_enhanced_group_removal_syncs_without_login_and_login_resyncs
)
test_poller_alone_syncs_logins_and_group_removals = (
    service.test_poller_alone_syncs_logins_and_group_removals
)

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


# The Keycloak source's reads.
test_read_user_by_id_gives_full_group_paths_roles_and_profile = (
    source.test_read_user_by_id_gives_full_group_paths_roles_and_profile
)
test_read_user_by_email_gives_effective_roles = source.test_read_user_by_email_gives_effective_roles
test_client_roles_are_read_only_for_mapped_clients = (
    source.test_client_roles_are_read_only_for_mapped_clients
)
test_unverified_and_disabled_users_are_reported_as_such = (
    source.test_unverified_and_disabled_users_are_reported_as_such
)
test_deleted_user_comes_back_in_deleted_users = source.test_deleted_user_comes_back_in_deleted_users
test_bulk_read_agrees_with_per_user_reads_for_mapped_groups = (
    source.test_bulk_read_agrees_with_per_user_reads_for_mapped_groups
)
test_plain_name_matches_same_name_groups_at_every_depth = (
    source.test_plain_name_matches_same_name_groups_at_every_depth
)
test_role_selectors_find_holders_directly_through_groups_and_composites = (
    source.test_role_selectors_find_holders_directly_through_groups_and_composites
)
test_subgroups_beyond_one_children_page_are_read = (
    source.test_subgroups_beyond_one_children_page_are_read
)
test_members_beyond_one_page_are_read = source.test_members_beyond_one_page_are_read
test_membership_changes_are_seen_on_the_next_read = (
    source.test_membership_changes_are_seen_on_the_next_read
)
test_missing_group_is_unreadable_and_the_rest_is_read = (
    source.test_missing_group_is_unreadable_and_the_rest_is_read
)

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

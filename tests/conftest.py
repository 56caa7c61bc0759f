"""Shared fixtures, and the layers the tests run in.

Each real part (Keycloak, the Tines fake, scim2-server, PostgreSQL) has its own plugin module
under tests/fixtures/, started once per session.

Layers: a test that needs a real service carries its marker (`keycloak`, `postgres`, `scim`,
`bridge_process`), put on here from the fixtures it uses, so a new test cannot forget it; a
module whose tests reach a service without such a fixture says so with `pytestmark`.
`make test-unit` runs every test without those markers, and refuses (the test errors, naming
the marker it lacks) to start any of the services for a test that is not marked.
"""

from __future__ import annotations

import os

import pytest

pytest_plugins = [
    "tests.fixtures.tines_fake",
    "tests.fixtures.keycloak",
    "tests.fixtures.scim",
    "tests.fixtures.postgres",
    "tests.fixtures.bridge",
    "tests.fixtures.faulty_proxy",
    "tests.fixtures.organizations",
    "tests.fixtures.phasetwo",
]

#: Fixture → the marker of the service it starts.
SERVICE_FIXTURES = {
    "keycloak": "keycloak",
    "phasetwo_keycloak": "keycloak",
    "keycloak_oldest": "keycloak",
    "tls_keycloak": "keycloak",
    "postgres": "postgres",
    "scim_server_process": "scim",
    "bridge_service": "bridge_process",
}
SERVICE_MARKERS = frozenset(SERVICE_FIXTURES.values())
#: Set by `make test-unit`: no service may start.
NO_SERVICES_ENV = "JIT_BRIDGE_TEST_NO_SERVICES"


def service_markers(item: pytest.Item) -> set[str]:
    """The services a test needs, from the fixtures it uses (directly or through others)."""
    names = set(getattr(item, "fixturenames", ()))
    needed = {marker for fixture, marker in SERVICE_FIXTURES.items() if fixture in names}
    callspec = getattr(item, "callspec", None)
    # The store tests pick their database by parameter, and get PostgreSQL on demand.
    database = callspec.params.get("store_url") if callspec is not None else None
    if isinstance(database, str) and database.startswith("postgres"):
        needed.add("postgres")
    return needed


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        for marker in sorted(service_markers(item)):
            item.add_marker(marker)


@pytest.hookimpl(tryfirst=True)
def pytest_fixture_setup(
    fixturedef: pytest.FixtureDef[object], request: pytest.FixtureRequest
) -> None:
    marker = SERVICE_FIXTURES.get(fixturedef.argname)
    if marker is None or not os.environ.get(NO_SERVICES_ENV):
        return
    raise pytest.UsageError(
        f"{request.node.nodeid} starts {fixturedef.argname} in a run without services "
        f"({NO_SERVICES_ENV} is set): mark it with pytest.mark.{marker}"
    )

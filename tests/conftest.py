"""Shared fixtures. Each real part (Keycloak, the Tines fake, scim2-server, PostgreSQL) has
its own plugin module under tests/fixtures/, started once per session."""

pytest_plugins = [
    "tests.fixtures.tines_fake",
    "tests.fixtures.keycloak",
    "tests.fixtures.scim",
    "tests.fixtures.postgres",
    "tests.fixtures.bridge",
    "tests.fixtures.faulty_proxy",
]

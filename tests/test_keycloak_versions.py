"""Every supported Keycloak release line runs the listener jar and delivers signed events.

One pinned release per line (deploy/keycloak/keycloak.py `SUPPORTED`), started one at a time
from the harness's cache with the jar built by deploy/keycloak-provider/build.sh, as an
operator would install it (tests/fixtures/keycloak.py `started_keycloak`). Each row: a password
login and an admin group-membership change must reach a recording endpoint, signed with the
listener secret, with the realm's name and the user's id, and Keycloak's log must show no API
gap. The options are given in both spellings on purpose (`url` with the double dash of
Keycloak 26.3+, `secret` with the older single dash), so every row proves the listener reads
either spelling on that release.

The README's and docs/keycloak-listener.md's version tables are checked against `SUPPORTED`,
and the listener's pom against the oldest release, so none of them can drift.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from bridge.intake.poller import KeycloakAdminEventReader
from bridge.intake.signatures import verify_jit_bridge_signature
from tests.fixtures.keycloak import (
    REPO,
    KeycloakSandbox,
    TestKeycloak,
    load_harness,
    started_keycloak,
)

HARNESS = load_harness()


@dataclass
class Delivery:
    signature: str | None
    body: bytes

    @property
    def event(self) -> dict[str, Any]:
        parsed: dict[str, Any] = json.loads(self.body)
        return parsed


class Recorder:
    """A webhook endpoint on `port` that answers 202 and keeps every request."""

    def __init__(self, port: int) -> None:
        self.deliveries: list[Delivery] = []
        self._changed = threading.Condition()
        recorder = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                signature = self.headers.get("X-JIT-Bridge-Signature")
                delivery = Delivery(signature, self.rfile.read(length))
                self.send_response(202)
                self.send_header("Content-Length", "0")
                self.end_headers()
                with recorder._changed:
                    recorder.deliveries.append(delivery)
                    recorder._changed.notify_all()

            def log_message(self, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def wait_for(self, kind: str, type_: str, user_id: str, timeout: float = 60.0) -> Delivery:
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                for delivery in self.deliveries:
                    event = delivery.event
                    if (event.get("kind"), event.get("type"), event.get("user_id")) == (
                        kind,
                        type_,
                        user_id,
                    ):
                        return delivery
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    seen = [(d.event.get("type"), d.event.get("user_id")) for d in self.deliveries]
                    raise AssertionError(
                        f"no {kind} {type_} event of {user_id} arrived; got {seen}"
                    )
                self._changed.wait(remaining)

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


@contextlib.contextmanager
def keycloak_of(release: Any, request: pytest.FixtureRequest) -> Iterator[TestKeycloak]:
    """The release running with the listener jar. The newest and the oldest are the test
    session's own Keycloaks (started once anyway); the others start here, one at a time."""
    if release == HARNESS.NEWEST and not os.environ.get("JIT_BRIDGE_TEST_KEYCLOAK_URL"):
        yield request.getfixturevalue("keycloak")
    elif release == HARNESS.OLDEST:
        yield request.getfixturevalue("keycloak_oldest")
    else:
        with started_keycloak(release.version) as started:
            yield started


@pytest.mark.keycloak_matrix
@pytest.mark.keycloak
@pytest.mark.slow
@pytest.mark.parametrize("release", HARNESS.SUPPORTED, ids=lambda r: f"keycloak-{r.version}")
def test_listener_delivers_signed_login_and_membership_events(
    release: Any, request: pytest.FixtureRequest
) -> None:
    with keycloak_of(release, request) as keycloak:
        assert keycloak.version == release.version
        assert keycloak.listener_port is not None
        assert keycloak.listener_secret is not None
        recorder = Recorder(keycloak.listener_port)
        sandbox = KeycloakSandbox(keycloak)
        try:
            group = sandbox.create_group("/Matrix")
            username, user_id = sandbox.create_user("matrix", password="matrix-pw")
            since_ms = int(time.time() * 1000) - 1000
            keycloak.login(username, "matrix-pw")
            keycloak.add_to_group(username, group)
            login = recorder.wait_for("user", "LOGIN", user_id)
            membership = recorder.wait_for("admin", "GROUP_MEMBERSHIP", user_id)
            # The poller's reader finds the same two events in Keycloak's event store.
            reader = KeycloakAdminEventReader(keycloak.admin)
            stored_logins = [
                e
                for e in reader.user_events(since_ms, 0, 100)
                if e.get("type") == "LOGIN" and e.get("userId") == user_id
            ]
            stored_changes = [
                e
                for e in reader.admin_events(since_ms, 0, 100)
                if str(e.get("resourcePath", "")).startswith(f"users/{user_id}/groups/")
            ]
        finally:
            sandbox.cleanup()
            recorder.close()
        log = keycloak.server.log_tail(1_000_000)

    for delivery in (login, membership):
        verify_jit_bridge_signature(
            delivery.signature, delivery.body, keycloak.listener_secret, now=time.time()
        )
        assert delivery.event["realm"] == keycloak.realm
        assert isinstance(delivery.event["id"], str)
        assert delivery.event["id"]  # the bridge refuses events without an id
    assert membership.event["operation"] == "CREATE"
    assert membership.event["resource_path"].startswith(f"users/{user_id}/groups/")
    assert len(stored_logins) == 1
    assert len(stored_changes) == 1
    documented = _table(REPO / "docs" / "keycloak-listener.md")[release.version]
    assert documented["event-store dateFrom"] == ("day" if reader.reads_by_day else "epoch ms")
    assert f"Keycloak {release.version} " in log
    # url came in the double-dash spelling, secret in the single-dash one, max-attempts as
    # KC_SPI_EVENTS_LISTENER__JIT_BRIDGE__MAX_ATTEMPTS (tests/fixtures/keycloak.py).
    assert "jit-bridge event listener configured" in log
    assert "max-attempts=6," in log
    for gap in ("LinkageError", "NoSuchMethodError", "could not forward", "is disabled"):
        assert gap not in log


# --------------------------------------------------------------------------------------
# The documented tables and the pom stay in step with the pinned releases.


def _table(path: Path) -> dict[str, dict[str, str]]:
    """The table under the 'Supported Keycloak versions' heading: release → column → cell."""
    text = path.read_text()
    match = re.search(r"^#+ Supported Keycloak versions\n(.*?)(?=^#)", text, re.M | re.S)
    assert match, f"{path.name} has no 'Supported Keycloak versions' section"
    rows = [line for line in match.group(1).splitlines() if line.startswith("|")]
    cells = [[c.strip().strip("`") for c in row.strip().strip("|").split("|")] for row in rows]
    header, body = cells[0], cells[2:]  # then the separator row
    return {row[1]: dict(zip(header, row, strict=True)) for row in body}


@pytest.mark.parametrize("doc", ["README.md", "docs/keycloak-listener.md"])
def test_documented_version_table_matches_the_pinned_releases(doc: str) -> None:
    table = _table(REPO / doc)
    assert list(table) == [r.version for r in HARNESS.SUPPORTED]
    for rel in HARNESS.SUPPORTED:
        assert table[rel.version]["line"] == rel.line
        assert table[rel.version]["Java in CI"] == str(rel.java)


def test_both_documents_show_the_same_table() -> None:
    assert _table(REPO / "README.md") == _table(REPO / "docs" / "keycloak-listener.md")


def test_listener_compiles_against_the_oldest_supported_release() -> None:
    pom = (REPO / "deploy" / "keycloak-provider" / "pom.xml").read_text()
    match = re.search(r"<keycloak.version>([^<]+)</keycloak.version>", pom)
    assert match
    assert match.group(1) == HARNESS.OLDEST.version

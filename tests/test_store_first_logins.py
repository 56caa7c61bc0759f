"""First logins begun and not finished, on SQLite and PostgreSQL."""

from __future__ import annotations

from bridge.store import Store

pytest_plugins = ["tests.fixtures.store_db"]


def test_a_begun_first_login_is_unfinished_until_finished(store: Store) -> None:
    store.begin_first_logins(["Amy@Example.com", "bob@example.com"])
    store.begin_first_logins(["amy@example.com"])  # again: still one mark

    assert store.unfinished_first_logins(["AMY@example.com", "cy@example.com"]) == {
        "amy@example.com"
    }
    store.finish_first_logins(["amy@example.com", "never-begun@example.com"])
    assert store.unfinished_first_logins(["amy@example.com", "bob@example.com"]) == {
        "bob@example.com"
    }
    assert store.unfinished_first_logins([]) == set()

"""Keycloak id ↔ account pairs, on SQLite and PostgreSQL: a full reconcile saves thousands at
once; an account keeps one pair; only changes are written."""

from __future__ import annotations

from bridge.model import AccountPair
from bridge.store import Store

pytest_plugins = ["tests.fixtures.store_db"]


def pair(user: str, account: str, email: str | None = None) -> AccountPair:
    return AccountPair(user_id=user, account_id=account, email=email or f"{user}@example.com")


def test_many_pairs_are_saved_at_once_and_saving_them_again_changes_nothing(
    store: Store,
) -> None:
    found = [pair(f"kc-{n:04d}", f"acct-{n}", f"User{n}@Example.com") for n in range(1200)]

    assert store.save_pairs("tines", found) == 1200
    assert store.save_pairs("tines", found) == 0

    stored = {p.user_id: p for p in store.all_pairs("tines")}
    assert len(stored) == 1200
    assert stored["kc-0007"] == pair("kc-0007", "acct-7", "user7@example.com")
    assert store.all_pairs("scim") == []


def test_an_account_paired_with_another_user_leaves_its_old_pair(store: Store) -> None:
    store.save_pairs("tines", [pair("kc-a", "1"), pair("kc-b", "2"), pair("kc-c", "3")])

    # kc-d takes account 1; kc-b's email changes; kc-c is as before
    changed = store.save_pairs(
        "tines", [pair("kc-d", "1"), pair("kc-b", "2", "bee@example.com"), pair("kc-c", "3")]
    )

    assert changed == 2
    assert sorted(store.all_pairs("tines"), key=lambda p: p.user_id) == [
        pair("kc-b", "2", "bee@example.com"),
        pair("kc-c", "3"),
        pair("kc-d", "1"),
    ]


def test_one_account_named_twice_in_one_save_ends_with_the_last_user(store: Store) -> None:
    store.save_pairs("tines", [pair("kc-a", "0")])

    store.save_pairs("tines", [pair("kc-a", "1"), pair("kc-b", "1")])

    assert store.all_pairs("tines") == [pair("kc-b", "1")]


def test_changed_pairs_agree_whether_looked_up_by_id_or_read_whole(store: Store) -> None:
    """A full reconcile asks which of its 100,000 pairs are new or different: the store then
    reads its pairs whole (streamed) instead of by id. Both ways give the same answer, and
    saving exactly that answer leaves nothing changed. 12,000 pairs also take the upsert
    through several chunks."""
    stored = [pair(f"kc-{n:05d}", f"acct-{n}") for n in range(12_000)]
    assert store.save_pairs("tines", stored) == 12_000
    assert len(store.all_pairs("tines")) == 12_000
    store.save_pairs("scim", [pair("kc-00001", "other-target")])

    renamed = pair("kc-00005", "acct-5", "Renamed@Example.com")
    moved = pair("kc-00006", "acct-new")
    new = [pair(f"new-{n}", f"acct-new-{n}") for n in range(3)]
    found = [
        *stored[10:5_000],  # as stored
        renamed,
        moved,
        pair("kc-00007", "acct-7", "KC-00007@Example.com"),  # as stored, in another case
        *new,
        *stored[8_000:],
    ]
    expected = [renamed, moved, *new]

    whole = store.changed_pairs("tines", found)
    by_id = [
        p
        for start in range(0, len(found), 1_000)
        for p in store.changed_pairs("tines", found[start : start + 1_000])
    ]
    assert whole == by_id == expected
    assert store.save_pairs("tines", whole) == len(expected)
    assert store.changed_pairs("tines", found) == []

"""KnownEmails: which emails the tenant has, trusted to say "absent" only while fresh."""

from __future__ import annotations

from bridge.targets.tines_users import KnownEmails


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_nothing_is_absent_before_a_complete_listing() -> None:
    known = KnownEmails(clock=Clock())
    known.add("someone@example.com")
    assert not known.absent("new@example.com")


def test_a_listing_says_who_is_absent_case_insensitively_until_it_is_too_old() -> None:
    clock = Clock()
    known = KnownEmails(max_age=60, clock=clock)
    known.replace(["Alice@Example.com"], known.begin_listing())
    assert not known.absent("alice@example.COM")
    assert known.absent("bob@example.com")
    clock.now += 61
    assert not known.absent("bob@example.com")


def test_users_learnt_while_a_listing_ran_are_kept() -> None:
    clock = Clock()
    known = KnownEmails(clock=clock)
    started = known.begin_listing()
    clock.now += 1
    known.add("created-during@example.com")  # after its page was read: not in the listing
    clock.now += 1
    known.replace(["alice@example.com"], started)
    assert not known.absent("created-during@example.com")
    assert not known.absent("alice@example.com")


def test_an_older_addition_gives_way_to_a_newer_listing() -> None:
    clock = Clock()
    known = KnownEmails(clock=clock)
    known.add("deleted-since@example.com")
    clock.now += 1
    known.replace(["alice@example.com"], known.begin_listing())
    assert known.absent("deleted-since@example.com")


def test_a_listing_counts_from_when_it_began() -> None:
    clock = Clock()
    known = KnownEmails(max_age=60, clock=clock)
    started = known.begin_listing()
    clock.now += 50  # a long listing
    known.replace([], started)
    clock.now += 11
    assert not known.absent("new@example.com")


def test_discard_and_forget() -> None:
    known = KnownEmails(clock=Clock())
    known.replace(["alice@example.com", "bob@example.com"], known.begin_listing())
    known.discard("ALICE@example.com")
    assert known.absent("alice@example.com")
    assert len(known) == 1
    known.forget()
    assert not known.absent("alice@example.com")

"""The audit log: what was done to whom, why, because of what, and how it ended."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from bridge.store import AuditRecord, Store

pytest_plugins = ["tests.fixtures.store_db"]

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def record(email: str, minutes: int, **fields: object) -> AuditRecord:
    values: dict[str, object] = {
        "time": T0 + timedelta(minutes=minutes),
        "trigger": "evt-1",
        "email": email,
        "op": "add_membership",
        "team": "Analytics",
        "outcome": "applied",
    }
    return AuditRecord.model_validate(values | fields)


def test_a_record_comes_back_as_written(store: Store) -> None:
    written = AuditRecord(
        time=T0,
        run_id="01J0000000ABCDEFGHJKMNPQRS",
        trigger="evt-7,evt-8",
        email="alice@example.com",
        op="change_role",
        team="Incident Response",
        case_group="Tier 1",
        before={"role": "VIEWER"},
        after={"role": "EDITOR"},
        because=["group /Ops/Tier1 → mapping 4", "group /Managers → mapping 2"],
        outcome="failed",
        error="Tines answered 422 for team 3: role not allowed",
    )

    store.record_audit(written)

    assert store.audit() == [written]


def test_emails_are_stored_in_lower_case_and_found_in_any_case(store: Store) -> None:
    store.record_audit(record("Bob@Example.com", 0), record("carol@example.com", 1))

    (found,) = store.audit(email="BOB@example.COM")
    assert found.email == "bob@example.com"


def test_since_and_limit_give_the_newest_records_oldest_first(store: Store) -> None:
    store.record_audit(*(record(f"u{n}@example.com", n) for n in range(10)))

    since = [r.email for r in store.audit(since=T0 + timedelta(minutes=7))]
    assert since == ["u7@example.com", "u8@example.com", "u9@example.com"]
    assert [r.email for r in store.audit(limit=2)] == ["u8@example.com", "u9@example.com"]
    seconds = (T0 + timedelta(minutes=8)).timestamp()
    assert [r.email for r in store.audit(since=seconds)] == ["u8@example.com", "u9@example.com"]


def test_filters_combine(store: Store) -> None:
    store.record_audit(
        record("dana@example.com", 0, run_id="run-a"),
        record("dana@example.com", 5, run_id="run-b", outcome="held", op="remove_membership"),
        record("erin@example.com", 6, run_id="run-b"),
    )

    (held,) = store.audit(email="dana@example.com", since=T0 + timedelta(minutes=1))
    assert (held.run_id, held.op, held.outcome) == ("run-b", "remove_membership", "held")
    assert [r.email for r in store.audit(run_id="run-b")] == [
        "dana@example.com",
        "erin@example.com",
    ]


def test_records_survive_reopening_the_store(store: Store) -> None:
    store.record_audit(record("frank@example.com", 0, outcome="dry_run"))
    reopened = Store.open(store.engine.url.render_as_string(hide_password=False))
    try:
        assert [(r.email, r.outcome) for r in reopened.audit()] == [
            ("frank@example.com", "dry_run")
        ]
    finally:
        reopened.close()


def test_a_record_without_a_time_is_stamped_now_and_serialises_to_json(store: Store) -> None:
    before = datetime.now(UTC)
    store.record_audit(
        AuditRecord(trigger="run-1", email="hal@example.com", op="create_user", outcome="applied")
    )

    (stored,) = store.audit()
    assert before <= stored.time <= datetime.now(UTC)
    as_json = stored.to_json()
    assert as_json["time"] == stored.time.isoformat().replace("+00:00", "Z")
    assert (as_json["email"], as_json["because"], as_json["team"]) == ("hal@example.com", [], None)


def test_an_unknown_outcome_is_refused_before_it_reaches_the_log() -> None:
    with pytest.raises(ValueError, match="outcome"):
        record("gina@example.com", 0, outcome="done")


def test_a_write_is_recorded_before_it_is_sent_and_shown_once_with_its_outcome(
    store: Store,
) -> None:
    run_id = store.start_run("user", "login", requested_by="queue:login")
    sent = store.record_audit_intent(record("alice@example.com", 0, run_id=run_id))
    unanswered = store.record_audit_intent(record("bob@example.com", 1, run_id=run_id))

    # In flight: shown as unknown, and not yet settled by a read (its run is running).
    assert [r.outcome for r in store.audit()] == ["unknown", "unknown"]
    assert store.unsettled_writes(None) == []

    store.settle_audit(sent, record("alice@example.com", 2, run_id=run_id, outcome="applied"))
    store.finish_run(run_id, "interrupted", {})

    assert [(r.email, r.outcome) for r in store.audit()] == [
        ("bob@example.com", "unknown"),
        ("alice@example.com", "applied"),
    ]
    assert [(i, r.email) for i, r in store.unsettled_writes(["BOB@example.com"])] == [
        (unanswered, "bob@example.com")
    ]
    assert store.unsettled_writes(["alice@example.com"]) == []
    store.settle_audit(unanswered, record("bob@example.com", 3, run_id=run_id))
    assert store.unsettled_writes(None) == []
    assert [r.outcome for r in store.audit(email="bob@example.com")] == ["applied"]

"""The store's schema as SQLAlchemy Core tables. Migrations create it; code reads it from here.

Times are epoch seconds (double precision) from the store's clock, so one clock drives every
comparison and tests can move time without sleeping. JSON columns hold small lists and dicts.
"""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    Boolean,
    Column,
    Double,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
)

metadata = MetaData()

# One row per key with outstanding work. The `pending_*` columns hold work waiting to be
# claimed (`pending` true); the `work_*` columns hold what the current claim is working on.
# A key claimed while new work arrives has both, so the new trigger runs after this attempt.
work_queue = Table(
    "work_queue",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("key", String(320), nullable=False, unique=True),
    Column("pending", Boolean, nullable=False),
    Column("trigger", String(16)),
    Column("event_ids", JSON, nullable=False),
    Column("source", String(64)),
    Column("email_hint", String(320)),
    Column("enqueued_at", Double),
    Column("not_before", Double),
    Column("attempts", Integer, nullable=False),
    Column("last_error", Text),
    Column("claimed_by", String(200)),
    Column("claim_token", String(32)),
    Column("lease_until", Double),
    Column("work_trigger", String(16)),
    Column("work_event_ids", JSON),
    Column("work_source", String(64)),
    Column("work_email_hint", String(320)),
    Column("work_enqueued_at", Double),
    Index("ix_work_queue_ready", "pending", "not_before"),
    Index("ix_work_queue_lease", "lease_until"),
    Index("ix_work_queue_order", "enqueued_at", "id"),
)

# Event ids already queued, so a redelivered or re-polled event queues nothing.
seen_events = Table(
    "seen_events",
    metadata,
    Column("event_id", String(200), primary_key=True),
    Column("seen_at", Double, nullable=False),
    Index("ix_seen_events_seen_at", "seen_at"),
)

# Where each event-store poller left off (docs/design.md, Triggers).
cursors = Table(
    "cursors",
    metadata,
    Column("name", String(100), primary_key=True),
    Column("value", JSON, nullable=False),
    Column("updated_at", Double, nullable=False),
)

# First logins begun and not yet finished: recorded before the user is created in the target
# and cleared once everything their first login grants is in place. A first login cut short
# (a crash, an outage between the create and the memberships) is finished at the next attempt,
# even in jit mode, where an existing user is otherwise never touched.
first_logins = Table(
    "first_logins",
    metadata,
    Column("email", String(320), primary_key=True),
    Column("started_at", Double, nullable=False),
)

# Keycloak user id → last known email, so a user deleted in Keycloak is still found in the target.
known_users = Table(
    "known_users",
    metadata,
    Column("user_id", String(100), primary_key=True),
    Column("email", String(320), nullable=False),
    Column("updated_at", Double, nullable=False),
)

# Keycloak user id ↔ target account (id and email): the Keycloak id is a user's identity, so
# an email change or a deletion reaches the account the bridge created or first met for them.
identity_pairs = Table(
    "identity_pairs",
    metadata,
    Column("target", String(40), primary_key=True),
    Column("user_id", String(100), primary_key=True),
    Column("account_id", String(200), nullable=False),
    Column("email", String(320), nullable=False),
    Column("updated_at", Double, nullable=False),
    Index("ix_identity_pairs_account", "target", "account_id"),
)

# Append-only: the code never updates or deletes a row.
audit_log = Table(
    "audit_log",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("at", Double, nullable=False),
    Column("run_id", String(32)),
    Column("trigger", Text, nullable=False),
    Column("email", String(320), nullable=False),
    Column("op", String(40), nullable=False),
    Column("team", String(300)),
    Column("case_group", String(300)),
    Column("before", JSON),
    Column("after", JSON),
    Column("because", JSON, nullable=False),
    Column("outcome", String(16), nullable=False),
    Column("error", Text),
    # Set on the record of a write's outcome: the record made before it was sent.
    Column("intent_id", Integer),
    Index("ix_audit_log_at", "at"),
    Index("ix_audit_log_email_at", "email", "at"),
    Index("ix_audit_log_intent_id", "intent_id"),
    # Finds the few writes whose outcome is `unknown` without reading the whole log.
    Index("ix_audit_log_outcome", "outcome"),
    sqlite_autoincrement=True,
)

runs = Table(
    "runs",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("kind", String(40), nullable=False),
    Column("trigger", String(200), nullable=False),
    Column("requested_by", String(200), nullable=False),
    Column("status", String(16), nullable=False),
    Column("started_at", Double, nullable=False),
    Column("finished_at", Double),
    Column("summary", JSON, nullable=False),
    Column("held_operations", JSON),
    Column("hold_reason", Text),
    Column("approved_by", String(200)),
    Column("approved_at", Double),
    # The process that started the run (`host:pid`, `cli@host:pid` for the CLI).
    Column("holder", String(200)),
    Index("ix_runs_status", "status"),
)

# When a user's own reconcile last began (its reads come after): a full reconcile whose bulk
# read is older leaves that user to the newer run.
user_reads = Table(
    "user_reads",
    metadata,
    Column("key", String(320), primary_key=True),
    Column("read_at", Double, nullable=False),
)

mapping_versions = Table(
    "mapping_versions",
    metadata,
    Column("version", Integer, primary_key=True, autoincrement=True),
    Column("text", Text, nullable=False),
    Column("source", String(200), nullable=False),
    Column("sha256", String(64), nullable=False),
    Column("saved_at", Double, nullable=False),
    sqlite_autoincrement=True,
)

# Named leases: at most one live holder each (the scheduler, the event poller).
leases = Table(
    "leases",
    metadata,
    Column("name", String(100), primary_key=True),
    Column("holder", String(200), nullable=False),
    Column("expires_at", Double, nullable=False),
)

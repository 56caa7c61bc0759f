"""The first schema: work queue, seen events, cursors, known users, audit log, runs,
mapping versions, leases.

Revision ID: 0001
Revises:
Create Date: 2026-11-28
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "work_queue",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("key", sa.String(320), nullable=False, unique=True),
        sa.Column("pending", sa.Boolean, nullable=False),
        sa.Column("trigger", sa.String(16)),
        sa.Column("event_ids", sa.JSON, nullable=False),
        sa.Column("source", sa.String(64)),
        sa.Column("email_hint", sa.String(320)),
        sa.Column("enqueued_at", sa.Double),
        sa.Column("not_before", sa.Double),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("last_error", sa.Text),
        sa.Column("claimed_by", sa.String(200)),
        sa.Column("claim_token", sa.String(32)),
        sa.Column("lease_until", sa.Double),
        sa.Column("work_trigger", sa.String(16)),
        sa.Column("work_event_ids", sa.JSON),
        sa.Column("work_source", sa.String(64)),
        sa.Column("work_email_hint", sa.String(320)),
        sa.Column("work_enqueued_at", sa.Double),
    )
    op.create_index("ix_work_queue_ready", "work_queue", ["pending", "not_before"])
    op.create_index("ix_work_queue_lease", "work_queue", ["lease_until"])
    op.create_index("ix_work_queue_order", "work_queue", ["enqueued_at", "id"])

    op.create_table(
        "seen_events",
        sa.Column("event_id", sa.String(200), primary_key=True),
        sa.Column("seen_at", sa.Double, nullable=False),
    )
    op.create_index("ix_seen_events_seen_at", "seen_events", ["seen_at"])

    op.create_table(
        "cursors",
        sa.Column("name", sa.String(100), primary_key=True),
        sa.Column("value", sa.JSON, nullable=False),
        sa.Column("updated_at", sa.Double, nullable=False),
    )

    op.create_table(
        "known_users",
        sa.Column("user_id", sa.String(100), primary_key=True),
        sa.Column("email", sa.String(320), nullable=False),
        sa.Column("updated_at", sa.Double, nullable=False),
    )

    op.create_table(
        "audit_log",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("at", sa.Double, nullable=False),
        sa.Column("run_id", sa.String(32)),
        sa.Column("trigger", sa.Text, nullable=False),
        sa.Column("email", sa.String(320), nullable=False),
        sa.Column("op", sa.String(40), nullable=False),
        sa.Column("team", sa.String(300)),
        sa.Column("case_group", sa.String(300)),
        sa.Column("before", sa.JSON),
        sa.Column("after", sa.JSON),
        sa.Column("because", sa.JSON, nullable=False),
        sa.Column("outcome", sa.String(16), nullable=False),
        sa.Column("error", sa.Text),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_audit_log_at", "audit_log", ["at"])
    op.create_index("ix_audit_log_email_at", "audit_log", ["email", "at"])

    op.create_table(
        "runs",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("kind", sa.String(40), nullable=False),
        sa.Column("trigger", sa.String(200), nullable=False),
        sa.Column("requested_by", sa.String(200), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("started_at", sa.Double, nullable=False),
        sa.Column("finished_at", sa.Double),
        sa.Column("summary", sa.JSON, nullable=False),
        sa.Column("held_operations", sa.JSON),
        sa.Column("hold_reason", sa.Text),
        sa.Column("approved_by", sa.String(200)),
        sa.Column("approved_at", sa.Double),
    )
    op.create_index("ix_runs_status", "runs", ["status"])

    op.create_table(
        "mapping_versions",
        sa.Column("version", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("text", sa.Text, nullable=False),
        sa.Column("source", sa.String(200), nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("saved_at", sa.Double, nullable=False),
        sqlite_autoincrement=True,
    )

    op.create_table(
        "leases",
        sa.Column("name", sa.String(100), primary_key=True),
        sa.Column("holder", sa.String(200), nullable=False),
        sa.Column("expires_at", sa.Double, nullable=False),
    )


def downgrade() -> None:
    for table in (
        "leases",
        "mapping_versions",
        "runs",
        "audit_log",
        "known_users",
        "cursors",
        "seen_events",
        "work_queue",
    ):
        op.drop_table(table)

"""Who runs each run, write-ahead audit, and when each user was last read.

- `runs.holder`: the process that started a run, so a run left `running` by a killed process
  is marked `interrupted` (bridge.store.runs.interrupt_abandoned).
- `audit_log.intent_id`: a write is recorded before it is sent (outcome `unknown`) and again,
  pointing at that record, with its outcome (bridge.store.audit).
- `user_reads`: when a user's own reconcile last read them, so a full reconcile leaves a user
  to a newer run (bridge.store.queue.claim_user).

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("runs", sa.Column("holder", sa.String(200)))
    op.add_column("audit_log", sa.Column("intent_id", sa.Integer))
    op.create_index("ix_audit_log_intent_id", "audit_log", ["intent_id"])
    op.create_index("ix_audit_log_outcome", "audit_log", ["outcome"])
    op.create_table(
        "user_reads",
        sa.Column("key", sa.String(320), primary_key=True),
        sa.Column("read_at", sa.Double, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("user_reads")
    op.drop_index("ix_audit_log_outcome", "audit_log")
    op.drop_index("ix_audit_log_intent_id", "audit_log")
    with op.batch_alter_table("audit_log") as batch:
        batch.drop_column("intent_id")
    with op.batch_alter_table("runs") as batch:
        batch.drop_column("holder")

"""First logins begun and not yet finished (bridge.store.first_logins).

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-29
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "first_logins",
        sa.Column("email", sa.String(320), primary_key=True),
        sa.Column("started_at", sa.Double, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("first_logins")

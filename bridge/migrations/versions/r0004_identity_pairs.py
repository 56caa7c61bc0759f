"""Keycloak user id ↔ target account pairs (bridge.store.pairs).

Existing installations start with no pairs: their first full reconcile pairs every account
whose email a Keycloak user has, and from then on the Keycloak id is the identity.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "identity_pairs",
        sa.Column("target", sa.String(40), primary_key=True),
        sa.Column("user_id", sa.String(100), primary_key=True),
        sa.Column("account_id", sa.String(200), nullable=False),
        sa.Column("email", sa.String(320), nullable=False),
        sa.Column("updated_at", sa.Double, nullable=False),
    )
    op.create_index("ix_identity_pairs_account", "identity_pairs", ["target", "account_id"])


def downgrade() -> None:
    op.drop_index("ix_identity_pairs_account", "identity_pairs")
    op.drop_table("identity_pairs")

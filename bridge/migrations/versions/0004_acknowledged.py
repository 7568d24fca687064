"""case acknowledgement

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-25 02:20:14.561529
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import bridge.db

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:

    with op.batch_alter_table("cases", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("acknowledged_at", bridge.db.UTCDateTime(timezone=True), nullable=True)
        )


def downgrade() -> None:

    with op.batch_alter_table("cases", schema=None) as batch_op:
        batch_op.drop_column("acknowledged_at")

"""audit log

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-25 02:28:34.395772
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import bridge.db

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:

    op.create_table(
        "audit_log",
        sa.Column("id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("at", bridge.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("actor", sa.String(length=300), nullable=False),
        sa.Column("org", sa.String(length=16), nullable=True),
        sa.Column("action", sa.String(length=64), nullable=False),
        sa.Column("patient", sa.String(length=64), nullable=True),
        sa.Column("target", sa.String(length=300), nullable=True),
        sa.Column("origin", sa.String(length=100), nullable=True),
        sa.Column("reason", sa.String(length=100), nullable=False),
        sa.Column("prev_hash", sa.String(length=64), nullable=False),
        sa.Column("hash", sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("audit_log", schema=None) as batch_op:
        batch_op.create_index("ix_audit_patient_at", ["patient", "at"], unique=False)


def downgrade() -> None:

    with op.batch_alter_table("audit_log", schema=None) as batch_op:
        batch_op.drop_index("ix_audit_patient_at")

    op.drop_table("audit_log")

"""the audit chain's head row exists from the start (writers lock it, never create it)

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-25
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

meta = sa.table("meta", sa.column("key", sa.String), sa.column("value", sa.JSON))


def upgrade() -> None:
    bind = op.get_bind()
    if bind.scalar(sa.select(meta.c.key).where(meta.c.key == "audit_head")) is None:
        op.bulk_insert(meta, [{"key": "audit_head", "value": {"id": 0, "hash": "0" * 64}}])


def downgrade() -> None:
    # An empty chain's head is the same as none; a chain with entries keeps its head.
    op.execute(
        meta.delete().where(
            meta.c.key == "audit_head",
            ~sa.exists(sa.select(sa.literal(1)).select_from(sa.table("audit_log"))),
        )
    )

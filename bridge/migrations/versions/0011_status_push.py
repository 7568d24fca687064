"""status pushes: a push item has a kind (a reply, or a status change of the practice's
own message), and a message remembers when a nurse first read it

Revision ID: 0011
Revises: 0010
Create Date: 2026-11-25
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from bridge.db import UTCDateTime

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

OLD = ["client_id", "communication_id"]
NEW = ["client_id", "communication_id", "kind"]


def upgrade() -> None:
    with op.batch_alter_table("communications") as batch_op:
        batch_op.add_column(sa.Column("read_at", UTCDateTime(timezone=True), nullable=True))
    kind = sa.Column("kind", sa.String(length=40), server_default="reply", nullable=False)
    if op.get_bind().dialect.name == "sqlite":
        # SQLite's unique constraint was created without a name: name it to drop it.
        with op.batch_alter_table(
            "push_outbox", naming_convention={"uq": "uq_%(table_name)s_%(column_0_name)s"}
        ) as batch_op:
            batch_op.drop_constraint("uq_push_outbox_client_id", type_="unique")
            batch_op.add_column(kind)
            batch_op.create_unique_constraint("uq_push_outbox_item", NEW)
    else:
        op.drop_constraint(
            "push_outbox_client_id_communication_id_key", "push_outbox", type_="unique"
        )
        op.add_column("push_outbox", kind)
        op.create_unique_constraint("uq_push_outbox_item", "push_outbox", NEW)


def downgrade() -> None:
    op.execute("DELETE FROM push_outbox WHERE kind <> 'reply'")
    with op.batch_alter_table("push_outbox") as batch_op:
        batch_op.drop_constraint("uq_push_outbox_item", type_="unique")
        batch_op.drop_column("kind")
        batch_op.create_unique_constraint("uq_push_outbox_client", OLD)
    with op.batch_alter_table("communications") as batch_op:
        batch_op.drop_column("read_at")

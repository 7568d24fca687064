"""huisartsenpost on communications

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-25 02:55:04.437483
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:

    with op.batch_alter_table("communications", schema=None) as batch_op:
        batch_op.add_column(sa.Column("hap_id", sa.Integer(), nullable=True))
        batch_op.create_foreign_key("fk_communications_hap_id", "organisations", ["hap_id"], ["id"])


def downgrade() -> None:

    with op.batch_alter_table("communications", schema=None) as batch_op:
        # WARNING: constraint name is None; this directive will fail as
        # rendered.  Add a name, or use a naming convention; see
        # https://alembic.sqlalchemy.org/en/latest/naming.html
        batch_op.drop_constraint("fk_communications_hap_id", type_="foreignkey")
        batch_op.drop_column("hap_id")

"""one open case per patient, practice and provider (closed cases are history)

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-25
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

COLUMNS = ["patient_key", "practice_id", "provider_id"]
OPEN = sa.text("status = 'open'")


def upgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        # SQLite's unique constraint was created without a name: name it to drop it.
        with op.batch_alter_table(
            "cases", naming_convention={"uq": "uq_%(table_name)s_%(column_0_name)s"}
        ) as batch_op:
            batch_op.drop_constraint("uq_cases_patient_key", type_="unique")
    else:
        op.drop_constraint("cases_patient_key_practice_id_provider_id_key", "cases", type_="unique")
    op.create_index(
        "uq_cases_open_patient",
        "cases",
        COLUMNS,
        unique=True,
        sqlite_where=OPEN,
        postgresql_where=OPEN,
    )


def downgrade() -> None:
    op.drop_index("uq_cases_open_patient", table_name="cases")
    with op.batch_alter_table("cases") as batch_op:
        batch_op.create_unique_constraint("uq_cases_patient_key", COLUMNS)

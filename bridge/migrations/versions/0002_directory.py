"""directory, wijken, availability, admin changes

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-25 02:14:01.558707
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import bridge.db

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:

    op.create_table(
        "admin_changes",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("actor", sa.String(length=200), nullable=False),
        sa.Column("action", sa.String(length=64), nullable=False),
        sa.Column("target", sa.String(length=200), nullable=False),
        sa.Column("before", sa.JSON(), nullable=True),
        sa.Column("after", sa.JSON(), nullable=True),
        sa.Column("at", bridge.db.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_table(
        "wijken",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("created_at", bridge.db.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("name"),
    )
    op.create_table(
        "practitioners",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("org_id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("agb", sa.String(length=8), nullable=True),
        sa.Column("uzi", sa.String(length=16), nullable=True),
        sa.Column("big", sa.String(length=16), nullable=True),
        sa.Column("matrix_id", sa.String(length=255), nullable=True),
        sa.Column("created_at", bridge.db.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["org_id"],
            ["organisations.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("agb"),
        sa.UniqueConstraint("matrix_id"),
    )
    op.create_table(
        "wijk_areas",
        sa.Column("wijk_id", sa.Integer(), nullable=False),
        sa.Column("pc4", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["wijk_id"],
            ["wijken.id"],
        ),
        sa.PrimaryKeyConstraint("wijk_id", "pc4"),
    )
    op.create_table(
        "team_areas",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("team_id", sa.Integer(), nullable=False),
        sa.Column("pc4_from", sa.Integer(), nullable=False),
        sa.Column("pc4_to", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["team_id"],
            ["teams.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_table(
        "team_care_types",
        sa.Column("team_id", sa.Integer(), nullable=False),
        sa.Column("care_type", sa.String(length=32), nullable=False),
        sa.ForeignKeyConstraint(
            ["team_id"],
            ["teams.id"],
        ),
        sa.PrimaryKeyConstraint("team_id", "care_type"),
    )
    op.create_table(
        "unavailability",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("provider_id", sa.Integer(), nullable=False),
        sa.Column("team_id", sa.Integer(), nullable=True),
        sa.Column("care_type", sa.String(length=32), nullable=True),
        sa.Column("start", bridge.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("end", bridge.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("note", sa.String(length=200), nullable=False),
        sa.Column("created_at", bridge.db.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["provider_id"],
            ["organisations.id"],
        ),
        sa.ForeignKeyConstraint(
            ["team_id"],
            ["teams.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("routes", schema=None) as batch_op:
        batch_op.add_column(sa.Column("wijk_id", sa.Integer(), nullable=True))
        batch_op.create_foreign_key("fk_routes_wijk_id", "wijken", ["wijk_id"], ["id"])


def downgrade() -> None:

    with op.batch_alter_table("routes", schema=None) as batch_op:
        # WARNING: constraint name is None; this directive will fail as
        # rendered.  Add a name, or use a naming convention; see
        # https://alembic.sqlalchemy.org/en/latest/naming.html
        batch_op.drop_constraint("fk_routes_wijk_id", type_="foreignkey")
        batch_op.drop_column("wijk_id")

    op.drop_table("unavailability")
    op.drop_table("team_care_types")
    op.drop_table("team_areas")
    op.drop_table("wijk_areas")
    op.drop_table("practitioners")
    op.drop_table("wijken")
    op.drop_table("admin_changes")

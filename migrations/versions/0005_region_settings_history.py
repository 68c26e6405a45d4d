"""Dated region settings, so caseload answers for a past date use the targets of that date.

Each region's current settings are recorded as in force since 2000-01-01 (before any client):
until a region changes them, they are the settings of every date.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-28
"""

import datetime as dt
import uuid

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
SINCE = dt.date(2000, 1, 1)


def upgrade() -> None:
    versions = op.create_table(
        "region_settings_version",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("region_code", sa.String(length=2), nullable=False),
        sa.Column("valid_from", sa.Date(), nullable=False),
        sa.Column("grace_days", sa.Integer(), nullable=False),
        sa.Column("aftercare_end_age", sa.Integer(), nullable=False),
        sa.Column("caseload_targets", JSON, nullable=False),
        sa.Column("caseload_weights", JSON, nullable=False),
        sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("recorded_by", sa.String(length=200), nullable=False),
        sa.ForeignKeyConstraint(["region_code"], ["region.code"], name="fk_region_settings_version_region_code_region"),
        sa.PrimaryKeyConstraint("id", name="pk_region_settings_version"),
    )
    op.create_index(
        "ix_region_settings_version", "region_settings_version", ["region_code", "valid_from", "recorded_at"]
    )
    region = sa.table(
        "region",
        sa.column("code", sa.String),
        sa.column("grace_days", sa.Integer),
        sa.column("aftercare_end_age", sa.Integer),
        sa.column("caseload_targets", JSON),
        sa.column("caseload_weights", JSON),
    )
    rows = op.get_bind().execute(sa.select(region)).mappings().all()
    now = dt.datetime.now(dt.UTC)
    op.bulk_insert(
        versions,
        [
            {
                "id": uuid.uuid4(),
                "region_code": row["code"],
                "valid_from": SINCE,
                "grace_days": row["grace_days"],
                "aftercare_end_age": row["aftercare_end_age"],
                "caseload_targets": row["caseload_targets"],
                "caseload_weights": row["caseload_weights"],
                "recorded_at": now,
                "recorded_by": "migration 0005",
            }
            for row in rows
        ],
    )


def downgrade() -> None:
    op.drop_table("region_settings_version")

"""Load the 22 organising regions, Åland, and the municipality→region table.

Source: Statistics Finland's classification (2025-2026), shipped in ``app/data``.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-28
"""

import csv
import datetime as dt
from pathlib import Path

import sqlalchemy as sa
from alembic import op

from app.models.region import DEFAULT_CASELOAD_TARGETS, DEFAULT_CASELOAD_WEIGHTS

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

DATA = Path(__file__).resolve().parents[2] / "app" / "data"
CLASSIFICATION_YEAR = 2025


def _rows(name: str) -> list[dict[str, str]]:
    with (DATA / name).open(encoding="utf-8", newline="") as handle:
        return list(csv.DictReader(handle))


def upgrade() -> None:
    now = dt.datetime.now(dt.UTC)
    region = sa.table(
        "region",
        sa.column("code"),
        sa.column("name_fi"),
        sa.column("name_sv"),
        sa.column("name_en"),
        sa.column("organiser", sa.Boolean),
        sa.column("grace_days"),
        sa.column("aftercare_end_age"),
        sa.column("caseload_targets", sa.JSON),
        sa.column("caseload_weights", sa.JSON),
        sa.column("updated_at", sa.DateTime(timezone=True)),
    )
    op.bulk_insert(
        region,
        [
            {
                "code": row["code"],
                "name_fi": row["name_fi"],
                "name_sv": row["name_sv"],
                "name_en": row["name_en"],
                "organiser": row["organiser"] == "true",
                "grace_days": 14,
                "aftercare_end_age": 23,
                "caseload_targets": DEFAULT_CASELOAD_TARGETS,
                "caseload_weights": DEFAULT_CASELOAD_WEIGHTS,
                "updated_at": now,
            }
            for row in _rows("regions.csv")
        ],
    )
    municipality = sa.table(
        "municipality",
        sa.column("code"),
        sa.column("name_fi"),
        sa.column("region_code"),
        sa.column("classification_year"),
    )
    op.bulk_insert(
        municipality,
        [
            {
                "code": row["municipality_code"],
                "name_fi": row["municipality_name_fi"],
                "region_code": row["region_code"],
                "classification_year": CLASSIFICATION_YEAR,
            }
            for row in _rows("municipalities.csv")
        ],
    )


def downgrade() -> None:
    op.execute("DELETE FROM municipality")
    op.execute("DELETE FROM region")

"""Indexes for the heavy reads (issue 9): open gaps per region, in-force loads, clients' aftercare window.

- ``ix_gap_open_region_due`` (partial: open gaps) and ``ix_gap_closed_on`` let "a gap in force on
  a day" (``closed_on IS NULL OR closed_on > day``) be read as a BitmapOr of the few open and
  future-closed rows instead of every gap the region ever had (57,513 rows for 607 open ones).
- ``ix_assignment_load`` (partial: not retracted) holds every column the caseload counts read, so
  a region's in-force assignments come from the index alone.
- ``ix_period_organising`` (partial: organising, not retracted) gives the national overview each
  region's organised clients from the index alone.
- ``ix_client_aftercare`` answers "is the client in aftercare, at which support level" from the
  index alone, for the gap and load joins.

Plain CREATE INDEX inside the migration's transaction: it blocks writes to each table while its
index builds (seconds at ten times national scale), and the revision stays atomic and reversible.

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-02
"""

import sqlalchemy as sa
from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None

OPEN_GAP = sa.text("closed_on IS NULL")
ORGANISING = sa.text("responsibility = 'organising' AND retracted_at IS NULL")
NOT_RETRACTED = sa.text("retracted_at IS NULL")


def upgrade() -> None:
    op.create_index(
        "ix_gap_open_region_due",
        "compliance_gap",
        ["region", "due", "id"],
        postgresql_where=OPEN_GAP,
        sqlite_where=OPEN_GAP,
    )
    op.create_index("ix_gap_closed_on", "compliance_gap", ["closed_on"])
    op.create_index(
        "ix_assignment_load",
        "assignment",
        ["region", "worker_id", "client_id", "valid_from", "valid_to"],
        postgresql_where=NOT_RETRACTED,
        sqlite_where=NOT_RETRACTED,
    )
    op.create_index(
        "ix_period_organising",
        "responsibility_period",
        ["region", "client_id", "valid_from", "valid_to"],
        postgresql_where=ORGANISING,
        sqlite_where=ORGANISING,
    )
    op.create_index("ix_client_aftercare", "client", ["id", "aftercare_start", "aftercare_end", "support_level"])


def downgrade() -> None:
    op.drop_index("ix_client_aftercare", table_name="client")
    op.drop_index("ix_period_organising", table_name="responsibility_period")
    op.drop_index("ix_assignment_load", table_name="assignment")
    op.drop_index("ix_gap_closed_on", table_name="compliance_gap")
    op.drop_index("ix_gap_open_region_due", table_name="compliance_gap")

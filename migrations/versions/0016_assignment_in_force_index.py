"""A region's assignments in force on a day as one index range (issue 9: the caseload report).

``ix_assignment_load`` (region, worker, client, dates; not retracted) made the caseload report
visit every assignment the region ever had and filter the ended ones: 66,000 index entries for
21,000 in force in the largest region at ten times national scale, and after a burst of writes
(ends and new assignments leave pages not yet vacuumed) a heap fetch for most of them, 27 ms of
the report's 67. ``ix_assignment_in_force`` orders a region's assignments by their end, an open
end as 9999-12-31, so "in force on D" (``coalesce(valid_to, '9999-12-31') > D``) is one range that
starts past every assignment ended by then: 21,000 entries, 8 ms in the same state. It replaces
``ix_assignment_load``, which nothing else reads.

Plain CREATE INDEX inside the migration's transaction, like 0014 and 0015: writes to
``assignment`` wait while it builds (about a second for 480,000 assignments).

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-01
"""

import sqlalchemy as sa
from alembic import op

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None

NOT_RETRACTED = sa.text("retracted_at IS NULL")
OPEN_END = "9999-12-31"  # app.models.assignment.OPEN_END, frozen here as this revision wrote it


def upgrade() -> None:
    op.create_index(
        "ix_assignment_in_force",
        "assignment",
        ["region", sa.text(f"coalesce(valid_to, '{OPEN_END}')"), "worker_id", "client_id", "valid_from", "valid_to"],
        postgresql_where=NOT_RETRACTED,
        sqlite_where=NOT_RETRACTED,
    )
    op.drop_index("ix_assignment_load", table_name="assignment")


def downgrade() -> None:
    op.create_index(
        "ix_assignment_load",
        "assignment",
        ["region", "worker_id", "client_id", "valid_from", "valid_to"],
        postgresql_where=NOT_RETRACTED,
        sqlite_where=NOT_RETRACTED,
    )
    op.drop_index("ix_assignment_in_force", table_name="assignment")

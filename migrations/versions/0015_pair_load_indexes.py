"""A worker's pairs in force, from the index alone (issue 9: the caseload report's pair counts).

``ix_pair_worker_1`` and ``ix_pair_worker_2`` were (worker, status); they now also hold the pair's
dates, so "this worker's pairs in force on a day" is an index-only range per worker instead of a
scan of every pair in the country (a region's report read all 70,000 pairs at ten times national
scale to keep its 720 workers' ones). The old indexes' lookups (worker, status) keep their prefix.

Plain DROP and CREATE INDEX inside the migration's transaction, like 0014: writes to ``work_pair``
wait while the two indexes build (well under a second for 70,000 pairs).

Revision ID: 0015
Revises: 0014
Create Date: 2026-11-30
"""

from alembic import op

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None

SIDES = ("worker_1_id", "worker_2_id")


def upgrade() -> None:
    for number, column in enumerate(SIDES, start=1):
        op.drop_index(f"ix_pair_worker_{number}", table_name="work_pair")
        op.create_index(f"ix_pair_worker_{number}", "work_pair", [column, "status", "valid_from", "valid_to"])


def downgrade() -> None:
    for number, column in enumerate(SIDES, start=1):
        op.drop_index(f"ix_pair_worker_{number}", table_name="work_pair")
        op.create_index(f"ix_pair_worker_{number}", "work_pair", [column, "status"])

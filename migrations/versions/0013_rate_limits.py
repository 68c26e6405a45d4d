"""Rate-limit buckets: per token subject (hashed) and endpoint class, when the allowance is whole again.

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-01
"""

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "rate_limit_bucket",
        sa.Column("subject", sa.String(length=64), nullable=False),
        sa.Column("endpoint_class", sa.String(length=20), nullable=False),
        sa.Column("refilled_at", sa.Double(), nullable=False),
        sa.PrimaryKeyConstraint("subject", "endpoint_class", name="pk_rate_limit_bucket"),
    )


def downgrade() -> None:
    op.drop_table("rate_limit_bucket")

"""The change feed: per-region gapless sequences in commit order, and the events themselves.

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-30
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def upgrade() -> None:
    op.create_table(
        "feed_position",
        sa.Column(
            "region",
            sa.String(length=2),
            sa.ForeignKey("region.code", name="fk_feed_position_region_region"),
            nullable=False,
        ),
        sa.Column("last_seq", sa.BigInteger(), nullable=False),
        sa.Column("purged_through", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("region", name="pk_feed_position"),
    )
    op.execute("INSERT INTO feed_position (region, last_seq, purged_through) SELECT code, 0, 0 FROM region")
    op.create_table(
        "feed_event",
        sa.Column("region", sa.String(length=2), nullable=False),
        sa.Column("seq", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("type", sa.String(length=60), nullable=False),
        sa.Column("occurred_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("client_id", sa.Uuid(), nullable=True),
        sa.Column("entity_type", sa.String(length=40), nullable=False),
        sa.Column("entity_id", sa.String(length=64), nullable=False),
        sa.Column("change_event_id", sa.BigInteger(), nullable=True),
        sa.Column("data", JSON, nullable=False),
        sa.PrimaryKeyConstraint("region", "seq", name="pk_feed_event"),
    )
    op.create_index("ix_feed_event_occurred", "feed_event", ["occurred_at"])


def downgrade() -> None:
    op.drop_index("ix_feed_event_occurred", table_name="feed_event")
    op.drop_table("feed_event")
    op.drop_table("feed_position")

"""Workers get the dates they were active (caseloads for past dates), and TRUNCATE is refused
on the append-only tables of PostgreSQL as UPDATE and DELETE already are.

Existing workers count as active from their creation date; inactive ones from their last update.

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-28
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

APPEND_ONLY = (
    "cost_decision",
    "cost_decision_event",
    "change_event",
    "change_event_client",
    "access_log",
    "access_log_client",
    "disclosure_log",
    "audit_chain",
)


def upgrade() -> None:
    with op.batch_alter_table("worker") as batch:
        batch.add_column(sa.Column("active_from", sa.Date(), nullable=True))
        batch.add_column(sa.Column("inactive_from", sa.Date(), nullable=True))
    worker = sa.table(
        "worker",
        sa.column("id", sa.Uuid),
        sa.column("active", sa.Boolean),
        sa.column("created_at", sa.DateTime(timezone=True)),
        sa.column("updated_at", sa.DateTime(timezone=True)),
        sa.column("active_from", sa.Date),
        sa.column("inactive_from", sa.Date),
    )
    bind = op.get_bind()
    for row in bind.execute(sa.select(worker)).mappings().all():
        bind.execute(
            sa.update(worker)
            .where(worker.c.id == row["id"])
            .values(
                active_from=row["created_at"].date() if row["created_at"] else None,
                inactive_from=None if row["active"] else (row["updated_at"].date() if row["updated_at"] else None),
            )
        )
    if bind.dialect.name == "postgresql":
        for table in APPEND_ONLY:
            op.execute(
                f"CREATE TRIGGER {table}_no_truncate BEFORE TRUNCATE ON {table}"
                " FOR EACH STATEMENT EXECUTE FUNCTION silta_refuse_change()"
            )


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        for table in APPEND_ONLY:
            op.execute(f"DROP TRIGGER {table}_no_truncate ON {table}")
    with op.batch_alter_table("worker") as batch:
        batch.drop_column("inactive_from")
        batch.drop_column("active_from")

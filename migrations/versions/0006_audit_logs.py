"""Audit: one change entry per write, access and disclosure logs, and the chain over them.

Change entries written before this revision are converted to the one-entry form; they carry no
MAC (there were no deployments before this revision), so ``verify`` would report them as forged.
On PostgreSQL every log table and the chain are insert-only (a trigger refuses UPDATE and DELETE).

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-28
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
BIG = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
INSERT_ONLY = (
    "change_event",
    "change_event_client",
    "access_log",
    "access_log_client",
    "disclosure_log",
    "audit_chain",
)


def upgrade() -> None:
    with op.batch_alter_table("change_event") as batch:
        batch.add_column(sa.Column("changes", JSON, nullable=True))
        batch.add_column(sa.Column("mac", sa.String(length=64), nullable=False, server_default=""))
    event = sa.table(
        "change_event",
        sa.column("id", BIG),
        sa.column("action", sa.String),
        sa.column("entity_type", sa.String),
        sa.column("entity_id", sa.String),
        sa.column("client_id", sa.Uuid),
        sa.column("before", JSON),
        sa.column("after", JSON),
        sa.column("changes", JSON),
    )
    bind = op.get_bind()
    for row in bind.execute(sa.select(event)).mappings().all():
        change = {key: row[key] for key in ("action", "entity_type", "entity_id", "before", "after")}
        change["client_id"] = str(row["client_id"]) if row["client_id"] else None
        bind.execute(sa.update(event).where(event.c.id == row["id"]).values(changes=[change]))
    with op.batch_alter_table("change_event") as batch:
        batch.alter_column("changes", existing_type=JSON, nullable=False)
        batch.alter_column("mac", existing_type=sa.String(length=64), server_default=None)
        batch.drop_column("before")
        batch.drop_column("after")
    op.create_index("ix_change_event_occurred", "change_event", ["occurred_at"])

    op.create_table(
        "change_event_client",
        sa.Column(
            "event_id", BIG, sa.ForeignKey("change_event.id", name="fk_change_event_client_event"), nullable=False
        ),
        sa.Column("client_id", sa.Uuid(), nullable=False),
        sa.PrimaryKeyConstraint("event_id", "client_id", name="pk_change_event_client"),
    )
    op.create_index("ix_change_event_client_client", "change_event_client", ["client_id", "event_id"])

    op.create_table(
        "access_log",
        sa.Column("id", BIG, autoincrement=True, nullable=False),
        sa.Column("occurred_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("actor", sa.String(length=200), nullable=False),
        sa.Column("roles", sa.String(length=100), nullable=False),
        sa.Column("actor_region", sa.String(length=2), nullable=True),
        sa.Column("client_system", sa.String(length=100), nullable=True),
        sa.Column("request_id", sa.String(length=100), nullable=True),
        sa.Column("method", sa.String(length=10), nullable=False),
        sa.Column("endpoint", sa.String(length=200), nullable=False),
        sa.Column("purpose", sa.String(length=30), nullable=False),
        sa.Column("client_ids", JSON, nullable=False),
        sa.Column("mac", sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_access_log"),
    )
    op.create_index("ix_access_log_occurred", "access_log", ["occurred_at"])
    op.create_index("ix_access_log_region", "access_log", ["actor_region", "id"])
    op.create_table(
        "access_log_client",
        sa.Column("entry_id", BIG, sa.ForeignKey("access_log.id", name="fk_access_log_client_entry"), nullable=False),
        sa.Column("client_id", sa.Uuid(), nullable=False),
        sa.PrimaryKeyConstraint("entry_id", "client_id", name="pk_access_log_client"),
    )
    op.create_index("ix_access_log_client_client", "access_log_client", ["client_id", "entry_id"])

    op.create_table(
        "disclosure_log",
        sa.Column("id", BIG, autoincrement=True, nullable=False),
        sa.Column("occurred_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("access_id", BIG, sa.ForeignKey("access_log.id", name="fk_disclosure_log_access"), nullable=False),
        sa.Column("client_id", sa.Uuid(), nullable=False),
        sa.Column("from_region", sa.String(length=2), nullable=False),
        sa.Column("to_region", sa.String(length=2), nullable=False),
        sa.Column("basis", sa.String(length=200), nullable=False),
        sa.Column("purpose", sa.String(length=30), nullable=False),
        sa.Column("actor", sa.String(length=200), nullable=False),
        sa.Column("request_id", sa.String(length=100), nullable=True),
        sa.Column("mac", sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_disclosure_log"),
    )
    op.create_index("ix_disclosure_log_client", "disclosure_log", ["client_id", "id"])
    op.create_index("ix_disclosure_log_to_region", "disclosure_log", ["to_region", "id"])

    op.create_table(
        "audit_chain",
        sa.Column("position", BIG, autoincrement=False, nullable=False),
        sa.Column("log", sa.String(length=20), nullable=False),
        sa.Column("entry_id", BIG, nullable=False),
        sa.Column("entry_mac", sa.String(length=64), nullable=False),
        sa.Column("chain_hash", sa.String(length=64), nullable=False),
        sa.Column("sealed_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("position", name="pk_audit_chain"),
        sa.UniqueConstraint("log", "entry_id", name="uq_audit_chain_entry"),
    )

    if bind.dialect.name == "postgresql":
        for table in INSERT_ONLY:
            op.execute(
                f"CREATE TRIGGER {table}_append_only BEFORE UPDATE OR DELETE ON {table}"
                " FOR EACH ROW EXECUTE FUNCTION silta_refuse_change()"
            )


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        for table in INSERT_ONLY:
            op.execute(f"DROP TRIGGER {table}_append_only ON {table}")
    op.drop_table("audit_chain")
    op.drop_table("disclosure_log")
    op.drop_table("access_log_client")
    op.drop_table("access_log")
    op.drop_table("change_event_client")
    op.drop_index("ix_change_event_occurred", table_name="change_event")
    with op.batch_alter_table("change_event") as batch:
        batch.add_column(sa.Column("before", JSON, nullable=True))
        batch.add_column(sa.Column("after", JSON, nullable=True))
        batch.drop_column("mac")
        batch.drop_column("changes")

"""Cost decisions: an insert-only register of who pays for what, and its answers.

On PostgreSQL a trigger refuses UPDATE and DELETE on both tables, so not even a mistaken
migration or a console session can rewrite what the regions agreed. (The embedded SQLite
default has no such trigger: its test fixtures clear tables between tests.)

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-28
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

SERVICE_TYPES = (
    "'mental_health_housing', 'substance_abuse_housing', 'disability_housing', 'supported_housing', "
    "'aftercare_financial_support', 'other'"
)
SERVICES = "'aftercare', 'disability', 'mental_health_substance', 'adult_social_work', 'other'"
APPEND_ONLY = ("cost_decision", "cost_decision_event")


def upgrade() -> None:
    op.create_table(
        "cost_decision",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("client_id", sa.Uuid(), nullable=False),
        sa.Column("service_type", sa.String(length=40), nullable=False),
        sa.Column("payer_region", sa.String(length=2), nullable=False),
        sa.Column("payer_service", sa.String(length=30), nullable=False),
        sa.Column("valid_from", sa.Date(), nullable=False),
        sa.Column("valid_to", sa.Date(), nullable=True),
        sa.Column("legal_basis", sa.String(length=2000), nullable=False),
        sa.Column("legal_basis_code", sa.String(length=100), nullable=True),
        sa.Column("reference", sa.String(length=200), nullable=True),
        sa.Column("amount_cap_cents", sa.BigInteger(), nullable=True),
        sa.Column("notes", sa.String(length=4000), nullable=True),
        sa.Column("proposed_by", sa.String(length=200), nullable=False),
        sa.Column("proposed_by_region", sa.String(length=2), nullable=False),
        sa.Column("counterparty_region", sa.String(length=2), nullable=False),
        sa.Column("supersedes_id", sa.Uuid(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint(f"service_type IN ({SERVICE_TYPES})", name="ck_cost_decision_service_type"),
        sa.CheckConstraint(f"payer_service IN ({SERVICES})", name="ck_cost_decision_payer_service"),
        sa.CheckConstraint("valid_to IS NULL OR valid_to > valid_from", name="ck_cost_decision_dates"),
        sa.CheckConstraint("amount_cap_cents IS NULL OR amount_cap_cents >= 0", name="ck_cost_decision_amount"),
        sa.CheckConstraint("supersedes_id IS NULL OR supersedes_id <> id", name="ck_cost_decision_not_self"),
        sa.ForeignKeyConstraint(["client_id"], ["client.id"], name="fk_cost_decision_client_id_client"),
        sa.ForeignKeyConstraint(
            ["counterparty_region"], ["region.code"], name="fk_cost_decision_counterparty_region_region"
        ),
        sa.ForeignKeyConstraint(["payer_region"], ["region.code"], name="fk_cost_decision_payer_region_region"),
        sa.ForeignKeyConstraint(
            ["proposed_by_region"], ["region.code"], name="fk_cost_decision_proposed_by_region_region"
        ),
        sa.ForeignKeyConstraint(
            ["supersedes_id"], ["cost_decision.id"], name="fk_cost_decision_supersedes_id_cost_decision"
        ),
        sa.PrimaryKeyConstraint("id", name="pk_cost_decision"),
    )
    op.create_index("ix_cost_decision_client", "cost_decision", ["client_id", "service_type"])
    op.create_index("ix_cost_decision_payer", "cost_decision", ["payer_region", "created_at"])
    op.create_index("ix_cost_decision_supersedes", "cost_decision", ["supersedes_id"])

    op.create_table(
        "cost_decision_event",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("decision_id", sa.Uuid(), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("reason", sa.String(length=4000), nullable=False),
        sa.Column("actor", sa.String(length=200), nullable=False),
        sa.Column("actor_region", sa.String(length=2), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("status IN ('agreed', 'disputed')", name="ck_cost_decision_event_status"),
        sa.CheckConstraint("status <> 'disputed' OR length(reason) > 0", name="ck_cost_decision_event_reason"),
        sa.ForeignKeyConstraint(["actor_region"], ["region.code"], name="fk_cost_decision_event_actor_region_region"),
        sa.ForeignKeyConstraint(
            ["decision_id"], ["cost_decision.id"], name="fk_cost_decision_event_decision_id_cost_decision"
        ),
        sa.PrimaryKeyConstraint("id", name="pk_cost_decision_event"),
        sa.UniqueConstraint("decision_id", name="uq_cost_decision_event_decision"),
    )

    with op.batch_alter_table("coordination_request") as batch:
        batch.add_column(sa.Column("cost_decision_id", sa.Uuid(), nullable=True))
        batch.create_foreign_key(
            "fk_coordination_request_cost_decision_id_cost_decision", "cost_decision", ["cost_decision_id"], ["id"]
        )

    if op.get_bind().dialect.name == "postgresql":
        op.execute(
            """
            CREATE FUNCTION silta_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN
                RAISE EXCEPTION '% is append-only: % refused', TG_TABLE_NAME, TG_OP
                    USING ERRCODE = 'insufficient_privilege';
            END;
            $$
            """
        )
        for table in APPEND_ONLY:
            op.execute(
                f"CREATE TRIGGER {table}_append_only BEFORE UPDATE OR DELETE ON {table}"
                " FOR EACH ROW EXECUTE FUNCTION silta_refuse_change()"
            )


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        for table in APPEND_ONLY:
            op.execute(f"DROP TRIGGER {table}_append_only ON {table}")
        op.execute("DROP FUNCTION silta_refuse_change()")
    with op.batch_alter_table("coordination_request") as batch:
        batch.drop_constraint("fk_coordination_request_cost_decision_id_cost_decision", type_="foreignkey")
        batch.drop_column("cost_decision_id")
    op.drop_table("cost_decision_event")
    op.drop_table("cost_decision")

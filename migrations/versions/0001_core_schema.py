"""core schema

Revision ID: 0001
Revises:
Create Date: 2026-11-28
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "change_event",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False),
        sa.Column("occurred_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("actor", sa.String(length=200), nullable=False),
        sa.Column("roles", sa.String(length=100), nullable=False),
        sa.Column("actor_region", sa.String(length=2), nullable=True),
        sa.Column("client_system", sa.String(length=100), nullable=True),
        sa.Column("request_id", sa.String(length=100), nullable=True),
        sa.Column("action", sa.String(length=60), nullable=False),
        sa.Column("entity_type", sa.String(length=40), nullable=False),
        sa.Column("entity_id", sa.String(length=64), nullable=False),
        sa.Column("client_id", sa.Uuid(), nullable=True),
        sa.Column("before", sa.JSON().with_variant(postgresql.JSONB(), "postgresql"), nullable=True),
        sa.Column("after", sa.JSON().with_variant(postgresql.JSONB(), "postgresql"), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_change_event")),
    )
    op.create_index("ix_change_event_client", "change_event", ["client_id", "id"], unique=False)
    op.create_index("ix_change_event_entity", "change_event", ["entity_type", "entity_id"], unique=False)

    op.create_table(
        "client",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("personal_id", sa.String(length=11), nullable=False),
        sa.Column("first_name", sa.String(length=100), nullable=False),
        sa.Column("last_name", sa.String(length=100), nullable=False),
        sa.Column("birth_date", sa.Date(), nullable=False),
        sa.Column("support_level", sa.String(length=20), nullable=False),
        sa.Column("address_protection", sa.Boolean(), nullable=False),
        sa.Column("aftercare_start", sa.Date(), nullable=False),
        sa.Column("aftercare_end", sa.Date(), nullable=False),
        sa.Column("end_date", sa.Date(), nullable=True),
        sa.Column("end_reason", sa.String(length=500), nullable=True),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("support_level IN ('standard', 'enhanced', 'special')", name="ck_client_support_level"),
        sa.CheckConstraint("aftercare_end >= aftercare_start", name="ck_client_aftercare_period"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_client")),
        sa.UniqueConstraint("personal_id", name=op.f("uq_client_personal_id")),
    )
    op.create_index("ix_client_aftercare_end", "client", ["aftercare_end"], unique=False)

    op.create_table(
        "region",
        sa.Column("code", sa.String(length=2), nullable=False),
        sa.Column("name_fi", sa.String(length=200), nullable=False),
        sa.Column("name_sv", sa.String(length=200), nullable=False),
        sa.Column("name_en", sa.String(length=200), nullable=False),
        sa.Column("organiser", sa.Boolean(), nullable=False),
        sa.Column("grace_days", sa.Integer(), nullable=False),
        sa.Column("aftercare_end_age", sa.Integer(), nullable=False),
        sa.Column("caseload_targets", sa.JSON().with_variant(postgresql.JSONB(), "postgresql"), nullable=False),
        sa.Column("caseload_weights", sa.JSON().with_variant(postgresql.JSONB(), "postgresql"), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("aftercare_end_age BETWEEN 23 AND 25", name="ck_region_aftercare_end_age"),
        sa.CheckConstraint("grace_days BETWEEN 0 AND 365", name="ck_region_grace_days"),
        sa.PrimaryKeyConstraint("code", name=op.f("pk_region")),
    )
    op.create_table(
        "client_external_id",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("client_id", sa.Uuid(), nullable=False),
        sa.Column("system", sa.String(length=100), nullable=False),
        sa.Column("external_id", sa.String(length=100), nullable=False),
        sa.ForeignKeyConstraint(["client_id"], ["client.id"], name=op.f("fk_client_external_id_client_id_client")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_client_external_id")),
        sa.UniqueConstraint("system", "external_id", name="uq_client_external_id"),
    )
    op.create_index("ix_client_external_id_client_id", "client_external_id", ["client_id"], unique=False)

    op.create_table(
        "coordination_request",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("client_id", sa.Uuid(), nullable=False),
        sa.Column("kind", sa.String(length=40), nullable=False),
        sa.Column("from_region", sa.String(length=2), nullable=False),
        sa.Column("to_region", sa.String(length=2), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("due_date", sa.Date(), nullable=False),
        sa.Column("message", sa.String(length=4000), nullable=False),
        sa.Column("details", sa.JSON().with_variant(postgresql.JSONB(), "postgresql"), nullable=False),
        sa.Column("created_by", sa.String(length=200), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.CheckConstraint(
            "kind IN ('assign_residence_worker', 'assign_organising_worker', 'accept_organising_transfer', 'confirm_pair', 'review_cost_decision', 'other')",
            name="ck_request_kind",
        ),
        sa.CheckConstraint("status IN ('open', 'accepted', 'declined', 'cancelled')", name="ck_request_status"),
        sa.ForeignKeyConstraint(["client_id"], ["client.id"], name=op.f("fk_coordination_request_client_id_client")),
        sa.ForeignKeyConstraint(
            ["from_region"], ["region.code"], name=op.f("fk_coordination_request_from_region_region")
        ),
        sa.ForeignKeyConstraint(["to_region"], ["region.code"], name=op.f("fk_coordination_request_to_region_region")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_coordination_request")),
    )
    op.create_index("ix_request_client", "coordination_request", ["client_id", "status"], unique=False)
    op.create_index("ix_request_to_region", "coordination_request", ["to_region", "status", "due_date"], unique=False)

    op.create_table(
        "municipality",
        sa.Column("code", sa.String(length=3), nullable=False),
        sa.Column("name_fi", sa.String(length=200), nullable=False),
        sa.Column("region_code", sa.String(length=2), nullable=False),
        sa.Column("classification_year", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(["region_code"], ["region.code"], name=op.f("fk_municipality_region_code_region")),
        sa.PrimaryKeyConstraint("code", name=op.f("pk_municipality")),
    )
    op.create_index("ix_municipality_region_code", "municipality", ["region_code"], unique=False)

    op.create_table(
        "worker",
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("email", sa.String(length=254), nullable=True),
        sa.Column("external_id", sa.String(length=100), nullable=True),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("region", sa.String(length=2), nullable=False),
        sa.Column("role", sa.String(length=30), nullable=False),
        sa.Column("service", sa.String(length=30), nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "role IN ('social_worker', 'counsellor', 'special_counsellor', 'other')", name="ck_worker_role"
        ),
        sa.CheckConstraint(
            "service IN ('aftercare', 'disability', 'mental_health_substance', 'adult_social_work', 'other')",
            name="ck_worker_service",
        ),
        sa.ForeignKeyConstraint(["region"], ["region.code"], name=op.f("fk_worker_region_region")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_worker")),
    )
    op.create_index("ix_worker_region_role", "worker", ["region", "role", "active"], unique=False)
    op.create_index("uq_worker_external_id", "worker", ["region", "external_id"], unique=True)

    op.create_table(
        "assignment",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("client_id", sa.Uuid(), nullable=False),
        sa.Column("responsibility", sa.String(length=20), nullable=False),
        sa.Column("region", sa.String(length=2), nullable=False),
        sa.Column("worker_id", sa.Uuid(), nullable=False),
        sa.Column("valid_from", sa.Date(), nullable=False),
        sa.Column("valid_to", sa.Date(), nullable=True),
        sa.Column("end_reason", sa.String(length=500), nullable=True),
        sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("valid_to_recorded_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("retracted_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint("responsibility IN ('organising', 'residence')", name="ck_assignment_responsibility"),
        sa.CheckConstraint("valid_to IS NULL OR valid_to >= valid_from", name="ck_assignment_dates"),
        sa.ForeignKeyConstraint(["client_id"], ["client.id"], name=op.f("fk_assignment_client_id_client")),
        sa.ForeignKeyConstraint(["region"], ["region.code"], name=op.f("fk_assignment_region_region")),
        sa.ForeignKeyConstraint(["worker_id"], ["worker.id"], name=op.f("fk_assignment_worker_id_worker")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_assignment")),
    )
    op.create_index("ix_assignment_client_id", "assignment", ["client_id"], unique=False)
    op.create_index("ix_assignment_region", "assignment", ["region", "valid_to"], unique=False)
    op.create_index("ix_assignment_worker", "assignment", ["worker_id", "valid_to"], unique=False)
    op.create_index(
        "uq_assignment_open",
        "assignment",
        ["client_id", "responsibility"],
        unique=True,
        sqlite_where=sa.text("valid_to IS NULL AND retracted_at IS NULL"),
        postgresql_where=sa.text("valid_to IS NULL AND retracted_at IS NULL"),
    )

    op.create_table(
        "responsibility_period",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("client_id", sa.Uuid(), nullable=False),
        sa.Column("responsibility", sa.String(length=20), nullable=False),
        sa.Column("region", sa.String(length=2), nullable=True),
        sa.Column("municipality", sa.String(length=3), nullable=True),
        sa.Column("residence_outside", sa.String(length=10), nullable=True),
        sa.Column("valid_from", sa.Date(), nullable=False),
        sa.Column("valid_to", sa.Date(), nullable=True),
        sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("valid_to_recorded_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("retracted_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint(
            "(region IS NOT NULL AND residence_outside IS NULL) OR (responsibility = 'residence' AND region IS NULL AND residence_outside IS NOT NULL)",
            name="ck_period_region_or_outside",
        ),
        sa.CheckConstraint(
            "residence_outside IS NULL OR residence_outside IN ('aland', 'abroad')", name="ck_period_outside"
        ),
        sa.CheckConstraint("responsibility IN ('organising', 'residence')", name="ck_period_responsibility"),
        sa.CheckConstraint("valid_to IS NULL OR valid_to > valid_from", name="ck_period_dates"),
        sa.ForeignKeyConstraint(["client_id"], ["client.id"], name=op.f("fk_responsibility_period_client_id_client")),
        sa.ForeignKeyConstraint(
            ["municipality"],
            ["municipality.code"],
            name=op.f("fk_responsibility_period_municipality_municipality"),
        ),
        sa.ForeignKeyConstraint(["region"], ["region.code"], name=op.f("fk_responsibility_period_region_region")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_responsibility_period")),
    )
    op.create_index("ix_period_region_client", "responsibility_period", ["region", "client_id"], unique=False)
    op.create_index("ix_responsibility_period_client_id", "responsibility_period", ["client_id"], unique=False)
    op.create_index(
        "uq_period_open",
        "responsibility_period",
        ["client_id", "responsibility"],
        unique=True,
        sqlite_where=sa.text("valid_to IS NULL AND retracted_at IS NULL"),
        postgresql_where=sa.text("valid_to IS NULL AND retracted_at IS NULL"),
    )

    op.create_table(
        "compliance_gap",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("client_id", sa.Uuid(), nullable=False),
        sa.Column("responsibility", sa.String(length=20), nullable=False),
        sa.Column("region", sa.String(length=2), nullable=False),
        sa.Column("since", sa.Date(), nullable=False),
        sa.Column("due", sa.Date(), nullable=False),
        sa.Column("cause", sa.String(length=50), nullable=False),
        sa.Column("opened_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("closed_on", sa.Date(), nullable=True),
        sa.Column("closed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("closed_by_assignment_id", sa.Uuid(), nullable=True),
        sa.Column("close_reason", sa.String(length=50), nullable=True),
        sa.CheckConstraint("responsibility IN ('organising', 'residence')", name="ck_gap_responsibility"),
        sa.CheckConstraint("due >= since", name="ck_gap_due"),
        sa.ForeignKeyConstraint(["client_id"], ["client.id"], name=op.f("fk_compliance_gap_client_id_client")),
        sa.ForeignKeyConstraint(
            ["closed_by_assignment_id"],
            ["assignment.id"],
            name=op.f("fk_compliance_gap_closed_by_assignment_id_assignment"),
        ),
        sa.ForeignKeyConstraint(["region"], ["region.code"], name=op.f("fk_compliance_gap_region_region")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_compliance_gap")),
    )
    op.create_index("ix_compliance_gap_client_id", "compliance_gap", ["client_id"], unique=False)
    op.create_index("ix_gap_region_due", "compliance_gap", ["region", "closed_at", "due"], unique=False)
    op.create_index(
        "uq_gap_open",
        "compliance_gap",
        ["client_id", "responsibility"],
        unique=True,
        sqlite_where=sa.text("closed_at IS NULL"),
        postgresql_where=sa.text("closed_at IS NULL"),
    )


def downgrade() -> None:
    op.drop_table("compliance_gap")
    op.drop_table("responsibility_period")
    op.drop_table("assignment")
    op.drop_table("worker")
    op.drop_table("municipality")
    op.drop_table("coordination_request")
    op.drop_table("client_external_id")
    op.drop_table("region")
    op.drop_table("client")
    op.drop_table("change_event")

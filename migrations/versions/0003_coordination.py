"""Coordination: answers on requests, work pairs.

Requests gain their answer (who, when, note) and the assignment or pair that settled them; the
kinds the rules open by themselves may be open only once per client, kind and receiver. Work
pairs link two workers for one client, with at most one live cross-region pair per client.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-28
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

LIVE = "status IN ('proposed', 'active')"
AUTOMATIC = (
    "status = 'open' AND kind IN ('assign_residence_worker', 'assign_organising_worker', 'accept_organising_transfer')"
)


def upgrade() -> None:
    op.create_table(
        "work_pair",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("client_id", sa.Uuid(), nullable=False),
        sa.Column("kind", sa.String(length=20), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("worker_1_id", sa.Uuid(), nullable=False),
        sa.Column("worker_2_id", sa.Uuid(), nullable=False),
        sa.Column("assignment_1_id", sa.Uuid(), nullable=True),
        sa.Column("assignment_2_id", sa.Uuid(), nullable=True),
        sa.Column("proposed_by_region", sa.String(length=2), nullable=False),
        sa.Column("confirm_region", sa.String(length=2), nullable=False),
        sa.Column("proposed_by", sa.String(length=200), nullable=False),
        sa.Column("proposed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("valid_from", sa.Date(), nullable=True),
        sa.Column("confirmed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("confirmed_by", sa.String(length=200), nullable=True),
        sa.Column("valid_to", sa.Date(), nullable=True),
        sa.Column("ended_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("end_reason", sa.String(length=500), nullable=True),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.CheckConstraint("kind IN ('cross_region', 'cross_service')", name="ck_pair_kind"),
        sa.CheckConstraint("status IN ('proposed', 'active', 'ended')", name="ck_pair_status"),
        sa.CheckConstraint("worker_1_id < worker_2_id", name="ck_pair_worker_order"),
        sa.CheckConstraint(
            "status <> 'active' OR (valid_from IS NOT NULL AND valid_to IS NULL)", name="ck_pair_active_dates"
        ),
        sa.CheckConstraint("status <> 'proposed' OR valid_from IS NULL", name="ck_pair_proposed_dates"),
        sa.CheckConstraint("valid_to IS NULL OR valid_to >= valid_from", name="ck_pair_dates"),
        sa.ForeignKeyConstraint(
            ["assignment_1_id"], ["assignment.id"], name=op.f("fk_work_pair_assignment_1_id_assignment")
        ),
        sa.ForeignKeyConstraint(
            ["assignment_2_id"], ["assignment.id"], name=op.f("fk_work_pair_assignment_2_id_assignment")
        ),
        sa.ForeignKeyConstraint(["client_id"], ["client.id"], name=op.f("fk_work_pair_client_id_client")),
        sa.ForeignKeyConstraint(["confirm_region"], ["region.code"], name=op.f("fk_work_pair_confirm_region_region")),
        sa.ForeignKeyConstraint(
            ["proposed_by_region"], ["region.code"], name=op.f("fk_work_pair_proposed_by_region_region")
        ),
        sa.ForeignKeyConstraint(["worker_1_id"], ["worker.id"], name=op.f("fk_work_pair_worker_1_id_worker")),
        sa.ForeignKeyConstraint(["worker_2_id"], ["worker.id"], name=op.f("fk_work_pair_worker_2_id_worker")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_work_pair")),
    )
    op.create_index("ix_work_pair_client_id", "work_pair", ["client_id"])
    op.create_index("ix_pair_worker_1", "work_pair", ["worker_1_id", "status"])
    op.create_index("ix_pair_worker_2", "work_pair", ["worker_2_id", "status"])
    op.create_index(
        "uq_pair_cross_region_live",
        "work_pair",
        ["client_id"],
        unique=True,
        sqlite_where=sa.text(f"kind = 'cross_region' AND {LIVE}"),
        postgresql_where=sa.text(f"kind = 'cross_region' AND {LIVE}"),
    )
    op.create_index(
        "uq_pair_workers_live",
        "work_pair",
        ["client_id", "worker_1_id", "worker_2_id"],
        unique=True,
        sqlite_where=sa.text(LIVE),
        postgresql_where=sa.text(LIVE),
    )

    with op.batch_alter_table("coordination_request") as batch:
        batch.add_column(sa.Column("answered_at", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("answered_by", sa.String(length=200), nullable=True))
        batch.add_column(sa.Column("answered_by_region", sa.String(length=2), nullable=True))
        batch.add_column(sa.Column("answer_note", sa.String(length=4000), nullable=True))
        batch.add_column(sa.Column("assignment_id", sa.Uuid(), nullable=True))
        batch.add_column(sa.Column("pair_id", sa.Uuid(), nullable=True))
        batch.create_foreign_key(
            "fk_coordination_request_assignment_id_assignment", "assignment", ["assignment_id"], ["id"]
        )
        batch.create_foreign_key("fk_coordination_request_pair_id_work_pair", "work_pair", ["pair_id"], ["id"])
        batch.create_check_constraint("ck_request_answered", "(status = 'open') = (answered_at IS NULL)")
    op.create_index("ix_request_from_region", "coordination_request", ["from_region", "status", "due_date"])
    op.create_index(
        "uq_request_open_automatic",
        "coordination_request",
        ["client_id", "kind", "to_region"],
        unique=True,
        sqlite_where=sa.text(AUTOMATIC),
        postgresql_where=sa.text(AUTOMATIC),
    )


def downgrade() -> None:
    op.drop_index("uq_request_open_automatic", table_name="coordination_request")
    op.drop_index("ix_request_from_region", table_name="coordination_request")
    with op.batch_alter_table("coordination_request") as batch:
        batch.drop_constraint("ck_request_answered", type_="check")
        batch.drop_constraint("fk_coordination_request_pair_id_work_pair", type_="foreignkey")
        batch.drop_constraint("fk_coordination_request_assignment_id_assignment", type_="foreignkey")
        for column in ("pair_id", "assignment_id", "answer_note", "answered_by_region", "answered_by", "answered_at"):
            batch.drop_column(column)
    op.drop_table("work_pair")

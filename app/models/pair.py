"""Work pairs: two workers linked to work together on one client, across regions or services."""

from __future__ import annotations

import datetime as dt
import uuid

from sqlalchemy import CheckConstraint, Index, String, text
from sqlmodel import Field, SQLModel

from app.models import examples as ex
from app.models.common import InputModel, PairKind, PairStatus, UTCDateTime, enum_check, new_id, timestamp_field

_LIVE = "status IN ('proposed', 'active')"


class WorkPair(SQLModel, table=True):
    """A pair proposed by one side and confirmed by the other; in force over ``[valid_from, valid_to)``.

    The two workers are stored in a fixed order (smaller id first) so that the database can
    refuse a second live pair of the same two workers for a client, whichever side proposed.
    """

    __tablename__ = "work_pair"
    __table_args__ = (
        CheckConstraint(enum_check("kind", PairKind), name="ck_pair_kind"),
        CheckConstraint(enum_check("status", PairStatus), name="ck_pair_status"),
        CheckConstraint("worker_1_id < worker_2_id", name="ck_pair_worker_order"),
        CheckConstraint(
            "status <> 'active' OR (valid_from IS NOT NULL AND valid_to IS NULL)", name="ck_pair_active_dates"
        ),
        CheckConstraint("status <> 'proposed' OR valid_from IS NULL", name="ck_pair_proposed_dates"),
        CheckConstraint("valid_to IS NULL OR valid_to >= valid_from", name="ck_pair_dates"),
        # At most one live cross-region pair per client, whatever the race.
        Index(
            "uq_pair_cross_region_live",
            "client_id",
            unique=True,
            sqlite_where=text(f"kind = 'cross_region' AND {_LIVE}"),
            postgresql_where=text(f"kind = 'cross_region' AND {_LIVE}"),
        ),
        Index(
            "uq_pair_workers_live",
            "client_id",
            "worker_1_id",
            "worker_2_id",
            unique=True,
            sqlite_where=text(_LIVE),
            postgresql_where=text(_LIVE),
        ),
        Index("ix_pair_worker_1", "worker_1_id", "status", "valid_from", "valid_to"),  # in force: index only
        Index("ix_pair_worker_2", "worker_2_id", "status", "valid_from", "valid_to"),
    )

    id: uuid.UUID = Field(default_factory=new_id, primary_key=True)
    client_id: uuid.UUID = Field(foreign_key="client.id", index=True)
    kind: PairKind = Field(sa_type=String(20))
    status: PairStatus = Field(default=PairStatus.proposed, sa_type=String(20))
    worker_1_id: uuid.UUID = Field(foreign_key="worker.id")
    worker_2_id: uuid.UUID = Field(foreign_key="worker.id")
    assignment_1_id: uuid.UUID | None = Field(default=None, foreign_key="assignment.id")
    assignment_2_id: uuid.UUID | None = Field(default=None, foreign_key="assignment.id")
    proposed_by_region: str = Field(foreign_key="region.code", max_length=2)
    confirm_region: str = Field(foreign_key="region.code", max_length=2)
    proposed_by: str = Field(max_length=200)
    proposed_at: dt.datetime = timestamp_field()
    valid_from: dt.date | None = None
    confirmed_at: dt.datetime | None = Field(default=None, sa_type=UTCDateTime)
    confirmed_by: str | None = Field(default=None, max_length=200)
    valid_to: dt.date | None = None
    ended_at: dt.datetime | None = Field(default=None, sa_type=UTCDateTime)
    end_reason: str | None = Field(default=None, max_length=500)
    version: int = 1


class PairCreate(InputModel):
    model_config = ex.config(ex.PAIR_CREATE)
    worker_ids: list[uuid.UUID] = Field(min_length=2, max_length=2)
    kind: PairKind


class PairEnd(InputModel):
    model_config = ex.config(ex.PAIR_END)
    reason: str = Field(default="ended", min_length=1, max_length=500)


class PairPublic(SQLModel):
    model_config = ex.config(ex.PAIR_PUBLIC)
    id: uuid.UUID
    client_id: uuid.UUID
    kind: PairKind
    status: PairStatus = Field(description="proposed, active, or ended (from end_date on)")
    worker_ids: list[uuid.UUID]
    assignment_ids: list[uuid.UUID]
    proposed_by_region: str
    confirm_region: str
    proposed_at: dt.datetime
    start_date: dt.date | None
    end_date: dt.date | None
    end_reason: str | None
    confirmed_at: dt.datetime | None

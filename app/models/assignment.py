"""Assignments of named workers, and the compliance gaps left where one is missing."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Literal

from sqlalchemy import CheckConstraint, ColumnElement, Index, String, func, literal_column, text
from sqlmodel import Field, SQLModel, col

from app.models import examples as ex
from app.models.common import Day, InputModel, Responsibility, UTCDateTime, enum_check, new_id, timestamp_field

OPEN_END = "9999-12-31"  # an open assignment's end, as ``ix_assignment_in_force`` sorts it


class Assignment(SQLModel, table=True):
    """One named worker holding one responsibility for one client over ``[valid_from, valid_to)``."""

    __tablename__ = "assignment"
    __table_args__ = (
        CheckConstraint(enum_check("responsibility", Responsibility), name="ck_assignment_responsibility"),
        CheckConstraint("valid_to IS NULL OR valid_to >= valid_from", name="ck_assignment_dates"),
        # Rule 2: at most one open holder per client and responsibility, whatever the race.
        Index(
            "uq_assignment_open",
            "client_id",
            "responsibility",
            unique=True,
            sqlite_where=text("valid_to IS NULL AND retracted_at IS NULL"),
            postgresql_where=text("valid_to IS NULL AND retracted_at IS NULL"),
        ),
        Index("ix_assignment_worker", "worker_id", "valid_to"),
        Index("ix_assignment_region", "region", "valid_to"),
        # the caseload counts read a region's assignments in force on a day as one range of this
        # index (``ends_after``): an open end sorts last, so ended ones are never visited
        Index(
            "ix_assignment_in_force",
            "region",
            text(f"coalesce(valid_to, '{OPEN_END}')"),
            "worker_id",
            "client_id",
            "valid_from",
            "valid_to",
            sqlite_where=text("retracted_at IS NULL"),
            postgresql_where=text("retracted_at IS NULL"),
        ),
    )

    id: uuid.UUID = Field(default_factory=new_id, primary_key=True)
    client_id: uuid.UUID = Field(foreign_key="client.id", index=True)
    responsibility: str = Field(sa_type=String(20))
    region: str = Field(foreign_key="region.code", max_length=2)
    worker_id: uuid.UUID = Field(foreign_key="worker.id")
    valid_from: dt.date
    valid_to: dt.date | None = None
    end_reason: str | None = Field(default=None, max_length=500)
    recorded_at: dt.datetime = timestamp_field()
    valid_to_recorded_at: dt.datetime | None = Field(default=None, sa_type=UTCDateTime)
    retracted_at: dt.datetime | None = Field(default=None, sa_type=UTCDateTime)


def ends_after(on: dt.date) -> ColumnElement[bool]:
    """SQL: the assignment has not ended by ``on`` (open, or ending later), in the form
    ``ix_assignment_in_force`` answers as one range. The open end is SQL text, not a parameter:
    PostgreSQL matches an expression index only to the same expression with the same constant."""
    return func.coalesce(col(Assignment.valid_to), literal_column(f"'{OPEN_END}'")) > on


class AssignmentCreate(InputModel):
    model_config = ex.config(ex.ASSIGNMENT_CREATE)
    responsibility: Responsibility
    worker_id: uuid.UUID | Literal["suggested"] = Field(
        description='a worker of the caller\'s region, or "suggested": the eligible one with the most room'
    )
    start_date: Day | None = None


class AssignmentEnd(InputModel):
    model_config = ex.config(ex.ASSIGNMENT_END)
    end_date: Day | None = Field(default=None, description="First day the worker no longer holds it (default: today)")
    reason: str = Field(min_length=1, max_length=500)


class AssignmentPublic(SQLModel):
    model_config = ex.config(ex.ASSIGNMENT_PUBLIC)
    id: uuid.UUID
    client_id: uuid.UUID
    responsibility: Responsibility
    region: str
    worker_id: uuid.UUID
    worker_name: str | None = None
    worker_role: str | None = None
    start_date: dt.date
    end_date: dt.date | None
    end_reason: str | None = None
    recorded_at: dt.datetime


class ComplianceGap(SQLModel, table=True):
    """A required named worker missing since ``since``; closed by an assignment, never deleted."""

    __tablename__ = "compliance_gap"
    __table_args__ = (
        CheckConstraint(enum_check("responsibility", Responsibility), name="ck_gap_responsibility"),
        CheckConstraint("due >= since", name="ck_gap_due"),
        Index(
            "uq_gap_open",
            "client_id",
            "responsibility",
            unique=True,
            sqlite_where=text("closed_at IS NULL"),
            postgresql_where=text("closed_at IS NULL"),
        ),
        Index("ix_gap_region_due", "region", "closed_at", "due"),
        # "in force on a day" (closed_on IS NULL OR closed_on > day): a BitmapOr of these two
        Index(
            "ix_gap_open_region_due",
            "region",
            "due",
            "id",
            sqlite_where=text("closed_on IS NULL"),
            postgresql_where=text("closed_on IS NULL"),
        ),
        Index("ix_gap_closed_on", "closed_on"),
    )

    id: uuid.UUID = Field(default_factory=new_id, primary_key=True)
    client_id: uuid.UUID = Field(foreign_key="client.id", index=True)
    responsibility: str = Field(sa_type=String(20))
    region: str = Field(foreign_key="region.code", max_length=2)
    since: dt.date
    due: dt.date
    cause: str = Field(max_length=50)
    opened_at: dt.datetime = timestamp_field()
    closed_on: dt.date | None = None
    closed_at: dt.datetime | None = Field(default=None, sa_type=UTCDateTime)
    closed_by_assignment_id: uuid.UUID | None = Field(default=None, foreign_key="assignment.id")
    close_reason: str | None = Field(default=None, max_length=50)


class GapPublic(SQLModel):
    id: uuid.UUID
    client_id: uuid.UUID
    responsibility: Responsibility
    region: str
    since: dt.date
    due: dt.date
    overdue: bool
    cause: str


class CompliancePublic(SQLModel):
    model_config = ex.config(ex.COMPLIANCE_PUBLIC)
    status: Literal["ok", "gap", "ended", "upcoming"] = Field(
        description="ok, gap or ended; upcoming when as_of falls before the client's aftercare begins"
    )
    as_of: dt.date
    missing: list[GapPublic]

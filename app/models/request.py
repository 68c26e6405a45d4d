"""Coordination requests: one region asking another to act, with a due date and an answer."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

from sqlalchemy import CheckConstraint, Column, Index, String, text
from sqlmodel import Field, SQLModel

from app.models import examples as ex
from app.models.common import (
    Day,
    InputModel,
    JSONType,
    RegionCode,
    RequestKind,
    RequestStatus,
    UTCDateTime,
    enum_check,
    new_id,
    timestamp_field,
)

# Kinds the rules open and close by themselves: at most one open per client, kind and receiver.
AUTOMATIC_KINDS = ("assign_residence_worker", "assign_organising_worker", "accept_organising_transfer")
_AUTOMATIC = "kind IN ('assign_residence_worker', 'assign_organising_worker', 'accept_organising_transfer')"


class CoordinationRequest(SQLModel, table=True):
    __tablename__ = "coordination_request"
    __table_args__ = (
        CheckConstraint(enum_check("kind", RequestKind), name="ck_request_kind"),
        CheckConstraint(enum_check("status", RequestStatus), name="ck_request_status"),
        Index("ix_request_to_region", "to_region", "status", "due_date"),
        Index("ix_request_client", "client_id", "status"),
        Index("ix_request_from_region", "from_region", "status", "due_date"),
        CheckConstraint("(status = 'open') = (answered_at IS NULL)", name="ck_request_answered"),
        Index(
            "uq_request_open_automatic",
            "client_id",
            "kind",
            "to_region",
            unique=True,
            sqlite_where=text(f"status = 'open' AND {_AUTOMATIC}"),
            postgresql_where=text(f"status = 'open' AND {_AUTOMATIC}"),
        ),
    )

    id: uuid.UUID = Field(default_factory=new_id, primary_key=True)
    client_id: uuid.UUID = Field(foreign_key="client.id")
    kind: RequestKind = Field(sa_type=String(40))
    from_region: str = Field(foreign_key="region.code", max_length=2)
    to_region: str = Field(foreign_key="region.code", max_length=2)
    status: RequestStatus = Field(default=RequestStatus.open, sa_type=String(20))
    due_date: dt.date
    message: str = Field(default="", max_length=4000)
    details: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSONType, nullable=False))
    created_by: str = Field(max_length=200)
    created_at: dt.datetime = timestamp_field()
    version: int = 1
    answered_at: dt.datetime | None = Field(default=None, sa_type=UTCDateTime)
    answered_by: str | None = Field(default=None, max_length=200)
    answered_by_region: str | None = Field(default=None, max_length=2)
    answer_note: str | None = Field(default=None, max_length=4000)
    assignment_id: uuid.UUID | None = Field(default=None, foreign_key="assignment.id")
    pair_id: uuid.UUID | None = Field(default=None, foreign_key="work_pair.id")
    cost_decision_id: uuid.UUID | None = Field(default=None, foreign_key="cost_decision.id")


class CoordinationRequestCreate(InputModel):
    model_config = ex.config(ex.REQUEST_CREATE)
    client_id: uuid.UUID
    to_region: RegionCode
    kind: RequestKind
    due_date: Day | None = Field(default=None, description="Default: today plus the receiver's grace days")
    message: str = Field(default="", max_length=4000)


class RequestAnswer(InputModel):
    model_config = ex.config(ex.REQUEST_ANSWER)
    note: str = Field(default="", max_length=4000)


class CoordinationRequestPublic(SQLModel):
    model_config = ex.config(ex.REQUEST_PUBLIC)
    id: uuid.UUID
    client_id: uuid.UUID
    kind: RequestKind
    from_region: str
    to_region: str
    status: RequestStatus
    due_date: dt.date
    message: str
    details: dict[str, Any]
    created_at: dt.datetime
    overdue: bool = False
    answered_at: dt.datetime | None = None
    answer_note: str | None = None
    assignment_id: uuid.UUID | None = None
    pair_id: uuid.UUID | None = None
    cost_decision_id: uuid.UUID | None = None

"""Coordination requests between regions (the core opens them; answering comes later)."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

from sqlalchemy import CheckConstraint, Column, Index, String
from sqlmodel import Field, SQLModel

from app.models.common import JSONType, RequestKind, RequestStatus, enum_check, new_id, timestamp_field


class CoordinationRequest(SQLModel, table=True):
    __tablename__ = "coordination_request"
    __table_args__ = (
        CheckConstraint(enum_check("kind", RequestKind), name="ck_request_kind"),
        CheckConstraint(enum_check("status", RequestStatus), name="ck_request_status"),
        Index("ix_request_to_region", "to_region", "status", "due_date"),
        Index("ix_request_client", "client_id", "status"),
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


class CoordinationRequestPublic(SQLModel):
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

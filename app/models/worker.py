"""Workers: the people a region can name for a client."""

from __future__ import annotations

import datetime as dt
import uuid

from pydantic import StrictBool
from sqlalchemy import CheckConstraint, Index, String
from sqlmodel import Field, SQLModel

from app.models import examples as ex
from app.models.common import Email, InputModel, RegionCode, Service, WorkerRole, enum_check, new_id, timestamp_field


class WorkerBase(SQLModel):
    name: str = Field(min_length=1, max_length=200)
    role: WorkerRole
    service: Service = Service.aftercare
    email: Email | None = None
    external_id: str | None = Field(default=None, min_length=1, max_length=100)


class Worker(WorkerBase, table=True):
    __tablename__ = "worker"
    __table_args__ = (
        CheckConstraint(enum_check("role", WorkerRole), name="ck_worker_role"),
        CheckConstraint(enum_check("service", Service), name="ck_worker_service"),
        Index("uq_worker_external_id", "region", "external_id", unique=True),
        Index("ix_worker_region_role", "region", "role", "active"),
    )

    id: uuid.UUID = Field(default_factory=new_id, primary_key=True)
    region: str = Field(foreign_key="region.code", max_length=2)
    role: WorkerRole = Field(sa_type=String(30))
    service: Service = Field(default=Service.aftercare, sa_type=String(30))
    active: bool = True
    active_from: dt.date | None = Field(default=None, description="first day active (since the latest activation)")
    inactive_from: dt.date | None = Field(default=None, description="first day no longer active")
    version: int = 1
    created_at: dt.datetime = timestamp_field()
    updated_at: dt.datetime = timestamp_field()


class WorkerCreate(WorkerBase, InputModel):
    model_config = ex.config(ex.WORKER_CREATE)
    region: RegionCode


class WorkerUpdate(InputModel):
    model_config = ex.config(ex.WORKER_UPDATE)
    name: str | None = Field(default=None, min_length=1, max_length=200)
    email: Email | None = None
    role: WorkerRole | None = None
    service: Service | None = None
    active: StrictBool | None = None


class WorkerPublic(WorkerBase):
    model_config = ex.config(ex.WORKER_PUBLIC)
    id: uuid.UUID
    region: str
    active: bool
    created_at: dt.datetime
    updated_at: dt.datetime


class AffectedClient(SQLModel):
    client_id: uuid.UUID
    responsibility: str
    assignment_id: uuid.UUID


class WorkerUpdated(WorkerPublic):
    """A worker after an update; ``affected_clients`` lists assignments a deactivation ended."""

    model_config = ex.config(ex.WORKER_UPDATED)

    affected_clients: list[AffectedClient] = Field(default_factory=list)

"""Caseload reports, and the dated history of a region's settings they are computed with."""

from __future__ import annotations

import datetime as dt
import uuid
from decimal import Decimal
from typing import Any

from sqlalchemy import Column, Index
from sqlmodel import Field, SQLModel

from app.models.common import JSONType, new_id, timestamp_field


class RegionSettingsVersion(SQLModel, table=True):
    """A region's settings from ``valid_from`` on (insert-only; the latest recorded wins per day)."""

    __tablename__ = "region_settings_version"
    __table_args__ = (Index("ix_region_settings_version", "region_code", "valid_from", "recorded_at"),)

    id: uuid.UUID = Field(default_factory=new_id, primary_key=True)
    region_code: str = Field(foreign_key="region.code", max_length=2)
    valid_from: dt.date
    grace_days: int
    aftercare_end_age: int
    caseload_targets: dict[str, Any] = Field(sa_column=Column(JSONType, nullable=False))
    caseload_weights: dict[str, Any] = Field(sa_column=Column(JSONType, nullable=False))
    recorded_at: dt.datetime = timestamp_field()
    recorded_by: str = Field(max_length=200)


class WorkerLoad(SQLModel):
    worker_id: uuid.UUID
    name: str
    role: str
    service: str
    active: bool
    clients: int = Field(description="distinct clients the worker is the named worker for")
    clients_by_support_level: dict[str, int]
    active_pairs: int = Field(description="work pairs in force, shown apart from the load")
    weighted_load: Decimal
    target: int | None
    utilisation: Decimal | None = Field(description="weighted load / target")
    status: str | None = Field(description="green (< 90 %), amber (90-110 %), red (> 110 %); null without a target")


class RoleStats(SQLModel):
    role: str
    workers: int
    clients: int
    target: int | None
    mean_load: Decimal | None
    median_load: Decimal | None
    min_load: Decimal | None
    max_load: Decimal | None
    spread: Decimal | None = Field(description="max / min load (null when the lightest load is 0)")
    over_target: int


class QueuedClient(SQLModel):
    client_id: uuid.UUID
    responsibility: str
    since: dt.date
    due: dt.date
    overdue: bool


class CaseloadReport(SQLModel):
    region: str
    as_of: dt.date
    targets: dict[str, int]
    weights: dict[str, float]
    workers: list[WorkerLoad]
    roles: list[RoleStats]
    queue: list[QueuedClient] = Field(description="clients missing a named worker, oldest gap first")
    queue_total: int
    queue_next_cursor: str | None = None


class Suggestion(SQLModel):
    region: str
    as_of: dt.date
    worker: WorkerLoad | None


class RegionOverview(SQLModel):
    region: str
    name_fi: str
    clients: int = Field(description="active clients the region organises")
    workers_by_role: dict[str, int]
    mean_load: Decimal | None
    spread: Decimal | None
    workers_over_target: int
    open_gaps: int
    overdue_gaps: int


class CaseloadOverview(SQLModel):
    as_of: dt.date
    computed_at: dt.datetime = Field(
        description="when these figures were computed: the overview is served from a snapshot at most "
        "SILTA_OVERVIEW_MAX_AGE_SECONDS old (60 by default), always of today"
    )
    regions: list[RegionOverview]

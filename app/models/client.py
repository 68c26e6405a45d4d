"""Clients (young people in aftercare), their external ids and responsibility periods."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any, Literal

from pydantic import StrictBool
from sqlalchemy import CheckConstraint, Index, LargeBinary, String, UniqueConstraint, text
from sqlmodel import Field, SQLModel

from app.models import examples as ex
from app.models.common import (
    Day,
    InputModel,
    MunicipalityCode,
    RegionCode,
    ResidenceOutside,
    Responsibility,
    SupportLevel,
    UTCDateTime,
    enum_check,
    new_id,
    timestamp_field,
)
from app.models.cost import CostDecisionPublic
from app.models.pair import PairPublic


class Client(SQLModel, table=True):
    __tablename__ = "client"
    __table_args__ = (
        CheckConstraint(enum_check("support_level", SupportLevel), name="ck_client_support_level"),
        CheckConstraint("aftercare_end >= aftercare_start", name="ck_client_aftercare_period"),
        # reports join many rows to "in aftercare on a day, at which level": answered from the index
        Index("ix_client_aftercare", "id", "aftercare_start", "aftercare_end", "support_level"),
    )

    id: uuid.UUID = Field(default_factory=new_id, primary_key=True)
    personal_id_hash: str = Field(max_length=64, unique=True, description="keyed hash (app.services.vault)")
    personal_id_cipher: bytes = Field(sa_type=LargeBinary, description="nonce + AES-GCM ciphertext")
    personal_id_key: str = Field(max_length=20, description="id of the key that encrypted it")
    first_name: str = Field(max_length=100)
    last_name: str = Field(max_length=100)
    birth_date: dt.date
    support_level: str = Field(sa_type=String(20))
    address_protection: bool = False
    aftercare_start: dt.date
    aftercare_end: dt.date = Field(index=True)
    end_date: dt.date | None = None
    end_reason: str | None = Field(default=None, max_length=500)
    version: int = 1
    created_at: dt.datetime = timestamp_field()
    updated_at: dt.datetime = timestamp_field()


class ClientExternalId(SQLModel, table=True):
    __tablename__ = "client_external_id"
    __table_args__ = (UniqueConstraint("system", "external_id", name="uq_client_external_id"),)

    id: uuid.UUID = Field(default_factory=new_id, primary_key=True)
    client_id: uuid.UUID = Field(foreign_key="client.id", index=True)
    system: str = Field(max_length=100)
    external_id: str = Field(max_length=100)


class ResponsibilityPeriod(SQLModel, table=True):
    """Which region held a responsibility for a client over ``[valid_from, valid_to)``.

    Rows are never deleted: ``recorded_at``/``valid_to_recorded_at``/``retracted_at`` say when
    each fact became known, so answers "as known at" a past moment can be reproduced.
    """

    __tablename__ = "responsibility_period"
    __table_args__ = (
        CheckConstraint(enum_check("responsibility", Responsibility), name="ck_period_responsibility"),
        CheckConstraint(
            "residence_outside IS NULL OR residence_outside IN ('aland', 'abroad')",
            name="ck_period_outside",
        ),
        CheckConstraint("valid_to IS NULL OR valid_to > valid_from", name="ck_period_dates"),
        CheckConstraint(
            "(region IS NOT NULL AND residence_outside IS NULL) OR "
            "(responsibility = 'residence' AND region IS NULL AND residence_outside IS NOT NULL)",
            name="ck_period_region_or_outside",
        ),
        Index(
            "uq_period_open",
            "client_id",
            "responsibility",
            unique=True,
            sqlite_where=text("valid_to IS NULL AND retracted_at IS NULL"),
            postgresql_where=text("valid_to IS NULL AND retracted_at IS NULL"),
        ),
        Index("ix_period_region_client", "region", "client_id"),
        # the national overview counts each region's organised clients from this index alone
        Index(
            "ix_period_organising",
            "region",
            "client_id",
            "valid_from",
            "valid_to",
            sqlite_where=text("responsibility = 'organising' AND retracted_at IS NULL"),
            postgresql_where=text("responsibility = 'organising' AND retracted_at IS NULL"),
        ),
    )

    id: uuid.UUID = Field(default_factory=new_id, primary_key=True)
    client_id: uuid.UUID = Field(foreign_key="client.id", index=True)
    responsibility: str = Field(sa_type=String(20))
    region: str | None = Field(default=None, foreign_key="region.code", max_length=2)
    municipality: str | None = Field(default=None, foreign_key="municipality.code", max_length=3)
    residence_outside: str | None = Field(default=None, sa_type=String(10))
    valid_from: dt.date
    valid_to: dt.date | None = None
    recorded_at: dt.datetime = timestamp_field()
    valid_to_recorded_at: dt.datetime | None = Field(default=None, sa_type=UTCDateTime)
    retracted_at: dt.datetime | None = Field(default=None, sa_type=UTCDateTime)


class ExternalIdIn(InputModel):
    system: str = Field(min_length=1, max_length=100)
    id: str = Field(min_length=1, max_length=100)


class ResidenceIn(SQLModel):
    residence_region: RegionCode | None = None
    residence_municipality: MunicipalityCode | None = None
    residence_outside: ResidenceOutside | None = None


class ClientCreate(ResidenceIn, InputModel):
    model_config = ex.config(ex.CLIENT_CREATE)
    personal_id: str = Field(min_length=11, max_length=40)
    first_name: str = Field(min_length=1, max_length=100)
    last_name: str = Field(min_length=1, max_length=100)
    organising_region: RegionCode
    address_protection: StrictBool = False
    aftercare_start: Day
    support_level: SupportLevel = SupportLevel.standard
    external_ids: list[ExternalIdIn] = Field(default_factory=list, max_length=20)


class ClientUpdate(InputModel):
    model_config = ex.config(ex.CLIENT_UPDATE)
    first_name: str | None = Field(default=None, min_length=1, max_length=100)
    last_name: str | None = Field(default=None, min_length=1, max_length=100)
    support_level: SupportLevel | None = None
    address_protection: StrictBool | None = None
    external_ids: list[ExternalIdIn] | None = Field(default=None, max_length=20)


class ClientSearch(InputModel):
    model_config = ex.config(ex.CLIENT_SEARCH_BY_CODE, ex.CLIENT_SEARCH_BY_EXTERNAL_ID)
    personal_id: str | None = Field(default=None, min_length=1, max_length=40)
    system: str | None = Field(default=None, min_length=1, max_length=100)
    external_id: str | None = Field(default=None, min_length=1, max_length=100)


class MoveCreate(ResidenceIn, InputModel):
    model_config = ex.config(ex.MOVE_CREATE)
    effective_date: Day


class OrganisingTransferCreate(InputModel):
    model_config = ex.config(ex.ORGANISING_TRANSFER_CREATE)
    to_region: RegionCode
    effective_date: Day
    reason: str = Field(min_length=1, max_length=2000)


class ClientEnd(InputModel):
    model_config = ex.config(ex.CLIENT_END)
    end_date: Day
    reason: str = Field(min_length=1, max_length=500)


class ClientSummary(SQLModel):
    """A client in lists: no identity code."""

    id: uuid.UUID
    first_name: str
    last_name: str
    birth_date: dt.date
    organising_region: str
    residence_region: str | None
    residence_municipality: str | None
    residence_outside: ResidenceOutside | None
    address_protection: bool
    support_level: SupportLevel
    aftercare_start: dt.date
    aftercare_end: dt.date
    status: str
    compliance: str


class ExternalIdPublic(SQLModel):
    system: str
    id: str


class ClientPublic(ClientSummary):
    model_config = ex.config(ex.CLIENT_PUBLIC)
    access: Literal["full", "request"] = Field(
        default="full",
        description="request: the caller's region sees the client only through an open coordination request,"
        " so the identity code, external ids and municipality are withheld",
    )
    personal_id: str | None
    end_reason: str | None
    external_ids: list[ExternalIdPublic]
    missing: list[Any] = Field(default_factory=list, description="open compliance gaps")
    created_at: dt.datetime
    updated_at: dt.datetime


class NamedWorker(SQLModel):
    assignment_id: uuid.UUID
    worker_id: uuid.UUID
    name: str
    role: str
    since: dt.date


class HeldResponsibility(SQLModel):
    region: str | None
    since: dt.date
    residence_outside: ResidenceOutside | None = None
    named_worker: NamedWorker | None


class ResponsibilityPublic(SQLModel):
    client_id: uuid.UUID
    as_of: dt.date
    known_at: dt.datetime
    status: str
    organising: HeldResponsibility | None
    residence: HeldResponsibility | None
    compliance: str
    missing: list[Any]
    pairs: list[PairPublic] = Field(default_factory=list, description="work pairs in force on as_of")
    cost_decisions: list[CostDecisionPublic] = Field(
        default_factory=list, description="agreed, not superseded cost decisions covering as_of"
    )
    pending_requests: list[Any] = Field(default_factory=list, description="requests open on as_of")


class TimelineEntry(SQLModel):
    date: dt.date
    recorded_at: dt.datetime
    type: str
    responsibility: str | None = None
    region: str | None = None
    details: dict[str, Any] = Field(default_factory=dict)


class ClientHistory(SQLModel):
    client_id: uuid.UUID
    items: list[TimelineEntry]

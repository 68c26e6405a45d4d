"""Regions (hyvinvointialueet), their settings, and municipalities."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any

from pydantic import Field as PydanticField
from pydantic import StrictInt
from sqlalchemy import CheckConstraint, Column
from sqlmodel import Field, SQLModel

from app.models import examples as ex
from app.models.common import InputModel, JSONType, SupportLevel, WorkerRole, timestamp_field

DEFAULT_CASELOAD_TARGETS = {"social_worker": 50, "counsellor": 25, "special_counsellor": 25}
DEFAULT_CASELOAD_WEIGHTS = {"standard": 1.0, "enhanced": 1.5, "special": 2.0}
CaseloadTarget = Annotated[StrictInt, PydanticField(ge=1, le=1000, description="clients per worker at 100 %")]
CaseloadWeight = Annotated[float, PydanticField(gt=0, le=10, allow_inf_nan=False)]


class RegionSettings(SQLModel):
    grace_days: int = Field(default=14, ge=0, le=365)
    aftercare_end_age: int = Field(default=23, ge=23, le=25)
    caseload_targets: dict[str, int] = Field(default_factory=lambda: dict(DEFAULT_CASELOAD_TARGETS))
    caseload_weights: dict[str, float] = Field(default_factory=lambda: dict(DEFAULT_CASELOAD_WEIGHTS))


class Region(SQLModel, table=True):
    __tablename__ = "region"
    __table_args__ = (
        CheckConstraint("grace_days BETWEEN 0 AND 365", name="ck_region_grace_days"),
        CheckConstraint("aftercare_end_age BETWEEN 23 AND 25", name="ck_region_aftercare_end_age"),
    )

    code: str = Field(primary_key=True, max_length=2)
    name_fi: str = Field(max_length=200)
    name_sv: str = Field(max_length=200)
    name_en: str = Field(max_length=200)
    organiser: bool
    grace_days: int = 14
    aftercare_end_age: int = 23
    caseload_targets: dict[str, Any] = Field(sa_column=Column(JSONType, nullable=False))
    caseload_weights: dict[str, Any] = Field(sa_column=Column(JSONType, nullable=False))
    updated_at: dt.datetime = timestamp_field()


class RegionPublic(SQLModel):
    model_config = ex.config(ex.REGION_PUBLIC)
    code: str
    name_fi: str
    name_sv: str
    name_en: str
    settings: RegionSettings


class RegionSettingsUpdate(InputModel):
    model_config = ex.config(ex.REGION_SETTINGS_UPDATE)
    grace_days: StrictInt | None = Field(default=None, ge=0, le=365)
    aftercare_end_age: StrictInt | None = Field(default=None, ge=23, le=25)
    caseload_targets: dict[WorkerRole, CaseloadTarget] | None = None
    caseload_weights: dict[SupportLevel, CaseloadWeight] | None = None


class Municipality(SQLModel, table=True):
    __tablename__ = "municipality"

    code: str = Field(primary_key=True, max_length=3)
    name_fi: str = Field(max_length=200)
    region_code: str = Field(foreign_key="region.code", max_length=2, index=True)
    classification_year: int


class MunicipalityPublic(SQLModel):
    model_config = ex.config(ex.MUNICIPALITY_PUBLIC)
    code: str
    name_fi: str
    region: str
    classification_year: int

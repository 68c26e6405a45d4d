"""Column types and vocabularies shared by the tables and schemas."""

from __future__ import annotations

import datetime as dt
import re
import uuid
from enum import StrEnum
from typing import Annotated, Any, Generic, TypeVar

from pydantic import AfterValidator, BaseModel, ConfigDict, StringConstraints, ValidationInfo, field_validator
from pydantic import Field as PydanticField
from sqlalchemy import JSON, DateTime, TypeDecorator
from sqlalchemy.dialects.postgresql import JSONB
from sqlmodel import Field, SQLModel

from app.domain.personal_id import holds_identity_code

# Named constraints everywhere, so migrations can refer to them on both backends.
SQLModel.metadata.naming_convention = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

T = TypeVar("T")

RegionCode = Annotated[str, StringConstraints(pattern=r"^\d{2}$")]
MunicipalityCode = Annotated[str, StringConstraints(pattern=r"^\d{3}$")]
Email = Annotated[str, StringConstraints(pattern=r"^[^@\s]+@[^@\s]+$", max_length=254)]

JSONType = JSON().with_variant(JSONB(), "postgresql")
MAX_ROW_ID = 2**63 - 1  # BIGINT: a larger id or position is no row of ours

# Every date and timestamp a caller sends lies in this range: no year 0001 or 9999 reaches a
# calculation (a due date, a conversion to UTC) or the database.
EARLIEST_DATE, LATEST_DATE = dt.date(1900, 1, 1), dt.date(2100, 12, 31)
EARLIEST_MOMENT = dt.datetime.combine(EARLIEST_DATE, dt.time.min, dt.UTC)
LATEST_MOMENT = dt.datetime.combine(LATEST_DATE, dt.time.max, dt.UTC)


def _between(low: dt.date, high: dt.date, what: str) -> Any:
    """Bounds for a date or timestamp, also stated in the OpenAPI schema (``formatMinimum``/``formatMaximum``)."""
    shown = [value.isoformat().replace("+00:00", "Z") for value in (low, high)]
    return PydanticField(
        ge=low,
        le=high,
        description=f"{what} between {shown[0]} and {shown[1]}",
        json_schema_extra={"formatMinimum": shown[0], "formatMaximum": shown[1]},
    )


Day = Annotated[dt.date, _between(EARLIEST_DATE, LATEST_DATE, "a date")]


def _utc_if_naive(value: dt.datetime) -> dt.datetime:
    return value if value.tzinfo is not None else value.replace(tzinfo=dt.UTC)


Moment = Annotated[
    dt.datetime,
    _between(EARLIEST_MOMENT, LATEST_MOMENT, "an RFC 3339 timestamp (UTC without offset)"),
    AfterValidator(_utc_if_naive),
]


class UTCDateTime(TypeDecorator[dt.datetime]):
    """Timezone-aware UTC timestamps on both backends (SQLite drops the offset)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: dt.datetime | None, dialect: Any) -> dt.datetime | None:
        if value is not None and value.tzinfo is None:
            raise ValueError("naive datetime given for a UTC column")
        return value.astimezone(dt.UTC) if value is not None else None

    def process_result_value(self, value: dt.datetime | None, dialect: Any) -> dt.datetime | None:
        if value is not None and value.tzinfo is None:
            return value.replace(tzinfo=dt.UTC)
        return value


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def new_id() -> uuid.UUID:
    return uuid.uuid4()


def timestamp_field(**kwargs: Any) -> Any:
    """A tz-aware UTC timestamp column, defaulting to now."""
    return Field(default_factory=utcnow, sa_type=UTCDateTime, **kwargs)


# C0 controls other than tab and line breaks, DEL, and lone surrogates: no database stores them faithfully.
_UNSTORABLE = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\ud800-\udfff]")
# The one field an identity code belongs in: it is sealed (app.services.vault). Any other text goes as
# it is into the change log (append-only: a code there could never be taken out), the change feed and
# webhooks of other regions, and exports.
CODE_FIELDS = frozenset({"personal_id"})


def _refuse_unstorable(value: Any, *, codes: bool = False) -> Any:
    if isinstance(value, str) and _UNSTORABLE.search(value):
        raise ValueError("control characters and unpaired surrogates are not allowed")
    if isinstance(value, str) and not codes and holds_identity_code(value):
        raise ValueError("an identity code belongs in personal_id only, never in other text")
    if isinstance(value, dict):
        for key, item in value.items():
            _refuse_unstorable(key)
            _refuse_unstorable(item)
    elif isinstance(value, list | tuple):
        for item in value:
            _refuse_unstorable(item)
    return value


class InputModel(SQLModel):
    """Base of request bodies: unknown fields are refused, not ignored, and text must be storable and
    hold no identity code outside ``personal_id``."""

    model_config = ConfigDict(extra="forbid")  # type: ignore[assignment]

    @field_validator("*", mode="before")
    @classmethod
    def _storable_text(cls, value: Any, info: ValidationInfo) -> Any:
        return _refuse_unstorable(value, codes=info.field_name in CODE_FIELDS)


class Responsibility(StrEnum):
    organising = "organising"
    residence = "residence"


class SupportLevel(StrEnum):
    standard = "standard"
    enhanced = "enhanced"
    special = "special"


class WorkerRole(StrEnum):
    social_worker = "social_worker"
    counsellor = "counsellor"
    special_counsellor = "special_counsellor"
    other = "other"


class Service(StrEnum):
    aftercare = "aftercare"
    disability = "disability"
    mental_health_substance = "mental_health_substance"
    adult_social_work = "adult_social_work"
    other = "other"


class ServiceType(StrEnum):
    mental_health_housing = "mental_health_housing"
    substance_abuse_housing = "substance_abuse_housing"
    disability_housing = "disability_housing"
    supported_housing = "supported_housing"
    aftercare_financial_support = "aftercare_financial_support"
    other = "other"


class DecisionStatus(StrEnum):
    proposed = "proposed"
    agreed = "agreed"
    disputed = "disputed"
    superseded = "superseded"


class PairKind(StrEnum):
    cross_region = "cross_region"
    cross_service = "cross_service"


class PairStatus(StrEnum):
    proposed = "proposed"
    active = "active"
    ended = "ended"


class ResidenceOutside(StrEnum):
    aland = "aland"
    abroad = "abroad"


class RequestKind(StrEnum):
    assign_residence_worker = "assign_residence_worker"
    assign_organising_worker = "assign_organising_worker"
    accept_organising_transfer = "accept_organising_transfer"
    confirm_pair = "confirm_pair"
    review_cost_decision = "review_cost_decision"
    other = "other"


class RequestStatus(StrEnum):
    open = "open"
    accepted = "accepted"
    declined = "declined"
    cancelled = "cancelled"


def enum_check(column: str, enum: type[StrEnum]) -> str:
    """SQL for a CHECK constraint keeping ``column`` inside ``enum``."""
    values = ", ".join(f"'{member.value}'" for member in enum)
    return f"{column} IN ({values})"


class PageOut(BaseModel, Generic[T]):
    """One page of a list; pass ``next_cursor`` as ``?cursor=`` for the next one."""

    items: list[T]
    next_cursor: str | None

"""Cost-responsibility decisions (rule 9): an insert-only register of who pays for what.

A decision row is written once; its answer (agreed or disputed) is a second insert-only row,
at most one per decision. "Superseded" is derived: an agreed decision that names an older one
in ``supersedes_id`` replaces it. Nothing here is ever updated or deleted; on PostgreSQL a
trigger refuses UPDATE and DELETE on both tables.
"""

from __future__ import annotations

import datetime as dt
import uuid
from decimal import Decimal
from typing import Annotated

from pydantic import Field as PydanticField
from pydantic import WithJsonSchema
from sqlalchemy import BigInteger, CheckConstraint, Column, Index, String, UniqueConstraint
from sqlmodel import Field, SQLModel

from app.models import examples as ex
from app.models.common import (
    Day,
    DecisionStatus,
    InputModel,
    RegionCode,
    Service,
    ServiceType,
    enum_check,
    new_id,
    timestamp_field,
)

Euros = Annotated[
    Decimal,
    PydanticField(ge=0, le=Decimal("9999999999.99"), max_digits=12, decimal_places=2),
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "number", "minimum": 0, "maximum": 9999999999.99},
                {"type": "string", "pattern": r"^\d{1,10}(\.\d{1,2})?$"},
            ]
        }
    ),
]


class CostDecision(SQLModel, table=True):
    __tablename__ = "cost_decision"
    __table_args__ = (
        CheckConstraint(enum_check("service_type", ServiceType), name="ck_cost_decision_service_type"),
        CheckConstraint(enum_check("payer_service", Service), name="ck_cost_decision_payer_service"),
        CheckConstraint("valid_to IS NULL OR valid_to > valid_from", name="ck_cost_decision_dates"),
        CheckConstraint("amount_cap_cents IS NULL OR amount_cap_cents >= 0", name="ck_cost_decision_amount"),
        CheckConstraint("supersedes_id IS NULL OR supersedes_id <> id", name="ck_cost_decision_not_self"),
        Index("ix_cost_decision_client", "client_id", "service_type"),
        Index("ix_cost_decision_payer", "payer_region", "created_at"),
        Index("ix_cost_decision_supersedes", "supersedes_id"),
    )

    id: uuid.UUID = Field(default_factory=new_id, primary_key=True)
    client_id: uuid.UUID = Field(foreign_key="client.id")
    service_type: str = Field(sa_type=String(40))
    payer_region: str = Field(foreign_key="region.code", max_length=2)
    payer_service: str = Field(sa_type=String(30))
    valid_from: dt.date
    valid_to: dt.date | None = None
    legal_basis: str = Field(max_length=2000)
    legal_basis_code: str | None = Field(default=None, max_length=100)
    reference: str | None = Field(default=None, max_length=200)
    amount_cap_cents: int | None = Field(default=None, sa_column=Column(BigInteger(), nullable=True))
    notes: str | None = Field(default=None, max_length=4000)
    proposed_by: str = Field(max_length=200)
    proposed_by_region: str = Field(foreign_key="region.code", max_length=2)
    counterparty_region: str = Field(foreign_key="region.code", max_length=2)
    supersedes_id: uuid.UUID | None = Field(default=None, foreign_key="cost_decision.id")
    created_at: dt.datetime = timestamp_field()


class CostDecisionEvent(SQLModel, table=True):
    """The counterparty's answer: one per decision, enforced by a unique constraint."""

    __tablename__ = "cost_decision_event"
    __table_args__ = (
        CheckConstraint("status IN ('agreed', 'disputed')", name="ck_cost_decision_event_status"),
        CheckConstraint("status <> 'disputed' OR length(reason) > 0", name="ck_cost_decision_event_reason"),
        UniqueConstraint("decision_id", name="uq_cost_decision_event_decision"),
    )

    id: uuid.UUID = Field(default_factory=new_id, primary_key=True)
    decision_id: uuid.UUID = Field(foreign_key="cost_decision.id")
    status: str = Field(sa_type=String(20))
    reason: str = Field(default="", max_length=4000)
    actor: str = Field(max_length=200)
    actor_region: str = Field(foreign_key="region.code", max_length=2)
    created_at: dt.datetime = timestamp_field()


class CostDecisionCreate(InputModel):
    model_config = ex.config(ex.COST_DECISION_CREATE)
    service_type: ServiceType
    payer_region: RegionCode
    payer_service: Service
    valid_from: Day
    valid_to: Day | None = Field(default=None, description="First day no longer covered (open-ended when null)")
    legal_basis: str = Field(min_length=1, max_length=2000)
    legal_basis_code: str | None = Field(default=None, min_length=1, max_length=100)
    reference: str | None = Field(default=None, min_length=1, max_length=200)
    amount_cap_eur: Euros | None = Field(default=None, description='Exact euros and cents, e.g. "1250.00"')
    notes: str | None = Field(default=None, max_length=4000)
    supersedes: uuid.UUID | None = None


class CostDecisionAgree(InputModel):
    model_config = ex.config(ex.COST_DECISION_AGREE)
    note: str = Field(default="", max_length=4000)


class CostDecisionDispute(InputModel):
    model_config = ex.config(ex.COST_DECISION_DISPUTE)
    reason: str = Field(min_length=1, max_length=4000)


class CostDecisionPublic(SQLModel):
    model_config = ex.config(ex.COST_DECISION_PUBLIC)
    id: uuid.UUID
    client_id: uuid.UUID
    service_type: ServiceType
    payer_region: str
    payer_service: Service
    valid_from: dt.date
    valid_to: dt.date | None
    legal_basis: str
    legal_basis_code: str | None
    reference: str | None
    amount_cap_eur: Decimal | None
    notes: str | None
    status: DecisionStatus
    proposed_by_region: str
    counterparty_region: str
    proposed_at: dt.datetime
    answered_at: dt.datetime | None
    answer_reason: str | None
    supersedes: uuid.UUID | None
    superseded_by: uuid.UUID | None


class PaidService(SQLModel):
    service_type: ServiceType
    decisions: int
    amount_cap_eur: Decimal = Field(description="sum of the caps of the decisions that have one")


class CostSummary(SQLModel):
    region: str
    as_of: dt.date
    open_disputes: int = Field(description="disputed, not yet superseded decisions the region is a party to")
    awaiting_our_answer: int = Field(description="proposals waiting for this region to agree or dispute")
    awaiting_their_answer: int = Field(description="this region's proposals waiting for the other party")
    paying: list[PaidService] = Field(description="agreed decisions in force today with this region as payer")

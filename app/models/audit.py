"""The audit logs and the chain that makes them tamper-evident (see ``app.services.chain``).

Three insert-only logs — changes, accesses (käyttöloki) and disclosures (luovutusloki) — each
entry carrying a MAC over its canonical form; ``audit_chain`` orders the entries and links each
to the one before by hash. Identity codes are never stored in any of them.
"""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

from sqlalchemy import BigInteger, Column, ForeignKey, Index, Integer, String, UniqueConstraint
from sqlmodel import Field, SQLModel

from app.models import examples as ex
from app.models.common import InputModel, JSONType, timestamp_field

BigId = BigInteger().with_variant(Integer(), "sqlite")  # SQLite autoincrements INTEGER PRIMARY KEY only


def _id() -> Any:
    return Field(default=None, sa_column=Column(BigId, primary_key=True, autoincrement=True))


class ActorColumns(SQLModel):
    """Who made a change or access entry: the caller's subject, roles and region, client system, request."""

    actor: str = Field(max_length=200)
    roles: str = Field(max_length=100)
    actor_region: str | None = Field(default=None, max_length=2)
    client_system: str | None = Field(default=None, max_length=100)
    request_id: str | None = Field(default=None, max_length=100)


class ChangeEvent(ActorColumns, table=True):
    """One write request: who, as what, from where, and every entity it changed (``changes``)."""

    __tablename__ = "change_event"
    __table_args__ = (
        Index("ix_change_event_client", "client_id", "id"),
        Index("ix_change_event_entity", "entity_type", "entity_id"),
        Index("ix_change_event_occurred", "occurred_at"),
    )

    id: int | None = _id()
    occurred_at: dt.datetime = timestamp_field()
    action: str = Field(max_length=60, description="the first change: what the request did")
    entity_type: str = Field(max_length=40)
    entity_id: str = Field(max_length=64)
    client_id: uuid.UUID | None = None
    changes: list[dict[str, Any]] = Field(default_factory=list, sa_column=Column(JSONType, nullable=False))
    mac: str = Field(default="", max_length=64)


class ChangeEventClient(SQLModel, table=True):
    """Every client a change touched (a deactivation touches many), for per-client queries."""

    __tablename__ = "change_event_client"
    __table_args__ = (Index("ix_change_event_client_client", "client_id", "event_id"),)

    event_id: int = Field(sa_column=Column(BigId, ForeignKey("change_event.id"), primary_key=True))
    client_id: uuid.UUID = Field(primary_key=True)


class AccessEntry(ActorColumns, table=True):
    """One response that carried personal data: who read which clients, where, and why."""

    __tablename__ = "access_log"
    __table_args__ = (
        Index("ix_access_log_occurred", "occurred_at"),
        Index("ix_access_log_region", "actor_region", "id"),
    )

    id: int | None = _id()
    occurred_at: dt.datetime = timestamp_field()
    method: str = Field(max_length=10)
    endpoint: str = Field(max_length=200)
    purpose: str = Field(max_length=30)
    client_ids: list[str] = Field(default_factory=list, sa_column=Column(JSONType, nullable=False))
    mac: str = Field(default="", max_length=64)


class AccessEntryClient(SQLModel, table=True):
    """The clients of an access entry, one row each, for the client's access report."""

    __tablename__ = "access_log_client"
    __table_args__ = (Index("ix_access_log_client_client", "client_id", "entry_id"),)

    entry_id: int = Field(sa_column=Column(BigId, ForeignKey("access_log.id"), primary_key=True))
    client_id: uuid.UUID = Field(primary_key=True)


class Disclosure(SQLModel, table=True):
    """Data about a client shown to a region other than its organising region, and on what basis."""

    __tablename__ = "disclosure_log"
    __table_args__ = (
        Index("ix_disclosure_log_client", "client_id", "id"),
        Index("ix_disclosure_log_to_region", "to_region", "id"),
    )

    id: int | None = _id()
    occurred_at: dt.datetime = timestamp_field()
    access_id: int = Field(sa_column=Column(BigId, ForeignKey("access_log.id"), nullable=False))
    client_id: uuid.UUID
    from_region: str = Field(max_length=2)
    to_region: str = Field(max_length=2)
    basis: str = Field(max_length=200)
    purpose: str = Field(max_length=30)
    actor: str = Field(max_length=200)
    request_id: str | None = Field(default=None, max_length=100)
    mac: str = Field(default="", max_length=64)


class ChainLink(SQLModel, table=True):
    """Position ``position`` of the chain: which log entry, its MAC, and the running hash."""

    __tablename__ = "audit_chain"
    __table_args__ = (
        UniqueConstraint("log", "entry_id", name="uq_audit_chain_entry"),
        Index("uq_audit_chain_mac", "entry_mac", unique=True),
    )

    position: int = Field(sa_column=Column(BigId, primary_key=True, autoincrement=False))
    log: str = Field(sa_type=String(20))
    entry_id: int = Field(sa_column=Column(BigId, nullable=False))
    entry_mac: str = Field(max_length=64)
    chain_hash: str = Field(max_length=64)
    sealed_at: dt.datetime = timestamp_field()


class ChangeEntryPublic(SQLModel):
    id: int
    occurred_at: dt.datetime
    actor: str
    roles: str
    actor_region: str | None
    client_system: str | None
    request_id: str | None
    action: str
    entity_type: str
    entity_id: str
    client_id: uuid.UUID | None
    changes: list[dict[str, Any]]


class AccessEntryPublic(SQLModel):
    id: int
    occurred_at: dt.datetime
    actor: str
    roles: str
    actor_region: str | None
    client_system: str | None
    request_id: str | None
    method: str
    endpoint: str
    purpose: str
    client_ids: list[str]


class DisclosurePublic(SQLModel):
    id: int
    occurred_at: dt.datetime
    access_id: int
    client_id: uuid.UUID
    from_region: str
    to_region: str
    basis: str
    purpose: str
    actor: str
    request_id: str | None


class AccessReportItem(SQLModel):
    occurred_at: dt.datetime
    actor: str
    roles: str
    actor_region: str | None
    client_system: str | None
    endpoint: str
    purpose: str
    disclosed_to: list[DisclosurePublic]


class AccessReport(SQLModel):
    client_id: uuid.UUID
    since: dt.datetime
    until: dt.datetime
    items: list[AccessReportItem]
    next_cursor: str | None


class VerifyReport(SQLModel):
    ok: bool
    checked: int = Field(description="chain positions verified (up to the first broken one)")
    sealed: int = Field(description="entries in the chain, all verified when ok")
    unsealed: int = Field(description="entries written but not sealed yet (their MACs are checked)")
    head_position: int
    head_hash: str
    first_broken_position: int | None
    problem: str | None = Field(
        description="position_missing, entry_deleted, entry_modified, chain_modified or forged_entry"
    )
    forged_entries: list[dict[str, Any]]


class Checkpoint(SQLModel):
    position: int
    chain_hash: str
    issued_at: str
    signature: str = Field(description="compact JWS (ES256) over the other fields; keys at /v1/audit/keys")


class CheckpointCheck(InputModel):
    model_config = ex.config(ex.CHECKPOINT_CHECK)
    signature: str = Field(max_length=4000)


class CheckpointResult(SQLModel):
    valid: bool
    reason: str | None = None
    position: int | None = None
    chain_hash: str | None = None
    issued_at: str | None = None
    first_broken_position: int | None = None

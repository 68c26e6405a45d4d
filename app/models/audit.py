"""The change log: one row per change, written in the change's own transaction.

Columns are laid out so the tamper-evident chain (position and hashes) can be added to
this table without rewriting it; identity codes are never stored here.
"""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

from sqlalchemy import BigInteger, Column, Index, Integer
from sqlmodel import Field, SQLModel

from app.models.common import JSONType, timestamp_field


class ChangeEvent(SQLModel, table=True):
    __tablename__ = "change_event"
    __table_args__ = (
        Index("ix_change_event_client", "client_id", "id"),
        Index("ix_change_event_entity", "entity_type", "entity_id"),
    )

    id: int | None = Field(
        default=None,
        sa_column=Column(BigInteger().with_variant(Integer(), "sqlite"), primary_key=True, autoincrement=True),
    )
    occurred_at: dt.datetime = timestamp_field()
    actor: str = Field(max_length=200)
    roles: str = Field(max_length=100)
    actor_region: str | None = Field(default=None, max_length=2)
    client_system: str | None = Field(default=None, max_length=100)
    request_id: str | None = Field(default=None, max_length=100)
    action: str = Field(max_length=60)
    entity_type: str = Field(max_length=40)
    entity_id: str = Field(max_length=64)
    client_id: uuid.UUID | None = None
    before: dict[str, Any] | None = Field(default=None, sa_column=Column(JSONType))
    after: dict[str, Any] | None = Field(default=None, sa_column=Column(JSONType))

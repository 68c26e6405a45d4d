"""What integrations need besides the domain: idempotency records."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import Column, Index, LargeBinary
from sqlmodel import Field, SQLModel

from app.models.common import JSONType, timestamp_field


class IdempotencyRecord(SQLModel, table=True):
    """The first response to a POST with an ``Idempotency-Key``, stored in the transaction of its effect.

    The primary key (subject, key) is the unique constraint that makes a second effect impossible:
    two requests racing with one key cannot both commit.
    """

    __tablename__ = "idempotency_key"
    __table_args__ = (Index("ix_idempotency_key_created", "created_at"),)

    subject: str = Field(primary_key=True, max_length=200)
    key: str = Field(primary_key=True, max_length=255)
    method: str = Field(max_length=10)
    path: str = Field(max_length=500)
    request_hash: str = Field(max_length=64)
    status_code: int
    headers: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSONType, nullable=False))
    body: bytes = Field(sa_column=Column(LargeBinary, nullable=False))
    created_at: dt.datetime = timestamp_field()

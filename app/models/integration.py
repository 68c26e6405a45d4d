"""What integrations need besides the domain: idempotency records, the change feed, rate-limit buckets."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

from sqlalchemy import BigInteger, Column, Double, Index, LargeBinary
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


class RateLimitBucket(SQLModel, table=True):
    """One caller's use of one endpoint class: when its whole allowance is back (see ``app.services.rate_limit``).

    ``subject`` is the SHA-256 of the token's ``sub``, so the table holds no identifier of a person.
    """

    __tablename__ = "rate_limit_bucket"

    subject: str = Field(primary_key=True, max_length=64)
    endpoint_class: str = Field(primary_key=True, max_length=20)
    refilled_at: float = Field(sa_column=Column(Double, nullable=False))


class FeedPosition(SQLModel, table=True):
    """Per region: the last sequence number handed out, and up to which events were purged.

    Its row is locked by every committing write that publishes to the region, which is what keeps
    the region's sequence in commit order (see ``app.services.feed``).
    """

    __tablename__ = "feed_position"

    region: str = Field(primary_key=True, foreign_key="region.code", max_length=2)
    last_seq: int = Field(default=0, sa_column=Column(BigInteger, nullable=False))
    purged_through: int = Field(default=0, sa_column=Column(BigInteger, nullable=False))


class FeedEvent(SQLModel, table=True):
    """One change as a region's change feed shows it: gapless ``seq`` per region, the new state in ``data``."""

    __tablename__ = "feed_event"
    __table_args__ = (Index("ix_feed_event_occurred", "occurred_at"),)

    region: str = Field(primary_key=True, max_length=2)
    seq: int = Field(sa_column=Column(BigInteger, primary_key=True, autoincrement=False))
    type: str = Field(max_length=60)
    occurred_at: dt.datetime = timestamp_field()
    client_id: uuid.UUID | None = None
    entity_type: str = Field(max_length=40)
    entity_id: str = Field(max_length=64)
    change_event_id: int | None = Field(default=None, sa_column=Column(BigInteger, nullable=True))
    data: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSONType, nullable=False))


class FeedEventPublic(SQLModel):
    seq: int = Field(description="position in the region's feed: gapless, in commit order")
    type: str = Field(description="what happened, e.g. client.registered, assignment.created, gap.opened")
    occurred_at: dt.datetime
    client_id: uuid.UUID | None
    entity_type: str
    entity_id: str
    data: dict[str, Any] = Field(description="the changed resource's new state")

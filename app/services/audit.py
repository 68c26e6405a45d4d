"""Change-log rows, added to the session of the change they describe."""

from __future__ import annotations

import uuid
from typing import Any

from pydantic import BaseModel
from sqlmodel import SQLModel
from sqlmodel.ext.asyncio.session import AsyncSession

from app.domain.access import Caller
from app.models.audit import ChangeEvent

NEVER_LOGGED = frozenset({"personal_id"})


def snapshot(row: SQLModel | BaseModel | None) -> dict[str, Any] | None:
    """A JSON-safe copy of a row for before/after, without identity codes."""
    if row is None:
        return None
    return row.model_dump(mode="json", exclude=set(NEVER_LOGGED), warnings=False)


def record_change(
    session: AsyncSession,
    caller: Caller,
    *,
    action: str,
    entity: SQLModel,
    client_id: uuid.UUID | None,
    before: dict[str, Any] | None = None,
    after: dict[str, Any] | None = None,
) -> None:
    """Add one change-log row; it commits (or not) with the change itself."""
    entity_id = getattr(entity, "id", None) or getattr(entity, "code", None)
    session.add(
        ChangeEvent(
            actor=caller.subject,
            roles=",".join(sorted(caller.roles)),
            actor_region=caller.region,
            client_system=caller.client_system,
            request_id=caller.request_id,
            action=action,
            entity_type=type(entity).__tablename__,  # type: ignore[arg-type]
            entity_id=str(entity_id),
            client_id=client_id,
            before=before,
            after=after if after is not None else snapshot(entity),
        )
    )

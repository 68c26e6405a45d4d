"""ETags and If-Match: a client-information system never overwrites a change it has not seen.

The ETag of a resource is a hash of the representation the caller is shown (so two callers shown
different views — a minimal view, a masked municipality — get different tags, as HTTP intends).
A conditional write first locks the row that every write to the resource locks first (the
client's row for clients, pairs, cost decisions and coordination requests; the worker's row for
workers), then computes the current tag inside that same transaction and compares: two writers
holding the same tag cannot both pass, because the second one waits for the lock and then sees
the first one's change. Without ``If-Match`` the write proceeds, unless the deployment requires
the header (``SILTA_REQUIRE_IF_MATCH=true``): then 428.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from pydantic import BaseModel
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from app.errors import SiltaError
from app.models.client import Client
from app.models.cost import CostDecision
from app.models.pair import WorkPair
from app.models.request import CoordinationRequest
from app.models.worker import Worker


class PreconditionFailed(SiltaError):
    status, code, title = 412, "precondition_failed", "The resource has changed since the given ETag"


class PreconditionRequired(SiltaError):
    status, code, title = 428, "precondition_required", "This deployment requires If-Match on changes"


def etag_of(representation: BaseModel) -> str:
    """A strong ETag: the hash of the JSON the caller is shown, but for the identity code.

    The code never changes, and a tag is seen and kept where the body is not (proxies, HTTP logs,
    stored idempotent answers): with the rest of the representation in the client's row, a hash
    over the code would give it away to a few thousand guesses.
    """
    shown = representation.model_dump_json(exclude={"personal_id"})
    return '"' + hashlib.sha256(shown.encode()).hexdigest()[:32] + '"'


def matches(if_match: str, current: str) -> bool:
    """RFC 9110 If-Match: ``*`` or a list of strong tags (weak tags never match)."""
    tags = [tag.strip() for tag in if_match.split(",")]
    return "*" in tags or current in tags


async def check(
    session: AsyncSession,
    *,
    if_match: str | None,
    required: bool,
    lock: Callable[[AsyncSession], Awaitable[Any]],
    current: Callable[[], Awaitable[BaseModel]],
) -> None:
    """Refuse the write (412/428) unless ``if_match`` names the current representation.

    ``current`` raises 404 for a caller who may not see the resource, before any tag is compared.
    """
    if if_match is None:
        if required:
            raise PreconditionRequired("send If-Match with the ETag from your last read")
        return
    await lock(session)
    if not matches(if_match, etag_of(await current())):
        raise PreconditionFailed("read the resource again and reapply your change")


# The row each kind of resource is locked by, in the order the services lock them.


def client_row(client_id: uuid.UUID) -> Callable[[AsyncSession], Awaitable[Any]]:
    async def lock(session: AsyncSession) -> Any:
        return (await session.exec(select(Client.id).where(Client.id == client_id).with_for_update())).first()

    return lock


def worker_row(worker_id: uuid.UUID) -> Callable[[AsyncSession], Awaitable[Any]]:
    async def lock(session: AsyncSession) -> Any:
        return (await session.exec(select(Worker.id).where(Worker.id == worker_id).with_for_update())).first()

    return lock


def client_row_of(
    model: type[WorkPair | CostDecision | CoordinationRequest], entity_id: uuid.UUID
) -> Callable[[AsyncSession], Awaitable[Any]]:
    """The client row of a pair, cost decision or coordination request."""

    async def lock(session: AsyncSession) -> Any:
        owner = select(col(model.client_id)).where(col(model.id) == entity_id).scalar_subquery()
        return (await session.exec(select(Client.id).where(Client.id == owner).with_for_update())).first()

    return lock

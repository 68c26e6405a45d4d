"""The change feed for client-information systems."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from app.deps import AccessLogDep, CurrentCaller, SessionDep
from app.models.common import PageOut
from app.models.integration import FeedEventPublic
from app.services import feed
from app.services.pagination import DEFAULT_LIMIT, MAX_LIMIT

router = APIRouter(tags=["integration"])


@router.get("/events")
async def read_events(
    session: SessionDep,
    caller: CurrentCaller,
    log: AccessLogDep,
    after: Annotated[int, Query(ge=0, le=2**62, description="the last seq seen (0: from the start)")] = 0,
    limit: Annotated[int, Query(ge=1, le=MAX_LIMIT)] = DEFAULT_LIMIT,
) -> PageOut[FeedEventPublic]:
    """The caller's region's changes after ``after``, in commit order, with no gaps and no duplicates.

    Keep the last ``seq`` you processed and ask again with ``after=<seq>``; ``next_cursor`` is that
    seq when more events are waiting. 410 ``cursor_expired`` if events after ``after`` were purged
    (older than the retention window): read the current state again, then follow the feed.
    """
    page = await feed.read(session, caller, after=after, limit=limit)
    await log.record(event.client_id for event in page.items if event.client_id)
    return PageOut(items=page.items, next_cursor=page.next_cursor)

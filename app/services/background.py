"""Jobs every API process runs in the background: sealing the audit chain, and housekeeping.

Each job is safe to run in many processes at once (the sealer serialises on its lock; purges
delete what is due whoever runs them).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from functools import partial

from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel.ext.asyncio.session import AsyncSession

from app.config import Settings
from app.services import chain, feed, idempotency, rate_limit

log = logging.getLogger("silta")
Job = Callable[[AsyncSession], Awaitable[object]]


async def every(factory: async_sessionmaker[AsyncSession], seconds: float, job: Job, what: str) -> None:
    """Run ``job`` in a fresh session every ``seconds`` until cancelled; a failed round is retried next time."""
    while True:
        await asyncio.sleep(seconds)
        try:
            async with factory() as session:
                await job(session)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("%s failed", what)


async def housekeeping(session: AsyncSession, settings: Settings) -> None:
    """Forget idempotency records past 24 h, feed events past the retention window, and full rate-limit buckets."""
    await idempotency.purge_expired(session)
    await feed.purge(session, dt.timedelta(days=settings.feed_retention_days))
    await rate_limit.purge(session, now=time.time())


@contextlib.asynccontextmanager
async def running(factory: async_sessionmaker[AsyncSession], settings: Settings) -> AsyncIterator[None]:
    jobs: list[tuple[float, Job, str]] = [
        (settings.audit_seal_seconds, chain.seal, "sealing the audit chain"),
        (settings.housekeeping_seconds, partial(housekeeping, settings=settings), "housekeeping"),
    ]
    tasks = [asyncio.create_task(every(factory, seconds, job, what)) for seconds, job, what in jobs if seconds > 0]
    try:
        yield
    finally:
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task

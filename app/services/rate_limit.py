"""Rate limits per token subject on the expensive endpoints: 429 ``rate_limited`` with ``Retry-After``.

Which endpoints are limited is the table ``LIMITED`` (route → endpoint class); each class has its
limit in settings (``SILTA_RATE_LIMIT_<CLASS>``, e.g. ``60/minute``): a caller may send that many
requests at once, and then one more every ``period / n``.

Why the database holds the buckets, not process memory: Silta runs as several stateless processes
(four uvicorn workers in the image, more behind a load balancer). A limiter in memory would let a
caller make ``n`` requests per period *per process* it happens to reach, and the figure would
change with the deployment. One row per (subject, class) in the database the request is about to
use anyway costs one primary-key upsert on endpoints that each run far heavier queries, and it is
exact across processes: the check and the update are a single statement, serialised by the row
lock (PostgreSQL) or the write lock (SQLite).

The algorithm is GCRA, a token bucket kept as one number: ``refilled_at``, when the caller's whole
allowance is back. A request at ``now`` is admitted when ``refilled_at - now`` leaves room for one
more request (``<= period - interval``), and then ``refilled_at = max(refilled_at, now) + interval``.
A refused request changes nothing, so hammering does not extend the wait. Rows whose allowance is
whole again carry no information and are purged by housekeeping.

The check runs after the token is verified (a 401 costs no quota) and before the route's own
work; it uses its own short transaction, so a quota is spent even when the request later fails.
"""

from __future__ import annotations

import hashlib
import math

from sqlalchemy import case, delete
from sqlalchemy.dialects import postgresql, sqlite
from sqlmodel import col
from sqlmodel.ext.asyncio.session import AsyncSession

from app.config import Rate
from app.errors import RateLimited
from app.models.integration import RateLimitBucket

# The expensive endpoints: (method, route template) -> endpoint class (a SILTA_RATE_LIMIT_<CLASS> setting).
LIMITED: dict[tuple[str, str], str] = {
    ("POST", "/v1/clients/search"): "search",
    ("GET", "/v1/cost-decisions/export"): "export",
    ("GET", "/v1/regions/{code}/caseload/export"): "export",
    ("GET", "/v1/audit/export"): "export",
    ("POST", "/v1/imports"): "import",
}


def subject_key(subject: str) -> str:
    """The bucket's key for a token subject: a hash, so the table names no one."""
    return hashlib.sha256(subject.encode()).hexdigest()


async def admit(session: AsyncSession, *, subject: str, endpoint_class: str, rate: Rate, now: float) -> None:
    """Spend one request of the caller's allowance and commit; ``RateLimited`` when none is left."""
    interval = rate.seconds / rate.requests
    slack = rate.seconds - interval  # how far ahead of now refilled_at may be and still admit one more
    key = {"subject": subject_key(subject), "endpoint_class": endpoint_class}
    dialect = postgresql if session.get_bind().dialect.name == "postgresql" else sqlite
    current = col(RateLimitBucket.refilled_at)
    statement = (
        dialect.insert(RateLimitBucket)
        .values(**key, refilled_at=now + interval)
        .on_conflict_do_update(
            index_elements=["subject", "endpoint_class"],
            set_={"refilled_at": case((current > now, current), else_=now) + interval},
            where=current <= now + slack,
        )
        .returning(current)
    )
    admitted = (await session.exec(statement)).first() is not None
    if not admitted:
        bucket = await session.get_one(RateLimitBucket, (key["subject"], endpoint_class))
        refilled_at = bucket.refilled_at
    await session.commit()
    if not admitted:
        raise RateLimited(retry_after=max(1, math.ceil(refilled_at - slack - now)))


async def purge(session: AsyncSession, *, now: float) -> int:
    """Forget the buckets whose allowance is whole again; returns how many."""
    result = await session.exec(delete(RateLimitBucket).where(col(RateLimitBucket.refilled_at) <= now))
    await session.commit()
    return int(getattr(result, "rowcount", 0) or 0)

"""The change feed: every region's changes, in commit order, with no gaps and no duplicates.

Writing. Every write already ends in one ``before_commit`` hook (``app.services.audit``); there
its changes become feed events for each region concerned — the regions holding the client, and
the regions the changed resource names (a worker's region, a request's two regions, a pair's two
sides, a cost decision's parties). Sequence numbers are handed out *there, at the very end of the
transaction*, by ``UPDATE feed_position SET last_seq = last_seq + n ... RETURNING`` on each
region's row, in region order (on PostgreSQL in the one statement that also inserts the events).

Why a reader can never skip an event that commits late: that UPDATE locks the region's row until
the transaction commits. The next writer to the same region waits for the lock and — once the
first has committed — continues from the first one's ``last_seq``. So seq N+1 can only be handed
out after the transaction holding N has committed (or rolled back, releasing N unused: then the
next writer gets N again, and the sequence stays gapless). Hence, whenever a reader sees N+1,
N is already committed and visible to it; a reader following ``after=`` never passes over an
event that is still to commit, as it could with an identity column or a sequence, whose numbers
are taken at insert time and commit in any order. (SQLite serialises writers, so there it holds
trivially.) The price is that writes to the same region commit one after another for the few
statements of their commit; their work before that still runs in parallel.

Reading: ``GET /v1/events?after=`` — a region's events after a seq. Events older than the
retention window are purged; a cursor from before the purge answers 410 Gone, because events
would otherwise be silently missing.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections import defaultdict
from collections.abc import Sequence
from typing import Any

from sqlalchemy import (
    BigInteger,
    ColumnElement,
    DateTime,
    String,
    Update,
    Uuid,
    bindparam,
    case,
    delete,
    func,
    inspect,
    literal,
    text,
    update,
)
from sqlalchemy.dialects import postgresql
from sqlalchemy.orm.util import identity_key
from sqlmodel import Session, col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from app.domain.access import COORDINATOR, SYSTEM, Caller
from app.errors import SiltaError, ValidationFailed
from app.models.client import Client, ResponsibilityPeriod
from app.models.common import utcnow
from app.models.integration import FeedEvent, FeedEventPublic, FeedPosition
from app.services import outbox, state
from app.services.clock import today
from app.services.pagination import Page

HOLDING = (Client, ResponsibilityPeriod)  # rows that decide who holds a client and what it may see
NOT_IN_FEED = frozenset({"webhook_subscription", "webhook_delivery"})  # the feed's own plumbing
REGION_FIELDS = (
    "region",
    "from_region",
    "to_region",
    "proposed_by_region",
    "confirm_region",
    "payer_region",
    "counterparty_region",
    "actor_region",
)


class CursorExpired(SiltaError):
    status, code, title = 410, "cursor_expired", "Events after this cursor are no longer kept"


def publish(session: Session, writes: list[tuple[list[dict[str, Any]], int | None]]) -> list[dict[str, Any]]:
    """Turn writes' changes into feed events (called from the ``before_commit`` of their transaction).

    ``writes``: each write's changes with its change entry, in the order they happened; a region's
    events get consecutive seqs in that order, as if each write had committed on its own. Who
    holds each client is read once, here: as each write would see it for a single write, and for
    an import's lines too, which never change who holds a client.
    """
    clients = {uuid.UUID(change["client_id"]) for changes, _ in writes for change in changes if change["client_id"]}
    holders, responsibility, protected = _holders(session, clients)
    occurred_at = utcnow()
    pending: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for changes, change_event_id in writes:
        for change in changes:
            if change["entity_type"] in NOT_IN_FEED:
                continue
            client_id = uuid.UUID(change["client_id"]) if change["client_id"] else None
            for region in _named_regions(change) | holders.get(client_id, set()):
                pending[region].append(
                    _event(change, region, client_id, change_event_id, occurred_at, responsibility, protected)
                )
    if not pending:
        return []
    in_one = session.get_bind().dialect.name == "postgresql"
    subscriptions: Sequence[outbox.Subscription]
    if in_one:
        reached, subscriptions = _publish_in_one(session, pending, occurred_at)
    else:
        subscriptions = outbox.subscriptions(session, set(pending))  # before the locks below, held until commit
        reached = _advance(session, {region: len(events) for region, events in pending.items()})
    rows: list[dict[str, Any]] = []
    for region in sorted(pending):
        events = pending[region]
        for offset, event in enumerate(events):
            event["seq"] = reached[region] - len(events) + 1 + offset
        rows.extend(events)
    if not in_one:
        session.execute(_INSERT_EVENTS, rows)
    outbox.enqueue(session, rows, subscriptions)
    return rows


# PostgreSQL: what SQLite does in three statements (the regions' subscriptions, the positions moved on
# under their locks, the events inserted) in one, with the positions locked in region order as below.
# Each event row carries ``back``: how far before its region's new ``last_seq`` its seq lies.
_PUBLISH = (
    text(
        """
WITH locked AS MATERIALIZED (
    SELECT region FROM feed_position WHERE region = ANY(:regions) ORDER BY region FOR UPDATE
), advanced AS (
    UPDATE feed_position AS p SET last_seq = p.last_seq + (CAST(:counts AS jsonb) ->> p.region)::bigint
    FROM locked WHERE p.region = locked.region
    RETURNING p.region, p.last_seq
), inserted AS (
    INSERT INTO feed_event (region, seq, type, occurred_at, client_id, entity_type, entity_id, change_event_id, data)
    SELECT e.region, a.last_seq - e.back, e.type, :occurred_at, e.client_id, e.entity_type, e.entity_id,
           e.change_event_id, e.data
    FROM jsonb_to_recordset(CAST(:events AS jsonb)) AS e(region text, back bigint, type text, client_id uuid,
         entity_type text, entity_id text, change_event_id bigint, data jsonb)
    JOIN advanced AS a ON a.region = e.region
)
SELECT a.region, a.last_seq, s.id, s.event_types
FROM advanced AS a LEFT JOIN webhook_subscription AS s ON s.region = a.region AND s.active
"""
    )
    .bindparams(
        bindparam("regions", type_=postgresql.ARRAY(String)),
        bindparam("counts", type_=postgresql.JSONB),
        bindparam("events", type_=postgresql.JSONB),
        bindparam("occurred_at", type_=DateTime(timezone=True)),
    )
    .columns(region=String, last_seq=BigInteger, id=Uuid, event_types=postgresql.JSONB)
)


def _publish_in_one(
    session: Session, pending: dict[str, list[dict[str, Any]]], occurred_at: dt.datetime
) -> tuple[dict[str, int], list[outbox.Subscription]]:
    """PostgreSQL: insert the pending events with their seqs; each region's new ``last_seq``, and the
    active subscriptions of the regions (read in the statement's snapshot, taken before its locks)."""
    events = [
        {
            **{key: event[key] for key in ("region", "type", "entity_type", "entity_id", "change_event_id", "data")},
            "back": len(region_events) - 1 - offset,
            "client_id": str(event["client_id"]) if event["client_id"] else None,
        }
        for region_events in pending.values()
        for offset, event in enumerate(region_events)
    ]
    params = {
        "regions": sorted(pending),
        "counts": {region: len(region_events) for region, region_events in pending.items()},
        "events": events,
        "occurred_at": occurred_at,
    }
    reached: dict[str, int] = {}
    subscriptions: list[outbox.Subscription] = []
    for region, last_seq, subscription_id, types in session.execute(_PUBLISH, params):
        reached[region] = int(last_seq)
        if subscription_id is not None:
            subscriptions.append((subscription_id, region, types))
    if reached.keys() != pending.keys():
        raise RuntimeError(f"no feed position for regions {sorted(pending.keys() - reached.keys())}")
    return reached, subscriptions


_POSITION = FeedPosition.__table__  # type: ignore[attr-defined]
_ADVANCE_ONE = (
    update(_POSITION)
    .where(_POSITION.c.region == bindparam("at"))
    .values(last_seq=_POSITION.c.last_seq + bindparam("n", type_=BigInteger))
    .returning(_POSITION.c.region, _POSITION.c.last_seq)
)
_INSERT_EVENTS = FeedEvent.__table__.insert()  # type: ignore[attr-defined]


def _advance(session: Session, counts: dict[str, int]) -> dict[str, int]:
    """Move each region's ``last_seq`` on by its count in one statement; the new ``last_seq`` per region.

    SQLite's path (PostgreSQL does this inside ``_PUBLISH``). The statement is portable all the same:
    the rows are locked in region order, whatever the plan (the CTE's ``FOR UPDATE`` locks the
    rows it returns, after sorting them), so two writers never wait for each other in a cycle.
    """
    if len(counts) <= 1:
        return {region: session.execute(_ADVANCE_ONE, {"at": region, "n": n}).one()[1] for region, n in counts.items()}
    steps = set(counts.values())
    if len(steps) == 1:  # the usual write: each region gets every change (a cached statement)
        params: dict[str, Any] = {"regions": sorted(counts), "n": steps.pop()}
        rows = session.execute(_ADVANCE_EACH, params)
    else:
        step = case({region: literal(n, BigInteger) for region, n in counts.items()}, value=_POSITION.c.region)
        rows = session.execute(_advance_by(step, literal_regions=sorted(counts)))
    reached = {region: int(last) for region, last in rows}
    if reached.keys() != counts.keys():
        raise RuntimeError(f"no feed position for regions {sorted(counts.keys() - reached.keys())}")
    return reached


def _advance_by(step: ColumnElement[Any], literal_regions: list[str] | None = None) -> Update:
    """UPDATE the positions of the regions (``literal_regions``, else the expanding ``regions`` parameter),
    locked in region order by a materialized CTE, by ``step``; RETURNING each region and its ``last_seq``."""
    regions = literal_regions if literal_regions is not None else bindparam("regions", expanding=True)
    locked = (
        select(_POSITION.c.region.label("locked_region"))  # a name of its own: SQLite's RETURNING is unqualified
        .where(_POSITION.c.region.in_(regions))
        .order_by(_POSITION.c.region)
        .with_for_update()
        .cte("locked")
        .prefix_with("MATERIALIZED")
    )
    return (
        update(_POSITION)
        .where(_POSITION.c.region == locked.c.locked_region)
        .values(last_seq=_POSITION.c.last_seq + step)
        .returning(_POSITION.c.region, _POSITION.c.last_seq)
    )


_ADVANCE_EACH = _advance_by(bindparam("n", type_=BigInteger))  # built once, not per write


def _event(
    change: dict[str, Any],
    region: str,
    client_id: uuid.UUID | None,
    change_event_id: int | None,
    occurred_at: dt.datetime,
    responsibility: dict[uuid.UUID, dict[str, dict[str, Any]]],
    protected: set[uuid.UUID],
) -> dict[str, Any]:
    """The event ``region`` reads about one change: the new state, as that region may see it."""
    data = change["after"] if change["after"] is not None else change["before"] or {}
    masked = client_id in protected and data.get("region") != region  # shown only to its own region
    if masked and change["entity_type"] == "responsibility_period":
        data = {**data, "municipality": None}
    if change["entity_type"] == "client" and client_id in responsibility:
        data = {**data, "responsibility": _as_seen(responsibility[client_id], region, client_id in protected)}
    return {
        "region": region,
        "type": change["action"],
        "occurred_at": occurred_at,
        "client_id": client_id,
        "entity_type": change["entity_type"],
        "entity_id": change["entity_id"],
        "change_event_id": change_event_id,
        "data": data,
    }


def _named_regions(change: dict[str, Any]) -> set[str]:
    if change["entity_type"] == "region":
        return {change["entity_id"]}
    named: set[str] = set()
    for snapshot in (change["before"], change["after"]):
        for field in REGION_FIELDS:
            value = (snapshot or {}).get(field)
            if isinstance(value, str):
                named.add(value)
    return named


def _holders(
    session: Session, clients: set[uuid.UUID]
) -> tuple[dict[uuid.UUID | None, set[str]], dict[uuid.UUID, dict[str, dict[str, Any]]], set[uuid.UUID]]:
    """Per client: the regions holding it now or from an announced date, its responsibilities now
    (or, if not yet begun, as announced), and whether its address is protected."""
    on = today()
    periods, protected, unknown = _known_holders(session, clients, on)
    if unknown:  # one statement: a client without running periods still tells its protection
        period = ResponsibilityPeriod
        running = (
            (col(period.client_id) == Client.id)
            & col(period.retracted_at).is_(None)
            & (col(period.valid_to).is_(None) | (col(period.valid_to) > on))
        )
        rows = session.execute(
            select(col(Client.id), col(Client.address_protection), period)
            .outerjoin(period, running)
            .where(col(Client.id).in_(unknown))
        ).all()
        protected |= {client_id for client_id, protection, _ in rows if protection}
        periods += [row for _, _, row in rows if row is not None]
    holders: dict[uuid.UUID | None, set[str]] = defaultdict(set)
    responsibility: dict[uuid.UUID, dict[str, dict[str, Any]]] = defaultdict(dict)
    for row in sorted(periods, key=lambda row: row.valid_from):
        if row.region:
            holders[row.client_id].add(row.region)
        if row.responsibility not in responsibility[row.client_id] or row.valid_from <= on:
            responsibility[row.client_id][row.responsibility] = {
                "region": row.region,
                "municipality": row.municipality,
                "outside": row.residence_outside,
                "valid_from": row.valid_from.isoformat(),
            }
    return holders, responsibility, protected


def _known_holders(
    session: Session, clients: set[uuid.UUID], on: dt.date
) -> tuple[list[ResponsibilityPeriod], set[uuid.UUID], list[uuid.UUID]]:
    """What the transaction already read: the running periods and protected clients among those whose
    periods (``state.all_rows``) and row it holds, all flushed; the other clients, to be read."""
    pending = [row for row in (*session.new, *session.dirty, *session.deleted) if isinstance(row, HOLDING)]
    periods: list[ResponsibilityPeriod] = []
    protected: set[uuid.UUID] = set()
    unknown = []
    for client_id in clients:
        known = state.known_periods(session, client_id)
        client = session.identity_map.get(identity_key(Client, client_id))
        if (
            pending
            or known is None
            or not isinstance(client, Client)
            or "address_protection" in inspect(client).unloaded
        ):
            unknown.append(client_id)
            continue
        periods += [row for row in known if row.retracted_at is None and (row.valid_to is None or row.valid_to > on)]
        if client.address_protection:
            protected.add(client_id)
    return periods, protected, unknown


def _as_seen(responsibility: dict[str, dict[str, Any]], region: str, protected: bool) -> dict[str, dict[str, Any]]:
    """The client's responsibilities as ``region`` may see them (a protected municipality only by its region)."""
    return {
        kind: {**period, "municipality": None} if protected and period["region"] != region else period
        for kind, period in responsibility.items()
    }


async def read(session: AsyncSession, caller: Caller, *, after: int, limit: int) -> Page[FeedEventPublic]:
    """The caller's region's events after ``after``, oldest first (410 if some were purged)."""
    caller.require(SYSTEM, COORDINATOR)
    region = caller.writer_region()
    if after < 0:
        raise ValidationFailed("after must be 0 or a seq seen before")
    position = (await session.exec(select(FeedPosition).where(col(FeedPosition.region) == region))).one()
    if after < position.purged_through:
        raise CursorExpired(
            f"events up to seq {position.purged_through} were purged; start again from a full read",
            purged_through=position.purged_through,
        )
    rows = (
        await session.exec(
            select(FeedEvent)
            .where(col(FeedEvent.region) == region, col(FeedEvent.seq) > after)
            .order_by(col(FeedEvent.seq))
            .limit(limit + 1)
        )
    ).all()
    items = [FeedEventPublic.model_validate(row, from_attributes=True) for row in rows[:limit]]
    more = len(rows) > limit
    return Page(items=items, next_cursor=str(items[-1].seq) if more else None)


async def purge(session: AsyncSession, older_than: dt.timedelta) -> int:
    """Delete events older than the retention window, remembering per region how far (one transaction)."""
    cutoff = utcnow() - older_than
    reached = (
        await session.exec(
            select(col(FeedEvent.region), func.max(col(FeedEvent.seq)))
            .where(col(FeedEvent.occurred_at) < cutoff)
            .group_by(col(FeedEvent.region))
        )
    ).all()
    if not reached:
        await session.commit()
        return 0
    deleted = 0
    for region, seq in reached:  # a prefix of each region's sequence: seqs are in commit order
        result = await session.exec(delete(FeedEvent).where(col(FeedEvent.region) == region, col(FeedEvent.seq) <= seq))
        deleted += int(getattr(result, "rowcount", 0) or 0)
        await session.exec(
            update(FeedPosition)
            .where(col(FeedPosition.region) == region, col(FeedPosition.purged_through) < seq)
            .values(purged_through=seq)
        )
    await session.commit()
    return deleted

"""Caseload: every worker's load against the region's targets, computed with aggregate SQL.

The database counts (distinct clients per worker and support level, pairs per worker, gaps per
region); Python only weighs those counts and summarises a few thousand per-worker rows. The
number of statements per report is fixed, whatever the number of clients.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import time
import uuid
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from sqlalchemy import case, exists, func, null, or_, union_all
from sqlalchemy import select as core_select
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from app.db import plain_rows
from app.domain import caseload as rules
from app.domain.access import ADMIN, AUDITOR, COORDINATOR, SYSTEM, Caller
from app.errors import Forbidden, NotFound, Unprocessable
from app.models.assignment import Assignment, ComplianceGap, ends_after
from app.models.caseload import (
    CaseloadOverview,
    CaseloadReport,
    QueuedClient,
    RegionOverview,
    RegionSettingsVersion,
    RoleStats,
    Suggestion,
    WorkerLoad,
)
from app.models.client import Client, ResponsibilityPeriod
from app.models.common import PairStatus, WorkerRole, utcnow
from app.models.pair import WorkPair
from app.models.region import Region
from app.models.worker import Worker
from app.services.clock import today
from app.services.compliance import gap_in_force
from app.services.pagination import PageParams, paginate
from app.services.spreadsheet import csv_line

ROLES = [role.value for role in WorkerRole]


@dataclass
class Settings:
    targets: dict[str, int]
    weights: dict[str, float]


@dataclass
class Load:
    by_level: dict[str, int] = field(default_factory=dict)
    pairs: int = 0

    @property
    def clients(self) -> int:
        return sum(self.by_level.values())


# --- what the database counts -------------------------------------------------------------------


async def settings_on(session: AsyncSession, on: dt.date, region: str | None = None) -> dict[str, Settings]:
    """Each region's targets and weights in force on ``on`` (one statement for all regions)."""
    rows = await session.exec(
        select(RegionSettingsVersion)
        .where(col(RegionSettingsVersion.valid_from) <= on)
        .where(*([RegionSettingsVersion.region_code == region] if region else []))
        .order_by(col(RegionSettingsVersion.valid_from), col(RegionSettingsVersion.recorded_at))
    )
    latest: dict[str, Settings] = {}
    for row in rows:  # ascending: the last one seen per region is the one in force
        latest[row.region_code] = Settings(dict(row.caseload_targets), dict(row.caseload_weights))
    if (region is not None and region not in latest) or (region is None and not latest):
        # before the first recorded version: the earliest settings known
        first = await session.exec(
            select(RegionSettingsVersion)
            .where(*([RegionSettingsVersion.region_code == region] if region else []))
            .order_by(col(RegionSettingsVersion.valid_from).desc(), col(RegionSettingsVersion.recorded_at).desc())
        )
        for row in first:
            latest[row.region_code] = Settings(dict(row.caseload_targets), dict(row.caseload_weights))
    return latest


def _named_on(on: dt.date, region: str | None) -> Any:
    """SQL (a CTE): the distinct (worker, client, support level) named in force on ``on``, in aftercare then."""
    return (
        select(Assignment.worker_id, Assignment.client_id, Client.support_level)
        .join(Client, col(Client.id) == Assignment.client_id)
        .where(
            col(Assignment.retracted_at).is_(None),
            col(Assignment.valid_from) <= on,
            ends_after(on),
            col(Client.aftercare_start) <= on,
            col(Client.aftercare_end) >= on,
        )
        .where(*([Assignment.region == region] if region else []))
        .distinct()
        .cte("named")
    )


async def _count_named(
    session: AsyncSession, on: dt.date, region: str | None, *, by_role: bool
) -> tuple[dict[uuid.UUID, Load], dict[str, int]]:
    """worker → distinct clients per support level, and (``by_role``) role → distinct clients: one statement.

    Both counts read the same named rows, so the join of assignments to clients runs once.
    """
    named = _named_on(on, region)
    statement: Any = select(
        named.c.worker_id, named.c.support_level, null().label("role"), func.count().label("n")
    ).group_by(named.c.worker_id, named.c.support_level)
    if by_role:
        per_role = (
            select(null(), null(), col(Worker.role), func.count(func.distinct(named.c.client_id)))
            .join(Worker, col(Worker.id) == named.c.worker_id)
            .group_by(col(Worker.role))
        )
        statement = union_all(statement, per_role)
    loads: dict[uuid.UUID, Load] = defaultdict(Load)
    clients_by_role: dict[str, int] = {}
    for worker_id, level, role, count in await plain_rows(session, statement):
        if worker_id is None:
            clients_by_role[role] = count
        else:
            loads[worker_id].by_level[level] = count
    return loads, clients_by_role


async def _count_pairs(session: AsyncSession, on: dt.date, region: str | None, loads: dict[uuid.UUID, Load]) -> None:
    """Each worker's pairs in force on ``on`` (of the region's workers only, when ``region`` is given)."""
    in_force = (
        col(WorkPair.valid_from).is_not(None),
        col(WorkPair.valid_from) <= on,
        col(WorkPair.status) != PairStatus.proposed,
        or_(col(WorkPair.valid_to).is_(None), col(WorkPair.valid_to) > on),
    )
    sides = (col(WorkPair.worker_1_id), col(WorkPair.worker_2_id))
    if region:  # from the region's workers, each side by its own index (worker, status, dates): index only
        statement: Any = union_all(
            *(
                select(col(Worker.id), func.count())
                .join(WorkPair, side == col(Worker.id))
                .where(col(Worker.region) == region, *in_force)
                .group_by(col(Worker.id))
                for side in sides
            )
        )
    else:  # every worker's: one pass over the pairs
        members = union_all(*(select(side.label("worker_id")).where(*in_force) for side in sides)).subquery()
        statement = select(members.c.worker_id, func.count()).group_by(members.c.worker_id)
    for worker_id, count in await plain_rows(session, statement):
        loads[worker_id].pairs += count


async def loads_on(session: AsyncSession, on: dt.date, region: str | None = None) -> dict[uuid.UUID, Load]:
    """worker → distinct clients per support level and pairs in force on ``on`` (two statements).

    With ``region``, only the region's workers have pairs counted (others' loads are never shown).
    """
    loads, _ = await _count_named(session, on, region, by_role=False)
    await _count_pairs(session, on, region, loads)
    return loads


def _active_on(on: dt.date) -> Any:
    """SQL: the worker was active on ``on`` (workers recorded before dating count from the start)."""
    return (
        or_(col(Worker.active_from).is_(None), col(Worker.active_from) <= on)
        & or_(col(Worker.inactive_from).is_(None), col(Worker.inactive_from) > on)
        & (col(Worker.active).is_(True) | col(Worker.inactive_from).is_not(None))
    )


def _in_aftercare(on: dt.date) -> Any:
    """SQL: the gap's client is in aftercare on ``on`` (ended and upcoming clients need no worker)."""
    return exists(
        select(Client.id).where(
            Client.id == ComplianceGap.client_id, col(Client.aftercare_start) <= on, col(Client.aftercare_end) >= on
        )
    )


def _worker_load(worker: Any, load: Load, settings: Settings) -> WorkerLoad:
    """``worker``: a row with the worker's id, name, role, service and active."""
    weighted = rules.weighted_load(load.by_level, settings.weights)
    target = settings.targets.get(worker.role)
    share = rules.utilisation(weighted, target)
    return WorkerLoad(
        worker_id=worker.id,
        name=worker.name,
        role=worker.role,
        service=worker.service,
        active=worker.active,
        clients=load.clients,
        clients_by_support_level=dict(sorted(load.by_level.items())),
        active_pairs=load.pairs,
        weighted_load=weighted,
        target=target,
        utilisation=share,
        status=rules.status(share),
    )


def _role_stats(workers: list[WorkerLoad], clients_by_role: dict[str, int], settings: Settings) -> list[RoleStats]:
    result = []
    for role in ROLES:
        mine = [worker for worker in workers if worker.role == role]
        if not mine:
            continue
        summary = rules.stats([worker.weighted_load for worker in mine])
        result.append(
            RoleStats(
                role=role,
                workers=summary.workers,
                clients=clients_by_role.get(role, 0),
                target=settings.targets.get(role),
                mean_load=summary.mean,
                median_load=summary.median,
                min_load=summary.min,
                max_load=summary.max,
                spread=summary.spread,
                over_target=sum(1 for worker in mine if worker.status == "red"),
            )
        )
    return result


# --- reports --------------------------------------------------------------------------------------


def _require_region_reader(caller: Caller, region: str) -> None:
    caller.require(SYSTEM, COORDINATOR, AUDITOR)
    if not caller.national and caller.region != region:
        raise Forbidden("caseloads are shown to the region's own callers and national auditors")


async def _region(session: AsyncSession, code: str) -> Region:
    region = await session.get(Region, code)
    if region is None or not region.organiser:
        raise NotFound(f"region {code} not found", code="region_not_found")
    return region


async def worker_loads(
    session: AsyncSession, region: str, on: dt.date, settings: Settings, loads: dict[uuid.UUID, Load] | None = None
) -> list[WorkerLoad]:
    """The region's active workers, and any other of its workers still named or paired on ``on``."""
    loads = await loads_on(session, on, region) if loads is None else loads
    # every worker of the region, kept here: naming the loaded ones in the query would send (and
    # expand) hundreds of ids per request, more than the few inactive workers' rows it spares
    workers = await plain_rows(
        session,
        core_select(
            col(Worker.id),
            col(Worker.name),
            col(Worker.role),
            col(Worker.service),
            col(Worker.active),
            _active_on(on).label("active_then"),
        )
        .where(col(Worker.region) == region)
        .order_by(col(Worker.name), col(Worker.id)),
    )
    return [
        _worker_load(worker, loads.get(worker.id, Load()), settings)
        for worker in workers
        if worker.active_then or worker.id in loads
    ]


async def region_caseload(
    session: AsyncSession, caller: Caller, code: str, *, as_of: dt.date | None, page: PageParams
) -> CaseloadReport:
    """Per worker, per role, and the queue of clients still missing a named worker."""
    _require_region_reader(caller, code)
    await _region(session, code)
    on = as_of or today()
    settings = (await settings_on(session, on, code))[code]
    loads, clients_by_role = await _count_named(session, on, code, by_role=True)
    await _count_pairs(session, on, code, loads)
    workers = await worker_loads(session, code, on, settings, loads)
    queue_query = select(ComplianceGap).where(ComplianceGap.region == code, gap_in_force(on), _in_aftercare(on))
    queue = await paginate(
        session,
        queue_query,
        keys=[col(ComplianceGap.since), col(ComplianceGap.id)],
        key_of=lambda gap: (gap.since.isoformat(), gap.id),
        parse=[dt.date.fromisoformat, uuid.UUID],
        page=page,
    )
    total = (
        await session.exec(
            select(func.count())
            .select_from(ComplianceGap)
            .where(ComplianceGap.region == code, gap_in_force(on), _in_aftercare(on))
        )
    ).one()
    return CaseloadReport(
        region=code,
        as_of=on,
        targets=settings.targets,
        weights=settings.weights,
        workers=workers,
        roles=_role_stats(workers, clients_by_role, settings),
        queue=[
            QueuedClient(
                client_id=gap.client_id,
                responsibility=gap.responsibility,
                since=gap.since,
                due=gap.due,
                overdue=gap.due < on,
            )
            for gap in queue.items
        ],
        queue_total=total,
        queue_next_cursor=queue.next_cursor,
    )


async def suggestion(
    session: AsyncSession, caller: Caller, code: str, *, role: str | None, service: str | None
) -> Suggestion:
    _require_region_reader(caller, code)
    await _region(session, code)
    on = today()
    return Suggestion(region=code, as_of=on, worker=await suggest(session, code, on, role=role, service=service))


async def suggest(
    session: AsyncSession, region: str, on: dt.date, *, role: str | None, service: str | None
) -> WorkerLoad | None:
    """The eligible active worker with the most room (see ``rules.most_room`` for ties)."""
    settings = (await settings_on(session, on, region))[region]
    eligible = [
        worker
        for worker in await worker_loads(session, region, on, settings)
        if worker.active and (role is None or worker.role == role) and (service is None or worker.service == service)
    ]
    best = rules.most_room(
        rules.Candidate(worker.worker_id, worker.weighted_load, worker.clients, worker.target) for worker in eligible
    )
    return next((worker for worker in eligible if best and worker.worker_id == best.worker_id), None)


async def suggested_worker(session: AsyncSession, region: str, *, role: str | None) -> uuid.UUID:
    """For ``worker_id: "suggested"`` in an assignment: an aftercare worker with the most room."""
    found = await suggest(session, region, today(), role=role, service="aftercare")
    if found is None:
        raise Unprocessable(f"region {region} has no eligible active worker to suggest", code="no_suggestion")
    return found.worker_id


@dataclass
class OverviewSnapshot:
    """The national overview as this process last computed it, served while younger than ``max_age`` seconds.

    Computing it reads every in-force assignment, period and gap in the country (hundreds of
    milliseconds at ten times national scale), for figures no one needs to the second. One request
    computes while the others wait for it (the lock), then all share the result; a new day computes anew.
    """

    max_age: float
    clock: Callable[[], float] = time.monotonic
    taken: float = 0.0
    figures: CaseloadOverview | None = None
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    def current(self, on: dt.date) -> CaseloadOverview | None:
        young = self.clock() - self.taken <= self.max_age
        return self.figures if self.figures is not None and self.figures.as_of == on and young else None


async def overview(session: AsyncSession, caller: Caller, snapshot: OverviewSnapshot | None = None) -> CaseloadOverview:
    """Every region side by side, for national management: counts and loads, no personal data."""
    caller.require(COORDINATOR, AUDITOR, ADMIN)
    if snapshot is None or snapshot.max_age <= 0:
        return await _overview(session)
    async with snapshot.lock:
        figures = snapshot.current(today())
        if figures is None:  # its age counts from the start of the computation, and only once it succeeded
            started = snapshot.clock()
            figures = await _overview(session)
            snapshot.figures, snapshot.taken = figures, started
        return figures


async def _overview(session: AsyncSession) -> CaseloadOverview:
    computed_at = utcnow()
    on = today()
    regions = (
        await session.exec(select(Region).where(col(Region.organiser).is_(True)).order_by(col(Region.code)))
    ).all()
    settings = await settings_on(session, on)
    loads = await loads_on(session, on)
    active = select(Worker.id, Worker.region, Worker.role).where(col(Worker.active).is_(True))
    workers = await plain_rows(session, active)
    organised = {
        region: count
        for region, count in (
            await session.exec(
                select(ResponsibilityPeriod.region, func.count(func.distinct(ResponsibilityPeriod.client_id)))
                .join(Client, col(Client.id) == ResponsibilityPeriod.client_id)
                .where(
                    ResponsibilityPeriod.responsibility == "organising",
                    col(ResponsibilityPeriod.retracted_at).is_(None),
                    col(ResponsibilityPeriod.valid_from) <= on,
                    or_(col(ResponsibilityPeriod.valid_to).is_(None), col(ResponsibilityPeriod.valid_to) > on),
                    col(Client.aftercare_start) <= on,
                    col(Client.aftercare_end) >= on,
                )
                .group_by(col(ResponsibilityPeriod.region))
            )
        ).all()
        if region is not None
    }
    gaps: dict[str, tuple[int, int]] = {
        region: (open_, overdue or 0)
        for region, open_, overdue in await session.exec(
            select(
                ComplianceGap.region,
                func.count(),
                func.sum(case((col(ComplianceGap.due) < on, 1), else_=0)),
            )
            .where(gap_in_force(on), _in_aftercare(on))
            .group_by(col(ComplianceGap.region))
        )
    }
    per_region: dict[str, list[tuple[str, Load]]] = defaultdict(list)
    for worker_id, region, role in workers:
        per_region[region].append((role, loads.get(worker_id, Load())))
    return CaseloadOverview(
        as_of=on,
        computed_at=computed_at,
        regions=[
            _region_overview(region, per_region.get(region.code, []), settings[region.code], organised, gaps)
            for region in regions
        ],
    )


def _region_overview(
    region: Region,
    workers: list[tuple[str, Load]],
    settings: Settings,
    organised: dict[str, int],
    gaps: dict[str, tuple[int, int]],
) -> RegionOverview:
    weighted = [(role, rules.weighted_load(load.by_level, settings.weights)) for role, load in workers]
    summary = rules.stats([load for _, load in weighted])
    by_role: dict[str, int] = defaultdict(int)
    for role, _ in workers:
        by_role[role] += 1
    over = sum(
        1 for role, load in weighted if rules.status(rules.utilisation(load, settings.targets.get(role))) == "red"
    )
    open_gaps, overdue = gaps.get(region.code, (0, 0))
    return RegionOverview(
        region=region.code,
        name_fi=region.name_fi,
        clients=organised.get(region.code, 0),
        workers_by_role=dict(sorted(by_role.items())),
        mean_load=summary.mean,
        spread=summary.spread,
        workers_over_target=over,
        open_gaps=open_gaps,
        overdue_gaps=overdue,
    )


CSV_FIELDS = [
    "worker_id",
    "name",
    "role",
    "service",
    "active",
    "clients",
    "standard",
    "enhanced",
    "special",
    "active_pairs",
    "weighted_load",
    "target",
    "utilisation",
    "status",
]


async def caseload_csv(session: AsyncSession, caller: Caller, code: str, as_of: dt.date | None) -> str:
    """The region's per-worker caseload as CSV (a header, then one line per worker)."""
    _require_region_reader(caller, code)
    await _region(session, code)
    on = as_of or today()
    settings = (await settings_on(session, on, code))[code]
    lines = [csv_line(CSV_FIELDS)]
    for worker in await worker_loads(session, code, on, settings):
        levels = worker.clients_by_support_level
        share = worker.utilisation.quantize(Decimal("0.001")) if worker.utilisation is not None else None
        values: list[Any] = [
            worker.worker_id,
            worker.name,
            worker.role,
            worker.service,
            worker.active,
            worker.clients,
            levels.get("standard", 0),
            levels.get("enhanced", 0),
            levels.get("special", 0),
            worker.active_pairs,
            worker.weighted_load,
            worker.target,
            share,
            worker.status,
        ]
        lines.append(csv_line(values))
    return "".join(lines)

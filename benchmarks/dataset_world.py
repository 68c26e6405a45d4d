"""The fixed parts of the national data set: table shapes, regions, workers, people, callers, writes.

Everything here is read from the app where the app defines it: a table's columns and the fields
of its change-log snapshot come from the SQLModel table (``Shape``), regions and municipalities
from the migrated database, identity codes are checked with ``app.domain.personal_id`` and
sealed with ``app.services.vault``. Randomness comes from one seeded ``random.Random``.
"""

from __future__ import annotations

import datetime as dt
import itertools
import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cache
from typing import Any

import sqlalchemy

from app.domain import aftercare
from app.domain.access import Caller
from app.domain.personal_id import parse_personal_id
from app.errors import Unprocessable
from app.models import (
    Assignment,
    ChangeEvent,
    Client,
    ClientExternalId,
    ComplianceGap,
    CoordinationRequest,
    CostDecision,
    CostDecisionEvent,
    FeedEvent,
    Region,
    RegionSettingsVersion,
    ResponsibilityPeriod,
    Worker,
    WorkPair,
)
from app.models.audit import AccessEntry, AccessEntryClient, ChainLink, ChangeEventClient, Disclosure
from app.services.audit import NEVER_LOGGED
from app.services.clock import FINLAND

# Approximate populations (thousands, 2023) of the 22 organisers: clients, workers and moves follow them.
POPULATION = {
    "01": 99, "02": 201, "03": 482, "04": 280, "05": 487, "06": 214, "07": 171, "08": 531, "09": 205,
    "10": 163, "11": 128, "12": 131, "13": 249, "14": 163, "15": 275, "16": 191, "17": 176, "18": 75,
    "19": 416, "20": 71, "21": 177, "90": 667,
}  # fmt: skip
SYSTEMS = ("Lifecare", "ProConsona", "Pegasos", "Effica")  # client-information systems; Apotti below
APOTTI = {"04", "90"}
# Regional policies decided when the service went live (PATCH /v1/regions/{code}/settings).
POLICIES: dict[str, dict[str, int]] = {
    "90": {"aftercare_end_age": 25},
    "19": {"aftercare_end_age": 25},
    "15": {"aftercare_end_age": 24},
    "13": {"grace_days": 21},
    "04": {"grace_days": 10},
}
FIRST_NAMES = (
    "Aino", "Eetu", "Emma", "Elias", "Ella", "Leo", "Helmi", "Oliver", "Venla", "Onni", "Sofia", "Eino",
    "Linnea", "Väinö", "Iida", "Leevi", "Aada", "Niilo", "Lilja", "Toivo", "Pihla", "Aatos", "Kerttu", "Veeti",
    "Minea", "Joel", "Siiri", "Mikael", "Saga", "Ahmed", "Amina", "Mohamed", "Hanna", "Ilmari", "Nea", "Daniel",
)  # fmt: skip
LAST_NAMES = (
    "Korhonen", "Virtanen", "Mäkinen", "Nieminen", "Mäkelä", "Hämäläinen", "Laine", "Heikkinen", "Koskinen",
    "Järvinen", "Lehtonen", "Lehtinen", "Saarinen", "Salminen", "Heinonen", "Niemi", "Heikkilä", "Kinnunen",
    "Salonen", "Turunen", "Salo", "Laitinen", "Tuominen", "Rantanen", "Karjalainen", "Jokinen", "Mattila",
    "Savolainen", "Lahtinen", "Ahonen", "Ali", "Hassan", "Nguyen", "Ivanova", "Lindqvist", "Öhman",
)  # fmt: skip
CHECK = "0123456789ABCDEFHJKLMNPRSTUVWXY"  # the control character's alphabet (mod 31)


# --------------------------------------------------------------------------- table shapes


def _python_type(column: Any) -> type | None:
    kind = column.type
    if isinstance(kind, sqlalchemy.TypeDecorator):  # UTCDateTime: a DateTime underneath
        kind = kind.impl_instance
    try:
        return kind.python_type
    except NotImplementedError:
        return None


class Shape:
    """One table as the app defines it: its columns (COPY order) and the fields its snapshots log.

    Rows are dicts with exactly the columns; ids are UUID strings (COPY takes them as they are, and
    ``snapshot`` and ``canonical`` render a UUID as its string anyway).
    """

    def __init__(self, model: Any) -> None:
        self.model = model
        self.table: str = model.__tablename__
        columns = list(model.__table__.columns)
        self.columns = tuple(column.name for column in columns)
        self.logged = tuple(name for name in model.model_fields if name not in NEVER_LOGGED)
        self.json_columns = frozenset(column.name for column in columns if isinstance(column.type, sqlalchemy.JSON))
        typed = {column.name: _python_type(column) for column in columns}
        self._dates = tuple(name for name in self.logged if typed.get(name) is dt.date)
        self._moments = tuple(name for name in self.logged if typed.get(name) is dt.datetime)
        self._names = frozenset(self.columns)

    def row(self, **values: Any) -> dict[str, Any]:
        """A row with exactly the table's columns: a column added or dropped by a migration fails here."""
        if values.keys() != self._names:
            missing, extra = sorted(self._names - values.keys()), sorted(values.keys() - self._names)
            raise KeyError(f"{self.table}: the generator does not match the model (missing {missing}, extra {extra})")
        return values

    def snapshot(self, row: dict[str, Any]) -> dict[str, Any]:
        """``app.services.audit.snapshot`` of the row (pydantic's JSON mode): checked against it by dataset_check."""
        shown = {name: row[name] for name in self.logged}
        for name in self._dates:
            if shown[name] is not None:
                shown[name] = shown[name].isoformat()
        for name in self._moments:
            if shown[name] is not None:
                shown[name] = shown[name].isoformat().replace("+00:00", "Z")
        return shown


MODELS = (
    Region, RegionSettingsVersion, Worker, Client, ClientExternalId, ResponsibilityPeriod, Assignment,
    ComplianceGap, WorkPair, CostDecision, CostDecisionEvent, CoordinationRequest, ChangeEvent,
    ChangeEventClient, AccessEntry, AccessEntryClient, Disclosure, ChainLink, FeedEvent,
)  # fmt: skip
SHAPES = {model.__tablename__: Shape(model) for model in MODELS}


# --------------------------------------------------------------------------- regions and callers


@dataclass
class RegionInfo:
    """An organising region as the generator uses it: settings, municipalities, its callers' names."""

    code: str
    row: dict[str, Any]
    municipalities: list[str]
    weight: int
    system_name: str
    coordinators: list[str] = field(default_factory=list)

    @property
    def grace_days(self) -> int:
        return int(self.row["grace_days"])

    @property
    def end_age(self) -> int:
        return int(self.row["aftercare_end_age"])

    @property
    def system_subject(self) -> str:
        return f"{self.system_name.lower()}-{self.code}"


@dataclass(frozen=True)
class ClientPlan:
    """Who a client is, decided before its life is played out (so identity codes stay unique)."""

    number: int
    initial: bool  # already in aftercare when the service went live: imported in its first two months
    organising: str
    registered: dt.date
    start: dt.date
    born: dt.date
    identity_code: str


@dataclass
class Tx:
    """One write request: its caller, its commit time, and the changes it recorded (``record_change``).

    ``views`` holds, per client touched, what the change feed needs at commit: the regions then
    holding the client, its responsibilities (only inside the feed's retention window) and
    whether its address is protected.
    """

    at: dt.datetime
    order: tuple[int, int]  # (chunk, sequence): commit order among writes of the same moment
    caller: Caller
    changes: list[dict[str, Any]] = field(default_factory=list)
    views: dict[str, tuple[frozenset[str], dict[str, Any] | None, bool]] = field(default_factory=dict)


@dataclass
class Read:
    """One response with personal data (an access entry): who read which client, where, and why."""

    at: dt.datetime
    order: tuple[int, int]
    caller: Caller
    method: str
    endpoint: str
    client_ids: list[str]
    organisers: list[str | None]  # each client's organising region on that day, for the disclosures


class World:
    """The seeded randomness, the calendar, the regions and everything written so far.

    ``rng`` and ``chunk`` are swapped for each chunk of clients (``begin_chunk``), so that a chunk
    gives the same rows whichever process plays it.
    """

    def __init__(self, rng: random.Random, regions: list[RegionInfo], today: dt.date, years: int) -> None:
        self.rng = rng
        self.chunk = -1
        self.regions = {region.code: region for region in regions}
        self.all_codes = list(self.regions)  # every region with a feed position (Åland too): set by the builder
        self.codes = [region.code for region in regions]
        self.cum_weights = list(itertools.accumulate(region.weight for region in regions))
        self.today = today
        self.start = today.replace(year=today.year - years)
        self.last = today - dt.timedelta(days=1)  # history ends yesterday: nothing is recorded later than now
        self.counter = itertools.count()
        self.txs: list[Tx] = []
        self.reads: list[Read] = []
        self.deactivations: dict[str, Tx] = {}  # a worker's deactivation touches many clients in one write
        self.shared: dict[str, Tx] = {}  # this chunk's clients' parts of those writes
        self.feed_from = dt.datetime.combine(today, dt.time(), dt.UTC)  # set by the caller: retention window
        self.municipality_region: dict[str, str] = {}
        self.aland: list[str] = []  # municipalities outside the organisers (Åland)

    def begin_chunk(self, chunk: int, seed: int) -> None:
        """Start a chunk of clients: its own random stream, and nothing written yet."""
        self.rng = random.Random(f"{seed}/{chunk}")  # noqa: S311 - reproducible data, not secrets
        self.chunk, self.counter = chunk, itertools.count()
        self.txs, self.reads = [], []
        self.shared = {worker: Tx(tx.at, tx.order, tx.caller) for worker, tx in self.deactivations.items()}

    def order(self) -> tuple[int, int]:
        return self.chunk, next(self.counter)

    # ---- ids and time

    def uuid(self) -> str:
        """A random (version 4) UUID, as its string."""
        bits = self.rng.getrandbits(128) & ~(0xC000 << 48) | (0x8000 << 48)
        text = f"{bits & ~(0xF000 << 64) | (4 << 76):032x}"
        return f"{text[:8]}-{text[8:12]}-{text[12:16]}-{text[16:20]}-{text[20:]}"

    @property
    def go_live(self) -> dt.datetime:
        """When the service went live (migrated): an hour before the first day's writes."""
        return self.working_day(self.start) - dt.timedelta(hours=1)

    @cache  # noqa: B019 - one World per build, a few thousand days
    def working_day(self, on: dt.date) -> dt.datetime:
        """08:00 in Finland on ``on``, in UTC: writes happen during the next eight hours."""
        return dt.datetime.combine(on, dt.time(8), FINLAND).astimezone(dt.UTC)

    def moment(self, on: dt.date) -> dt.datetime:
        offset = dt.timedelta(seconds=self.rng.randrange(8 * 3600), microseconds=self.rng.randrange(1_000_000))
        return self.working_day(on) + offset

    def day(self, low: dt.date, high: dt.date) -> dt.date:
        """A day in ``[low, high]``."""
        return low + dt.timedelta(days=self.rng.randrange((high - low).days + 1))

    # ---- regions and callers

    def region(self, exclude: str | None = None) -> str:
        while True:
            code = self.rng.choices(self.codes, cum_weights=self.cum_weights)[0]
            if code != exclude:
                return code

    def caller(self, region: str | None, role: str = "system", purpose: str | None = None) -> Caller:
        """A verified caller of one request: the region's system or one of its coordinators."""
        request_id = self.uuid()
        if region is None:  # a national auditor
            return Caller("auditor-national", frozenset({"auditor"}), None, None, request_id, purpose or "audit")
        info = self.regions[region]
        if role == "system":
            return Caller(
                info.system_subject,
                frozenset({"system"}),
                region,
                info.system_name,
                request_id,
                purpose or "coordination",
            )
        subject = self.rng.choice(info.coordinators)
        return Caller(subject, frozenset({"coordinator"}), region, None, request_id, purpose or "coordination")

    def either(self, region: str, p_system: float = 0.6) -> Caller:
        return self.caller(region, "system" if self.rng.random() < p_system else "coordinator")

    def name(self) -> tuple[str, str]:
        return self.rng.choice(FIRST_NAMES), self.rng.choice(LAST_NAMES)

    def tx(self, at: dt.datetime, caller: Caller) -> Tx:
        tx = Tx(at, self.order(), caller)
        self.txs.append(tx)
        return tx


def load_regions(rows: Sequence[dict[str, Any]], municipalities: Sequence[tuple[str, str]]) -> list[RegionInfo]:
    """The organisers as migrated (``region``), their municipalities, weights and callers."""
    by_region: dict[str, list[str]] = {}
    for code, region in municipalities:
        by_region.setdefault(region, []).append(code)
    regions = []
    for index, row in enumerate(row for row in rows if row["organiser"]):
        code = row["code"]
        system = "Apotti" if code in APOTTI else SYSTEMS[index % len(SYSTEMS)]
        info = RegionInfo(code, dict(row), sorted(by_region.get(code, [])), POPULATION.get(code, 100), system)
        info.coordinators = [f"coordinator-{code}-{n}" for n in range(1, 2 + info.weight // 150)]
        regions.append(info)
    return regions


# --------------------------------------------------------------------------- people


class People:
    """Identity codes: every code unique, valid (checked by the app's own parser), permanent."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.used: set[str] = set()

    def identity_code(self, born: dt.date) -> str:
        """A permanent code (individual number 002-899) for ``born``; a few carry the 2023 century signs."""
        modern = self.rng.random() < 0.03
        signs = ("Y", "X") if born.year < 2000 else ("B", "C")
        sign = self.rng.choice(signs) if modern else ("-" if born.year < 2000 else "A")
        while True:
            digits = f"{born:%d%m}{born.year % 100:02d}"
            individual = f"{self.rng.randrange(2, 900):03d}"
            code = f"{digits}{sign}{individual}{CHECK[int(digits + individual) % 31]}"
            if code not in self.used:
                break
        parsed = parse_personal_id(code, accept_temporary=False)  # the app's rule decides what is valid
        if parsed.birth_date != born:
            raise ValueError(f"identity code {code} does not give birth date {born}")
        self.used.add(code)
        return code


def email(first: str, last: str, number: int, region: str) -> str:
    plain = f"{first}.{last}".lower().translate(str.maketrans("äöå", "aoa"))
    return f"{plain}.{number}@hv{region}.example.fi"


# --------------------------------------------------------------------------- workers

AFTERCARE_ROLES = (("social_worker", 0.42), ("counsellor", 0.40), ("special_counsellor", 0.12), ("other", 0.06))
OTHER_SERVICES = (("disability", 0.5), ("mental_health_substance", 0.35), ("adult_social_work", 0.15))
OTHER_SERVICE_SHARE = 0.12  # workers of other services, for cross-service pairs
LATER_HIRES = 0.2  # share of the workers hired after the service went live
LEAVERS = {"initial": 0.22, "later": 0.10}  # share deactivated before today


def _choose(rng: random.Random, weighted: Sequence[tuple[str, float]]) -> str:
    return rng.choices([name for name, _ in weighted], weights=[weight for _, weight in weighted])[0]


@dataclass
class Pool:
    """Workers of one region who may be picked for one purpose; heavier weight, more clients."""

    workers: list[dict[str, Any]] = field(default_factory=list)
    cum: list[float] = field(default_factory=list)

    def add(self, worker: dict[str, Any], weight: float) -> None:
        self.workers.append(worker)
        self.cum.append((self.cum[-1] if self.cum else 0.0) + weight)


class Staff:
    """Every worker row, planned up front: hired, and for some deactivated, on known dates."""

    def __init__(self, world: World, total: int) -> None:
        self.world = world
        self.rows: list[dict[str, Any]] = []
        self.by_id: dict[str, dict[str, Any]] = {}
        self.pools: dict[tuple[str, str], Pool] = {}
        self.deactivations: list[dict[str, Any]] = []
        regions = list(world.regions.values())
        weight = sum(region.weight for region in regions)
        for region in regions:
            for number in range(max(8, round(total * region.weight / weight))):
                self._hire(region, number)

    def _hire(self, region: RegionInfo, number: int) -> None:
        rng, world = self.world.rng, self.world
        later = rng.random() < LATER_HIRES
        first = world.day(world.start + dt.timedelta(days=90), world.last) if later else world.start
        if not later:
            first += dt.timedelta(days=rng.randrange(7))
        leaves = rng.random() < LEAVERS["later" if later else "initial"] and (world.last - first).days > 200
        last = world.day(first + dt.timedelta(days=180), world.last) if leaves else None
        service = _choose(rng, OTHER_SERVICES) if rng.random() < OTHER_SERVICE_SHARE else "aftercare"
        if service == "aftercare":
            role = _choose(rng, AFTERCARE_ROLES)
        else:
            role = rng.choice(("social_worker", "counsellor", "other"))
        name = world.name()
        # added in the morning, before the day's work (the first day's, before go-live's first write)
        created = world.working_day(first) - dt.timedelta(seconds=rng.randrange(1, 3600))
        worker = SHAPES["worker"].row(
            id=world.uuid(),
            name=f"{name[0]} {name[1]}",
            role=role,
            service=service,
            email=email(*name, number, region.code) if rng.random() < 0.8 else None,
            external_id=f"w-{number}" if rng.random() < 0.7 else None,
            region=region.code,
            active=True,
            active_from=first,
            inactive_from=None,
            version=1,
            created_at=created,
            updated_at=created,
        )
        self.rows.append(worker)
        self.by_id[worker["id"]] = worker
        tx = world.tx(created, world.caller(region.code, "coordinator"))
        tx.changes.append(_worker_change("worker.created", worker, None))
        if last is not None:
            before = SHAPES["worker"].snapshot(worker)
            at = world.moment(last)
            worker.update(active=False, inactive_from=last, version=2, updated_at=at)
            shared = world.tx(at, world.caller(region.code, "coordinator"))
            shared.changes.append(_worker_change("worker.updated", worker, before))
            world.deactivations[worker["id"]] = shared
        # uneven caseloads: some workers carry twice as many clients as others (PRODUCT.md)
        weight = rng.lognormvariate(0, 0.45)
        if service != "aftercare":
            self._pool(region.code, "other_service").add(worker, 1.0)
        elif role != "other":
            self._pool(region.code, "named").add(worker, weight)
            if role == "social_worker":
                self._pool(region.code, "social").add(worker, weight)

    def _pool(self, region: str, purpose: str) -> Pool:
        return self.pools.setdefault((region, purpose), Pool())

    def pick(self, region: str, purpose: str, on: dt.date) -> dict[str, Any] | None:
        """A worker of ``region`` for ``purpose`` (named, social, other_service) active on ``on``."""
        pool = self.pools.get((region, purpose))
        if pool is None:
            return None
        rng = self.world.rng
        for _ in range(40):
            worker = rng.choices(pool.workers, cum_weights=pool.cum)[0]
            if active(worker, on):
                return worker
        return next((worker for worker in pool.workers if active(worker, on)), None)


def active(worker: dict[str, Any], on: dt.date) -> bool:
    return worker["active_from"] <= on and (worker["inactive_from"] is None or on < worker["inactive_from"])


def _worker_change(action: str, worker: dict[str, Any], before: dict[str, Any] | None) -> dict[str, Any]:
    return {
        "action": action,
        "entity_type": "worker",
        "entity_id": worker["id"],
        "client_id": None,
        "before": before,
        "after": SHAPES["worker"].snapshot(worker),
    }


# --------------------------------------------------------------------------- clients


def plan_clients(world: World, people: People, count: int, initial_share: float) -> list[ClientPlan]:
    """Who the clients are: region, dates, identity code. Most begin aftercare when a placement ends at 18.

    The first ``initial_share`` were already in aftercare when the service went live, imported with
    their start dates in its first two months; the rest are registered over the five years.
    """
    plans = []
    for number in range(count):
        initial = number < count * initial_share
        organising = world.region()
        registered, start, born = _dates(world, initial, world.regions[organising].end_age)
        plans.append(ClientPlan(number, initial, organising, registered, start, born, people.identity_code(born)))
    return plans


def _dates(world: World, initial: bool, end_age: int) -> tuple[dt.date, dt.date, dt.date]:
    """(registered, aftercare start, birth date), registrable under the region's age limit."""
    rng = world.rng
    while True:
        if initial:
            registered = world.day(world.start, world.start + dt.timedelta(days=60))
            start = world.day(world.start - dt.timedelta(days=3 * 365), world.start)
        else:
            registered = world.day(world.start + dt.timedelta(days=61), world.last)
            early = rng.random() < 0.1  # registered before aftercare begins
            start = registered + dt.timedelta(days=rng.randrange(1, 31) if early else -rng.randrange(0, 21))
        age = 18 + rng.random() * 0.15 if rng.random() < 0.7 else rng.uniform(18, 22)
        born = start - dt.timedelta(days=int(age * 365.25))
        try:
            aftercare.check_registrable(born, end_age, start, registered)
        except Unprocessable:
            continue  # past the age limit already: the registration would be refused
        return registered, start, born

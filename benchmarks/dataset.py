"""A national data set at ten times today's scale, built in minutes with COPY (issue 9).

What one build does:

1. Drops and recreates a loopback PostgreSQL database whose name contains ``bench`` and creates
   the schema with the project's Alembic migrations (``app.migrate.upgrade``), so regions,
   municipalities, settings and feed positions are the migrations' own reference data.
2. Simulates five years of Silta's writes (``dataset_life``, ``dataset_cooperation``): 22
   regions, their workers hired and some deactivated (``dataset_world``), and clients registered,
   named, reassigned, moved, transferred, ended, paired, paying — every write applied as the
   services apply it, the rules called from ``app.domain``, recording what ``record_change`` records.
3. Turns the writes into the logs (``dataset_logs``): change entries with MACs under the data
   folder's audit key, reads into access entries and disclosures, all sealed into the chain, and
   the change feed's per-region sequences with the retention window's events.
4. Loads everything with COPY: the workers first; each chunk of clients' rows (played by one of
   ``--jobs`` forked processes) in a transaction of its own, in foreign-key order; then the logs
   over three connections at once (no foreign key between them); then ``VACUUM (ANALYZE)``.
   Identity codes are sealed with the app's vault and the data folder's identity key, so a server
   started with ``SILTA_DATA_DIR`` set to that folder reads them back.
5. Prints the rows per table and the seconds of each phase; ``--check`` then runs the sanity checks
   and reads the data back over HTTP from a server started on 127.0.0.1 (``dataset_check``).

Run from the repository root (``--scale 0.05`` while developing)::

    .venv/bin/python benchmarks/dataset.py --db-name silta_bench_national
    .venv/bin/python benchmarks/dataset.py --db-name silta_bench_national --scale 0.05 --seed 7 --check

Later benchmarks import it: ``summary = dataset.build(url, scale, seed, data_dir=work / "silta-data")``.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import gc
import json
import multiprocessing
import os
import random
import resource
import signal
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import harness
import psycopg
from dataset_life import Life
from dataset_logs import ChangeRecord, LogWriter, ReadRecord, as_json, pack_change, pack_read
from dataset_world import POLICIES, SHAPES, ClientPlan, People, Staff, Tx, World, load_regions, plan_clients
from psycopg import sql
from psycopg.rows import dict_row

from app.config import Settings
from app.migrate import upgrade
from app.services.audit import AuditKey
from app.services.clock import today as finnish_today
from app.services.vault import Vault

CLIENTS, WORKERS, YEARS = 150_000, 6_000, 5  # at scale 1.0 (issue 9)
INITIAL_SHARE = 0.3  # clients already in aftercare when the service went live, imported at go-live
READS_PER_MONTH = 0.1  # reads of a client's data per month while it is in aftercare (tuned: ~2 M log entries)
CHUNK = 1_000  # clients per task of a worker process
MAX_SCALE = 2.0
CLIENT_TABLES = (
    "client", "client_external_id", "responsibility_period", "assignment", "compliance_gap", "work_pair",
    "cost_decision", "cost_decision_event", "coordination_request",
)  # fmt: skip
LOG_LOADS = (  # one connection each, in parallel: no foreign key between the groups
    ("change_event", "change_event_client"),
    ("access_log", "access_log_client", "disclosure_log"),
    ("audit_chain", "feed_event"),
)


class Phases:
    """Seconds per phase, printed as they end; and how busy the machine was meanwhile."""

    def __init__(self, quiet: bool) -> None:
        self.quiet, self.t0 = quiet, time.monotonic()
        self.seconds: dict[str, float] = {}
        self.mark = self.t0
        self.load_at_start = os.getloadavg()
        self.ticks = _cpu_ticks()
        self.backends: dict[int, float] = {}  # backend pid -> its CPU seconds, last read

    def done(self, phase: str, what: str = "") -> None:
        now = time.monotonic()
        self.seconds[phase] = round(now - self.mark, 1)
        self.mark = now
        if not self.quiet:
            print(f"  {phase:<18} {self.seconds[phase]:7.1f} s  {what}", flush=True)

    @property
    def total(self) -> float:
        return round(time.monotonic() - self.t0, 1)

    def backend(self, conn: psycopg.Connection[Any]) -> None:
        """Note a connection's backend CPU so far (call before closing it)."""
        self.backends.update([backend_cpu(conn)])

    def machine(self) -> dict[str, Any]:
        """The build's own CPU (its processes, its PostgreSQL backends) against the whole machine's."""
        busy, total = (now - then for now, then in zip(_cpu_ticks(), self.ticks, strict=True))
        mine = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
        return {
            "cpus": os.cpu_count(),
            "load_average_at_start": [round(load, 2) for load in self.load_at_start],
            "machine_busy_pct": round(100 * busy / max(total, 1), 1),
            "python_cpu_seconds": round(sum(usage.ru_utime + usage.ru_stime for usage in mine), 1),
            "postgresql_cpu_seconds": round(sum(self.backends.values()), 1),
        }


def _cpu_ticks() -> tuple[int, int]:
    """(busy, all) CPU ticks of the whole machine since boot (``/proc/stat``)."""
    with contextlib.suppress(OSError):
        fields = [int(value) for value in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
        return fields[0] + fields[1] + fields[2], sum(fields[:8])
    return 0, 0


def backend_cpu(conn: psycopg.Connection[Any]) -> tuple[int, float]:
    """(pid, CPU seconds) of the connection's PostgreSQL backend: loopback only, so it runs on this host."""
    pid = conn.info.backend_pid
    return pid, harness.process_cpu_seconds(pid)


def default_data_dir(db_name: str) -> Path:
    return Path(tempfile.gettempdir()) / f"{db_name}-data"


@contextlib.contextmanager
def _no_collector() -> Iterator[None]:
    """Millions of acyclic records: the cyclic collector would rescan them all, again and again."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def build(
    url: str,
    scale: float = 1.0,
    seed: int = 1,
    *,
    data_dir: Path | None = None,
    today: dt.date | None = None,
    jobs: int | None = None,
    quiet: bool = False,
) -> dict[str, Any]:
    """Recreate the database at ``url``, migrate it and fill it; return what was built and how long it took.

    ``data_dir`` holds the keys (created if missing) that a server must be started with
    (``SILTA_DATA_DIR``) to read the identity codes and verify the audit chain. The same ``seed``,
    ``scale`` and ``today`` give the same rows (only the ciphertexts' nonces and the keys differ).
    """
    name = _database(url)
    if not 0 < scale <= MAX_SCALE:
        raise SystemExit(f"--scale must be in (0, {MAX_SCALE}]")
    with _no_collector():
        return _build(url, name, scale, seed, data_dir, today, jobs, quiet)


def _build(
    url: str,
    name: str,
    scale: float,
    seed: int,
    data_dir: Path | None,
    today: dt.date | None,
    jobs: int | None,
    quiet: bool,
) -> dict[str, Any]:
    data_dir = (data_dir or default_data_dir(name)).resolve()
    today = today or finnish_today()
    jobs = jobs or os.cpu_count() or 1
    phases = Phases(quiet)
    if not quiet:
        print(f"building {name}: scale {scale}, seed {seed}, history to {today}, {jobs} processes, keys in {data_dir}")
    harness.recreate_database(harness.database_url(url, "postgres"), name)
    upgrade(url)
    phases.done("migrate", "Alembic, head")

    settings = Settings(database_url=url, data_dir=data_dir)
    vault = Vault(settings.identity_key_path, create=settings.identity_key_file is None)
    vault.lookup("")  # read (or create) the key file before the worker processes start
    key = AuditKey(settings.audit_key_path, create=settings.audit_key_file is None).mac
    world = _world(url, random.Random(seed), today)  # noqa: S311 - reproducible data, not secrets
    world.feed_from = dt.datetime.combine(today - dt.timedelta(days=settings.feed_retention_days), dt.time(), dt.UTC)
    versions = _policies(world)
    staff = Staff(world, max(len(world.regions) * 8, round(WORKERS * scale)))
    plans = plan_clients(world, People(world.rng), round(CLIENTS * scale), INITIAL_SHARE)
    counts = {"region_settings_version": len(versions), "worker": len(staff.rows)}
    with psycopg.connect(url) as conn, conn.cursor() as cur:
        # the reference data's own timestamps: the migrations ran when the service went live
        cur.execute("UPDATE region SET updated_at = %s", (world.go_live,))
        cur.execute("UPDATE region_settings_version SET recorded_at = %s", (world.go_live,))
        for region in world.regions.values():
            cur.execute(
                "UPDATE region SET grace_days = %s, aftercare_end_age = %s, updated_at = %s WHERE code = %s",
                (region.grace_days, region.end_age, region.row["updated_at"], region.code),
            )
        copy(cur, "region_settings_version", versions)
        copy(cur, "worker", staff.rows)
        conn.commit()
        phases.backend(conn)
    phases.done("plan", f"{len(staff.rows):,} workers, {len(plans):,} clients")

    planned, world.txs = world.txs, []  # the writes made outside any one client: settings, workers
    played = _play(Job(url, seed, world, staff, vault, key), plans, jobs, quiet)
    counts.update(played.counts)
    phases.backends.update(played.backends)
    phases.done("history", f"{played.counts['client']:,} clients lived and loaded, {len(played.changes):,} writes")

    changes = played.changes + [pack_change(tx, key, world.feed_from) for tx in _parent_writes(world, planned, played)]
    writer = LogWriter(key, world.all_codes)
    writer.number(changes, played.reads)
    phases.done("number logs", f"{len(changes):,} change and {len(played.reads):,} access entries")
    with ThreadPoolExecutor(len(LOG_LOADS)) as pool:
        for loaded, backend in pool.map(lambda tables: _load(url, tables, writer.rows), LOG_LOADS):
            counts.update(loaded)
            phases.backends.update([backend])
    with psycopg.connect(url) as conn:
        for code, last in writer.last_seq.items():
            conn.execute(
                "UPDATE feed_position SET last_seq = %s, purged_through = %s WHERE region = %s",
                (last, writer.purged_through[code], code),
            )
        _advance_sequences(conn)
        conn.commit()
        phases.backend(conn)
    phases.done("load logs", f"{counts['audit_chain']:,} log entries, {counts['feed_event']:,} feed events")
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("VACUUM (ANALYZE)")  # the steady state of a live database, as autovacuum leaves it
        size = conn.execute("SELECT pg_size_pretty(pg_database_size(current_database()))").fetchone()
        active = conn.execute(
            "SELECT count(*) FROM client WHERE aftercare_start <= %s AND aftercare_end >= %s", (today, today)
        ).fetchone()
        phases.backend(conn)
    phases.done("vacuum analyze")
    return {
        "database": name,
        "data_dir": str(data_dir),
        "scale": scale,
        "seed": seed,
        "today": today.isoformat(),
        "history_from": world.start.isoformat(),
        "processes": jobs,
        "rows": dict(sorted(counts.items())),
        "log_entries": counts["change_event"] + counts["access_log"] + counts["disclosure_log"],
        "active_clients_today": active[0] if active else None,
        "database_size": size[0] if size else None,
        "seconds": phases.seconds,
        "total_seconds": phases.total,
        "machine": phases.machine(),
    }


def _database(url: str) -> str:
    """The database name of a loopback URL; refuses other hosts and names without ``bench``."""
    harness.ensure_loopback(url)
    name = urlsplit(url).path.lstrip("/")
    if "bench" not in name:
        raise SystemExit(f"refusing database {name!r}: its name must contain 'bench' (it is dropped and recreated)")
    return name


def _world(url: str, rng: random.Random, today: dt.date) -> World:
    """Regions and municipalities as the migrations left them; the model must match the database."""
    with psycopg.connect(url, row_factory=dict_row) as conn:
        conn.execute("SET TIME ZONE 'UTC'")
        _check_schema(conn)
        regions = conn.execute("SELECT * FROM region ORDER BY code").fetchall()
        municipalities = [(row["code"], row["region_code"]) for row in conn.execute("SELECT * FROM municipality")]
    world = World(rng, load_regions(regions, municipalities), today, YEARS)
    for region in world.regions.values():  # the migrations ran when the service went live
        region.row["updated_at"] = world.go_live
    world.all_codes = [row["code"] for row in regions]
    world.municipality_region = dict(municipalities)
    world.aland = sorted(code for code, region in municipalities if region not in world.regions)
    return world


def _check_schema(conn: psycopg.Connection[Any]) -> None:
    """Every table the generator fills has exactly the model's columns: a drifted migration fails loudly."""
    rows = conn.execute(
        "SELECT table_name, column_name FROM information_schema.columns WHERE table_schema = 'public'"
    ).fetchall()
    found: dict[str, set[str]] = {}
    for row in rows:
        found.setdefault(row["table_name"], set()).add(row["column_name"])
    for table, shape in SHAPES.items():
        if found.get(table) != set(shape.columns):
            raise SystemExit(
                f"table {table}: the migrations give {sorted(found.get(table, ()))}, the model {sorted(shape.columns)}"
            )


def _advance_sequences(conn: psycopg.Connection[Any]) -> None:
    """Rows were copied with their ids: move every id sequence past them, as inserts would have."""
    serial = conn.execute(
        """SELECT table_name, column_name, pg_get_serial_sequence(quote_ident(table_name), column_name)
           FROM information_schema.columns
           WHERE table_schema = 'public' AND (column_default LIKE 'nextval(%%' OR is_identity = 'YES')"""
    ).fetchall()
    for table, column, sequence in serial:
        highest = sql.SQL("SELECT coalesce(max({}), 0) FROM {}").format(sql.Identifier(column), sql.Identifier(table))
        row = conn.execute(highest).fetchone()
        if row and row[0]:
            conn.execute("SELECT setval(%s, %s)", (sequence, row[0]))  # the next insert gets max + 1


def _policies(world: World) -> list[dict[str, Any]]:
    """Regional settings decided at go-live (``update_settings``): the region row, its dated version, the change."""
    versions = []
    at = world.working_day(world.start)
    for code, changes in sorted(POLICIES.items()):
        region = world.regions.get(code)
        if region is None:
            continue
        caller = world.caller(code, "coordinator")
        before = SHAPES["region"].snapshot(region.row)
        region.row.update(changes, updated_at=at)
        versions.append(
            SHAPES["region_settings_version"].row(
                id=world.uuid(),
                region_code=code,
                valid_from=world.start,
                grace_days=region.grace_days,
                aftercare_end_age=region.end_age,
                caseload_targets=region.row["caseload_targets"],
                caseload_weights=region.row["caseload_weights"],
                recorded_at=at,
                recorded_by=caller.subject,
            )
        )
        world.tx(at, caller).changes.append(
            {
                "action": "region.settings_updated",
                "entity_type": "region",
                "entity_id": code,
                "client_id": None,
                "before": before,
                "after": SHAPES["region"].snapshot(region.row),
            }
        )
    return versions


# --------------------------------------------------------------------------- the worker processes


@dataclass
class Job:
    """What every worker process needs (inherited by fork): the planned world and the keys."""

    url: str
    seed: int
    world: World
    staff: Staff
    vault: Vault
    key: bytes


@dataclass
class Played:
    """What the chunks gave back: rows loaded per table, packed log records, deactivations' parts."""

    counts: Counter[str] = field(default_factory=Counter)
    changes: list[ChangeRecord] = field(default_factory=list)
    reads: list[ReadRecord] = field(default_factory=list)
    shared: dict[str, list[tuple[list[dict[str, Any]], dict[str, Any]]]] = field(default_factory=dict)
    backends: dict[int, float] = field(default_factory=dict)


_JOB: Job | None = None
_CONNECTION: psycopg.Connection[Any] | None = None


def _play(job: Job, plans: list[ClientPlan], jobs: int, quiet: bool) -> Played:
    """Every chunk of clients, played by ``jobs`` forked processes (or this one); gathered in chunk order."""
    global _JOB, _CONNECTION
    _JOB = job
    chunks = [(index, plans[start : start + CHUNK]) for index, start in enumerate(range(0, len(plans), CHUNK))]
    played = Played()
    step = max(1, len(chunks) // 10)
    try:
        with contextlib.ExitStack() as stack:
            if jobs > 1:
                pool = stack.enter_context(multiprocessing.get_context("fork").Pool(jobs, _start_worker))
                results: Iterator[Any] = pool.imap(_play_chunk, chunks)
            else:
                _CONNECTION = stack.enter_context(psycopg.connect(job.url))
                results = map(_play_chunk, chunks)
            for done, (counts, changes, reads, shared, backend) in enumerate(results, start=1):
                played.counts.update(counts)
                played.backends.update([backend])
                played.changes += changes
                played.reads += reads
                for worker, part in shared.items():
                    played.shared.setdefault(worker, []).append(part)
                if not quiet and (done % step == 0 or done == len(chunks)):
                    print(f"    {min(done * CHUNK, len(plans)):,} clients", flush=True)
    finally:
        _JOB, _CONNECTION = None, None
    return played


def _start_worker() -> None:
    """A forked worker process: its own connection; the inherited heap left out of garbage collection."""
    global _CONNECTION
    assert _JOB is not None
    # the parent's SIGTERM handler (a benchmark's clean-up) is not this process's: the pool ends it with SIGTERM
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    gc.freeze()
    _CONNECTION = psycopg.connect(_JOB.url)


def _play_chunk(task: tuple[int, list[ClientPlan]]) -> tuple[Any, ...]:
    """Live the chunk's clients, COPY their rows (one transaction), pack their writes and reads."""
    index, plans = task
    job, connection = _JOB, _CONNECTION
    assert job is not None and connection is not None
    world = job.world
    world.begin_chunk(index, job.seed)
    tables: dict[str, list[dict[str, Any]]] = {table: [] for table in CLIENT_TABLES}
    for plan in plans:
        life = Life(world, job.staff, job.vault, READS_PER_MONTH)
        life.live(plan)
        _collect(tables, life)
    with connection.cursor() as cur:
        counts = Counter({table: copy(cur, table, tables[table]) for table in CLIENT_TABLES})
    connection.commit()
    changes = [pack_change(tx, job.key, world.feed_from) for tx in world.txs if tx.changes]
    reads = [pack_read(read, job.key) for read in world.reads]
    shared = {worker: (tx.changes, tx.views) for worker, tx in world.shared.items() if tx.changes}
    return counts, changes, reads, shared, backend_cpu(connection)


def _collect(tables: dict[str, list[dict[str, Any]]], life: Life) -> None:
    tables["client"].append(life.row)
    for table, rows in (
        ("client_external_id", life.external),
        ("responsibility_period", life.periods),
        ("assignment", life.assignments),
        ("compliance_gap", life.gaps),
        ("work_pair", life.pairs),
        ("cost_decision", life.decisions),
        ("cost_decision_event", list(life.answers.values())),
        ("coordination_request", life.requests),
    ):
        tables[table].extend(rows)


def _parent_writes(world: World, planned: list[Tx], played: Played) -> list[Tx]:
    """The writes made outside any one client: settings, workers, and each deactivation with every
    client it touched (``workers._end_assignments_of``), the clients' parts in client order."""
    for worker, tx in world.deactivations.items():
        parts = played.shared.get(worker, [])
        tx.changes += sorted((c for changes, _ in parts for c in changes), key=lambda change: change["client_id"])
        for _, views in parts:
            tx.views.update(views)
    return [tx for tx in planned if tx.changes]


def _load(
    url: str, tables: Sequence[str], rows: dict[str, list[Sequence[Any]]]
) -> tuple[dict[str, int], tuple[int, float]]:
    """COPY laid-out rows (tuples in column order) into ``tables`` in one transaction; (counts, backend CPU)."""
    loaded = {}
    with psycopg.connect(url) as conn:
        with conn.cursor() as cur:
            for table in tables:
                with cur.copy(_copy_statement(table)) as out:
                    for row in rows[table]:
                        out.write_row(row)
                loaded[table] = len(rows[table])
        conn.commit()
        return loaded, backend_cpu(conn)


def _copy_statement(table: str) -> sql.Composed:
    return sql.SQL("COPY {} ({}) FROM STDIN").format(
        sql.Identifier(table), sql.SQL(", ").join(sql.Identifier(column) for column in SHAPES[table].columns)
    )


def copy(cur: psycopg.Cursor[Any], table: str, rows: Iterable[dict[str, Any]]) -> int:
    """COPY row dicts into ``table`` in the model's column order (JSON columns as JSON text)."""
    columns = [(column, column in SHAPES[table].json_columns) for column in SHAPES[table].columns]
    count = 0
    with cur.copy(_copy_statement(table)) as out:
        for row in rows:
            out.write_row([as_json(row[column]) if is_json else row[column] for column, is_json in columns])
            count += 1
    return count


# --------------------------------------------------------------------------- command line


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    p.add_argument("--admin-url", default="postgresql://postgres@127.0.0.1:5432/postgres", help="loopback PostgreSQL")
    p.add_argument("--db-name", default="silta_bench_national", help="database to (re)create; must contain 'bench'")
    p.add_argument("--scale", type=float, default=1.0, help="1.0: 150,000 clients, 6,000 workers, ~2 M log entries")
    p.add_argument("--seed", type=int, default=1, help="the same seed (and day) builds the same data")
    p.add_argument("--today", type=dt.date.fromisoformat, default=None, help="last day of history + 1 (default: today)")
    p.add_argument("--jobs", type=int, default=None, help="worker processes (default: one per CPU)")
    p.add_argument("--data-dir", type=Path, default=None, help="the keys' folder (default: <tmp>/<db-name>-data)")
    p.add_argument("--check", action="store_true", help="then run the sanity checks and read it back over HTTP")
    p.add_argument("--check-only", action="store_true", help="only the checks, on a database built before")
    p.add_argument("--verify-chain", action="store_true", help="with the checks: silta audit verify (slow at scale)")
    p.add_argument("--json-out", type=Path, default=None, help="also write the summary (and checks) as JSON")
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    url = harness.database_url(args.admin_url, args.db_name)
    data_dir = (args.data_dir or default_data_dir(args.db_name)).resolve()
    report: dict[str, Any] = {}
    if not args.check_only:
        report = build(url, args.scale, args.seed, data_dir=data_dir, today=args.today, jobs=args.jobs)
        print(f"\nbuilt {report['database']} in {report['total_seconds']:.1f} s ({report['database_size']}):")
        for table, count in report["rows"].items():
            print(f"  {table:<26} {count:>12,}")
        print(f"  {'log entries':<26} {report['log_entries']:>12,}")
        print(f"  {'clients in aftercare today':<26} {report['active_clients_today']:>12,}")
        machine = report["machine"]
        print(
            f"the machine ({machine['cpus']} CPUs) was {machine['machine_busy_pct']:.0f} % busy meanwhile; this"
            f" build used {machine['python_cpu_seconds']:.0f} CPU seconds in Python and"
            f" {machine['postgresql_cpu_seconds']:.0f} in its PostgreSQL backends"
        )
        print(f"\nstart Silta on it: SILTA_DATABASE_URL={url} SILTA_DATA_DIR={data_dir} .venv/bin/silta serve")
    ok = True
    if args.check or args.check_only:
        import dataset_check

        _database(url)
        report["checks"] = dataset_check.run(url, data_dir, verify_chain=args.verify_chain)
        ok = all(check["ok"] for check in report["checks"])
    if args.json_out:
        args.json_out.write_text(json.dumps(report, indent=2, default=str) + "\n")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

"""Bulk import of 10,000 lines on SQLite and PostgreSQL (issue 7: "well under a minute"; issue 9: < 20 s).

What one run does:

1. Generates a JSON Lines file for region 05 (``--workers`` 1,000 workers, ``--clients`` 6,000
   clients, ``--assignments`` 3,000 organising assignments: 10,000 lines). A fifth of the clients
   live in region 08 (their registration opens a coordination request and a residence gap), the
   support levels alternate, and special clients are named a social worker.
2. For each backend: a fresh database (an SQLite file in a temporary folder; the PostgreSQL
   database ``silta_bench_import`` on the loopback server, dropped and recreated), migrated with
   Alembic. Then, **in-process** (``app.services.imports.import_file``, the code ``silta import``
   runs; caller: system and coordinator of 05):
   - the import (atomic, the default), timed;
   - the same file again: every line ``unchanged``, timed;
   - a dry run of the file on the now populated database (checks every line, stores nothing).
   The report of each must be exactly as expected, and the row counts are read back.
3. With ``--http`` (default): a fresh database again and one uvicorn worker on 127.0.0.1 (no
   access log), the file POSTed to ``/v1/imports`` with a development token, timed from the
   request to the answer.
4. Writes ``benchmarks/results/imports-<UTC time>.md`` and ``.json``, drops the database (unless
   ``--keep-db``) and stops the servers it started (also on error or Ctrl-C).

``--profile`` instead runs one in-process import under cProfile and prints the top functions.
Run from the repository root::

    .venv/bin/python benchmarks/imports.py                       # about 2-4 minutes
    .venv/bin/python benchmarks/imports.py --backends sqlite --no-http
    .venv/bin/python benchmarks/imports.py --profile --backends postgresql
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import cProfile
import datetime as dt
import json
import os
import platform
import pstats
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from types import FrameType
from typing import Any

import httpx
import psycopg
from psycopg import sql
from sqlalchemy import event

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from app.config import Settings  # noqa: E402
from app.db import make_engine, make_sessionmaker  # noqa: E402
from app.domain.access import COORDINATOR, SYSTEM, Caller  # noqa: E402
from app.migrate import upgrade  # noqa: E402
from app.services.audit import MAC_KEY, AuditedSession, AuditKey  # noqa: E402
from app.services.clock import today  # noqa: E402
from app.services.imports import import_file  # noqa: E402
from app.services.vault import VAULT, Vault  # noqa: E402

RESULTS_DIR = REPO / "benchmarks" / "results"
ADMIN_URL = os.environ.get("SILTA_BENCH_PG_ADMIN_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
PG_DB = "silta_bench_import"
REGION, SYSTEM_NAME = "05", "Bench"
CHECK = "0123456789ABCDEFHJKLMNPRSTUVWXY"
MAX_LINES = 100_000
READY_TIMEOUT_S, HTTP_TIMEOUT_S, STOP_TIMEOUT_S = 60.0, 900.0, 10.0
TABLES = (
    "worker",
    "client",
    "client_external_id",
    "responsibility_period",
    "assignment",
    "compliance_gap",
    "coordination_request",
    "change_event",
)


# --------------------------------------------------------------------------- the file


def hetu(birth: dt.date, individual: int) -> str:
    sign = {1900: "-", 2000: "A"}[birth.year // 100 * 100]
    digits = f"{birth:%d%m}{birth.year % 100:02d}"
    return f"{digits}{sign}{individual:03d}{CHECK[int(f'{digits}{individual:03d}') % 31]}"


def generate(workers: int, clients: int, assignments: int) -> bytes:
    """Workers, then clients, then organising assignments of the first clients (special: a social worker)."""
    on = today()
    lines: list[dict[str, Any]] = []
    for i in range(workers):
        role = "counsellor" if i % 5 == 0 else "social_worker"
        lines.append({"type": "worker", "external_id": f"w{i:05d}", "name": f"Worker {i}", "role": role})
    social = [i for i in range(workers) if i % 5 != 0]
    span = 3 * 365  # birth dates over three years: ages 19 to 22
    for i in range(clients):
        birth = on - dt.timedelta(days=19 * 365 + i % span)
        start = max(birth + dt.timedelta(days=18 * 365 + 10), on - dt.timedelta(days=400))
        lines.append(
            {
                "type": "client",
                "source_system": SYSTEM_NAME,
                "external_id": f"c{i:06d}",
                "personal_id": hetu(birth, 2 + i // span),
                "first_name": "Aino",
                "last_name": f"Client {i}",
                "organising_region": REGION,
                "residence_region": "08" if i % 5 == 0 else REGION,
                "aftercare_start": start.isoformat(),
                "support_level": ("standard", "enhanced", "special")[i % 3],
            }
        )
    for i in range(assignments):
        client_line = lines[workers + i % clients]
        lines.append(
            {
                "type": "assignment",
                "source_system": SYSTEM_NAME,
                "client_external_id": client_line["external_id"],
                "worker_external_id": f"w{social[i % len(social)]:05d}",
                "responsibility": "organising",
                "start_date": client_line["aftercare_start"],
            }
        )
    return "\n".join(json.dumps(line, ensure_ascii=False) for line in lines).encode() + b"\n"


# --------------------------------------------------------------------------- databases


@contextlib.contextmanager
def fresh_database(backend: str, folder: Path, keep: bool) -> Iterator[str]:
    """A migrated, empty database of ``backend``; PostgreSQL's is dropped afterwards unless ``keep``."""
    if backend == "sqlite":
        path = folder / f"import-{time.monotonic_ns()}.db"
        url = f"sqlite:///{path}"
        upgrade(url)
        yield url
        return
    with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(PG_DB)))
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(PG_DB)))
    url = ADMIN_URL.rsplit("/", 1)[0] + f"/{PG_DB}"
    upgrade(url)
    try:
        yield url
    finally:
        if not keep:
            with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
                conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(PG_DB)))


def row_counts(url: str) -> dict[str, int]:
    if url.startswith("sqlite"):
        import sqlite3

        with contextlib.closing(sqlite3.connect(url.removeprefix("sqlite:///"))) as db:
            return {table: db.execute(f"SELECT count(*) FROM {table}").fetchone()[0] for table in TABLES}  # noqa: S608
    with psycopg.connect(url) as conn:
        return {table: conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0] for table in TABLES}  # type: ignore[index]  # noqa: S608


# --------------------------------------------------------------------------- in-process


async def timed_import(url: str, data_dir: Path, body: bytes, *, dry_run: bool = False) -> dict[str, Any]:
    """One ``import_file`` call as ``silta import`` makes it; wall and CPU seconds, SQL statements sent."""
    settings = Settings(database_url=url, data_dir=data_dir)
    engine = make_engine(settings)
    statements = [0]

    @event.listens_for(engine.sync_engine, "before_cursor_execute")
    def _count(*_: Any) -> None:
        statements[0] += 1

    info = {
        MAC_KEY: AuditKey(settings.audit_key_path, create=True),
        VAULT: Vault(settings.identity_key_path, create=True),
    }
    factory = make_sessionmaker(engine, sync_session_class=AuditedSession, info=info)
    caller = Caller(subject="bench:imports", roles=frozenset({SYSTEM, COORDINATOR}), region=REGION)
    try:
        wall, cpu = time.perf_counter(), time.process_time()
        report = await import_file(
            factory, caller, body, settings=settings, dry_run=dry_run, atomic=True, source_system=None
        )
        seconds, cpu_seconds = time.perf_counter() - wall, time.process_time() - cpu
    finally:
        await engine.dispose()
    return {
        "seconds": round(seconds, 2),
        "cpu_seconds": round(cpu_seconds, 2),
        "statements": statements[0],
        "report": report.model_dump(),
    }


def check(report: dict[str, Any], lines: int, **expected: int) -> None:
    counts = {name: report[name] for name in ("created", "unchanged", "updated", "failed")}
    wanted = {"created": 0, "unchanged": 0, "updated": 0, "failed": 0} | expected
    if counts != wanted or report["lines"] != lines:
        raise SystemExit(f"unexpected report {counts} (wanted {wanted}); first errors: {report['errors'][:5]}")


def in_process(backend: str, body: bytes, lines: int, folder: Path, keep: bool) -> dict[str, Any]:
    print(f"[{backend}] in-process import of {lines:,} lines", flush=True)
    with fresh_database(backend, folder, keep) as url:
        first = asyncio.run(timed_import(url, folder, body))
        check(first["report"], lines, created=lines)
        print(f"  import  {first['seconds']:.1f} s", flush=True)
        again = asyncio.run(timed_import(url, folder, body))
        check(again["report"], lines, unchanged=lines)
        print(f"  re-run  {again['seconds']:.1f} s (all unchanged)", flush=True)
        dry = asyncio.run(timed_import(url, folder, body, dry_run=True))
        check(dry["report"], lines, unchanged=lines)
        print(f"  dry run {dry['seconds']:.1f} s", flush=True)
        counts = row_counts(url)
    for run in (first, again, dry):
        run.pop("report")
    return {"import": first, "rerun": again, "dry_run": dry, "rows": counts}


def profile(backend: str, body: bytes, folder: Path, keep: bool, top: int) -> None:
    with fresh_database(backend, folder, keep) as url:
        profiler = cProfile.Profile()
        profiler.enable()
        result = asyncio.run(timed_import(url, folder, body))
        profiler.disable()
    print(f"[{backend}] {result['seconds']} s wall, {result['cpu_seconds']} s CPU")
    pstats.Stats(profiler).sort_stats("cumulative").print_stats(top)
    pstats.Stats(profiler).sort_stats("tottime").print_stats(top)


# --------------------------------------------------------------------------- over HTTP


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def over_http(backend: str, body: bytes, lines: int, folder: Path, keep: bool) -> dict[str, Any]:
    """One uvicorn worker on 127.0.0.1, the file POSTed once; seconds from request to answer."""
    print(f"[{backend}] POST /v1/imports of {lines:,} lines", flush=True)
    data_dir = folder / f"http-{backend}"
    data_dir.mkdir()
    with fresh_database(backend, folder, keep) as url:
        env = {**os.environ, "SILTA_DATABASE_URL": url, "SILTA_DATA_DIR": str(data_dir)}
        for name in ("SILTA_JWKS_FILE", "SILTA_JWKS_URL", "SILTA_JWT_ISSUER", "SILTA_JWT_AUDIENCE", "SILTA_ENV"):
            env.pop(name, None)
        token = subprocess.run(  # noqa: S603 - fixed argv
            [sys.executable, "-m", "app.cli", "token", "--role", "coordinator", "--region", REGION],
            cwd=REPO,
            env=env,
            capture_output=True,
            text=True,
            check=True,
            timeout=60,
        ).stdout.strip()
        port = free_port()
        log = data_dir / "server.log"
        with log.open("wb") as out:
            command = [sys.executable, "-m", "uvicorn", "app.main:app", "--host", "127.0.0.1", "--port", str(port)]
            server = subprocess.Popen(  # noqa: S603 - fixed argv
                [*command, "--workers", "1", "--no-access-log"],
                cwd=REPO,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        try:
            wait_ready(server, f"http://127.0.0.1:{port}/healthz", log)
            headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/x-ndjson"}
            started = time.perf_counter()
            response = httpx.post(
                f"http://127.0.0.1:{port}/v1/imports", content=body, headers=headers, timeout=HTTP_TIMEOUT_S
            )
            seconds = time.perf_counter() - started
        finally:
            stop(server)
        if response.status_code != 200:
            raise SystemExit(f"POST /v1/imports answered {response.status_code}: {response.text[:2000]}")
        check(response.json(), lines, created=lines)
        counts = row_counts(url)
    print(f"  import  {seconds:.1f} s", flush=True)
    return {"import": {"seconds": round(seconds, 2)}, "rows": counts}


def wait_ready(server: subprocess.Popen[bytes], url: str, log: Path) -> None:
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise SystemExit(f"the server exited:\n{log.read_text(errors='replace')[-3000:]}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(url, timeout=2.0).status_code == 200:
                return
        time.sleep(0.2)
    raise SystemExit(f"{url} not ready after {READY_TIMEOUT_S:.0f} s")


def stop(server: subprocess.Popen[bytes]) -> None:
    """SIGTERM the server's own process group, SIGKILL after a bounded wait."""
    if server.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(server.pid, signal.SIGTERM)
    try:
        server.wait(timeout=STOP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(server.pid, signal.SIGKILL)
        server.wait(timeout=STOP_TIMEOUT_S)


# --------------------------------------------------------------------------- report


def machine() -> dict[str, Any]:
    from importlib.metadata import version

    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in _read("/proc/cpuinfo").splitlines()
            if line.startswith("model name")
        ),
        platform.processor(),
    )
    with psycopg.connect(ADMIN_URL) as conn:
        row = conn.execute("SHOW server_version").fetchone()
    git = ["git", "rev-parse", "--short", "HEAD"]
    head = subprocess.run(git, cwd=REPO, capture_output=True, text=True, check=False).stdout.strip()  # noqa: S603
    return {
        "cpu": cpu,
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "postgresql": row[0] if row else None,
        "sqlite": __import__("sqlite3").sqlite_version,
        "packages": {name: version(name) for name in ("fastapi", "sqlalchemy", "sqlmodel", "asyncpg", "aiosqlite")},
        "load_average_at_start": [round(value, 2) for value in os.getloadavg()],
        "git": head,
    }


def _read(path: str) -> str:
    try:
        return Path(path).read_text()
    except OSError:
        return ""


def markdown(report: dict[str, Any]) -> str:
    plan, runs = report["plan"], report["runs"]
    out = [
        f"# Bulk import, {report['started']}",
        "",
        f"Command: `{report['command']}`  ",
        f"Code: {report['machine']['git']}. Runtime: {report['runtime_s']} s.",
        "",
        f"File: {plan['lines']:,} lines ({plan['workers']:,} workers, {plan['clients']:,} clients, "
        f"{plan['assignments']:,} assignments), {plan['bytes'] / 1e6:.1f} MB, region {REGION}; a fifth of the "
        "clients live in 08 (a coordination request and a residence gap each). Targets: issue 9 under 20 s, "
        "issue 7 well under a minute.",
        "",
        "| backend | how | import s | lines/s | CPU s | statements/line | re-run s (all unchanged) | dry run s |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for key, run in runs.items():
        backend, how = key.split(":")
        seconds = run["import"]["seconds"]
        statements = run["import"].get("statements")
        per_line = f"{statements / plan['lines']:.1f}" if statements else "-"
        out.append(
            f"| {backend} | {how} | {seconds:.1f} | {plan['lines'] / seconds:,.0f} | "
            f"{run['import'].get('cpu_seconds', '-')} | {per_line} | {run.get('rerun', {}).get('seconds', '-')} | "
            f"{run.get('dry_run', {}).get('seconds', '-')} |"
        )
    same = len({json.dumps(run["rows"], sort_keys=True) for run in runs.values()}) == 1
    out += [
        "",
        "Rows after the import" + (" (every run left the same):" if same else " (the runs DIFFER, see the .json):"),
        "",
    ]
    first = next(iter(runs.values()))["rows"]
    out += [
        "| " + " | ".join(first) + " |",
        "|" + "---:|" * len(first),
        "| " + " | ".join(f"{v:,}" for v in first.values()) + " |",
    ]
    m = report["machine"]
    out += [
        "",
        "## Machine",
        "",
        f"- {m['cpus']} x {m['cpu']}, Python {m['python']}, PostgreSQL {m['postgresql']}, SQLite {m['sqlite']}",
        f"- packages: {', '.join(f'{k} {v}' for k, v in m['packages'].items())}",
        f"- load average at start: {', '.join(str(v) for v in m['load_average_at_start'])} (a shared machine:"
        " compare figures within one run)",
        "",
        "In-process is `app.services.imports.import_file` (what `silta import` runs) with an atomic import: one "
        "transaction, each line through the API's service with its change entry (the entries inserted a thousand "
        "at a time); `CPU s` is the importing process's own CPU time (the database's is not in it). Over HTTP "
        "adds one uvicorn worker, the token check and the audit sealer running beside it.",
        "",
    ]
    return "\n".join(out)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workers", type=int, default=1_000)
    parser.add_argument("--clients", type=int, default=6_000)
    parser.add_argument("--assignments", type=int, default=3_000)
    parser.add_argument("--backends", nargs="+", choices=("sqlite", "postgresql"), default=["sqlite", "postgresql"])
    parser.add_argument("--http", action=argparse.BooleanOptionalAction, default=True, help="also POST over HTTP")
    parser.add_argument("--profile", action="store_true", help="cProfile one in-process import instead")
    parser.add_argument("--top", type=int, default=40, help="functions listed by --profile")
    parser.add_argument("--keep-db", action="store_true", help="leave the PostgreSQL database behind")
    args = parser.parse_args(argv)
    if not 1 <= args.workers + args.clients + args.assignments <= MAX_LINES or args.assignments > args.clients:
        parser.error(f"at most {MAX_LINES:,} lines, and no more assignments than clients")
    if min(args.workers, args.clients) < 1 or args.clients > 4 * 365 * 880:
        parser.error("at least one worker and one client")
    return args


def _terminate_on_signal(signum: int, _frame: FrameType | None) -> None:
    raise SystemExit(f"stopped by signal {signum}")


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _terminate_on_signal)
    body = generate(args.workers, args.clients, args.assignments)
    lines = args.workers + args.clients + args.assignments
    started, clock = dt.datetime.now(dt.UTC), time.monotonic()
    with tempfile.TemporaryDirectory(prefix="silta-bench-import-") as tmp:
        folder = Path(tmp)
        if args.profile:
            for backend in args.backends:
                profile(backend, body, folder, args.keep_db, args.top)
            return 0
        info = machine()
        runs: dict[str, Any] = {}
        for backend in args.backends:
            runs[f"{backend}:in-process"] = in_process(backend, body, lines, folder, args.keep_db)
            if args.http:
                runs[f"{backend}:HTTP"] = over_http(backend, body, lines, folder, args.keep_db)
    stamp = started.strftime("%Y%m%dT%H%M%SZ")
    report = {
        "started": started.isoformat(timespec="seconds"),
        "command": " ".join([".venv/bin/python", "benchmarks/imports.py", *(argv or sys.argv[1:])]),
        "runtime_s": round(time.monotonic() - clock),
        "plan": {
            "workers": args.workers,
            "clients": args.clients,
            "assignments": args.assignments,
            "lines": lines,
            "bytes": len(body),
        },
        "machine": info,
        "runs": runs,
    }
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    (RESULTS_DIR / f"imports-{stamp}.json").write_text(json.dumps(report, indent=2) + "\n")
    (RESULTS_DIR / f"imports-{stamp}.md").write_text(markdown(report))
    print(f"wrote benchmarks/results/imports-{stamp}.md and .json")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

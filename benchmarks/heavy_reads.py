"""Server time, statements and query plans of issue 9's heavy reads, on an existing national data set.

What one run does (read-only on the data, apart from the access-log entries the reads write):

1. Connects to an already built data set (``benchmarks/dataset.py``), e.g. a copy of
   ``silta_bench_national``, and picks the largest region (most clients in aftercare today) unless
   ``--region`` names one, and a client of it held by the region.
2. Builds the app in this process (``create_app``) and calls it through httpx's ASGI transport, so a
   request's wall time is its server time: no socket, no queueing. Per endpoint: warm-up requests,
   then ``--requests`` timed ones (median, min, max), the statements one request sends, and for each
   of them ``EXPLAIN (ANALYZE, BUFFERS)`` with the request's own parameters.
3. Writes ``benchmarks/results/heavy-reads-<UTC time>.json`` and ``.md``.

The endpoints (issue 9's targets): the gap list's first page for the region, the region's caseload
report, the national overview, and a client's ``responsibility?as_of=`` next to its plain read.

Run from the repository root::

    .venv/bin/python benchmarks/heavy_reads.py --db-name silta_bench_reports \\
        --data-dir /tmp/silta_bench_national-data
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import json
import statistics
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import harness
import httpx
import psycopg
from sqlalchemy import event

from app.config import Settings
from app.main import create_app
from app.security import mint_dev_token
from app.services.clock import today

MAX_REQUESTS = 200  # bound on the timed requests per endpoint
WARM_UP = 3

LARGEST_REGION = """
SELECT p.region, count(DISTINCT p.client_id) FROM responsibility_period p JOIN client c ON c.id = p.client_id
WHERE p.responsibility = 'organising' AND p.retracted_at IS NULL AND p.valid_from <= %(on)s
  AND (p.valid_to IS NULL OR p.valid_to > %(on)s) AND c.aftercare_start <= %(on)s AND c.aftercare_end >= %(on)s
GROUP BY p.region ORDER BY 2 DESC, 1 LIMIT 1
"""
SIZES = """
SELECT (SELECT count(*) FROM worker WHERE region = %(r)s),
       (SELECT count(*) FROM compliance_gap WHERE region = %(r)s),
       (SELECT count(*) FROM compliance_gap WHERE region = %(r)s AND closed_at IS NULL),
       (SELECT count(*) FROM assignment WHERE region = %(r)s),
       (SELECT count(*) FROM responsibility_period WHERE region = %(r)s)
"""
A_CLIENT = """
SELECT p.client_id FROM responsibility_period p JOIN client c ON c.id = p.client_id
WHERE p.region = %(r)s AND p.responsibility = 'organising' AND p.valid_to IS NULL AND p.retracted_at IS NULL
  AND c.aftercare_end >= %(on)s
ORDER BY p.client_id LIMIT 1
"""


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--db-name", required=True, help="an existing data set on the loopback PostgreSQL")
    p.add_argument("--admin-url", default="postgresql://postgres@127.0.0.1:5432/postgres")
    p.add_argument("--data-dir", type=Path, required=True, help="the data set's keys (SILTA_DATA_DIR)")
    p.add_argument("--region", help="default: the region with the most clients in aftercare")
    p.add_argument("--requests", type=int, default=15, help=f"timed requests per endpoint (max {MAX_REQUESTS})")
    p.add_argument("--no-explain", action="store_true")
    p.add_argument("--label", default="", help="a word for the report's name, e.g. before or after")
    args = p.parse_args()
    args.requests = max(1, min(args.requests, MAX_REQUESTS))
    return args


@contextlib.contextmanager
def statements_sent(app: Any) -> Iterator[list[tuple[str, Any]]]:
    sent: list[tuple[str, Any]] = []

    def note(_conn: Any, _cursor: Any, statement: str, parameters: Any, *_: Any) -> None:
        sent.append((statement, parameters))

    engine = app.state.engine.sync_engine
    event.listen(engine, "before_cursor_execute", note)
    try:
        yield sent
    finally:
        event.remove(engine, "before_cursor_execute", note)


async def explain(app: Any, statement: str, parameters: Any) -> str:
    if not statement.lstrip().upper().startswith(("SELECT", "WITH")):
        return "(not a SELECT: not explained)"
    async with app.state.engine.connect() as conn:
        rows = await conn.exec_driver_sql("EXPLAIN (ANALYZE, BUFFERS) " + statement, parameters)
        plan = "\n".join(row[0] for row in rows)
        await conn.rollback()
    return plan


async def measure(app: Any, api: httpx.AsyncClient, name: str, url: str, token: str, args: Any) -> dict[str, Any]:
    headers = {"Authorization": f"Bearer {token}"}
    for _ in range(WARM_UP):
        response = await api.get(url, headers=headers)
        response.raise_for_status()
    times, cpu = [], []
    for _ in range(args.requests):
        started, cpu_started = time.perf_counter(), time.process_time()
        response = await api.get(url, headers=headers)
        times.append((time.perf_counter() - started) * 1000)
        cpu.append((time.process_time() - cpu_started) * 1000)  # the server's Python, not PostgreSQL's
        response.raise_for_status()
    with statements_sent(app) as sent:
        (await api.get(url, headers=headers)).raise_for_status()
    plans = [] if args.no_explain else [await explain(app, sql, params) for sql, params in sent]
    result = {
        "endpoint": name,
        "url": url,
        "median_ms": round(statistics.median(times), 1),
        "min_ms": round(min(times), 1),
        "max_ms": round(max(times), 1),
        "python_cpu_ms": round(statistics.median(cpu), 1),
        "statements": len(sent),
        "sent": [sql for sql, _ in sent],
        "plans": plans,
        "bytes": len(response.content),
    }
    print(f"{name:28} {result['median_ms']:8.1f} ms (min {result['min_ms']}, max {result['max_ms']}), "
          f"Python CPU {result['python_cpu_ms']} ms, {len(sent)} statements", flush=True)  # fmt: skip
    return result


def data_set_facts(url: str, region: str | None) -> dict[str, Any]:
    on = today()
    with psycopg.connect(url) as conn:
        if region is None:
            region, clients = conn.execute(LARGEST_REGION, {"on": on}).fetchone()  # type: ignore[misc]
        else:
            clients = None
        workers, gaps, open_gaps, assignments, periods = conn.execute(SIZES, {"r": region}).fetchone()  # type: ignore[misc]
        client = conn.execute(A_CLIENT, {"r": region, "on": on}).fetchone()[0]  # type: ignore[index]
    return {
        "region": region,
        "clients_in_aftercare": clients,
        "workers": workers,
        "gap_rows": gaps,
        "open_gap_rows": open_gaps,
        "assignment_rows": assignments,
        "period_rows": periods,
        "client": str(client),
        "on": on.isoformat(),
    }


async def run(args: argparse.Namespace) -> dict[str, Any]:
    url = harness.database_url(args.admin_url, args.db_name)
    harness.ensure_loopback(url)
    facts = data_set_facts(url, args.region)
    region, client = facts["region"], facts["client"]
    settings = Settings(
        env="development",
        database_url=harness.database_url(args.admin_url, args.db_name, "postgresql+asyncpg"),
        data_dir=args.data_dir,
        audit_seal_seconds=0,
    )
    app = create_app(settings)
    coordinator = mint_dev_token(settings, subject="bench", roles=["coordinator"], region=region)
    auditor = mint_dev_token(settings, subject="bench", roles=["auditor"], region=None)
    as_of = (today() - dt.timedelta(days=200)).isoformat()
    endpoints = [
        ("gap list, first page", f"/v1/compliance/gaps?region={region}", coordinator),
        ("caseload report", f"/v1/regions/{region}/caseload", coordinator),
        ("national overview", "/v1/caseload/overview", auditor),
        ("client read", f"/v1/clients/{client}", coordinator),
        ("responsibility?as_of", f"/v1/clients/{client}/responsibility?as_of={as_of}", coordinator),
    ]
    transport = httpx.ASGITransport(app=app)
    async with app.router.lifespan_context(app), httpx.AsyncClient(transport=transport, base_url="http://silta") as api:
        results = [await measure(app, api, name, path, token, args) for name, path, token in endpoints]
    return {"facts": facts, "results": results}


def write_report(args: argparse.Namespace, started: dt.datetime, outcome: dict[str, Any]) -> Path:
    stamp = started.strftime("%Y%m%dT%H%M%SZ")
    label = f"-{args.label}" if args.label else ""
    base = harness.RESULTS_DIR / f"heavy-reads{label}-{stamp}"
    outcome["machine"] = harness.machine_info(args.admin_url)
    base.with_suffix(".json").write_text(json.dumps(outcome, indent=2, default=str))
    facts = outcome["facts"]
    lines = [
        f"# Heavy reads{' (' + args.label + ')' if args.label else ''}, {started:%Y-%m-%d %H:%M} UTC",
        "",
        f"Data set `{args.db_name}`, region {facts['region']}: {facts['clients_in_aftercare']} clients in aftercare, "
        f"{facts['workers']} workers, {facts['gap_rows']} gap rows ({facts['open_gap_rows']} open), "
        f"{facts['assignment_rows']} assignments, {facts['period_rows']} periods. In-process (ASGI), "
        f"{args.requests} timed requests after {WARM_UP} warm-up ones.",
        "",
        "| endpoint | median ms | min | max | Python CPU ms (median) | statements |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    lines += [
        f"| {r['endpoint']} | {r['median_ms']} | {r['min_ms']} | {r['max_ms']} | {r['python_cpu_ms']} "
        f"| {r['statements']} |"
        for r in outcome["results"]
    ]
    for r in outcome["results"]:
        lines += ["", f"## {r['endpoint']}: `{r['url']}`", ""]
        for sql, plan in zip(r["sent"], r["plans"] or [""] * len(r["sent"]), strict=True):
            lines += ["```sql", _short(sql.strip()), "```"]
            if plan:
                lines += ["```", _short(plan), "```"]
    base.with_suffix(".md").write_text("\n".join(lines) + "\n")
    return base.with_suffix(".md")


def _short(text: str, width: int = 400) -> str:
    """Long IN lists cut, so that the report stays readable (the JSON keeps the statements whole)."""
    return "\n".join(line if len(line) <= width else line[:width] + " …" for line in text.splitlines())


def main() -> None:
    args = parse_args()
    started = dt.datetime.now(dt.UTC)
    outcome = asyncio.run(run(args))
    print(write_report(args, started, outcome))


if __name__ == "__main__":
    main()

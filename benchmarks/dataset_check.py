"""Checks that a generated data set is what organically grown data would be (``dataset.py --check``).

Each check reads the database back and answers with the number of rows that break it:

- SQL over whole tables: every client's two responsibilities form an unbroken chain of periods
  from its aftercare start, the last one open; no two assignments of a client and responsibility
  overlap; every assignment belongs to the region holding the responsibility on its first day and
  to a worker of that region, active when named and never past its deactivation; a residence
  worker only where the residence region is not the organising one; special support has a social
  worker organising; agreed cost decisions never overlap; each region's feed is gapless from
  ``purged_through`` to ``last_seq``;
- the app's own functions over a sample of clients: the gap rows are exactly what
  ``app.domain.compliance.gap_spans`` derives from the client's periods and assignments; the
  change log's last word on each of the client's rows equals ``app.services.audit.snapshot`` of
  the row as stored; identity codes decrypt with ``app.services.vault`` and parse with
  ``app.domain.personal_id``; entries' MACs match ``entry_mac``, and ``app.services.chain_verify.verify``
  checks the chain's first positions (``--verify-chain``: ``silta audit verify`` checks it all);
- HTTP: a server started on 127.0.0.1 with the data folder's keys answers a client, its
  responsibility, its compliance, its history, the region's feed and the largest region's caseload,
  each checked against the database, and seals the access entries those reads wrote.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import harness
import httpx
import psycopg
from harness import PYTHON, REPO, Processes
from psycopg.rows import dict_row, tuple_row
from sqlalchemy import create_engine
from sqlmodel import Session, col, select

from app.config import Settings
from app.db import make_engine, make_sessionmaker, sync_url
from app.domain import compliance as gap_rules
from app.domain.personal_id import parse_personal_id
from app.models import (
    Assignment,
    Client,
    ClientExternalId,
    ComplianceGap,
    CoordinationRequest,
    CostDecision,
    CostDecisionEvent,
    ResponsibilityPeriod,
    WorkPair,
)
from app.services import chain_verify
from app.services.audit import MAC_KEY, AuditKey, snapshot
from app.services.chain import LOGS
from app.services.clock import today
from app.services.vault import Vault

SAMPLE = 2_000  # clients whose gaps, log and identity code are checked one by one
CHAIN_PREFIX = 20_000  # chain positions the in-process check recomputes

SQL_CHECKS: dict[str, str] = {
    "clients missing a responsibility": """
        SELECT count(*) FROM client c WHERE NOT EXISTS (
            SELECT 1 FROM responsibility_period p WHERE p.client_id = c.id AND p.responsibility = 'organising')
        OR NOT EXISTS (
            SELECT 1 FROM responsibility_period p WHERE p.client_id = c.id AND p.responsibility = 'residence')""",
    "periods not chained from the aftercare start to an open last one": """
        WITH p AS (
            SELECT client_id, valid_from, valid_to,
                   lead(valid_from) OVER w AS next_from, row_number() OVER w AS n,
                   count(*) OVER (PARTITION BY client_id, responsibility) AS total
            FROM responsibility_period WHERE retracted_at IS NULL
            WINDOW w AS (PARTITION BY client_id, responsibility ORDER BY valid_from))
        SELECT count(*) FROM p JOIN client c ON c.id = p.client_id
        WHERE (p.n = 1 AND p.valid_from <> c.aftercare_start)
           OR (p.n < p.total AND p.valid_to IS DISTINCT FROM p.next_from)
           OR (p.n = p.total AND p.valid_to IS NOT NULL)""",
    "overlapping assignments of one client and responsibility": """
        SELECT count(*) FROM assignment a JOIN assignment b
          ON a.client_id = b.client_id AND a.responsibility = b.responsibility AND a.id < b.id
        WHERE a.retracted_at IS NULL AND b.retracted_at IS NULL
          AND daterange(a.valid_from, a.valid_to) && daterange(b.valid_from, b.valid_to)""",
    "assignments of a region not holding the responsibility, or of another region's worker": """
        SELECT count(*) FROM assignment a JOIN worker w ON w.id = a.worker_id
        WHERE w.region <> a.region OR a.valid_to IS DISTINCT FROM a.valid_from AND NOT EXISTS (
            SELECT 1 FROM responsibility_period p
            WHERE p.client_id = a.client_id AND p.responsibility = a.responsibility AND p.region = a.region
              AND p.valid_from <= a.valid_from AND (p.valid_to IS NULL OR p.valid_to > a.valid_from))""",
    "residence workers where the organising region also holds the residence": """
        SELECT count(*) FROM assignment a
        WHERE a.responsibility = 'residence' AND a.valid_to IS DISTINCT FROM a.valid_from AND EXISTS (
            SELECT 1 FROM responsibility_period o
            WHERE o.client_id = a.client_id AND o.responsibility = 'organising' AND o.region = a.region
              AND o.valid_from <= a.valid_from AND (o.valid_to IS NULL OR o.valid_to > a.valid_from))""",
    "workers named while inactive, or still named after their deactivation": """
        SELECT count(*) FROM assignment a JOIN worker w ON w.id = a.worker_id
        WHERE a.recorded_at < w.created_at
           OR (a.recorded_at AT TIME ZONE 'Europe/Helsinki')::date < w.active_from
           OR (w.inactive_from IS NOT NULL
               AND ((a.recorded_at AT TIME ZONE 'Europe/Helsinki')::date >= w.inactive_from
                    OR a.valid_to IS NULL OR a.valid_to > greatest(w.inactive_from, a.valid_from)))""",
    "special support without a social worker organising (today)": """
        SELECT count(*) FROM assignment a JOIN client c ON c.id = a.client_id JOIN worker w ON w.id = a.worker_id
        WHERE c.support_level = 'special' AND a.responsibility = 'organising' AND w.role <> 'social_worker'
          AND (a.valid_to IS NULL OR a.valid_to > CURRENT_DATE) AND c.aftercare_end >= CURRENT_DATE""",
    "overlapping agreed cost decisions in force": """
        WITH answered AS (
            SELECT d.*, e.status FROM cost_decision d JOIN cost_decision_event e ON e.decision_id = d.id),
        agreed AS (
            SELECT * FROM answered a WHERE status = 'agreed' AND NOT EXISTS (
                SELECT 1 FROM answered n WHERE n.supersedes_id = a.id AND n.status = 'agreed'))
        SELECT count(*) FROM agreed a JOIN agreed b
          ON a.client_id = b.client_id AND a.service_type = b.service_type AND a.id < b.id
        WHERE daterange(a.valid_from, a.valid_to) && daterange(b.valid_from, b.valid_to)""",
    "regions whose feed is not gapless from purged_through to last_seq": """
        SELECT count(*) FROM feed_position f LEFT JOIN (
            SELECT region, min(seq) AS lo, max(seq) AS hi, count(*) AS n FROM feed_event GROUP BY region) e
          USING (region)
        WHERE coalesce(e.n, 0) <> f.last_seq - f.purged_through
           OR (e.n > 0 AND (e.lo <> f.purged_through + 1 OR e.hi <> f.last_seq))""",
    "id sequences behind the loaded ids (the app's next insert would collide)": """
        SELECT count(*) FROM (
            SELECT pg_get_serial_sequence(quote_ident(table_name), column_name)::regclass AS name,
                   table_name, column_name
            FROM information_schema.columns
            WHERE table_schema = 'public' AND (column_default LIKE 'nextval(%' OR is_identity = 'YES')) s
        JOIN pg_sequences q ON format('%I.%I', q.schemaname, q.sequencename)::regclass = s.name
        WHERE (xpath('/row/m/text()', query_to_xml(format('SELECT coalesce(max(%I), 0) AS m FROM %I',
               s.column_name, s.table_name), false, false, '')))[1]::text::bigint > coalesce(q.last_value, 0)""",
    "log entries not sealed into the chain": """
        SELECT (SELECT count(*) FROM change_event) + (SELECT count(*) FROM access_log)
             + (SELECT count(*) FROM disclosure_log) - (SELECT count(*) FROM audit_chain)""",
}


def run(url: str, data_dir: Path, *, verify_chain: bool = False, http: bool = True) -> list[dict[str, Any]]:
    """Every check, printed as it finishes: ``{"check", "bad", "ok", "seconds", "detail"}``."""
    settings = Settings(database_url=url, data_dir=data_dir)
    results: list[dict[str, Any]] = []

    def record(name: str, work: Callable[[], tuple[int, str]]) -> None:
        t0 = time.monotonic()
        try:
            bad, detail = work()
        except Exception as exc:  # a check that cannot run is a failed check, with its reason
            bad, detail = -1, f"{type(exc).__name__}: {exc}"
        seconds = time.monotonic() - t0
        results.append({"check": name, "bad": bad, "ok": bad == 0, "seconds": round(seconds, 1), "detail": detail})
        print(f"  {'ok ' if bad == 0 else 'BAD'} {name}: {bad} ({seconds:.1f} s){' ' + detail if detail else ''}")

    print("checks:", flush=True)
    with psycopg.connect(url) as conn:
        for name, query in SQL_CHECKS.items():
            record(name, lambda query=query: (_count(conn, query), ""))  # type: ignore[misc]
    engine = create_engine(sync_url(url), connect_args={"options": "-c timezone=UTC"})  # as asyncpg reads them
    with Session(engine) as session:
        clients = _sample(session)
        record("gap rows differing from gap_spans of the timeline", lambda: _gaps(session, clients))
        record("rows differing from the change log's last snapshot", lambda: _snapshots(session, clients))
        record("identity codes not sealed as the app seals them", lambda: _identity_codes(session, clients, settings))
        record("log entries whose MAC is not entry_mac's", lambda: _macs(session, settings))
    engine.dispose()
    record(f"chain positions 1-{CHAIN_PREFIX:,} failing chain.verify", lambda: asyncio.run(_chain_prefix(settings)))
    if verify_chain:
        record("silta audit verify", lambda: _audit_verify(url, data_dir))
    if http:
        record("HTTP reads on 127.0.0.1", lambda: _http(url, data_dir))
    return results


def _count(conn: psycopg.Connection[Any], query: str) -> int:
    with conn.cursor(row_factory=tuple_row) as cur:
        row = cur.execute(query).fetchone()  # type: ignore[arg-type,unused-ignore]
    return int(row[0]) if row else -1


def _sample(session: Session) -> list[Client]:
    """Clients spread over the whole table (every n-th by id), so every chunk and cohort is seen."""
    total = session.connection().exec_driver_sql("SELECT count(*) FROM client").scalar_one()
    step = max(1, total // SAMPLE)
    ids = session.connection().exec_driver_sql(
        f"SELECT id FROM (SELECT id, row_number() OVER (ORDER BY id) AS n FROM client) c WHERE n %% {step} = 0"  # noqa: S608
    )
    wanted = [row[0] for row in ids]
    return list(session.exec(select(Client).where(col(Client.id).in_(wanted))))


def _rows(session: Session, model: Any, clients: list[Client]) -> dict[Any, list[Any]]:
    found: dict[Any, list[Any]] = {}
    for row in session.exec(select(model).where(col(model.client_id).in_([c.id for c in clients]))):
        found.setdefault(row.client_id, []).append(row)
    return found


def _gaps(session: Session, clients: list[Client]) -> tuple[int, str]:
    """Rule 4 recomputed: the live (non-voided) gap rows are the spans of the whole timeline."""
    periods = _rows(session, ResponsibilityPeriod, clients)
    assignments = _rows(session, Assignment, clients)
    gaps = _rows(session, ComplianceGap, clients)
    bad = []
    for client in clients:
        spans = gap_rules.gap_spans(
            periods=[gap_rules.Span(p.responsibility, p.region, p.valid_from, p.valid_to) for p in periods[client.id]],
            assignments=[
                gap_rules.Cover(a.id, a.responsibility, a.region, a.valid_from, a.valid_to)
                for a in assignments.get(client.id, [])
            ],
            start=client.aftercare_start,
            end=client.aftercare_end + dt.timedelta(days=1) if client.end_date is not None else None,
        )
        wanted = {(s.responsibility, s.region, s.since, s.until, s.closed_by) for s in spans}
        stored = {
            (g.responsibility, g.region, g.since, g.closed_on, g.closed_by_assignment_id)
            for g in gaps.get(client.id, [])
            if g.closed_on != g.since
        }
        if wanted != stored:
            bad.append(str(client.id))
    return len(bad), f"of {len(clients)} clients" + (f", e.g. {bad[0]}" if bad else "")


def _snapshots(session: Session, clients: list[Client]) -> tuple[int, str]:
    """Every write was logged: the last change of each of the clients' rows shows the row as stored."""
    ids = [str(client.id) for client in clients]
    last: dict[tuple[str, str], Any] = {}
    rows = session.connection().exec_driver_sql(
        """SELECT c.value->>'entity_type', c.value->>'entity_id', c.value->'after'
           FROM change_event e JOIN change_event_client x ON x.event_id = e.id,
                jsonb_array_elements(e.changes) WITH ORDINALITY AS c(value, n)
           WHERE x.client_id = ANY(%(ids)s::uuid[]) AND c.value->>'client_id' = x.client_id::text
           ORDER BY e.id, c.n""",
        {"ids": ids},
    )
    for entity_type, entity_id, after in rows:
        last[(entity_type, entity_id)] = after
    stored: list[Any] = list(clients)
    for model in (ClientExternalId, ResponsibilityPeriod, Assignment, ComplianceGap, WorkPair, CostDecision):
        stored += [row for rows in _rows(session, model, clients).values() for row in rows]
    stored += [row for rows in _rows(session, CoordinationRequest, clients).values() for row in rows]
    decisions = [row.id for row in stored if isinstance(row, CostDecision)]
    stored += list(session.exec(select(CostDecisionEvent).where(col(CostDecisionEvent.decision_id).in_(decisions))))
    compared = differ = 0
    example = ""
    for row in stored:
        after = last.get((row.__tablename__, str(row.id)))
        if after is None:
            continue  # never changed after an unlogged insert (a registration's periods, external ids)
        compared += 1
        if after != snapshot(row):
            differ += 1
            example = example or f", e.g. {row.__tablename__} {row.id}"
    return differ, f"{compared:,} rows compared{example}"


def _identity_codes(session: Session, clients: list[Client], settings: Settings) -> tuple[int, str]:
    vault = Vault(settings.identity_key_path, create=False)
    bad = 0
    for client in clients:
        code = vault.open(client.personal_id_hash, client.personal_id_cipher, client.personal_id_key)
        parsed = parse_personal_id(code, accept_temporary=False)
        bad += parsed.birth_date != client.birth_date or vault.lookup(code) != client.personal_id_hash
    return bad, f"of {len(clients)} decrypted and parsed"


def _macs(session: Session, settings: Settings) -> tuple[int, str]:
    from app.services.audit import entry_mac

    key = AuditKey(settings.audit_key_path, create=False).mac
    bad = checked = 0
    for log, model in LOGS.items():
        rows = session.exec(select(model).order_by(col(model.id).desc()).limit(500))
        for row in [*rows, *session.exec(select(model).order_by(col(model.id)).limit(500))]:
            checked += 1
            bad += entry_mac(key, log, row) != row.mac
    return bad, f"of {checked:,} (first and last 500 of each log)"


async def _chain_prefix(settings: Settings) -> tuple[int, str]:
    engine = make_engine(settings)
    factory = make_sessionmaker(engine, info={MAC_KEY: AuditKey(settings.audit_key_path, create=False)})
    async with factory() as session:
        report = await chain_verify.verify(session, upto=CHAIN_PREFIX)
    await engine.dispose()
    bad = 0 if report.ok and report.checked == min(CHAIN_PREFIX, report.head_position) else 1
    return bad, f"checked {report.checked:,}, unsealed {report.unsealed}, problem {report.problem}"


def _env(url: str, data_dir: Path) -> dict[str, str]:
    return {
        **os.environ,
        "SILTA_DATABASE_URL": url,
        "SILTA_DATA_DIR": str(data_dir),
        "SILTA_ENV": "development",
        "SILTA_RATE_LIMIT_SEARCH": "off",
        "PYTHONDONTWRITEBYTECODE": "1",
    }


def _audit_verify(url: str, data_dir: Path) -> tuple[int, str]:
    command = [PYTHON, "-m", "app.cli", "audit", "verify"]
    report = json.loads(harness.run_checked(command, cwd=REPO, env=_env(url, data_dir), timeout=3600))
    detail = f"checked {report['checked']:,}, sealed {report['sealed']:,}, unsealed {report['unsealed']}"
    return (0 if report["ok"] and report["checked"] == report["sealed"] else 1), detail


# --------------------------------------------------------------------------- over HTTP


def _http(url: str, data_dir: Path) -> tuple[int, str]:
    """Start Silta on the data set and read it back as its users would; each answer checked against the database."""
    env = _env(url, data_dir)
    procs, work = Processes(), Path(tempfile.mkdtemp(prefix="silta-dataset-check-"))
    args = argparse.Namespace(server_cpu=None)
    try:
        server = harness.start_server(
            procs, work, "silta", lambda port: harness.uvicorn_argv(args, "app.main:app", port), cwd=REPO, env=env,
            health="/readyz",
        )  # fmt: skip
        harness.wait_ready(procs, server)
        with psycopg.connect(url, row_factory=dict_row) as conn:
            facts = _facts(conn)
            token = _tokens(env, facts)
            with httpx.Client(base_url=server.base, timeout=120.0) as http:
                problems, timings = _read_back(http, token, facts, conn)
            time.sleep(3)  # the server's sealer runs every 2 s: the reads' access entries must be sealed
            unsealed = _count(conn, SQL_CHECKS["log entries not sealed into the chain"])
            if unsealed:
                problems.append(f"{unsealed} access entries of the reads left unsealed")
        detail = ", ".join(f"{name} {ms:.0f} ms" for name, ms in timings.items())
        if problems:
            return len(problems), "; ".join(problems) + f" (server log in {work})"
        shutil.rmtree(work, ignore_errors=True)
        return 0, detail
    finally:
        procs.stop_all()


def _facts(conn: psycopg.Connection[Any]) -> dict[str, Any]:
    """What the reads are checked against: the largest region and two of its clients in aftercare."""
    on = today()
    largest = conn.execute(
        """SELECT p.region, count(*) AS clients FROM responsibility_period p JOIN client c ON c.id = p.client_id
           WHERE p.responsibility = 'organising' AND p.valid_to IS NULL AND c.aftercare_start <= %s
             AND c.aftercare_end >= %s GROUP BY p.region ORDER BY clients DESC LIMIT 1""",
        (on, on),
    ).fetchone()
    assert largest is not None
    region = largest["region"]
    chosen = {}
    for name, gap in (("with_gap", "EXISTS"), ("in_order", "NOT EXISTS")):
        chosen[name] = conn.execute(
            f"""SELECT c.id, c.birth_date, r.region AS residence FROM client c
                JOIN responsibility_period o ON o.client_id = c.id AND o.responsibility = 'organising'
                     AND o.valid_to IS NULL AND o.region = %(region)s
                JOIN responsibility_period r ON r.client_id = c.id AND r.responsibility = 'residence'
                     AND r.valid_to IS NULL
                WHERE c.aftercare_start <= %(on)s AND c.aftercare_end >= %(on)s AND {gap} (
                    SELECT 1 FROM compliance_gap g WHERE g.client_id = c.id AND g.since <= %(on)s
                      AND (g.closed_on IS NULL OR g.closed_on > %(on)s))
                ORDER BY (r.region IS DISTINCT FROM o.region) DESC, c.id LIMIT 1""",  # noqa: S608
            {"region": region, "on": on},
        ).fetchone()
    workers = _count(conn, f"SELECT count(*) FROM worker WHERE region = '{region}'")  # noqa: S608
    position = conn.execute("SELECT * FROM feed_position WHERE region = %s", (region,)).fetchone()
    return {"region": region, "clients": largest["clients"], "workers": workers, "feed": position, **chosen}


def _tokens(env: dict[str, str], facts: dict[str, Any]) -> str:
    return harness.run_checked(
        [PYTHON, "-m", "app.cli", "token", "--role", "coordinator", "--region", facts["region"], "--hours", "1"],
        cwd=REPO,
        env=env,
    ).strip()


def _read_back(
    http: httpx.Client, token: str, facts: dict[str, Any], conn: psycopg.Connection[Any]
) -> tuple[list[str], dict[str, float]]:
    headers = {"Authorization": f"Bearer {token}"}
    problems: list[str] = []
    timings: dict[str, float] = {}

    def get(name: str, path: str, status: int = 200) -> Any:
        t0 = time.monotonic()
        response = http.get(path, headers=headers)
        timings[name] = (time.monotonic() - t0) * 1000
        if response.status_code != status:
            problems.append(f"{name}: {response.status_code} {response.text[:200]}")
            return {}
        return response.json()

    for kind in ("with_gap", "in_order"):
        client = facts[kind]
        if client is None:  # a small data set may have no open gap in that region today
            continue
        cid = client["id"]
        shown = get(f"client ({kind})", f"/v1/clients/{cid}")
        if shown and parse_personal_id(shown["personal_id"], accept_temporary=False).birth_date != client["birth_date"]:
            problems.append(f"client {cid}: the identity code does not give its birth date")
        held = get(f"responsibility ({kind})", f"/v1/clients/{cid}/responsibility")
        if held and (held["organising"]["region"], held.get("residence") and held["residence"]["region"]) != (
            facts["region"],
            client["residence"],
        ):
            problems.append(f"client {cid}: responsibility {held['organising']} / {held.get('residence')}")
        status = get(f"compliance ({kind})", f"/v1/clients/{cid}/compliance")
        if status and status["status"] != ("gap" if kind == "with_gap" else "ok"):
            problems.append(f"client {cid}: compliance {status['status']}, the database says {kind}")
        get(f"history ({kind})", f"/v1/clients/{cid}/history")
    report = get("caseload", f"/v1/regions/{facts['region']}/caseload?limit=500")
    if report and report.get("roles") is not None:
        counted = sum(role["workers"] for role in report["roles"])
        if not report["workers"] or counted <= 0:
            problems.append(f"caseload of {facts['region']}: no workers counted")
    position = facts["feed"]
    events = get("feed", f"/v1/events?after={position['purged_through']}&limit=500")
    first = (events.get("items") or [{}])[0].get("seq") if events else None
    if events and position["last_seq"] > position["purged_through"] and first != position["purged_through"] + 1:
        problems.append(f"feed of {facts['region']} does not start at {position['purged_through'] + 1}")
    if position["purged_through"] > 0:
        get("feed before retention", "/v1/events?after=0", status=410)
    return problems, timings


def main() -> int:
    p = argparse.ArgumentParser(description="check a data set built by benchmarks/dataset.py")
    p.add_argument("--admin-url", default="postgresql://postgres@127.0.0.1:5432/postgres")
    p.add_argument("--db-name", default="silta_bench_national")
    p.add_argument("--data-dir", type=Path, required=True)
    p.add_argument("--verify-chain", action="store_true")
    args = p.parse_args()
    results = run(harness.database_url(args.admin_url, args.db_name), args.data_dir, verify_chain=args.verify_chain)
    return 0 if all(result["ok"] for result in results) else 1


if __name__ == "__main__":
    sys.exit(main())

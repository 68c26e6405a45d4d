"""Issue 9's benchmark: Silta on the national data set against the bare framework, one command.

What one run does:

1. Copies the data set ``silta_bench_national`` (``dataset.py``; keys in ``/tmp/silta_bench_national-data``)
   into ``--db-name`` with ``CREATE DATABASE ... TEMPLATE``, so the run's writes never change the
   source; PostgreSQL refuses while anyone else is connected to it, and so does this script. A missing
   source is built first (``dataset.build``: about 8 minutes at full scale on the shared 2-CPU machine);
   ``--scale 0.02`` builds and uses a small set of its own (``silta_bench_national_scale_0_02``) instead.
2. Starts, each as one uvicorn worker on 127.0.0.1 pinned as ``harness`` pins them, Silta on the copy
   (``silta serve``, the data set's keys, the production defaults: access log, change log and sealer
   on) and the bare-framework baseline (``../shared/bench/baseline_app.py``) on ``--baseline-db-name``.
3. Picks realistic targets with SQL on the copy: the region organising the most clients in aftercare
   (the largest), some of its clients to read, a day in each one's history, and clients it must name
   a worker for. There are few of those in a settled data set, so it first ends, through the API,
   enough of the region's running assignments (a worker moved on), spread over its clients. Each
   write names one of the region's social workers (any client may take one). The write targets are
   used in order across every run, never twice.
4. Measures (``harness.measure``: load.py, wrk, bounded; median of the runs) at each ``-c`` level,
   baseline interleaved: the client read, ``responsibility?as_of=``, the assignment write and the
   coordinator mix (``national_mix.lua``); at concurrency 1 the gap list, the region's caseload and
   the national overview (server time), with the baseline read beside them.
5. Reads the Silta worker's peak resident memory (``VmHWM``) after the load.
6. Sends each heavy endpoint's request once more in-process and explains the slowest statements
   (``national_explain``), then times ``silta audit verify`` over the copy's chain (``--skip-verify``).
7. On SQLite (``--sqlite-clients`` seeded through the API, 0 to skip): the client read and the
   assignment write against the baseline's sync SQLite routes.
8. Writes ``results/national-<UTC>.json`` and ``.md`` and rewrites ``benchmarks/RESULTS.md``; drops the
   copy and the baseline's database (``--keep-db`` keeps them) and stops every process, also on error.

Run from the repository root::

    .venv/bin/python benchmarks/national.py                    # full scale: about 25 minutes
    .venv/bin/python benchmarks/national.py --scale 0.02 -d 2 --runs 1 --skip-verify   # a few minutes
    .venv/bin/python benchmarks/national.py --rewrite benchmarks/results/national-<UTC>.json  # its .md again

Only loopback hosts are used.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import datetime as dt
import json
import math
import resource
import shutil
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import harness
import httpx
import national_report
import psycopg
from harness import PYTHON, REPO, Measured, Processes, Server, Target
from psycopg import sql

from app.services.clock import today as finnish_today

SILTA = str(Path(PYTHON).parent / "silta") if (Path(PYTHON).parent / "silta").exists() else "silta"
MIX = Path(__file__).resolve().parent / "national_mix.lua"
SOURCE = "silta_bench_national"
SQLITE_REGION, SQLITE_MUNICIPALITY = "05", "853"  # Turku: the clients live where they are organised

# bounds: every wait and loop here is finite (the load's own: harness.py)
MAX_ENDS = 12_000  # assignments ended to make room for the writes
END_CALLERS = 4  # ends sent at once: one at a time took 125-160 s for 5,400
MAX_WRITE_POOL = 20_000
WRITES_PER_S = 300  # above the assignment write rates seen here (up to 250 req/s, 2026-12-01): sizes the write pool
VERIFY_TIMEOUT_S = 1800
QUIET_WAIT_S = 30


# --------------------------------------------------------------------------- targets (SQL on the copy)

ACTIVE = "c.aftercare_start <= %(today)s AND c.aftercare_end >= %(today)s AND c.end_date IS NULL"
HELD = "p.valid_to IS NULL AND p.retracted_at IS NULL AND p.valid_from <= %(today)s"  # held today, no end announced


def largest_region(conn: psycopg.Connection[Any], today: dt.date) -> tuple[str, int]:
    row = conn.execute(
        f"SELECT p.region, count(*) FROM responsibility_period p JOIN client c ON c.id = p.client_id "  # noqa: S608 - fixed fragments
        f"WHERE p.responsibility = 'organising' AND {HELD} AND {ACTIVE} GROUP BY p.region ORDER BY 2 DESC LIMIT 1",
        {"today": today},
    ).fetchone()
    if row is None:
        raise RuntimeError("no client in aftercare: is the data set empty?")
    return str(row[0]), int(row[1])


def readable_clients(conn: psycopg.Connection[Any], region: str, today: dt.date, count: int) -> list[tuple[str, str]]:
    """(id, a day of its history) of ``count`` clients in aftercare the region holds, spread by id hash."""
    rows = conn.execute(
        f"SELECT DISTINCT c.id, c.aftercare_start, md5(c.id::text) FROM client c "  # noqa: S608 - fixed fragments
        f"JOIN responsibility_period p ON p.client_id = c.id AND p.region = %(region)s AND {HELD} "
        f"WHERE {ACTIVE} ORDER BY 3 LIMIT %(count)s",
        {"region": region, "today": today, "count": count},
    ).fetchall()
    return [(str(cid), (start + (today - start) / 2).isoformat()) for cid, start, _ in rows]


def needing_worker(conn: psycopg.Connection[Any], region: str, today: dt.date) -> list[tuple[str, str]]:
    """(client id, responsibility) the region holds today with nobody named: an assignment can be made."""
    rows = conn.execute(
        f"SELECT p.client_id, p.responsibility FROM responsibility_period p JOIN client c ON c.id = p.client_id "  # noqa: S608 - fixed fragments
        f"WHERE p.region = %(region)s AND {HELD} AND {ACTIVE} "
        "AND NOT EXISTS (SELECT 1 FROM assignment a WHERE a.client_id = p.client_id "
        "  AND a.responsibility = p.responsibility AND a.retracted_at IS NULL "
        "  AND (a.valid_to IS NULL OR a.valid_to > %(today)s)) "
        "AND NOT (p.responsibility = 'residence' AND EXISTS (SELECT 1 FROM responsibility_period o "
        "  WHERE o.client_id = p.client_id AND o.responsibility = 'organising' AND o.region = p.region "
        "  AND o.valid_to IS NULL AND o.retracted_at IS NULL)) "
        "ORDER BY md5(p.client_id::text || p.responsibility)",
        {"region": region, "today": today},
    ).fetchall()
    return [(str(cid), str(responsibility)) for cid, responsibility in rows]


def social_workers(conn: psycopg.Connection[Any], region: str) -> list[str]:
    """The region's active social workers: any client may take one (special support needs one)."""
    rows = conn.execute(
        "SELECT id FROM worker WHERE region = %s AND active AND role = 'social_worker' ORDER BY id", (region,)
    ).fetchall()
    return [str(wid) for (wid,) in rows]


def running_assignments(conn: psycopg.Connection[Any], region: str, today: dt.date, count: int) -> list[str]:
    """``count`` assignments the region holds today for clients in aftercare, spread by id hash."""
    rows = conn.execute(
        f"SELECT a.id FROM assignment a JOIN client c ON c.id = a.client_id AND {ACTIVE} "  # noqa: S608 - fixed fragments
        "WHERE a.region = %(region)s AND a.retracted_at IS NULL AND a.valid_from <= %(today)s "
        "AND (a.valid_to IS NULL OR a.valid_to > %(today)s) ORDER BY md5(a.id::text) LIMIT %(count)s",
        {"region": region, "today": today, "count": count},
    ).fetchall()
    return [str(aid) for (aid,) in rows]


def dataset_rows(url: str) -> tuple[dict[str, int], str]:
    tables = ("client", "worker", "assignment", "responsibility_period", "compliance_gap", "audit_chain")
    with psycopg.connect(url) as conn:
        rows = {}
        for table in tables:
            row = conn.execute(f"SELECT count(*) FROM {table}").fetchone()  # noqa: S608 - fixed names
            rows[table] = int(row[0]) if row else 0
        size = conn.execute("SELECT pg_size_pretty(pg_database_size(current_database()))").fetchone()
    return rows, str(size[0]) if size else "?"


def write_pool_needed(args: argparse.Namespace) -> int:
    """Assignment writes the load may send: single endpoint at every level, the mix's 10 %, checks and EXPLAIN."""
    seconds = len(args.concurrency) * (args.warmup + args.runs * (args.duration + 1))
    return min(MAX_WRITE_POOL, math.ceil(WRITES_PER_S * seconds * 1.1) + 10)


def prepare_writes(
    base: str, token: str, url: str, region: str, today: dt.date, need: int
) -> tuple[list[tuple[str, str]], list[str], str]:
    """End, through the API, enough of the region's running assignments that ``need`` new ones can be made.

    A settled data set has few clients waiting for a worker; ending assignments (a worker moved on)
    is what makes more, as it does in the service. Ends the app refuses (409) are counted and skipped.
    """
    with psycopg.connect(url) as conn:
        social = social_workers(conn, region)
        pool = needing_worker(conn, region, today)
        ending = running_assignments(conn, region, today, min(MAX_ENDS, max(need - len(pool), 0)))
    if not social:
        raise RuntimeError(f"region {region} has no active social worker to name")
    with (
        httpx.Client(base_url=base, timeout=120.0, headers={"Authorization": f"Bearer {token}"}) as client,
        concurrent.futures.ThreadPoolExecutor(END_CALLERS) as pool_of_callers,
    ):

        def end(aid: str) -> str | None:
            """None when ended; the detail when the app refused (409)."""
            response = client.post(f"/v1/assignments/{aid}/end", json={"reason": "benchmark: the worker moved on"})
            if response.status_code == 409:
                return str(response.json().get("detail", ""))
            if response.status_code != 200:
                raise RuntimeError(
                    f"POST /v1/assignments/{aid}/end: HTTP {response.status_code}: {response.text[:300]}"
                )
            return None

        refused = [detail for detail in pool_of_callers.map(end, ending) if detail is not None]
    with psycopg.connect(url) as conn:
        pool = needing_worker(conn, region, today)
    note = f"{len(ending) - len(refused):,} of the region's running assignments ended through the API first"
    if refused:
        note += f" ({len(refused)} more refused with 409, e.g. {refused[0]!r})"
    if len(pool) < need:
        note += f"; only {len(pool):,} of the {need:,} wanted: later writes repeat clients and answer 409"
    return pool, social, note


# --------------------------------------------------------------------------- servers and data


def ensure_source(args: argparse.Namespace) -> tuple[str, Path, str]:
    """The source database and its keys; built first (with ``dataset.build``) when missing."""
    import dataset

    keys = dataset.default_data_dir(args.template)
    if harness.database_exists(args.admin_url, args.template):
        if not keys.exists():
            raise SystemExit(f"{args.template} exists but its keys folder {keys} does not")
        return args.template, keys, ""
    minutes = max(1, round(8 * args.scale))
    print(f"{args.template} is missing: building it at scale {args.scale} (about {minutes} min)", flush=True)
    building = f"{args.template}_building"  # renamed when complete: a half-built source is never used
    built = dataset.build(harness.database_url(args.admin_url, building), args.scale, data_dir=keys)
    with psycopg.connect(args.admin_url, autocommit=True) as conn:
        conn.execute(
            sql.SQL("ALTER DATABASE {} RENAME TO {}").format(sql.Identifier(building), sql.Identifier(args.template))
        )
    return args.template, keys, f"; built by this run in {built['total_seconds']:.0f} s"


def start_silta(procs: Processes, args: argparse.Namespace, work: Path, name: str, env: dict[str, str]) -> Server:
    argv = [SILTA, "serve", "--host", "127.0.0.1", "--workers", "1", "--no-migrate", "--port"]
    return harness.start_server(
        procs, work, name, lambda port: harness.pinned(args, [*argv, str(port)]), cwd=REPO, env=env, health="/healthz"
    )


def token(env: dict[str, str], work: Path, name: str, *flags: str) -> Path:
    out = harness.run_checked([SILTA, "token", *flags, "--hours", "3"], cwd=REPO, env=env).strip()
    path = work / f"token-{name}.txt"
    path.write_text(out + "\n")
    return path


def write_lines(pool: Sequence[tuple[str, str]], social: Sequence[str]) -> list[str]:
    """``<client id> <body>`` per write: the responsibility it lacks, the social workers in turn."""
    return [
        f"{cid} " + json.dumps({"responsibility": resp, "worker_id": social[n % len(social)]}, separators=(",", ":"))
        for n, (cid, resp) in enumerate(pool)
    ]


def mix_target(key: str, server: Server, bearer: Path, files: dict[str, Path], weights: str = "") -> Target:
    """A target driven by ``national_mix.lua`` (``weights`` "write=1": the assignment write alone)."""
    env = {
        "MIX_READ_IDS": str(files["read"]),
        "MIX_ASOF_IDS": str(files["as_of"]),
        "MIX_WRITE_IDS": str(files["writes"]),
        "MIX_CURSOR": str(files["cursor"]),
        "MIX_GAPS_PATH": files["gaps_path"].read_text().strip(),
        "MIX_WEIGHTS": weights,
    }
    return Target(key, server.base + "/", server.pid, "GET", bearer, script=MIX, env=env)


def first_write(base: str, bearer: Path, files: dict[str, Path]) -> str:
    """The write target's check: the first prepared write, sent once (the cursor then moves past it)."""
    cid, body = files["writes"].read_text().split("\n", 1)[0].split(" ", 1)
    headers = {"Authorization": "Bearer " + bearer.read_text().strip(), "Content-Type": "application/json"}
    response = httpx.post(f"{base}/v1/clients/{cid}/assignments", content=body, headers=headers, timeout=60.0)
    used = int(files["cursor"].read_text() or 0) if files["cursor"].exists() else 0
    files["cursor"].write_text(str(used + 1))
    if response.status_code != 201:
        raise RuntimeError(f"POST /v1/clients/{cid}/assignments: HTTP {response.status_code}: {response.text[:500]}")
    return f"HTTP {response.status_code}, {len(response.content)} bytes"


def measure_all(
    plan: Sequence[tuple[Target, int]],
    args: argparse.Namespace,
    procs: Processes,
    servers: Sequence[Server],
    work: Path,
) -> list[Measured]:
    db_pid = harness.postmaster_pid(args.admin_url)
    results: list[Measured] = []
    for target, concurrency in plan:
        harness.check_alive(procs, servers)
        results.append(harness.measure(target, args, concurrency, db_pid, work / "load.jsonl"))
    return results


# --------------------------------------------------------------------------- the parts of a run


def postgres_part(
    args: argparse.Namespace, procs: Processes, work: Path, created: list[str], report: dict[str, Any]
) -> None:
    template, keys, built_note = ensure_source(args)
    copy_seconds = harness.clone_database(args.admin_url, template, args.db_name)
    created.append(args.db_name)
    harness.recreate_database(args.admin_url, args.baseline_db_name)
    created.append(args.baseline_db_name)
    url = harness.database_url(args.admin_url, args.db_name)
    rows, size = dataset_rows(url)
    report["dataset"] = {
        "template": template,
        "copy": args.db_name,
        "copy_seconds": copy_seconds,
        "built_note": built_note,
        "rows": rows,
        "size": size,
    }
    print(f"copied {template} ({size}) in {copy_seconds:.0f} s", flush=True)

    data_dir = work / "silta-data"  # a copy of the keys: `silta token` adds a dev key to the folder it uses
    shutil.copytree(keys, data_dir)
    env = harness.silta_env(args, work, data_dir=data_dir)
    t0 = time.monotonic()  # a source built before the latest migration gets it here (its index, say)
    harness.run_checked([SILTA, "migrate"], cwd=REPO, env=env)
    report["dataset"]["migrate_seconds"] = time.monotonic() - t0
    today = finnish_today()  # the app's own "today" (Finnish time), as the data set's history ends
    with psycopg.connect(url) as conn:
        region, region_clients = largest_region(conn, today)
        readable = readable_clients(conn, region, today, args.read_clients)
    coordinator = token(env, work, "coordinator", "--role", "coordinator", "--region", region)
    admin = token(env, work, "admin", "--role", "admin")

    baseline = harness.start_baseline(procs, args, work, env={"POOL_SIZE": "20", "MAX_OVERFLOW": "10"})
    silta = start_silta(procs, args, work, "silta", env)
    for server in (baseline, silta):
        harness.wait_ready(procs, server)
        print(f"  {server.name:<10} {server.base} (pid {server.pid})", flush=True)

    need = args.write_pool or write_pool_needed(args)
    print(f"region {region}: {region_clients:,} clients; preparing {need:,} assignment writes", flush=True)
    t0 = time.monotonic()
    pool, social, note = prepare_writes(silta.base, coordinator.read_text().strip(), url, region, today, need)
    note += f" ({time.monotonic() - t0:.0f} s)"
    print(f"  {len(pool):,} writes ready: {note}", flush=True)
    files = {name: work / f"{name}.txt" for name in ("read", "as_of", "writes", "cursor", "gaps_path", "items")}
    files["read"].write_text("\n".join(cid for cid, _ in readable) + "\n")
    files["as_of"].write_text("\n".join(f"{cid}?as_of={day}" for cid, day in readable) + "\n")
    files["writes"].write_text("\n".join(write_lines(pool, social)) + "\n")
    files["cursor"].write_text("0")
    files["gaps_path"].write_text(f"/v1/compliance/gaps?region={region}\n")
    item = {"name": "bench", "region": region, "birth_date": "2005-01-01", "score": 1, "payload": {"k": "v"}}
    files["items"].write_text("\n".join(harness.seed_baseline(baseline.base, 500, body=item)) + "\n")
    item_body = work / "item.json"
    item_body.write_text(json.dumps(item))
    report["targets"] = {
        "region": region,
        "region_clients": region_clients,
        "read_ids": len(readable),
        "write_pool": len(pool),
        "write_note": note,
        "social_workers": len(social),
        "today": today.isoformat(),
    }

    t: dict[str, Target] = {
        "baseline.read": Target(
            "baseline.read", baseline.base + "/async/items/{id}", baseline.pid, ids_file=files["items"]
        ),
        "baseline.insert": Target(
            "baseline.insert", baseline.base + "/async/items", baseline.pid, "POST", body_file=item_body
        ),
        "silta.client": Target(
            "silta.client", silta.base + "/v1/clients/{id}", silta.pid, bearer_file=coordinator, ids_file=files["read"]
        ),
        "silta.as_of": mix_target("silta.as_of", silta, coordinator, files, "as_of=1"),
        "silta.assign": mix_target("silta.assign", silta, coordinator, files, "write=1"),
        "silta.mix": mix_target("silta.mix", silta, coordinator, files),
        "silta.gaps": Target(
            "silta.gaps", silta.base + f"/v1/compliance/gaps?region={region}", silta.pid, "GET", coordinator
        ),
        "silta.caseload": Target(
            "silta.caseload", silta.base + f"/v1/regions/{region}/caseload?limit=50", silta.pid, "GET", coordinator
        ),
        "silta.overview": Target("silta.overview", silta.base + "/v1/caseload/overview", silta.pid, "GET", admin),
    }
    checks = {
        key: harness.check_once(t[key], None if "{id}" not in t[key].url else first_id(t[key]))
        for key in t
        if t[key].script is None
    }
    checks["silta.assign"] = first_write(silta.base, coordinator, files)
    for key, answer in checks.items():
        print(f"  check {key:<16} {answer}", flush=True)
    report["checks"] = checks

    busy = harness.wait_for_quiet(QUIET_WAIT_S)
    harness.say_how_busy(busy)
    report["machine"]["busy_before_load_pct"] = busy
    plan: list[tuple[Target, int]] = []
    for c in args.concurrency:
        order = ("baseline.read", "silta.client", "silta.as_of", "baseline.insert", "silta.assign", "silta.mix")
        plan += [(t[key], c) for key in order]
    plan += [(t[key], 1) for key in ("baseline.read", "silta.gaps", "silta.caseload", "silta.overview")]
    report["results"] += [asdict(m) for m in measure_all(plan, args, procs, [baseline, silta], work)]

    memory = harness.memory_kb(silta.pid)
    report["memory"] = {
        "pid": silta.pid,
        "peak_mb": memory.get("VmHWM", 0) / 1024,
        "rss_mb_at_end": memory.get("VmRSS", 0) / 1024,
        "text": f"peak resident (VmHWM) {memory.get('VmHWM', 0) / 1024:.0f} MB over the whole run (start-up, "
        f"write preparation, every load); resident after the load (VmRSS) {memory.get('VmRSS', 0) / 1024:.0f} MB; "
        f"target < {national_report.MEMORY_MB:.0f} MB",
    }
    used = int(files["cursor"].read_text() or 0)
    report["targets"]["writes_used"] = used
    print(f"peak RSS {report['memory']['peak_mb']:.0f} MB; {used:,} of {len(pool):,} prepared writes used", flush=True)

    report["explain"] = explain(args, url, data_dir, region, files, coordinator, admin)
    report["verify"] = verify(args, env)


def first_id(target: Target) -> str | None:
    if target.ids_file is None:
        return None
    return target.ids_file.read_text().split("\n", 1)[0]


def explain(
    args: argparse.Namespace,
    url: str,
    data_dir: Path,
    region: str,
    files: dict[str, Path],
    coordinator: Path,
    admin: Path,
) -> dict[str, Any]:
    """EXPLAIN of the slowest statements of the heavy endpoints (run in this process, see national_explain)."""
    import national_explain
    from national_explain import Request

    from app.config import Settings

    used = int(files["cursor"].read_text() or 0)
    lines = files["writes"].read_text().splitlines()
    cid, body = lines[used % len(lines)].split(" ", 1)
    files["cursor"].write_text(str(used + 1))
    read_id = files["read"].read_text().split("\n", 1)[0]
    as_of = files["as_of"].read_text().split("\n", 1)[0]
    requests = [
        Request("GET client", "GET", f"/v1/clients/{read_id}", coordinator),
        Request(
            "GET responsibility?as_of", "GET", "/v1/clients/" + as_of.replace("?", "/responsibility?", 1), coordinator
        ),
        Request("GET assignments", "GET", f"/v1/clients/{read_id}/assignments", coordinator),
        Request("gap list", "GET", f"/v1/compliance/gaps?region={region}", coordinator),
        Request("caseload", "GET", f"/v1/regions/{region}/caseload?limit=50", coordinator),
        Request("overview", "GET", "/v1/caseload/overview", admin),
        Request("POST assignment", "POST", f"/v1/clients/{cid}/assignments", coordinator, body),
    ]
    # the overview computed on each request here (no snapshot): its statements, and what computing it costs
    settings = Settings(database_url=url, data_dir=data_dir, env="development", overview_max_age_seconds=0)
    print("explaining the heavy endpoints' slowest statements", flush=True)
    try:
        plans, sent, took = national_explain.explain_heavy(settings, url, requests, top=args.explain)
    except Exception as exc:
        return {"intro": f"capture failed: {exc.__class__.__name__}: {exc}", "plans": []}
    per = ", ".join(f"{endpoint} {count}" for endpoint, count in sent.items())
    intro = (
        f"Statements sent per request (warm, second request; a write once): {per}. The {len(plans)} slowest "
        "distinct SELECTs among them by PostgreSQL's execution time, explained with the same parameters on the "
        "copy after the load (in a transaction rolled back):"
    )
    return {"intro": intro, "plans": plans, "statements_per_request": sent, "request_ms": took}


def verify(args: argparse.Namespace, env: dict[str, str]) -> dict[str, Any]:
    """``silta audit verify`` over the copy's chain: seconds, CPU seconds, entries."""
    if args.skip_verify:
        return {"skipped": "skipped (--skip-verify)", "text": "skipped (--skip-verify)"}
    print("timing silta audit verify on the copy", flush=True)
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.monotonic()
    done = subprocess.run(  # noqa: S603 - fixed argv, no shell
        [SILTA, "audit", "verify"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=VERIFY_TIMEOUT_S,
        check=False,
    )
    seconds = time.monotonic() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
    try:
        result = json.loads(done.stdout)
    except json.JSONDecodeError:
        return {"seconds": None, "text": f"failed ({done.returncode}): {done.stderr[-300:]}"}
    text = (
        f"{'verifies' if result.get('ok') else 'DOES NOT VERIFY'}: {result.get('checked', 0):,} entries "
        f"({result.get('sealed', 0):,} sealed, {result.get('unsealed', 0):,} not yet) in {seconds:.1f} s, "
        f"{cpu:.1f} CPU s in the verifying process (PostgreSQL's not counted)"
    )
    print(f"  {text}", flush=True)
    return {**result, "seconds": seconds, "cpu_seconds": cpu, "text": text}


def latest_imports() -> dict[str, Any]:
    """The latest ``results/imports-*.json``: the 10,000-line import is measured by ``imports.py``, not here."""
    files = sorted(harness.RESULTS_DIR.glob("imports-*.json"))
    if not files:
        return {"text": "not measured: run benchmarks/imports.py"}
    data = json.loads(files[-1].read_text())
    run = data.get("runs", {}).get("postgresql:in-process", {}).get("import", {})
    http = data.get("runs", {}).get("postgresql:HTTP", {}).get("import", {})
    name = f"results/{files[-1].with_suffix('.md').name}"
    if run.get("seconds") is None:
        return {"text": f"see {name}"}
    cpu = data["machine"].get("cpu")
    text = (
        f"{run['seconds']:.1f} s in-process, {http.get('seconds', float('nan')):.1f} s over HTTP on PostgreSQL "
        f"(code {data['machine'].get('git')}, {cpu}, load {data['machine']['load_average_at_start'][0]:.1f} at its "
        f"start): not re-measured here (it needs a fresh database; about a minute), see {name}"
    )
    return {"seconds": run["seconds"], "file": name, "text": text, "cpu": cpu}


def sqlite_part(args: argparse.Namespace, procs: Processes, work: Path, report: dict[str, Any]) -> None:
    """Silta on an SQLite file seeded through the API against the baseline's sync SQLite routes."""
    if not args.sqlite_clients:
        report["sqlite"] = {"note": "skipped (--sqlite-clients 0)"}
        return
    folder = work / "sqlite"
    folder.mkdir()
    (folder / "data").mkdir()
    env = harness.silta_env(args, work, data_dir=folder / "data", url=f"sqlite:///{folder / 'silta.db'}")
    harness.run_checked([SILTA, "migrate"], cwd=REPO, env=env)
    coordinator = token(env, folder, "coordinator", "--role", "coordinator", "--region", SQLITE_REGION)
    silta = start_silta(procs, args, work, "silta-sqlite", env)
    baseline = harness.start_baseline(
        procs, args, work, url=f"sqlite:///{folder / 'baseline.db'}", name="baseline-sqlite"
    )
    for server in (baseline, silta):
        harness.wait_ready(procs, server)
    bearer = coordinator.read_text().strip()
    worker = httpx.post(
        silta.base + "/v1/workers",
        json={"region": SQLITE_REGION, "name": "Bench Social", "role": "social_worker"},
        headers={"Authorization": f"Bearer {bearer}"},
        timeout=30.0,
    )
    worker.raise_for_status()
    print(f"SQLite: seeding {args.sqlite_clients} clients through the API", flush=True)
    t0 = time.monotonic()
    ids = harness.seed_clients(
        silta.base, bearer, args.sqlite_clients, region=SQLITE_REGION, municipality=SQLITE_MUNICIPALITY
    )
    seeded_s = time.monotonic() - t0
    files = {name: folder / f"{name}.txt" for name in ("read", "as_of", "writes", "cursor", "gaps_path", "items")}
    files["read"].write_text("\n".join(ids) + "\n")
    files["as_of"].write_text("\n".join(f"{cid}?as_of={dt.date.today()}" for cid in ids) + "\n")
    files["writes"].write_text(
        "\n".join(write_lines([(cid, "organising") for cid in ids], [worker.json()["id"]])) + "\n"
    )
    files["cursor"].write_text("0")
    files["gaps_path"].write_text(f"/v1/compliance/gaps?region={SQLITE_REGION}\n")
    item = {"name": "bench", "region": SQLITE_REGION, "birth_date": "2005-01-01", "score": 1, "payload": {"k": "v"}}
    files["items"].write_text(
        "\n".join(harness.seed_baseline(baseline.base, 500, body=item, path="/inline/items")) + "\n"
    )
    item_body = folder / "item.json"
    item_body.write_text(json.dumps(item))
    t = {
        "sqlite.baseline.read": Target(
            "sqlite.baseline.read", baseline.base + "/inline/items/{id}", baseline.pid, ids_file=files["items"]
        ),
        "sqlite.silta.client": Target(
            "sqlite.silta.client",
            silta.base + "/v1/clients/{id}",
            silta.pid,
            bearer_file=coordinator,
            ids_file=files["read"],
        ),
        "sqlite.baseline.insert": Target(
            "sqlite.baseline.insert", baseline.base + "/inline/items", baseline.pid, "POST", body_file=item_body
        ),
        "sqlite.silta.assign": mix_target("sqlite.silta.assign", silta, coordinator, files, "write=1"),
    }
    harness.check_once(t["sqlite.silta.client"], ids[0])
    first_write(silta.base, coordinator, files)
    plan = [(t[key], c) for c in args.concurrency for key in t]
    report["results"] += [asdict(m) for m in measure_all(plan, args, procs, [baseline, silta], work)]
    used = int(files["cursor"].read_text() or 0)
    report["sqlite"] = {
        "clients": len(ids),
        "seed_seconds": seeded_s,
        "writes_used": used,
        "note": (
            f"Silta on an SQLite file (WAL, its own settings) with {len(ids):,} clients of region 05 registered "
            f"through `POST /v1/clients` ({seeded_s:.0f} s), against the baseline's sync SQLite routes (WAL; its "
            f"`/async` routes need PostgreSQL); each write names a social worker for a client without one "
            f"({used:,} of {len(ids):,} clients used: beyond them writes repeat and answer 409). No issue-9 target."
        ),
    }


# --------------------------------------------------------------------------- the run


def run(
    args: argparse.Namespace, procs: Processes, work: Path, created: list[str], started: dt.datetime
) -> dict[str, Any]:
    report: dict[str, Any] = {
        **harness.report_header("national", started, __file__),
        "machine": harness.machine_info(args.admin_url),
        "settings": {
            "concurrency": args.concurrency,
            "duration": args.duration,
            "runs": args.runs,
            "warmup": args.warmup,
            "server_cpu": args.server_cpu,
            "wrk_cpu": args.wrk_cpu,
            "scale": args.scale,
        },
        "results": [],
        "memory": {},
        "verify": {},
        "explain": {},
    }
    postgres_part(args, procs, work, created, report)
    sqlite_part(args, procs, work, report)
    report["imports"] = latest_imports()
    report["verdicts"] = national_report.verdicts(report)
    report["disturbance"] = disturbance(report)
    return report


def disturbance(report: dict[str, Any]) -> list[str]:
    """How disturbed the run was by other workloads (load.py's foreign CPU per run)."""
    runs = [run for r in report["results"] for run in r.get("runs", [])]
    if not runs:
        return []
    foreign = sorted(run.get("foreign_cpu_pct") or 0 for run in runs)
    disturbed = sum(f > national_report.DISTURBED_PCT for f in foreign)
    return [
        f"**Shared machine:** other processes used a median {foreign[len(foreign) // 2]:.0f} % (max "
        f"{foreign[-1]:.0f} %) of the machine during the {len(runs)} measured runs; {disturbed} of them were "
        f"DISTURBED (> {national_report.DISTURBED_PCT:.0f} %). The machine was "
        f"{report['machine']['busy_before_load_pct']:.0f} % busy while the servers idled just before the load."
    ]


def write_summary(report: dict[str, Any], stem: Path, out_dir: Path) -> None:
    """Rewrite ``benchmarks/RESULTS.md`` from this run (only when the results went to ``benchmarks/results``)."""
    if out_dir.resolve() != harness.RESULTS_DIR.resolve():
        print(f"RESULTS.md left alone: the results went to {out_dir}", flush=True)
        return
    detail = f"results/{stem.name}.md"
    (REPO / "benchmarks" / "RESULTS.md").write_text(national_report.summary(report, detail))
    print("rewrote benchmarks/RESULTS.md", flush=True)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    harness.add_load_args(p, duration=4)
    harness.add_setup_args(p, db_name="silta_bench_national_run", baseline_db_name="silta_bench_national_baseline")
    p.add_argument("--scale", type=float, default=1.0, help="data set scale (1.0: the national set; 0.02 to develop)")
    p.add_argument("--template", default=None, help=f"source database (default {SOURCE}, or one per --scale)")
    p.add_argument("--read-clients", type=int, default=2000, help="clients of the largest region read (default 2000)")
    p.add_argument(
        "--write-pool", type=int, default=0, help="assignment writes to prepare (default: what the load needs)"
    )
    p.add_argument("--sqlite-clients", type=int, default=2000, help="clients seeded on SQLite (0: skip SQLite)")
    p.add_argument("--explain", type=int, default=5, help="slowest statements explained (default 5)")
    p.add_argument("--skip-verify", action="store_true", help="do not time silta audit verify")
    args = p.parse_args(argv)
    if args.template is None:
        args.template = SOURCE if args.scale == 1.0 else f"{SOURCE}_scale_{str(args.scale).replace('.', '_')}"
    problems = harness.arg_problems(args)
    if args.template in (args.db_name, args.baseline_db_name) or "bench" not in args.template:
        problems.append("the template must contain 'bench' and differ from the run's databases (they are dropped)")
    if not (0 < args.scale <= 2 and 1 <= args.read_clients <= 20_000 and 0 <= args.write_pool <= MAX_WRITE_POOL):
        problems.append(f"scale (0, 2], read clients 1-20000, write pool 0-{MAX_WRITE_POOL}")
    if not (0 <= args.sqlite_clients <= 20_000 and 1 <= args.explain <= 20):
        problems.append("sqlite clients 0-20000, explain 1-20")
    if problems:
        p.error("; ".join(problems))
    return harness.settle_args(args)


def rewrite(path: Path) -> int:
    """Write a run's Markdown again from its ``.json`` (a format change); RESULTS.md too if it is the latest run."""
    report = json.loads(path.read_text())
    imports = report.get("imports") or {}
    cited = harness.RESULTS_DIR / Path(imports.get("file", "")).with_suffix(".json").name
    if imports.get("file") and "cpu" not in imports and cited.is_file():  # a report from before the CPU was noted
        imports["cpu"] = json.loads(cited.read_text())["machine"].get("cpu")
    report["verdicts"] = national_report.verdicts(report)
    path.with_suffix(".md").write_text(national_report.markdown(report))
    latest = sorted(harness.RESULTS_DIR.glob("national-*.json"))[-1:]
    if latest and latest[0].resolve() == path.resolve():
        write_summary(report, path.with_suffix(""), harness.RESULTS_DIR)
    print(f"rewrote {path.with_suffix('.md')}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["--rewrite"] and len(argv) == 2:
        return rewrite(Path(argv[1]))
    args = parse_args(argv)
    levels = len(args.concurrency)
    endpoints = 6 + 4 / levels + (4 if args.sqlite_clients else 0)
    return harness.run_benchmark(
        "national",
        args,
        run,
        national_report.markdown,
        endpoints=math.ceil(endpoints),
        written=lambda report, stem: write_summary(report, stem, args.out_dir),
    )


if __name__ == "__main__":
    sys.exit(main())

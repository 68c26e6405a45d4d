"""The cost of naming a worker: ``POST /v1/clients/{id}/assignments`` against the bare insert, in one run (issue 9).

What one run does, on a COPY of the national data set (``benchmarks/dataset.py``) that it changes:

1. Prepares a pool of clients that can be assigned again (once per copy, into table ``bench_pool``):
   for clients of every region whose organising period and aftercare run well past today, it ends
   the running organising assignment 14 days ago and opens the gap ``compliance.reconcile`` would
   have opened (cause ``assignment_ended``). Each client is used once: an assignment closes its gap.
2. Starts, each as one uvicorn worker on a free 127.0.0.1 port pinned to CPU 0 (the load runs on
   CPU 1), Silta on the copy (``--source`` can name another checkout, e.g. the code before a
   change) and the bare-framework baseline (``../shared/bench/baseline_app.py``) on a database of
   its own, created and dropped by the run.
3. At each concurrency: the baseline's ``POST /async/items`` (insert + commit, token verified) and
   Silta's organising assignment for unused pool clients of ``--region`` (a coordinator of it, one
   social worker of it), with ``../shared/bench/load.py`` (wrk; median of the runs; server CPU ms
   per request).
4. ``--hot-lock``: writers that all write to clients of ONE region (every write takes that region's
   ``feed_position`` row lock at commit) against writers spread over every region, ``--writers``
   concurrent requests for ``--hot-seconds`` each, driven by a bounded asyncio loop (wrk sends one
   token and body; these need the token and worker of each client's region).
5. ``--against OTHER_CHECKOUT``: an interleaved A/B of the write's server CPU, for changes too small
   to tell apart on a noisy shared machine run after run. A second Silta from the other checkout
   runs pinned to the same CPU; after 50 unmeasured writes each (warming both alike), for
   ``--rounds`` rounds each server in turn (the order alternating)
   gets ``--per-round`` writes from 4 writers, and the CPU its process used is divided by the
   assignments it created. The medians over the rounds are compared.
6. Writes ``benchmarks/results/assignment-cost-<UTC time>.json`` and ``.md``.

Run from the repository root::

    .venv/bin/python benchmarks/assignment_cost.py \\
        --database-url postgresql://postgres@127.0.0.1:5432/silta_bench_NAME \\
        --data-dir /tmp/silta_bench_national-data -c 16 --hot-lock

    # a change against the code before it (git worktree add /tmp/before HEAD~1):
    .venv/bin/python benchmarks/assignment_cost.py \\
        --database-url postgresql://postgres@127.0.0.1:5432/silta_bench_NAME \\
        --data-dir /tmp/silta_bench_national-data -c 4 --runs 1 --against /tmp/before

Only loopback hosts are used: PostgreSQL, the servers and every load target.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import harness
import httpx
import psycopg
from harness import REPO, Measured, Processes, Target

POOL_SQL = """
CREATE TABLE IF NOT EXISTS bench_pool
  (client_id uuid PRIMARY KEY, region varchar(2) NOT NULL, used boolean DEFAULT false);
WITH candidate AS (
  SELECT c.id AS client_id, p.region, a.id AS assignment_id,
         row_number() OVER (PARTITION BY p.region ORDER BY c.id) AS n
  FROM client c
  JOIN responsibility_period p ON p.client_id = c.id AND p.responsibility = 'organising'
       AND p.retracted_at IS NULL AND p.valid_to IS NULL AND p.valid_from <= current_date - 30
  JOIN assignment a ON a.client_id = c.id AND a.responsibility = 'organising' AND a.retracted_at IS NULL
       AND a.valid_to IS NULL AND a.valid_from <= current_date - 30 AND a.region = p.region
  WHERE c.aftercare_start <= current_date - 30 AND c.aftercare_end >= current_date + 30 AND c.end_date IS NULL
    AND c.support_level <> 'special'
    AND NOT EXISTS (SELECT 1 FROM responsibility_period q WHERE q.client_id = c.id AND q.retracted_at IS NULL
                    AND (q.valid_from > current_date OR (q.valid_to IS NOT NULL AND q.valid_to > current_date)))
    AND NOT EXISTS (SELECT 1 FROM compliance_gap g WHERE g.client_id = c.id AND g.closed_at IS NULL)
    AND NOT EXISTS (SELECT 1 FROM work_pair w WHERE w.client_id = c.id AND w.status IN ('proposed', 'active'))
    AND NOT EXISTS (SELECT 1 FROM coordination_request r WHERE r.client_id = c.id AND r.status = 'open')
    AND NOT EXISTS (SELECT 1 FROM bench_pool b WHERE b.client_id = c.id)
), chosen AS (
  SELECT * FROM candidate WHERE n <= %(per_region)s
), ended AS (
  UPDATE assignment a SET valid_to = current_date - 14, valid_to_recorded_at = now(), end_reason = 'left'
  FROM chosen WHERE a.id = chosen.assignment_id RETURNING a.client_id
), gaps AS (
  INSERT INTO compliance_gap (id, client_id, responsibility, region, since, due, cause, opened_at)
  SELECT gen_random_uuid(), chosen.client_id, 'organising', chosen.region, current_date - 14,
         current_date - 14 + r.grace_days, 'assignment_ended', now()
  FROM chosen JOIN region r ON r.code = chosen.region RETURNING client_id
)
INSERT INTO bench_pool (client_id, region) SELECT client_id, region FROM chosen
"""
MAX_POOL_PER_REGION = 20_000
MAX_HOT_SECONDS = 30
MAX_AB_ROUNDS, MAX_AB_PER_ROUND = 20, 2_000  # bounded load: at most 80,000 writes
AB_WARMUP = 50  # unmeasured writes per server before the A/B rounds


def prepare_pool(url: str, per_region: int) -> dict[str, int]:
    """Unused pool clients per region, after adding up to ``per_region`` new ones in each."""
    with psycopg.connect(url, autocommit=True) as conn:
        if per_region:
            for statement in POOL_SQL.split(";\n"):
                conn.execute(statement, {"per_region": per_region} if "%(per_region)s" in statement else None)
        rows = conn.execute("SELECT region, count(*) FROM bench_pool WHERE NOT used GROUP BY region").fetchall()
    return {region: int(count) for region, count in rows}


def take(url: str, region: str | None, count: int) -> list[tuple[str, str]]:
    """Mark ``count`` unused pool clients (of ``region``, or of all regions round robin) used: (id, region)."""
    with psycopg.connect(url, autocommit=True) as conn:
        rows = conn.execute(
            "WITH picked AS (SELECT client_id FROM (SELECT client_id, region, row_number() OVER "
            "(PARTITION BY region ORDER BY client_id) AS n FROM bench_pool WHERE NOT used AND "
            "(%(region)s::text IS NULL OR region = %(region)s)) AS ranked ORDER BY n, region LIMIT %(count)s) "
            "UPDATE bench_pool b SET used = true FROM picked WHERE b.client_id = picked.client_id "
            "RETURNING b.client_id, b.region",
            {"region": region, "count": count},
        ).fetchall()
    return [(str(client_id), code) for client_id, code in rows]


def workers_of(url: str) -> dict[str, str]:
    """One active social worker per region."""
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT DISTINCT ON (region) region, id FROM worker WHERE active AND role = 'social_worker' "
            "ORDER BY region, id"
        ).fetchall()
    return {region: str(worker_id) for region, worker_id in rows}


def token(env: dict[str, str], source: Path, region: str) -> str:
    return harness.run_checked(
        [harness.PYTHON, "-m", "app.cli", "token", "--role", "coordinator", "--region", region, "--hours", "2"],
        cwd=source,
        env=env,
    ).strip()


async def drive(
    base: str,
    jobs: list[tuple[str, str]],
    tokens: dict[str, str],
    workers: dict[str, str],
    concurrency: int,
    seconds: float,
) -> dict[str, Any]:
    """``concurrency`` writers POST assignments for ``jobs`` in turn, for at most ``seconds`` (bounded)."""
    harness.ensure_loopback(base)
    queue = iter(jobs)
    statuses: dict[int, int] = {}
    latencies: list[float] = []
    deadline = time.monotonic() + seconds

    async def writer(client: httpx.AsyncClient) -> None:
        for client_id, region in queue:
            if time.monotonic() >= deadline:
                return
            t0 = time.monotonic()
            response = await client.post(
                f"/v1/clients/{client_id}/assignments",
                json={"responsibility": "organising", "worker_id": workers[region]},
                headers={"Authorization": f"Bearer {tokens[region]}"},
            )
            latencies.append(time.monotonic() - t0)
            statuses[response.status_code] = statuses.get(response.status_code, 0) + 1

    limits = httpx.Limits(max_connections=concurrency)
    async with httpx.AsyncClient(base_url=base, timeout=30.0, limits=limits) as client:
        t0 = time.monotonic()
        await asyncio.gather(*(writer(client) for _ in range(concurrency)))
        wall = time.monotonic() - t0
    latencies.sort()
    done = statuses.get(201, 0)
    return {
        "writers": concurrency,
        "seconds": wall,
        "created": done,
        "statuses": statuses,
        "rps": done / wall if wall else 0.0,
        "p50_ms": latencies[len(latencies) // 2] * 1000 if latencies else None,
        "p99_ms": latencies[int(len(latencies) * 0.99)] * 1000 if latencies else None,
        "ran_out_of_clients": len(latencies) == len(jobs),
    }


def hot_lock(args: argparse.Namespace, base: str, env: dict[str, str]) -> list[dict[str, Any]]:
    """One region's writers against writers spread over every region, same driver, same writers."""
    if args.wrk_cpu is not None:
        os.sched_setaffinity(0, {int(args.wrk_cpu)})  # the driver on the load CPU, like wrk
    workers = workers_of(args.database_url)
    tokens = {region: token(env, args.source, region) for region in workers}
    out = []
    budget = args.hot_seconds * 400  # more clients than the server can take in the time
    for label, region in (("one region", args.hot_region or args.region), ("all regions", None)):
        jobs = take(args.database_url, region, budget)
        print(f"hot lock: {label}: {len(jobs)} clients, {args.writers} writers, {args.hot_seconds} s", flush=True)
        result = asyncio.run(drive(base, jobs, tokens, workers, args.writers, args.hot_seconds))
        result["label"] = label
        result["regions"] = len({code for _, code in jobs})
        print(f"  {result}", flush=True)
        out.append(result)
    return out


def start_silta(
    args: argparse.Namespace, procs: Processes, work: Path, name: str, source: Path, env: dict[str, str]
) -> harness.Server:
    """One pinned Silta worker running ``source``'s app (not yet waited for)."""
    return harness.start_server(
        procs,
        work,
        name,
        lambda port: harness.uvicorn_argv(args, "app.main:app", port),
        cwd=source,
        env=env,
        health="/healthz",
    )


def interleaved(
    args: argparse.Namespace, procs: Processes, work: Path, env: dict[str, str], silta: harness.Server
) -> dict[str, Any]:
    """Server CPU per created assignment of this checkout and of ``--against``, in alternating rounds."""
    other = start_silta(args, procs, work, "silta-against", args.against, {**env, "PYTHONPATH": str(args.against)})
    harness.wait_ready(procs, other)
    if args.wrk_cpu is not None:
        os.sched_setaffinity(0, {int(args.wrk_cpu)})  # the driver on the load CPU, like wrk
    workers = workers_of(args.database_url)
    tokens = {region: token(env, args.source, region) for region in workers}
    servers = {"this": silta, "against": other}
    for server in servers.values():  # warm both alike (pool connections, prepared statements): unmeasured
        asyncio.run(drive(server.base, take(args.database_url, None, AB_WARMUP), tokens, workers, 4, MAX_HOT_SECONDS))
    cpu_ms: dict[str, list[float]] = {name: [] for name in servers}
    for n in range(args.rounds):
        for name in list(servers) if n % 2 == 0 else list(reversed(servers)):
            server = servers[name]
            jobs = take(args.database_url, None, args.per_round)
            before = harness.process_cpu_seconds(server.pid)
            result = asyncio.run(drive(server.base, jobs, tokens, workers, 4, MAX_HOT_SECONDS * 4))
            used = harness.process_cpu_seconds(server.pid) - before
            if result["created"] != len(jobs):
                raise RuntimeError(f"{name}: {result['created']} of {len(jobs)} writes created: {result['statuses']}")
            cpu_ms[name].append(used * 1000 / len(jobs))
            print(f"  round {n} {name}: {result['rps']:.0f}/s, {cpu_ms[name][-1]:.2f} ms server CPU/write", flush=True)
    medians = {name: statistics.median(values) for name, values in cpu_ms.items()}
    return {
        "against": f"{args.against} ({harness.git_state(args.against)})",
        "rounds": args.rounds,
        "per_round": args.per_round,
        "cpu_ms": cpu_ms,
        "median_cpu_ms": medians,
        "change": medians["this"] / medians["against"] - 1,
    }


def run(args: argparse.Namespace, procs: Processes, work: Path, created: list[str], started: Any) -> dict[str, Any]:
    machine = harness.machine_info(args.admin_url)
    harness.recreate_database(args.admin_url, args.baseline_db_name)
    created.append(args.baseline_db_name)
    pool = prepare_pool(args.database_url, args.pool_per_region)
    print(f"pool of unused clients per region: {pool}", flush=True)
    env = {
        **os.environ,
        "SILTA_DATABASE_URL": args.database_url,
        "SILTA_DATA_DIR": str(args.data_dir),
        "SILTA_ENV": "development",
        "PYTHONDONTWRITEBYTECODE": "1",
        "PYTHONPATH": str(args.source),
    }
    workers = workers_of(args.database_url)
    bearer = work / "coordinator.txt"
    bearer.write_text(token(env, args.source, args.region) + "\n")
    body = work / "assignment.json"
    body.write_text(json.dumps({"responsibility": "organising", "worker_id": workers[args.region]}))
    baseline = harness.start_baseline(procs, args, work)
    silta = start_silta(args, procs, work, "silta", args.source, env)
    for server in (baseline, silta):
        harness.wait_ready(procs, server)
    item = {"name": "bench", "region": "05", "birth_date": "2005-01-01", "score": 1, "payload": {"k": "v"}}
    (work / "item.json").write_text(json.dumps(item))
    base_token = baseline.cwd / "keys" / "token_es256.txt"
    db_pid = harness.postmaster_pid(args.admin_url)
    results: list[Measured] = []
    for concurrency in args.concurrency:
        base_target = Target(
            "baseline.insert", baseline.base + "/async/items", baseline.pid, "POST", base_token, work / "item.json"
        )
        results.append(harness.measure(base_target, args, concurrency, db_pid, work / "load.jsonl"))
        results.append(assignments(args, silta, bearer, body, concurrency, db_pid, work))
    hot = hot_lock(args, silta.base, env) if args.hot_lock else []
    ab = interleaved(args, procs, work, env, silta) if args.against else {}
    return {
        **harness.report_header("assignment-cost", started, __file__),
        "machine": machine,
        "settings": {k: str(v) for k, v in vars(args).items()},
        "source": str(args.source),
        "results": [asdict(m) for m in results],
        "ratios": ratios(results),
        "hot_lock": hot,
        "ab": ab,
    }


def assignments(
    args: argparse.Namespace,
    silta: harness.Server,
    bearer: Path,
    body: Path,
    concurrency: int,
    db_pid: int | None,
    work: Path,
) -> Measured:
    """Warm-up, then ``--runs`` runs, each with clients of its own: wrk starts every run at the same place
    in its ids file (its Lua random numbers are not seeded), and a client is assigned only once."""
    runs = []
    for n in range(args.runs + (1 if args.warmup else 0)):
        seconds = args.warmup if args.warmup and n == 0 else args.duration
        ids = take(args.database_url, args.region, seconds * args.max_rps)
        ids_file = work / f"clients-{concurrency}-{n}.txt"
        ids_file.write_text("\n".join(client_id for client_id, _ in ids) + "\n")
        url = silta.base + "/v1/clients/{id}/assignments"
        target = Target("silta.assignment", url, silta.pid, "POST", bearer, body, ids_file)
        harness.ensure_loopback(target.url)
        one: Measured = harness.measure(
            target, args, concurrency, db_pid, work / "load.jsonl", warmup=0, duration=seconds, runs=1
        )
        if one.median is None:
            return one
        if not (args.warmup and n == 0):
            runs.append(one.median | {"clients_set_aside": len(ids)})
    median = {key: statistics.median(run[key] for run in runs) for key in runs[0] if runs[0][key] is not None}
    median["errors"] = sum(run["errors"] for run in runs)
    return Measured("silta.assignment", concurrency, median=median, runs=runs)


def ratios(results: Sequence[Measured]) -> list[dict[str, Any]]:
    found = {(m.key, m.concurrency): m.median for m in results if m.median}
    out = []
    for c in sorted({m.concurrency for m in results}):
        base, silta = found.get(("baseline.insert", c)), found.get(("silta.assignment", c))
        if base and silta:
            out.append(
                {
                    "concurrency": c,
                    "baseline_rps": base["rps"],
                    "assignment_rps": silta["rps"],
                    "fraction": silta["rps"] / base["rps"],
                    "baseline_cpu_ms": base["server_cpu_ms_per_req"],
                    "assignment_cpu_ms": silta["server_cpu_ms_per_req"],
                    "assignment_db_cpu_ms": silta["db_cpu_ms_per_req"],
                    "assignment_errors": silta["errors"],
                }
            )
    return out


def markdown(report: dict[str, Any]) -> str:
    out = [
        f"# POST assignment against the bare insert, {report['started']}",
        "",
        f"Command: `{report['command']}`  ",
        f"Code: {report['machine']['git']}; server source: `{report['source']}`.",
        "",
        "| c | bare insert req/s | assignment req/s | fraction | server CPU ms/req bare | assignment | "
        "db CPU ms/req assignment | errors |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in report["ratios"]:
        out.append(
            f"| {r['concurrency']} | {r['baseline_rps']:,.0f} | {r['assignment_rps']:,.0f} | {r['fraction']:.3f} | "
            f"{r['baseline_cpu_ms']:.2f} | {r['assignment_cpu_ms']:.2f} | {r['assignment_db_cpu_ms']:.2f} | "
            f"{r['assignment_errors']} |"
        )
    if report["hot_lock"]:
        out += [
            "",
            "## One region's feed lock against all regions",
            "",
            "| writers to | regions | writers | created/s | p50 ms | p99 ms | statuses |",
            "|---|---:|---:|---:|---:|---:|---|",
        ]
        for h in report["hot_lock"]:
            out.append(
                f"| {h['label']} | {h['regions']} | {h['writers']} | {h['rps']:,.0f} | {h['p50_ms'] or 0:.1f} | "
                f"{h['p99_ms'] or 0:.1f} | {h['statuses']} |"
            )
    if report.get("ab"):
        ab = report["ab"]
        out += [
            "",
            f"## Interleaved A/B against `{ab['against']}`",
            "",
            f"{ab['rounds']} rounds of {ab['per_round']} writes each, both servers on one pinned CPU, the order "
            "alternating; server CPU ms per created assignment.",
            "",
            "| server | median | rounds |",
            "|---|---:|---|",
        ]
        for name in ("this", "against"):
            rounds = ", ".join(f"{ms:.2f}" for ms in ab["cpu_ms"][name])
            out.append(f"| {name} | {ab['median_cpu_ms'][name]:.2f} | {rounds} |")
        out += ["", f"This checkout: {ab['change']:+.1%} server CPU per write against the other."]
    out += ["", "## All measurements", "", "```", json.dumps(report["results"], indent=1)[:20000], "```"]
    return "\n".join(out) + "\n"


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    harness.add_load_args(p, duration=5)
    harness.add_setup_args(p, db_name="silta_bench_unused", baseline_db_name="silta_bench_assign_baseline")
    p.add_argument("--database-url", required=True, help="a COPY of the national data set (it is changed)")
    p.add_argument("--data-dir", type=Path, required=True, help="the copy's keys (SILTA_DATA_DIR)")
    p.add_argument("--source", type=Path, default=REPO, help="the checkout whose app/ the server runs")
    p.add_argument("--region", default="05", help="the writers' region")
    p.add_argument("--pool-per-region", type=int, default=0, help="add up to this many pool clients per region")
    p.add_argument("--max-rps", type=int, default=250, help="clients set aside per second of assignment load")
    p.add_argument("--hot-lock", action="store_true", help="also compare one region's writers with all regions'")
    p.add_argument("--hot-region", help="the one region of --hot-lock (default --region)")
    p.add_argument("--writers", type=int, default=16)
    p.add_argument("--hot-seconds", type=int, default=10)
    p.add_argument("--against", type=Path, help="another checkout: interleaved A/B of the write's server CPU")
    p.add_argument("--rounds", type=int, default=6, help="A/B rounds (each server once per round)")
    p.add_argument("--per-round", type=int, default=300, help="writes per server and round")
    args = p.parse_args(argv)
    problems = harness.arg_problems(args)
    harness.ensure_loopback(args.database_url)
    if "bench" not in args.database_url.rsplit("/", 1)[-1]:
        problems.append("--database-url must name a bench copy")
    if not (0 <= args.pool_per_region <= MAX_POOL_PER_REGION and 1 <= args.writers <= harness.MAX_CONCURRENCY):
        problems.append(f"pool per region 0-{MAX_POOL_PER_REGION}, writers 1-{harness.MAX_CONCURRENCY}")
    if not 1 <= args.hot_seconds <= MAX_HOT_SECONDS:
        problems.append(f"hot seconds 1-{MAX_HOT_SECONDS}")
    if not (1 <= args.rounds <= MAX_AB_ROUNDS and 1 <= args.per_round <= MAX_AB_PER_ROUND):
        problems.append(f"rounds 1-{MAX_AB_ROUNDS}, per round 1-{MAX_AB_PER_ROUND}")
    if args.against is not None and not (args.against / "app" / "main.py").is_file():
        problems.append("--against must be a checkout (with app/main.py)")
    if problems:
        p.error("; ".join(problems))
    args.source = args.source.resolve()
    args.against = args.against.resolve() if args.against else None
    return harness.settle_args(args)


if __name__ == "__main__":
    sys.exit(harness.run_benchmark("assignment-cost", parse_args(), run, markdown, endpoints=2))

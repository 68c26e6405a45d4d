"""The cost of the audit logs: write and read throughput with and without them, in one run (issue 6).

What one run does:

1. Recreates two dedicated databases on the loopback PostgreSQL (``silta_bench_audit`` for Silta,
   ``silta_bench_audit_baseline`` for the yardstick), migrates Silta's with ``silta migrate``.
2. Starts, each as one uvicorn worker on a free 127.0.0.1 port (pinned to CPU 0 when there are
   two CPUs or more; wrk then runs on CPU 1):
   - Silta **with logging** (the defaults: access log on reads, change log on writes, the
     background sealer every ``SILTA_AUDIT_SEAL_SECONDS``),
   - Silta **without logging** (``SILTA_AUDIT_ACCESS_LOG=false SILTA_AUDIT_CHANGE_LOG=false``, and
     ``SILTA_AUDIT_SEAL_SECONDS=0``: no sealer, so it does none of the logging work), on the same
     database and data folder,
   - the bare-framework baseline (``../shared/bench/baseline_app.py``, from a copy).
3. Seeds clients through Silta's own API (``POST /v1/clients``, region 05 coordinator, valid
   distinct identity codes) and rows through the baseline's ``POST /async/items``.
4. Drives, with ``../shared/bench/load.py`` (wrk: bounded warm-up, duration, runs and concurrency;
   median of the runs), at each concurrency, baseline / without / with interleaved:
   - read:  ``GET /v1/clients/{id}`` (round robin over the seeded ids; one access entry per
     request with logging) vs the baseline's ``GET /async/items/{id}``,
   - write: ``POST /v1/workers`` (one change entry per request with logging) vs the baseline's
     ``POST /async/items``.
   Around each measurement it counts the log rows, so the report shows the entries each request
   really left (with logging ~1, without 0).
5. After the writes: ``silta audit seal`` then ``silta audit verify`` with the same settings; the
   chain must verify, and the report says how many entries it holds and how many the last seal added.
6. Writes ``benchmarks/results/audit-cost-<UTC time>.json`` and ``.md`` (machine, req/s, p50/p99,
   the with/without ratio per endpoint, and each Silta figure as a fraction of the matching
   baseline endpoint), then stops every process it started and drops both databases (also on error
   or Ctrl-C).

Run from the repository root (about 3 minutes with the defaults)::

    .venv/bin/python benchmarks/audit_cost.py
    .venv/bin/python benchmarks/audit_cost.py -c 4 16 -d 3 --runs 3 --clients 200

Only loopback hosts are used: PostgreSQL, the servers and every load target.
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import json
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import harness
import psycopg
from harness import DISTURBED_PCT, REPO, Measured, Processes, Target
from psycopg import sql

SILTA = str(Path(sys.executable).parent / "silta") if (Path(sys.executable).parent / "silta").exists() else "silta"

REGION = "05"  # the caller's region: coordinator of 05, clients organised by 05
MUNICIPALITY = "853"  # Turku, region 05: the clients also live in 05
LOG_TABLES = ("change_event", "access_log", "disclosure_log", "audit_chain")

# bounds: every load loop and every wait in this script is finite (the load's own: harness.py)
MAX_CLIENTS = 800
SEAL_WAIT_S = 60.0  # longest wait for the sealer to catch up after a measurement


# --------------------------------------------------------------------------- what is measured


@dataclass(frozen=True)
class Endpoint:
    """One measured URL on one server; Silta endpoints name the baseline endpoint they compare with."""

    key: str
    server: str  # "baseline", "on" (Silta with logging) or "off" (Silta without)
    kind: str  # "read" or "write"
    method: str
    path: str  # "{id}" is replaced round robin from an ids file
    matches: str | None  # the matching baseline endpoint (Silta only)


ENDPOINTS: tuple[Endpoint, ...] = (
    Endpoint("baseline.read", "baseline", "read", "GET", "/async/items/{id}", None),
    Endpoint("silta.read.off", "off", "read", "GET", "/v1/clients/{id}", "baseline.read"),
    Endpoint("silta.read.on", "on", "read", "GET", "/v1/clients/{id}", "baseline.read"),
    Endpoint("baseline.write", "baseline", "write", "POST", "/async/items", None),
    Endpoint("silta.write.off", "off", "write", "POST", "/v1/workers", "baseline.write"),
    Endpoint("silta.write.on", "on", "write", "POST", "/v1/workers", "baseline.write"),
)
WHAT = {
    "baseline.read": "baseline: PG primary-key read, async (asyncpg)",
    "baseline.write": "baseline: PG insert + commit, async (asyncpg)",
    "silta.read.off": "Silta client read, coordinator of 05, logging off",
    "silta.read.on": "Silta client read, coordinator of 05, access log on",
    "silta.write.off": "Silta worker create, coordinator of 05, logging off",
    "silta.write.on": "Silta worker create, coordinator of 05, change log on",
}
SERVER_NAMES = {"baseline": "baseline", "on": "Silta with logging", "off": "Silta without logging"}


# --------------------------------------------------------------------------- database and data


def log_counts(url: str) -> dict[str, int]:
    """Rows in each audit log and in the chain (exact counts: the tables are small)."""
    with psycopg.connect(url) as conn:
        out = {}
        for table in LOG_TABLES:
            row = conn.execute(sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(table))).fetchone()
            out[table] = int(row[0]) if row else 0
        return out


def wait_sealed(url: str, timeout: float = SEAL_WAIT_S) -> tuple[float, dict[str, int]]:
    """Wait (bounded) until the chain holds every log entry; return the seconds waited and the last counts.

    Only the logging-on server writes entries and seals them, so "caught up" is chain rows == log rows.
    Waiting here keeps its sealing work out of the next measurement (all servers share CPU 0).
    """
    t0 = time.monotonic()
    while True:
        counts = log_counts(url)
        behind = counts["change_event"] + counts["access_log"] + counts["disclosure_log"] - counts["audit_chain"]
        if behind <= 0 or time.monotonic() - t0 > timeout:
            return time.monotonic() - t0, counts
        time.sleep(0.1)


# --------------------------------------------------------------------------- measuring


@dataclass
class Logged(Measured):
    """A measurement and the audit log rows written while it ran."""

    log_rows_added: dict[str, int] = field(default_factory=dict)  # during the measured runs only
    seal_catch_up_s: float | None = None  # after the runs, until the chain held every entry
    unsealed_after_runs: int | None = None


# --------------------------------------------------------------------------- reporting


def code_digest() -> str:
    """SHA-256 over app/ and migrations/ sources: shows whether the code changed while the run lasted."""
    digest = hashlib.sha256()
    for path in sorted([*REPO.glob("app/**/*.py"), *REPO.glob("migrations/**/*.py")]):
        digest.update(str(path.relative_to(REPO)).encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:16]


def comparisons(results: Sequence[Measured]) -> list[dict[str, Any]]:
    """Per kind and concurrency: with vs without logging, and each as a fraction of the baseline."""
    found = {(m.key, m.concurrency): m.median for m in results if m.median and m.median["requests"]}
    rows = []
    for kind in ("read", "write"):
        for c in sorted({m.concurrency for m in results}):
            on, off = found.get((f"silta.{kind}.on", c)), found.get((f"silta.{kind}.off", c))
            base = found.get((f"baseline.{kind}", c))
            rows.append(
                {
                    "kind": kind,
                    "concurrency": c,
                    "on_rps": on and on["rps"],
                    "off_rps": off and off["rps"],
                    "baseline_rps": base and base["rps"],
                    "on_over_off_rps": on["rps"] / off["rps"] if on and off else None,
                    "cost_pct": (1 - on["rps"] / off["rps"]) * 100 if on and off else None,
                    "on_p50_ms": on and on["p50_ms"],
                    "off_p50_ms": off and off["p50_ms"],
                    "on_p99_ms": on and on["p99_ms"],
                    "off_p99_ms": off and off["p99_ms"],
                    "on_fraction_of_baseline": on["rps"] / base["rps"] if on and base else None,
                    "off_fraction_of_baseline": off["rps"] / base["rps"] if off and base else None,
                }
            )
    return rows


def _disturbed(one: dict[str, Any]) -> int:
    return len([r for r in one["runs"] if (r.get("foreign_cpu_pct") or 0) > DISTURBED_PCT])


def _num(value: float | None, digits: int = 0) -> str:
    return "-" if value is None else f"{value:,.{digits}f}"


def markdown(report: dict[str, Any]) -> str:
    """The human-readable results file."""
    m, s, chain = report["machine"], report["settings"], report["chain"]
    out = [
        f"# Cost of the audit logs, {report['started']}",
        "",
        f"Command: `{report['command']}`  ",
        f"Runtime: {report['runtime_s']:.0f} s. Code: {m['git']} (sources digest {report['code']['digest_at_start']}).",
        "",
        "## Summary",
        "",
        "Silta with logging (defaults) against Silta without (`SILTA_AUDIT_ACCESS_LOG=false "
        "SILTA_AUDIT_CHANGE_LOG=false`, no sealer), same database, same run; `on/off` is the req/s ratio, "
        "`cost` is the throughput lost to logging; `of baseline` is each Silta req/s as a fraction of the "
        "matching bare-framework endpoint (read: `GET /async/items/{id}`, write: `POST /async/items`) at the "
        "same concurrency.",
        "",
        "| endpoint | c | with logging req/s | without req/s | on/off | cost | p50 ms with / without | "
        "p99 ms with / without | baseline req/s | with, of baseline | without, of baseline |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    paths = {"read": "`GET /v1/clients/{id}`", "write": "`POST /v1/workers`"}
    for r in report["comparisons"]:
        out.append(
            f"| {paths[r['kind']]} | {r['concurrency']} | {_num(r['on_rps'])} | {_num(r['off_rps'])} | "
            f"{_num(r['on_over_off_rps'], 3)} | {_num(r['cost_pct'], 1)} % | "
            f"{_num(r['on_p50_ms'], 2)} / {_num(r['off_p50_ms'], 2)} | {_num(r['on_p99_ms'], 1)} / "
            f"{_num(r['off_p99_ms'], 1)} | {_num(r['baseline_rps'])} | {_num(r['on_fraction_of_baseline'], 3)} | "
            f"{_num(r['off_fraction_of_baseline'], 3)} |"
        )
    lags = [(r["seal_catch_up_s"], r["unsealed_after_runs"]) for r in report["results"] if r["key"].endswith(".on")]
    if lags:
        worst = max(lags)
        out += [
            "",
            f"Sealing under load: when the logging-on runs ended, up to {max(u or 0 for _, u in lags):,} entries "
            f"were not yet in the chain; the chain caught up at most {worst[0]:.1f} s later (see the table below).",
        ]
    disturbed = [r["key"] + f" c={r['concurrency']}" for r in report["results"] if _disturbed(r)]
    if disturbed or m["busy_before_load_pct"] > DISTURBED_PCT:
        out += [
            "",
            f"**Shared machine:** {len(disturbed)} of {len(report['results'])} measurements had runs where other "
            f"processes used more than {DISTURBED_PCT:.0f} % of the machine (DISTURBED); the machine was "
            f"{m['busy_before_load_pct']:.0f} % busy while the servers idled. Compare figures only within this run.",
        ]
    verdict = "verifies" if chain["verify"].get("ok") else "DOES NOT VERIFY"
    if report["code"]["changed"]:
        verdict += " (WARNING: app/ or migrations/ changed while this run lasted; the servers ran the older code)"
    out += [
        "",
        f"Audit chain after the writes (`silta audit seal`, then `silta audit verify`, logging-on settings): "
        f"**{verdict}**; the running server's sealer had sealed {chain['sealed_by_server_sealer']:,} entries, "
        f"the final `silta audit seal` {chain['sealed_by_final_seal']:,}; verify checked "
        f"{chain['verify'].get('checked', 0):,} entries, {chain['verify'].get('sealed', 0):,} sealed, "
        f"{chain['verify'].get('unsealed', 0):,} unsealed, head position {chain['verify'].get('head_position', 0):,}. "
        "Log rows at the end: " + ", ".join(f"{k} {v:,}" for k, v in chain["rows_at_end"].items()) + ".",
        "",
        "## Machine",
        "",
        f"- {m['cpus']} x {m['cpu']}, {m['memory_gib']} GiB, Linux {m['kernel']}, Python {m['python']}, "
        f"PostgreSQL {m['postgresql']}, {m['wrk']}",
        f"- load average at start: {', '.join(f'{x:.2f}' for x in m['load_average_at_start'])}; "
        f"machine busy while the servers idled, just before the load: {m['busy_before_load_pct']:.0f} % of all CPUs",
        "- packages: " + ", ".join(f"{k} {v}" for k, v in m["packages"].items()),
        f"- servers: one uvicorn worker each, no access log; server CPU {s['server_cpu'] or 'unpinned'}, "
        f"wrk CPU {s['wrk_cpu'] or 'unpinned'}, PostgreSQL unpinned",
        f"- data: {s['clients']} clients registered through `POST /v1/clients` (region 05), "
        f"{s['baseline_rows']} baseline rows; sealer interval with logging {s['seal_seconds']} s",
        "",
        f"## All measurements (wrk via shared/bench/load.py: {s['warmup']} s warm-up, median of {s['runs']} x "
        f"{s['duration']} s)",
        "",
        "`log rows/req` is the audit entries written during the measured runs (counted before and after them; "
        "the warm-up is a separate wrk run before the count) per request wrk counted as answered: access entries "
        "for reads, change entries for writes (requests still in flight when a run ends can add a few). "
        "`sealed during runs` is the chain rows committed while the runs lasted; `unsealed at end of runs` the "
        "entries not yet in the chain when they ended; the script then waits (at most "
        f"{SEAL_WAIT_S:.0f} s) until the chain holds every entry before the next measurement, so that sealing "
        "never runs during another server's measurement. "
        "`cpu/req` is CPU ms per request "
        f"of the server process and of PostgreSQL. Runs where other processes used more than {DISTURBED_PCT:.0f} % "
        "of the machine are marked DISTURBED.",
        "",
        "| endpoint | c | req/s | p50 ms | p90 ms | p99 ms | errors | cpu/req server | cpu/req db | log rows/req | "
        "sealed during runs | unsealed at end of runs | chain caught up after | note |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for one in report["results"]:
        med = one["median"]
        if med is None:
            out.append(f"| {one['key']} | {one['concurrency']} | FAILED: {one['error']} | | | | | | | | | | | |")
            continue
        note = f"{_disturbed(one)}/{len(one['runs'])} runs DISTURBED" if _disturbed(one) else ""
        per_req = "-"
        silta = one["key"].startswith("silta.")
        sealed = f"{one['log_rows_added'].get('audit_chain', 0):,}" if silta else "-"
        catch_up = "-" if one["seal_catch_up_s"] is None else f"{one['seal_catch_up_s']:.1f} s"
        measured = sum(r["requests"] for r in one["runs"])
        if one["key"].startswith("silta.") and measured:
            table = "access_log" if ".read." in one["key"] else "change_event"
            per_req = f"{one['log_rows_added'].get(table, 0) / measured:.3f}"
        out.append(
            f"| {one['key']} | {one['concurrency']} | {_num(med['rps'])} | {_num(med['p50_ms'], 2)} | "
            f"{_num(med['p90_ms'], 2)} | {_num(med['p99_ms'], 2)} | {med['errors']} | "
            f"{_num(med['server_cpu_ms_per_req'], 2)} | {_num(med['db_cpu_ms_per_req'], 2)} | {per_req} | "
            f"{sealed} | {_num(one['unsealed_after_runs'])} | {catch_up} | {note} |"
        )
    out += ["", "## Endpoints", "", "| key | request | what |", "|---|---|---|"]
    out += [f"| {e.key} | `{e.method} {e.path}` | {WHAT[e.key]} |" for e in ENDPOINTS]
    return "\n".join(out) + "\n"


# --------------------------------------------------------------------------- the run


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    harness.add_load_args(p, duration=3)
    p.add_argument("--clients", type=int, default=200, help="clients registered before the reads (default 200)")
    p.add_argument("--baseline-rows", type=int, default=200, help="rows in the baseline table (default 200)")
    harness.add_setup_args(p, db_name="silta_bench_audit", baseline_db_name="silta_bench_audit_baseline")
    args = p.parse_args(argv)
    problems = harness.arg_problems(args)
    if not (1 <= args.clients <= MAX_CLIENTS and 1 <= args.baseline_rows <= 10_000):
        problems.append(f"clients 1-{MAX_CLIENTS}, baseline rows 1-10000")
    if problems:
        p.error("; ".join(problems))
    return harness.settle_args(args)


def main(argv: Sequence[str] | None = None) -> int:
    return harness.run_benchmark(
        "audit-cost", parse_args(argv), run, markdown, endpoints=len(ENDPOINTS), ok=measured_and_verified
    )


def measured_and_verified(report: dict[str, Any]) -> bool:
    return harness.all_measured(report) and bool(report["chain"]["verify"].get("ok"))


def run(
    args: argparse.Namespace, procs: Processes, work: Path, created: list[str], started: dt.datetime
) -> dict[str, Any]:
    """Set up, start, seed, measure and verify; return the report (``harness.run_benchmark`` writes it)."""
    machine = harness.machine_info(args.admin_url)
    code_before = code_digest()
    silta_url = harness.database_url(args.admin_url, args.db_name)

    harness.create_databases(args, created)
    common = harness.silta_env(args, work)
    for name in (
        "SILTA_AUDIT_ACCESS_LOG",
        "SILTA_AUDIT_CHANGE_LOG",
        "SILTA_AUDIT_SEAL_SECONDS",
        "SILTA_AUDIT_KEY_FILE",
    ):
        common.pop(name, None)  # the logging-on server runs with the defaults
    envs = {
        "on": dict(common),
        "off": {
            **common,
            "SILTA_AUDIT_ACCESS_LOG": "false",
            "SILTA_AUDIT_CHANGE_LOG": "false",
            "SILTA_AUDIT_SEAL_SECONDS": "0",  # no sealer: it would seal the logging-on server's entries
        },
    }
    print("migrating Silta's database", flush=True)
    harness.run_checked([SILTA, "migrate"], cwd=REPO, env=envs["on"])
    token = harness.run_checked(
        [SILTA, "token", "--role", "coordinator", "--region", REGION, "--hours", "2"], cwd=REPO, env=envs["on"]
    )
    token = token.strip()
    bearer = work / "coordinator-05.txt"
    bearer.write_text(token + "\n")

    servers = {"baseline": harness.start_baseline(procs, args, work)}
    for server in ("on", "off"):
        servers[server] = harness.start_server(
            procs,
            work,
            f"silta-{server}",
            lambda port: harness.pinned(
                args, [SILTA, "serve", "--host", "127.0.0.1", "--port", str(port), "--workers", "1", "--no-migrate"]
            ),
            cwd=REPO,
            env=envs[server],
            health="/healthz",
        )
    for server in ("baseline", "on", "off"):
        harness.wait_ready(procs, servers[server])
        print(f"  {SERVER_NAMES[server]:<22} {servers[server].base} (pid {servers[server].pid})", flush=True)

    print(f"seeding {args.clients} clients (POST /v1/clients) and {args.baseline_rows} baseline rows", flush=True)
    client_ids = harness.seed_clients(servers["on"].base, token, args.clients, region=REGION, municipality=MUNICIPALITY)
    item = {"name": "bench", "region": REGION, "birth_date": "2005-01-01", "score": 1, "payload": {"k": "v"}}
    item_ids = harness.seed_baseline(servers["baseline"].base, args.baseline_rows, body=item)
    files = {"client_ids": work / "client-ids.txt", "item_ids": work / "item-ids.txt"}
    files["client_ids"].write_text("\n".join(client_ids) + "\n")
    files["item_ids"].write_text("\n".join(item_ids) + "\n")
    files["worker_body"] = work / "worker.json"
    files["worker_body"].write_text(json.dumps({"region": REGION, "name": "W", "role": "counsellor"}))
    files["item_body"] = work / "item.json"
    files["item_body"].write_text(json.dumps(item))

    targets: dict[str, Target] = {}
    checks = {}
    for e in ENDPOINTS:
        silta = e.server != "baseline"
        if e.kind == "read":
            ids, body = files["client_ids" if silta else "item_ids"], None
        else:
            ids, body = None, files["worker_body" if silta else "item_body"]
        at = servers[e.server]
        targets[e.key] = Target(e.key, at.base + e.path, at.pid, e.method, bearer if silta else None, body, ids)
        harness.ensure_loopback(targets[e.key].url)
    for e in ENDPOINTS:
        first = (client_ids if e.server != "baseline" else item_ids)[0]
        checks[e.key] = harness.check_once(targets[e.key], first if e.kind == "read" else None)
        print(f"  check {e.key:<16} {checks[e.key]}", flush=True)

    idle_busy = harness.machine_busy_pct(2.0)
    harness.say_how_busy(idle_busy)
    waited, _ = wait_sealed(silta_url)
    print(f"chain caught up with the seeding's entries ({waited:.1f} s)", flush=True)
    db_pid = harness.postmaster_pid(args.admin_url)
    jsonl = work / "load.jsonl"
    results: list[Logged] = []
    for i, concurrency in enumerate(args.concurrency):
        print(f"load at c={concurrency}", flush=True)
        for kind in ("read", "write"):
            # baseline first, then with/without logging; the order of the two alternates per level
            order = ["baseline", "off", "on"] if i % 2 == 0 else ["baseline", "on", "off"]
            for server in order:
                key = f"baseline.{kind}" if server == "baseline" else f"silta.{kind}.{server}"
                harness.check_alive(procs, list(servers.values()))
                if args.warmup:  # unrecorded, and before the log rows are counted
                    harness.measure(
                        targets[key],
                        args,
                        concurrency,
                        db_pid,
                        work / "warmup.jsonl",
                        warmup=0,
                        duration=args.warmup,
                        runs=1,
                        label=f"{key} c={concurrency} warm-up",
                    )
                before = log_counts(silta_url)
                one = harness.measure(targets[key], args, concurrency, db_pid, jsonl, result=Logged, warmup=0)
                after = log_counts(silta_url)
                one.log_rows_added = {t: after[t] - before[t] for t in LOG_TABLES}
                if server != "baseline":
                    logged = sum(after[t] for t in LOG_TABLES if t != "audit_chain")
                    one.unsealed_after_runs = logged - after["audit_chain"]
                    one.seal_catch_up_s, _ = wait_sealed(silta_url)
                results.append(one)
                if server != "baseline":
                    print(
                        f"    log rows added: {one.log_rows_added}; unsealed when the runs ended "
                        f"{one.unsealed_after_runs}, chain caught up {one.seal_catch_up_s:.1f} s later",
                        flush=True,
                    )

    print("sealing and verifying the chain (logging-on settings)", flush=True)
    seal_output = harness.run_checked([SILTA, "audit", "seal"], cwd=REPO, env=envs["on"]).strip()
    done = subprocess.run(  # noqa: S603 - fixed argv, no shell
        [SILTA, "audit", "verify"], cwd=REPO, env=envs["on"], capture_output=True, text=True, timeout=300, check=False
    )
    try:  # exit 1 with a report when the chain does not hold: the report is kept, not raised
        verify = json.loads(done.stdout)
    except json.JSONDecodeError:
        raise RuntimeError(f"silta audit verify failed ({done.returncode}):\n{done.stdout}\n{done.stderr}") from None
    code_after = code_digest()
    if code_after != code_before:
        print("  WARNING: app/ or migrations/ changed during this run; the servers ran the older code", flush=True)
    rows_at_end = log_counts(silta_url)
    final = int(seal_output.split()[1]) if seal_output.startswith("sealed ") else 0
    print(f"  {seal_output}; verify ok={verify.get('ok')} checked={verify.get('checked')}", flush=True)

    return {
        **harness.report_header("audit-cost", started, __file__),
        "machine": {**machine, "busy_before_load_pct": idle_busy},
        "settings": {
            "concurrency": args.concurrency,
            "duration": args.duration,
            "runs": args.runs,
            "warmup": args.warmup,
            "request_timeout": args.request_timeout,
            "server_cpu": args.server_cpu,
            "wrk_cpu": args.wrk_cpu,
            "clients": len(client_ids),
            "baseline_rows": len(item_ids),
            "seal_seconds": "2 (the default)",
            "databases": [args.db_name, args.baseline_db_name],
            "env_off": {k: v for k, v in envs["off"].items() if k.startswith("SILTA_AUDIT_")},
        },
        "endpoints": [asdict(e) | {"what": WHAT[e.key]} for e in ENDPOINTS],
        "checks": checks,
        "results": [asdict(m) for m in results],
        "comparisons": comparisons(results),
        "code": {"digest_at_start": code_before, "digest_at_verify": code_after, "changed": code_after != code_before},
        "chain": {
            "seal_output": seal_output,
            "sealed_by_final_seal": final,
            "sealed_by_server_sealer": rows_at_end["audit_chain"] - final,
            "verify": verify,
            "rows_at_end": rows_at_end,
        },
    }


if __name__ == "__main__":
    sys.exit(main())

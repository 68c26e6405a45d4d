"""Caseload reports on PostgreSQL at scale, against the bare-framework baseline in the same run.

What one run does (issue 5: "their timings on PostgreSQL from a benchmark script"):

1. Recreates two dedicated databases on the loopback PostgreSQL (``silta_bench`` for Silta,
   ``silta_bench_baseline`` for the yardstick), migrates Silta's with Alembic and fills it the way
   ``tests/api/test_caseload.py::_generate`` does (region 08: 1,000 workers, 20,000 clients, each
   client named by one of them), with COPY instead of INSERT so that ``--national-10x`` loads fast.
2. Starts the bare-framework baseline (``../shared/bench/baseline_app.py``, from a copy) and Silta,
   each as one uvicorn worker on a free 127.0.0.1 port, pinned to CPU 0 when there are two CPUs
   or more (wrk then runs on CPU 1), exactly as the baseline's own figures were taken.
3. Warms every endpoint up and times a few serial requests (unloaded latency, response checks).
4. Drives every endpoint with ``../shared/bench/load.py`` (wrk: bounded duration, runs and
   concurrency; median of the runs) at each concurrency, baseline and Silta interleaved.
5. Writes ``benchmarks/results/caseload-<UTC time>.json`` and ``.md``: machine, dataset, req/s,
   p50/p90/p99, CPU per request, and each Silta endpoint as a fraction of its matching baseline
   endpoint measured in the same run.
6. Stops every process it started and drops both databases, also on error or Ctrl-C.

Run from the repository root (about 3.5 minutes with the defaults)::

    .venv/bin/python benchmarks/caseload.py
    .venv/bin/python benchmarks/caseload.py --national-10x      # + 130,000 clients in 21 regions

Only loopback hosts are used: PostgreSQL, both servers and every load target.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import ipaddress
import json
import os
import platform
import shlex
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx
import psycopg
from psycopg import sql

REPO = Path(__file__).resolve().parents[1]
DEFAULT_BENCH_DIR = REPO.parent / "shared" / "bench"
RESULTS_DIR = REPO / "benchmarks" / "results"
PYTHON = sys.executable

REGION = "08"  # the region under test, as in tests/api/test_caseload.py
ORGANISING_REGION = "05"  # region 08's generated clients are organised by 05, as in the test
ROLES = ("counsellor", "social_worker", "special_counsellor")
LEVELS = ("standard", "enhanced", "special")
# ten times national scale (PRODUCT.md "Numbers to design for": 10,000-15,000 clients, a few
# hundred workers): region 08 as by default plus these, spread over the other 21 regions
NATIONAL_10X_OTHER_CLIENTS = 130_000
NATIONAL_10X_OTHER_WORKERS = 2_000

# bounds: every load loop and every wait in this script is finite
MAX_DURATION_S, MAX_RUNS, MAX_WARMUP_S, MAX_CONCURRENCY, MAX_LEVELS = 30, 5, 10, 64, 4
MAX_SERIAL = 50
MAX_CLIENTS, MAX_WORKERS = 500_000, 20_000
READY_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 10.0
DISTURBED_PCT = 5.0  # load.py's own threshold for "other processes used the machine"
QUIET_PCT = 10.0  # busier than this with both servers idle: another workload is running
MAX_WAIT_QUIET_S = 600
RETRY_WAIT_QUIET_S = 30.0  # before measuring a disturbed endpoint again
MAX_RETRIES = 3


# --------------------------------------------------------------------------- endpoints


@dataclass(frozen=True)
class Endpoint:
    """One measured URL; Silta endpoints name the baseline endpoint they are compared with."""

    key: str
    server: str  # "baseline" or "silta"
    path: str  # "{id}" is replaced from the baseline's ids file
    token: str | None  # "coordinator", "admin", "baseline-es256" or None
    matches: str | None  # key of the matching baseline endpoint (Silta only)
    what: str


ENDPOINTS: tuple[Endpoint, ...] = (
    Endpoint("baseline.ping", "baseline", "/ping", None, None, "async def, no DB"),
    Endpoint(
        "baseline.auth_es256", "baseline", "/async/auth-ping/es256", "baseline-es256", None, "bearer check ES256, async"
    ),
    Endpoint("baseline.pk_async", "baseline", "/async/items/{id}", None, None, "PG primary-key read, async (asyncpg)"),
    Endpoint("baseline.pk_inline", "baseline", "/inline/items/{id}", None, None, "PG primary-key read, sync inline"),
    Endpoint("silta.healthz", "silta", "/healthz", None, "baseline.ping", "liveness, no token, no DB"),
    Endpoint(
        "silta.caseload",
        "silta",
        f"/v1/regions/{REGION}/caseload?limit=50",
        "coordinator",
        "baseline.pk_async",
        f"region {REGION} report, coordinator of {REGION}",
    ),
    Endpoint("silta.overview", "silta", "/v1/caseload/overview", "admin", "baseline.pk_async", "national, admin"),
    Endpoint(
        "silta.export",
        "silta",
        f"/v1/regions/{REGION}/caseload/export",
        "coordinator",
        "baseline.pk_async",
        f"region {REGION} CSV, coordinator of {REGION}",
    ),
)


# --------------------------------------------------------------------------- processes


class Processes:
    """Every process this run starts; ``stop_all`` ends exactly those (by their own ids)."""

    def __init__(self) -> None:
        self._started: list[tuple[str, subprocess.Popen[bytes]]] = []

    def start(self, name: str, cmd: Sequence[str], *, cwd: Path, env: dict[str, str], log: Path) -> int:
        """Start ``cmd`` in its own session (so its children end with it); return its pid."""
        with log.open("wb") as out:
            proc = subprocess.Popen(  # noqa: S603 - fixed argv, no shell
                list(cmd), cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
            )
        self._started.append((name, proc))
        return proc.pid

    def alive(self, pid: int) -> bool:
        return any(proc.pid == pid and proc.poll() is None for _, proc in self._started)

    def stop_all(self) -> None:
        """SIGTERM each started process group, then SIGKILL what is left after a bounded wait."""
        for _, proc in reversed(self._started):
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + STOP_TIMEOUT_S
        for name, proc in reversed(self._started):
            try:
                proc.wait(timeout=max(deadline - time.monotonic(), 0.1))
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=STOP_TIMEOUT_S)
                print(f"  {name} (pid {proc.pid}) needed SIGKILL", flush=True)
        self._started.clear()


def _terminate_on_signal(signum: int, _frame: FrameType | None) -> None:
    raise SystemExit(f"stopped by signal {signum}")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def wait_ready(procs: Processes, pid: int, url: str, log: Path) -> None:
    """Poll ``url`` until it answers 200; fail early if the server exits (bounded wait)."""
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        if not procs.alive(pid):
            raise RuntimeError(f"server exited before answering {url}:\n{tail(log)}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(url, timeout=2.0).status_code == 200:
                return
        time.sleep(0.2)
    raise RuntimeError(f"{url} not ready after {READY_TIMEOUT_S:.0f} s:\n{tail(log)}")


def tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def run_checked(cmd: Sequence[str], *, cwd: Path, env: dict[str, str], timeout: float = 300) -> str:
    """Run a short command to completion; raise with its output when it fails."""
    done = subprocess.run(  # noqa: S603 - fixed argv, no shell
        list(cmd), cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, check=False
    )
    if done.returncode != 0:
        raise RuntimeError(f"{shlex.join(cmd)} failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
    return done.stdout


# --------------------------------------------------------------------------- database


def ensure_loopback(url: str) -> None:
    host = urlsplit(url).hostname or ""
    if host == "localhost":
        return
    try:
        if ipaddress.ip_address(host).is_loopback:
            return
    except ValueError:
        pass
    raise SystemExit(f"refusing non-loopback host {host!r} in {url}")


def database_url(admin_url: str, name: str, scheme: str | None = None) -> str:
    """``admin_url`` pointed at database ``name`` (optionally with another scheme, e.g. +psycopg)."""
    parts = urlsplit(admin_url)
    return urlunsplit((scheme or parts.scheme, parts.netloc, f"/{name}", parts.query, ""))


def recreate_database(admin_url: str, name: str) -> None:
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))


def drop_database(admin_url: str, name: str) -> None:
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def postmaster_pid(admin_url: str) -> int | None:
    """The PostgreSQL server's root pid, for load.py's per-request DB CPU accounting."""
    try:
        with psycopg.connect(admin_url) as conn:
            row = conn.execute("SHOW data_directory").fetchone()
        return int((Path(row[0]) / "postmaster.pid").read_text().split("\n", 1)[0]) if row else None
    except (OSError, ValueError, psycopg.Error):
        return None


@dataclass
class DataPlan:
    """How many rows to generate: region 08 as in the scale test, plus optional other regions."""

    workers: int
    clients: int
    other_workers: int = 0
    other_clients: int = 0


def generate(url: str, plan: DataPlan) -> dict[str, Any]:
    """Fill a migrated Silta database the way tests/api/test_caseload.py's ``_generate`` does.

    Region 08: ``plan.workers`` active aftercare workers (roles in turn), ``plan.clients`` clients in
    aftercare (support levels in turn) organised by 05 and residing in 08, each with a residence
    assignment to worker ``n % workers``. Other regions (``--national-10x``): their clients are
    organised by and reside in one region, and one worker of that region is named for both
    responsibilities (counted once per worker). No pairs and no compliance gaps, as in the test.
    """
    start = dt.date.today() - dt.timedelta(days=100)
    end = dt.date.today() + dt.timedelta(days=700)
    now = dt.datetime.now(dt.UTC)
    with psycopg.connect(url) as conn:
        others = [
            code
            for (code,) in conn.execute("SELECT code FROM region WHERE code <> %s ORDER BY code", (REGION,)).fetchall()
        ]
        if plan.other_clients and plan.other_workers < len(others):
            raise SystemExit(f"--other-workers must be at least {len(others)} (one per other region)")
        workers: list[tuple[uuid.UUID, str, str, str]] = [
            (uuid.uuid4(), f"W{i}", REGION, ROLES[i % 3]) for i in range(plan.workers)
        ]
        by_region: dict[str, list[uuid.UUID]] = {code: [] for code in others}
        for i in range(plan.other_workers):
            wid, code = uuid.uuid4(), others[i % len(others)]
            by_region[code].append(wid)
            workers.append((wid, f"O{i}", code, ROLES[i % 3]))
        with conn.cursor() as cur:
            with cur.copy(
                "COPY worker (id, name, region, role, service, active, version, created_at, updated_at) FROM STDIN"
            ) as copy:
                for wid, name, code, role in workers:
                    copy.write_row((wid, name, code, role, "aftercare", True, 1, now, now))
            periods: list[tuple[uuid.UUID, str, str]] = []
            assignments: list[tuple[uuid.UUID, str, str, uuid.UUID]] = []
            with cur.copy(
                "COPY client (id, personal_id, first_name, last_name, birth_date, support_level,"
                " address_protection, aftercare_start, aftercare_end, version, created_at, updated_at) FROM STDIN"
            ) as copy:
                for n in range(plan.clients + plan.other_clients):
                    cid = uuid.uuid4()
                    copy.write_row(
                        (cid, f"gen-{n}", "G", "G", dt.date(2005, 1, 1), LEVELS[n % 3], False, start, end, 1, now, now)
                    )
                    if n < plan.clients:
                        periods += [(cid, "organising", ORGANISING_REGION), (cid, "residence", REGION)]
                        assignments.append((cid, "residence", REGION, workers[n % plan.workers][0]))
                    else:
                        k = n - plan.clients
                        code = others[k % len(others)]
                        named = by_region[code][(k // len(others)) % len(by_region[code])]
                        periods += [(cid, "organising", code), (cid, "residence", code)]
                        assignments += [(cid, "organising", code, named), (cid, "residence", code, named)]
            with cur.copy(
                "COPY responsibility_period (id, client_id, responsibility, region, valid_from, recorded_at) FROM STDIN"
            ) as copy:
                for cid, responsibility, code in periods:
                    copy.write_row((uuid.uuid4(), cid, responsibility, code, start, now))
            with cur.copy(
                "COPY assignment (id, client_id, responsibility, region, worker_id, valid_from, recorded_at) FROM STDIN"
            ) as copy:
                for cid, responsibility, code, wid in assignments:
                    copy.write_row((uuid.uuid4(), cid, responsibility, code, wid, start, now))
        conn.commit()
    with psycopg.connect(url, autocommit=True) as conn:
        # the steady state of a live database: statistics and visibility map as autovacuum leaves them
        conn.execute("VACUUM (ANALYZE)")
        counts: dict[str, int] = {}
        for table in ("worker", "client", "responsibility_period", "assignment", "region"):
            row = conn.execute(sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(table))).fetchone()
            counts[table] = int(row[0]) if row else 0
        size = conn.execute("SELECT pg_size_pretty(pg_database_size(current_database()))").fetchone()
    return {"rows": counts, "database_size": size[0] if size else None}


def silta_pool() -> tuple[int, int]:
    """Silta's connection pool (size, overflow) as its settings give it in this environment."""
    from app.config import Settings

    settings = Settings()
    return settings.db_pool_size, settings.db_max_overflow


def seed_baseline(base: str, count: int) -> list[str]:
    """Insert ``count`` rows through the baseline's own POST endpoint; return their ids."""
    body = {"name": "bench", "region": REGION, "birth_date": "2005-01-01", "score": 1, "payload": {"k": "v"}}
    ids = []
    with httpx.Client(base_url=base, timeout=10.0) as client:
        for _ in range(count):
            response = client.post("/inline/items", json=body)
            response.raise_for_status()
            ids.append(response.json()["id"])
    return ids


# --------------------------------------------------------------------------- measuring


@dataclass
class Target:
    """An endpoint resolved against this run's servers, tokens and ids."""

    endpoint: Endpoint
    url: str
    bearer_file: Path | None
    ids_file: Path | None
    server_pid: int


@dataclass
class Serial:
    """Unloaded latency: sequential requests after the warm-up, one connection."""

    requests: int
    median_ms: float
    max_ms: float
    bytes: int
    check: str


def probe(target: Target, warmup: int, serial: int, first_id: str) -> Serial:
    """Warm an endpoint up, check its answer, and time ``serial`` sequential requests."""
    url = target.url.replace("{id}", first_id)
    headers = {}
    if target.bearer_file:
        headers["Authorization"] = "Bearer " + target.bearer_file.read_text().strip()
    times: list[float] = []
    with httpx.Client(timeout=60.0, headers=headers) as client:
        response = client.get(url)
        for i in range(warmup + serial):
            t0 = time.perf_counter()
            response = client.get(url)
            if i >= warmup:
                times.append((time.perf_counter() - t0) * 1000)
            if response.status_code != 200:
                raise RuntimeError(f"{url}: HTTP {response.status_code}: {response.text[:500]}")
    return Serial(len(times), statistics.median(times), max(times), len(response.content), describe(target, response))


def describe(target: Target, response: httpx.Response) -> str:
    """What the answer holds, to show the reports really covered the generated data."""
    key = target.endpoint.key
    if key == "silta.caseload":
        body = response.json()
        roles = {r["role"]: r.get("workers") for r in body.get("roles", [])}
        clients = sum(w.get("clients", 0) for w in body.get("workers", []))
        return f"{len(body.get('workers', []))} workers listed, {clients} clients counted, roles {roles}"
    if key == "silta.overview":
        regions: list[dict[str, Any]] = response.json().get("regions", [])
        clients = sum(r.get("clients", 0) for r in regions)
        workers = sum(sum((r.get("workers_by_role") or {}).values()) for r in regions)
        return f"{len(regions)} regions, {clients} clients (by organising region), {workers} workers"
    if key == "silta.export":
        return f"{max(len(response.text.splitlines()) - 1, 0)} worker rows"
    return "ok"


@dataclass
class Measured:
    """load.py's median over the runs at one concurrency (or why there is none)."""

    key: str
    concurrency: int
    median: dict[str, Any] | None = None
    runs: list[dict[str, Any]] = field(default_factory=list)
    error: str | None = None
    attempts: int = 1

    @property
    def disturbed_runs(self) -> int:
        return sum((run.get("foreign_cpu_pct") or 0) > DISTURBED_PCT for run in self.runs)


def measure(target: Target, args: argparse.Namespace, concurrency: int, db_pid: int | None, jsonl: Path) -> Measured:
    """One bounded load.py invocation: ``--warmup`` s unrecorded, then ``--runs`` x ``--duration`` s."""
    label = f"{target.endpoint.key} c={concurrency}"
    cmd = [
        PYTHON,
        str(args.bench_dir / "load.py"),
        "--url",
        target.url,
        "-c",
        str(concurrency),
        "-d",
        str(args.duration),
        "--warmup",
        str(args.warmup),
        "--runs",
        str(args.runs),
        "--timeout",
        str(args.request_timeout),
        "--server-pid",
        str(target.server_pid),
        "--label",
        label,
        "--json-out",
        str(jsonl),
    ]
    if db_pid:
        cmd += ["--db-pid", str(db_pid)]
    if args.wrk_cpu is not None:
        cmd += ["--wrk-cpu", args.wrk_cpu]
    if target.bearer_file:
        cmd += ["--bearer-file", str(target.bearer_file)]
    if target.ids_file:
        cmd += ["--ids-file", str(target.ids_file)]
    before = jsonl.read_text().count("\n") if jsonl.exists() else 0
    bound = args.warmup + args.runs * (args.duration + 30) + 60
    # its own session, so that wrk (load.py's child) ends with it if this run is interrupted
    proc = subprocess.Popen(  # noqa: S603 - fixed argv, no shell
        cmd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"},
        start_new_session=True,
    )
    try:
        stdout, stderr = proc.communicate(timeout=bound)
    except BaseException:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=STOP_TIMEOUT_S)
        raise
    sys.stdout.write(stdout)
    lines = jsonl.read_text().splitlines() if jsonl.exists() else []
    if proc.returncode != 0 or len(lines) <= before:
        error = (stderr or stdout).strip().splitlines()[-1:] or [f"load.py exited {proc.returncode}"]
        print(f"  {label}: FAILED: {error[0]}", flush=True)
        return Measured(target.endpoint.key, concurrency, error=error[0])
    record = json.loads(lines[-1])
    return Measured(target.endpoint.key, concurrency, median=record["median"], runs=record["runs"])


def measure_undisturbed(
    target: Target, args: argparse.Namespace, concurrency: int, db_pid: int | None, jsonl: Path
) -> Measured:
    """``measure``, again (at most ``--retries`` times) while most of its runs were DISTURBED.

    The machine is shared: a burst of another workload can spoil one measurement. The attempt
    with the fewest disturbed runs is kept, and the report says how many attempts were made.
    """
    best = measure(target, args, concurrency, db_pid, jsonl)
    for attempt in range(2, args.retries + 2):
        if best.median is None or best.disturbed_runs * 2 <= len(best.runs):
            break
        if args.retry_spent >= args.retry_budget:
            print(f"  {target.endpoint.key} c={concurrency}: DISTURBED, retry budget spent", flush=True)
            break
        t0 = time.monotonic()
        print(f"  {target.endpoint.key} c={concurrency}: most runs DISTURBED, waiting for quiet, again", flush=True)
        wait_for_quiet(RETRY_WAIT_QUIET_S)
        again = measure(target, args, concurrency, db_pid, jsonl)
        if again.median is not None and again.disturbed_runs < best.disturbed_runs:
            best = again
        best.attempts = attempt
        args.retry_spent += time.monotonic() - t0
    return best


def wait_for_quiet(max_seconds: float) -> float:
    """Wait (at most ``max_seconds``) until the machine is quiet; return how busy it was last (%)."""
    busy = machine_busy_pct()
    deadline = time.monotonic() + max_seconds
    while busy > QUIET_PCT and time.monotonic() < deadline:
        print(f"  machine {busy:.0f} % busy with another workload; waiting", flush=True)
        time.sleep(min(10.0, max(deadline - time.monotonic(), 0)))
        busy = machine_busy_pct()
    return busy


# --------------------------------------------------------------------------- reporting


def machine_info(admin_url: str) -> dict[str, Any]:
    """What the numbers were taken on: they compare only within one run on one machine."""
    model = next(
        (
            line.split(":", 1)[1].strip()
            for line in _read("/proc/cpuinfo").splitlines()
            if line.startswith("model name")
        ),
        platform.processor(),
    )
    mem_kb = next(
        (int(line.split()[1]) for line in _read("/proc/meminfo").splitlines() if line.startswith("MemTotal")), 0
    )
    with psycopg.connect(admin_url) as conn:
        row = conn.execute("SHOW server_version").fetchone()
    versions = {}
    for package in ("fastapi", "sqlalchemy", "sqlmodel", "uvicorn", "asyncpg", "psycopg", "pydantic", "python-jose"):
        with contextlib.suppress(Exception):
            from importlib.metadata import version

            versions[package] = version(package)
    wrk = shutil.which("wrk")
    wrk_version = ""
    if wrk:
        out = subprocess.run([wrk, "--version"], capture_output=True, text=True, check=False)  # noqa: S603
        first = (out.stdout or out.stderr or " ").splitlines()[0]
        wrk_version = first.split(" [", 1)[0].strip()  # "wrk debian/4.1.0-3+b2"
    return {
        "host": platform.node(),
        "cpu": model,
        "cpus": os.cpu_count(),
        "memory_gib": round(mem_kb / 1024 / 1024, 1),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "postgresql": row[0] if row else None,
        "wrk": wrk_version,
        "packages": versions,
        "load_average_at_start": list(os.getloadavg()),
        "git": _git_state(),
    }


def machine_busy_pct(seconds: float = 3.0) -> float:
    """Share of all CPUs busy (user+nice+system) over ``seconds``, sampled while the servers are idle."""

    def busy_and_total() -> tuple[int, int]:
        fields = [int(x) for x in _read("/proc/stat").split("\n", 1)[0].split()[1:]]
        return fields[0] + fields[1] + fields[2], sum(fields[:8])

    b0, t0 = busy_and_total()
    time.sleep(seconds)
    b1, t1 = busy_and_total()
    return 100.0 * (b1 - b0) / max(t1 - t0, 1)


def _read(path: str) -> str:
    try:
        return Path(path).read_text()
    except OSError:
        return ""


def _git_state() -> str:
    git = shutil.which("git")
    if not git:
        return "unknown"
    head = subprocess.run([git, "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True, check=False)  # noqa: S603
    dirty = subprocess.run([git, "status", "--porcelain"], cwd=REPO, capture_output=True, text=True, check=False)  # noqa: S603
    changed = len([line for line in dirty.stdout.splitlines() if not line[3:].startswith("benchmarks/")])
    return head.stdout.strip() + (f" + {changed} uncommitted file(s) outside benchmarks/" if changed else "")


def comparisons(results: list[Measured]) -> list[dict[str, Any]]:
    """Each Silta endpoint against its matching baseline endpoint at the same concurrency."""
    found = {(m.key, m.concurrency): m for m in results}
    rows = []
    for endpoint in ENDPOINTS:
        if not endpoint.matches:
            continue
        for (key, c), mine in found.items():
            if key != endpoint.key:
                continue
            base = found.get((endpoint.matches, c))
            if not (mine.median and base and base.median and base.median["rps"]):
                continue
            answered = mine.median["requests"] > 0  # none: every request outlasted the run
            rows.append(
                {
                    "endpoint": endpoint.key,
                    "baseline": endpoint.matches,
                    "concurrency": c,
                    "rps": mine.median["rps"],
                    "baseline_rps": base.median["rps"],
                    "fraction_of_baseline_rps": mine.median["rps"] / base.median["rps"],
                    "p50_times_baseline": mine.median["p50_ms"] / base.median["p50_ms"]
                    if answered and base.median["p50_ms"]
                    else None,
                    "no_responses": not answered,
                    # either side measured with most of its runs disturbed by another workload
                    "disturbed": any(m.disturbed_runs * 2 > len(m.runs) for m in (mine, base)),
                }
            )
    return rows


def _num(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{value:,.{digits}f}"


def markdown(report: dict[str, Any]) -> str:
    """The human-readable results file."""
    paths = {e.key: e.path for e in ENDPOINTS}
    m, s, d = report["machine"], report["settings"], report["dataset"]
    out = [
        f"# Caseload benchmark, {report['started']}",
        "",
        f"Command: `{report['command']}`  ",
        f"Runtime: {report['runtime_s']:.0f} s. Code: {m['git']}.",
        "",
        "## Summary",
        "",
        "Each Silta endpoint's req/s as a fraction of its matching baseline endpoint at the same concurrency "
        "(in this run), with its latency under load and unloaded (serial requests).",
        "",
    ]
    levels = s["concurrency"]
    out.append(
        "| endpoint | unloaded p50 ms | "
        + " | ".join(f"c={c} req/s | c={c} p50 / p99 ms | c={c} fraction of baseline" for c in levels)
        + " |"
    )
    out.append("|---|---:|" + "---:|---:|---|" * len(levels))
    fractions = {(r["endpoint"], r["concurrency"]): r for r in report["comparisons"]}
    medians = {(r["key"], r["concurrency"]): r["median"] for r in report["results"]}
    for endpoint in ENDPOINTS:
        if endpoint.server != "silta":
            continue
        cells = [f"`{endpoint.path}`", _num(report["serial"][endpoint.key]["median_ms"], 1)]
        for c in levels:
            med, versus = medians.get((endpoint.key, c)), fractions.get((endpoint.key, c))
            if med and med["requests"] == 0:
                cells += ["0 (no response within a run)", "-", "-"]
                continue
            cells.append(_num(med["rps"]) if med else "FAILED")
            cells.append(f"{_num(med['p50_ms'])} / {_num(med['p99_ms'])}" if med else "-")
            cells.append(
                f"{versus['fraction_of_baseline_rps']:.3f} of `{paths[versus['baseline']]}` "
                f"({versus['baseline_rps']:,.0f} req/s)" + (" DISTURBED" if versus["disturbed"] else "")
                if versus
                else "-"
            )
        out.append("| " + " | ".join(cells) + " |")
    out += [
        "",
        "## Machine",
        "",
        f"- {m['cpus']} x {m['cpu']}, {m['memory_gib']} GiB, Linux {m['kernel']}, Python {m['python']}, "
        f"PostgreSQL {m['postgresql']}, {m['wrk']}",
        f"- load average at start: {', '.join(f'{x:.2f}' for x in m['load_average_at_start'])}; "
        f"machine busy while the servers idled, before the serial requests: {m['busy_before_serial_pct']:.0f} %, "
        f"before the load: {m['busy_before_load_pct']:.0f} % of all CPUs",
        "- packages: " + ", ".join(f"{k} {v}" for k, v in m["packages"].items()),
        f"- servers: one uvicorn worker each, no access log; server CPU {s['server_cpu'] or 'unpinned'}, "
        f"wrk CPU {s['wrk_cpu'] or 'unpinned'}, PostgreSQL unpinned; connection pools (size + overflow): "
        + ", ".join(f"{k} {v['size']} + {v['overflow']}" for k, v in s["pools"].items()),
        "",
        "## Dataset",
        "",
        f"- region {REGION}: {d['plan']['workers']:,} workers, {d['plan']['clients']:,} clients "
        f"(organised by {ORGANISING_REGION}, each named by one worker of {REGION})",
        f"- other regions: {d['plan']['other_workers']:,} workers, {d['plan']['other_clients']:,} clients",
        "- rows: " + ", ".join(f"{k} {v:,}" for k, v in d["rows"].items()) + f"; database size {d['database_size']}",
        f"- generated in {d['seconds']:.1f} s (COPY, then VACUUM ANALYZE); baseline table: {d['baseline_rows']} rows",
        "",
        f"## Unloaded latency ({s['serial']} sequential requests after {s['serial_warmup']} warm-up)",
        "",
        "| endpoint | path | median ms | max ms | bytes | answer |",
        "|---|---|---:|---:|---:|---|",
    ]
    for key, one in report["serial"].items():
        out.append(
            f"| {key} | `{paths[key]}` | {_num(one['median_ms'], 2)} | {_num(one['max_ms'], 2)} | "
            f"{one['bytes']:,} | {one['check']} |"
        )
    out += [
        "",
        f"## Under load (wrk via shared/bench/load.py: {s['warmup']} s warm-up, median of {s['runs']} x "
        f"{s['duration']} s)",
        "",
        "`vs baseline` is Silta's req/s as a fraction of the matching baseline endpoint's at the same concurrency, "
        "measured in this run. `cpu/req` is CPU ms per request of the server process and of PostgreSQL. Runs where "
        f"other processes used more than {DISTURBED_PCT:.0f} % of the machine are marked DISTURBED; an endpoint "
        "with most runs disturbed is measured again (`attempt N`: the least disturbed attempt is shown).",
    ]
    for c in levels:
        out += [
            "",
            f"### c={c}",
            "",
            "| endpoint | req/s | p50 ms | p90 ms | p99 ms | errors | cpu/req server | cpu/req db | vs baseline |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---|",
        ]
        for one in report["results"]:
            if one["concurrency"] != c:
                continue
            if one["median"] is None:
                out.append(f"| {one['key']} | FAILED: {one['error']} | | | | | | | |")
                continue
            med = one["median"]
            if med["requests"] == 0:
                out.append(f"| {one['key']} | 0: no response within a {s['duration']} s run | | | | | | | |")
                continue
            versus = fractions.get((one["key"], c))
            note = f"{versus['fraction_of_baseline_rps']:.3f} of {versus['baseline']}" if versus else ""
            disturbed = [r for r in one["runs"] if (r.get("foreign_cpu_pct") or 0) > DISTURBED_PCT]
            if disturbed:
                note += f" ({len(disturbed)}/{len(one['runs'])} runs DISTURBED)"
            if one.get("attempts", 1) > 1:
                note += f" (attempt {one['attempts']})"
            out.append(
                f"| {one['key']} | {_num(med['rps'])} | {_num(med['p50_ms'], 2)} | {_num(med['p90_ms'], 2)} | "
                f"{_num(med['p99_ms'], 2)} | {med['errors']} | {_num(med['server_cpu_ms_per_req'], 2)} | "
                f"{_num(med['db_cpu_ms_per_req'], 2)} | {note} |"
            )
    out += [
        "",
        "## Endpoints",
        "",
        "| key | path | what | compared with |",
        "|---|---|---|---|",
    ]
    out += [f"| {e.key} | `{e.path}` | {e.what} | {e.matches or ''} |" for e in ENDPOINTS]
    return "\n".join(out) + "\n"


# --------------------------------------------------------------------------- the run


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--workers", type=int, default=1000, help=f"workers in region {REGION} (default 1000)")
    p.add_argument("--clients", type=int, default=20000, help=f"clients in region {REGION} (default 20000)")
    p.add_argument("--other-workers", type=int, default=0, help="workers spread over the other 21 regions")
    p.add_argument("--other-clients", type=int, default=0, help="clients spread over the other 21 regions")
    p.add_argument(
        "--national-10x",
        action="store_true",
        help=f"ten times national scale: --other-workers {NATIONAL_10X_OTHER_WORKERS} "
        f"--other-clients {NATIONAL_10X_OTHER_CLIENTS} (150,000 clients, 3,000 workers with the defaults)",
    )
    p.add_argument("-c", "--concurrency", type=int, nargs="+", default=[4, 16], help="levels (default 4 16)")
    p.add_argument("-d", "--duration", type=int, default=4, help="seconds per measured run (default 4)")
    p.add_argument("--runs", type=int, default=3, help="measured runs per endpoint and level; the median is kept")
    p.add_argument("--warmup", type=int, default=1, help="unrecorded load seconds before each measurement")
    p.add_argument("--request-timeout", type=int, default=10, help="wrk per-request timeout, seconds")
    p.add_argument("--serial", type=int, default=10, help="sequential timed requests per endpoint (unloaded)")
    p.add_argument(
        "--admin-url",
        default="postgresql://postgres@127.0.0.1:5432/postgres",
        help="loopback PostgreSQL maintenance database used to create and drop the bench databases",
    )
    p.add_argument("--db-name", default="silta_bench", help="Silta's database (dropped and recreated)")
    p.add_argument("--baseline-db-name", default="silta_bench_baseline", help="the baseline's database (likewise)")
    p.add_argument("--keep-db", action="store_true", help="leave both databases in place afterwards")
    p.add_argument("--bench-dir", type=Path, default=DEFAULT_BENCH_DIR, help="the shared bench folder")
    p.add_argument("--out-dir", type=Path, default=RESULTS_DIR, help="where the results files go")
    p.add_argument("--no-pin", action="store_true", help="do not pin the servers to CPU 0 and wrk to CPU 1")
    p.add_argument(
        "--wait-quiet",
        type=int,
        default=45,
        help="before the serial requests and again before the load, wait up to this many seconds for the machine "
        "to be quiet (default 45; 0: no wait)",
    )
    p.add_argument(
        "--retries",
        type=int,
        default=2,
        help=f"measure an endpoint again when most of its runs were DISTURBED, at most this often (0-{MAX_RETRIES})",
    )
    p.add_argument(
        "--retry-budget",
        type=int,
        default=90,
        help="seconds that repeated measurements may take in all (default 90, at most 600)",
    )
    p.add_argument(
        "--baseline-pool",
        choices=["silta", "default"],
        default="silta",
        help="the baseline's SQLAlchemy pool: the same size as Silta's (default; no connection churn) "
        "or SQLAlchemy's own 5 + 10, as in shared/bench/README.md's figures",
    )
    args = p.parse_args(argv)
    if args.national_10x:
        args.other_workers = args.other_workers or NATIONAL_10X_OTHER_WORKERS
        args.other_clients = args.other_clients or NATIONAL_10X_OTHER_CLIENTS
    problems = []
    if not (1 <= args.duration <= MAX_DURATION_S and 1 <= args.runs <= MAX_RUNS and 0 <= args.warmup <= MAX_WARMUP_S):
        problems.append(f"duration 1-{MAX_DURATION_S} s, runs 1-{MAX_RUNS}, warmup 0-{MAX_WARMUP_S} s")
    if not (1 <= len(args.concurrency) <= MAX_LEVELS and all(1 <= c <= MAX_CONCURRENCY for c in args.concurrency)):
        problems.append(f"1-{MAX_LEVELS} concurrency levels, each 1-{MAX_CONCURRENCY}")
    if not (1 <= args.serial <= MAX_SERIAL and 1 <= args.request_timeout <= 60):
        problems.append(f"serial 1-{MAX_SERIAL}, request timeout 1-60 s")
    if not (0 <= args.retries <= MAX_RETRIES and 0 <= args.retry_budget <= MAX_WAIT_QUIET_S):
        problems.append(f"--retries 0-{MAX_RETRIES}, --retry-budget 0-{MAX_WAIT_QUIET_S} s")
    if not 0 <= args.wait_quiet <= MAX_WAIT_QUIET_S:
        problems.append(f"--wait-quiet 0-{MAX_WAIT_QUIET_S} s")
    if not (args.workers >= 1 and args.clients >= 1 and args.other_workers >= 0 and args.other_clients >= 0):
        problems.append("at least one worker and one client in the region; no negative counts")
    if args.clients + args.other_clients > MAX_CLIENTS or args.workers + args.other_workers > MAX_WORKERS:
        problems.append(f"at most {MAX_CLIENTS:,} clients and {MAX_WORKERS:,} workers in all")
    if "bench" not in args.db_name or "bench" not in args.baseline_db_name or args.db_name == args.baseline_db_name:
        problems.append("the two database names must differ and contain 'bench' (they are dropped)")
    if problems:
        p.error("; ".join(problems))
    ensure_loopback(args.admin_url)
    args.bench_dir = args.bench_dir.resolve()
    args.retry_spent = 0.0
    pin = not args.no_pin and (os.cpu_count() or 1) >= 2 and shutil.which("taskset") is not None
    args.server_cpu, args.wrk_cpu = ("0", "1") if pin else (None, None)
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    for needed in (args.bench_dir / "baseline_app.py", args.bench_dir / "load.py", args.bench_dir / "wrk_report.lua"):
        if not needed.exists():
            raise SystemExit(f"missing {needed} (see --bench-dir)")
    if not shutil.which("wrk"):
        raise SystemExit("wrk not found: apt-get install -y wrk")
    estimate = len(ENDPOINTS) * len(args.concurrency) * (args.warmup + args.runs * args.duration + 0.7)
    print(
        f"measuring {len(ENDPOINTS)} endpoints x c={args.concurrency}: about {estimate / 60:.1f} min of load",
        flush=True,
    )

    signal.signal(signal.SIGTERM, _terminate_on_signal)
    started = dt.datetime.now(dt.UTC)
    t0 = time.monotonic()
    procs = Processes()
    work = Path(tempfile.mkdtemp(prefix="silta-bench-"))
    created: list[str] = []
    ok = False
    try:
        report = run(args, procs, work, created, started)
        report["runtime_s"] = time.monotonic() - t0
        args.out_dir.mkdir(parents=True, exist_ok=True)
        stem = args.out_dir / f"caseload-{started.strftime('%Y%m%dT%H%M%SZ')}"
        stem.with_suffix(".json").write_text(json.dumps(report, indent=2) + "\n")
        stem.with_suffix(".md").write_text(markdown(report))
        print(f"\nwrote {stem.with_suffix('.md')} and {stem.with_suffix('.json')}", flush=True)
        print(markdown(report).split("## Machine", 1)[0], flush=True)
        ok = all(m["median"] is not None for m in report["results"])
    finally:
        print("stopping servers", flush=True)
        procs.stop_all()
        if not args.keep_db:
            for name in created:
                with contextlib.suppress(psycopg.Error):
                    drop_database(args.admin_url, name)
        if ok:
            shutil.rmtree(work, ignore_errors=True)
        else:
            print(f"server logs kept in {work}", flush=True)
    return 0 if ok else 1


def run(
    args: argparse.Namespace, procs: Processes, work: Path, created: list[str], started: dt.datetime
) -> dict[str, Any]:
    """Set up, start, probe and measure; return the report (``main`` writes it and cleans up)."""
    machine = machine_info(args.admin_url)
    silta_url = database_url(args.admin_url, args.db_name)
    baseline_db = database_url(args.admin_url, args.baseline_db_name, scheme="postgresql+psycopg")
    plan = DataPlan(args.workers, args.clients, args.other_workers, args.other_clients)

    print(f"recreating {args.db_name} and {args.baseline_db_name}", flush=True)
    for name in (args.db_name, args.baseline_db_name):
        recreate_database(args.admin_url, name)
        created.append(name)

    data_dir = work / "silta-data"
    data_dir.mkdir()
    silta_env = {
        **os.environ,
        "SILTA_DATABASE_URL": silta_url,
        "SILTA_DATA_DIR": str(data_dir),
        "SILTA_ENV": "development",
        "PYTHONDONTWRITEBYTECODE": "1",
    }
    print("migrating Silta's database", flush=True)
    run_checked([PYTHON, "-m", "app.cli", "migrate"], cwd=REPO, env=silta_env)
    print(f"generating {plan}", flush=True)
    g0 = time.monotonic()
    dataset: dict[str, Any] = {"plan": asdict(plan), **generate(silta_url, plan)}
    dataset["seconds"] = time.monotonic() - g0
    print(f"  {dataset['rows']} ({dataset['database_size']}) in {dataset['seconds']:.1f} s", flush=True)

    tokens = work / "tokens"
    tokens.mkdir()
    bearer: dict[str, Path] = {}
    for name, flags in (("coordinator", ["--role", "coordinator", "--region", REGION]), ("admin", ["--role", "admin"])):
        token = run_checked([PYTHON, "-m", "app.cli", "token", *flags, "--hours", "2"], cwd=REPO, env=silta_env)
        bearer[name] = tokens / f"{name}.txt"
        bearer[name].write_text(token.strip() + "\n")

    baseline_dir = work / "baseline"
    baseline_dir.mkdir()
    shutil.copy2(args.bench_dir / "baseline_app.py", baseline_dir / "baseline_app.py")
    baseline_env = {
        **os.environ,
        "DATABASE_URL": baseline_db,
        "PERF_KEY_DIR": str(baseline_dir / "keys"),
        "PYTHONDONTWRITEBYTECODE": "1",
    }
    pools = {"silta": silta_pool()}
    if args.baseline_pool == "silta":
        # With 5 + 10 the baseline's async pool closes and reopens connections under load: the
        # backends' CPU is then lost to load.py's accounting and the runs read as DISTURBED.
        baseline_env |= {"POOL_SIZE": str(pools["silta"][0]), "MAX_OVERFLOW": str(pools["silta"][1])}
        pools["baseline"] = pools["silta"]
    else:
        pools["baseline"] = (5, 10)
    run_checked([PYTHON, "baseline_app.py", "init"], cwd=baseline_dir, env=baseline_env)
    bearer["baseline-es256"] = baseline_dir / "keys" / "token_es256.txt"

    pin = ["taskset", "-c", args.server_cpu] if args.server_cpu else []
    uvicorn = [PYTHON, "-m", "uvicorn", "--host", "127.0.0.1", "--workers", "1", "--no-access-log"]
    ports = {"baseline": free_port(), "silta": free_port()}
    pids = {
        "baseline": procs.start(
            "baseline",
            [*pin, *uvicorn, "--port", str(ports["baseline"]), "baseline_app:app"],
            cwd=baseline_dir,
            env=baseline_env,
            log=work / "baseline.log",
        ),
        "silta": procs.start(
            "silta",
            [*pin, *uvicorn, "--port", str(ports["silta"]), "app.main:app"],
            cwd=REPO,
            env=silta_env,
            log=work / "silta.log",
        ),
    }
    bases = {server: f"http://127.0.0.1:{port}" for server, port in ports.items()}
    wait_ready(procs, pids["baseline"], bases["baseline"] + "/ping", work / "baseline.log")
    wait_ready(procs, pids["silta"], bases["silta"] + "/healthz", work / "silta.log")
    print(f"baseline on {bases['baseline']} (pid {pids['baseline']}), Silta on {bases['silta']} (pid {pids['silta']})")

    ids = seed_baseline(bases["baseline"], 500)
    ids_file = work / "ids.txt"
    ids_file.write_text("\n".join(ids) + "\n")
    dataset["baseline_rows"] = len(ids)

    targets = [
        Target(
            endpoint,
            bases[endpoint.server] + endpoint.path,
            bearer[endpoint.token] if endpoint.token else None,
            ids_file if "{id}" in endpoint.path else None,
            pids[endpoint.server],
        )
        for endpoint in ENDPOINTS
    ]
    for target in targets:
        ensure_loopback(target.url)

    serial_busy = wait_for_quiet(args.wait_quiet)
    print(f"warming up and timing serial requests (machine {serial_busy:.0f} % busy)", flush=True)
    serial: dict[str, dict[str, Any]] = {}
    for target in targets:
        one = probe(target, warmup=3, serial=args.serial, first_id=ids[0])
        serial[target.endpoint.key] = asdict(one)
        print(f"  {target.endpoint.key:<20} median {one.median_ms:8.2f} ms  max {one.max_ms:8.2f} ms  {one.check}")

    idle_busy = wait_for_quiet(args.wait_quiet)
    print(f"machine busy while the servers idle: {idle_busy:.0f} % of all CPUs", flush=True)
    if idle_busy > DISTURBED_PCT:
        print("  another workload is running: expect DISTURBED runs; compare only within this run", flush=True)
    db_pid = postmaster_pid(args.admin_url)
    jsonl = work / "load.jsonl"
    results: list[Measured] = []
    for concurrency in args.concurrency:
        print(f"load at c={concurrency}", flush=True)
        for target in targets:
            for server, pid in pids.items():
                if not procs.alive(pid):
                    raise RuntimeError(f"{server} server died:\n{tail(work / f'{server}.log')}")
            results.append(measure_undisturbed(target, args, concurrency, db_pid, jsonl))

    return {
        "benchmark": "caseload",
        "started": started.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "command": shlex.join([os.path.relpath(PYTHON, REPO), "benchmarks/caseload.py", *sys.argv[1:]]),
        "machine": {**machine, "busy_before_serial_pct": serial_busy, "busy_before_load_pct": idle_busy},
        "settings": {
            "concurrency": args.concurrency,
            "duration": args.duration,
            "runs": args.runs,
            "warmup": args.warmup,
            "serial": args.serial,
            "serial_warmup": 3,
            "request_timeout": args.request_timeout,
            "wait_quiet": args.wait_quiet,
            "retries": args.retries,
            "retry_budget": args.retry_budget,
            "retry_seconds_spent": round(args.retry_spent, 1),
            "server_cpu": args.server_cpu,
            "wrk_cpu": args.wrk_cpu,
            "databases": [args.db_name, args.baseline_db_name],
            "pools": {server: {"size": size, "overflow": overflow} for server, (size, overflow) in pools.items()},
        },
        "dataset": dataset,
        "endpoints": [asdict(e) for e in ENDPOINTS],
        "serial": serial,
        "results": [asdict(m) for m in results],
        "comparisons": comparisons(results),
    }


if __name__ == "__main__":
    sys.exit(main())

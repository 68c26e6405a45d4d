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
import contextlib
import datetime as dt
import hashlib
import ipaddress
import json
import os
import platform
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from importlib.metadata import version
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
SILTA = str(Path(sys.executable).parent / "silta") if (Path(sys.executable).parent / "silta").exists() else "silta"

REGION = "05"  # the caller's region: coordinator of 05, clients organised by 05
MUNICIPALITY = "853"  # Turku, region 05: the clients also live in 05
CHECK = "0123456789ABCDEFHJKLMNPRSTUVWXY"  # identity-code check characters (as tests/conftest.py)
LOG_TABLES = ("change_event", "access_log", "disclosure_log", "audit_chain")

# bounds: every load loop and every wait in this script is finite
MAX_DURATION_S, MAX_RUNS, MAX_WARMUP_S, MAX_CONCURRENCY, MAX_LEVELS = 30, 5, 10, 64, 4
MAX_CLIENTS = 800  # distinct identity codes this generator can make (individual numbers 100-899)
READY_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 10.0
SEAL_WAIT_S = 60.0  # longest wait for the sealer to catch up after a measurement
DISTURBED_PCT = 5.0  # load.py's own threshold for "other processes used the machine"


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


def run_checked(cmd: Sequence[str], *, cwd: Path, env: dict[str, str], timeout: float = 180) -> str:
    """Run a short command to completion; raise with its output when it fails."""
    done = subprocess.run(  # noqa: S603 - fixed argv, no shell
        list(cmd), cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, check=False
    )
    if done.returncode != 0:
        raise RuntimeError(f"{shlex.join(cmd)} failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
    return done.stdout


# --------------------------------------------------------------------------- database and data


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


def hetu(birth: dt.date, individual: int) -> str:
    """A valid Finnish identity code (century sign A for 2000-2099), as tests/conftest.py builds them."""
    digits = f"{birth:%d%m}{birth.year % 100:02d}"
    return f"{digits}A{individual:03d}{CHECK[int(f'{digits}{individual:03d}') % 31]}"


def seed_clients(base: str, token: str, count: int) -> list[str]:
    """Register ``count`` clients of region 05 through the API (distinct codes, born 2004-2006)."""
    start = (dt.date.today() - dt.timedelta(days=120)).isoformat()
    ids = []
    with httpx.Client(base_url=base, timeout=30.0, headers={"Authorization": f"Bearer {token}"}) as client:
        for n in range(count):
            birth = dt.date(2004, 1, 1) + dt.timedelta(days=(n * 7) % 1090)
            body = {
                "personal_id": hetu(birth, 100 + n),
                "first_name": f"Bench{n}",
                "last_name": "Client",
                "organising_region": REGION,
                "residence_municipality": MUNICIPALITY,
                "aftercare_start": start,
                "support_level": ("standard", "enhanced", "special")[n % 3],
            }
            response = client.post("/v1/clients", json=body)
            if response.status_code != 201:
                raise RuntimeError(f"POST /v1/clients: HTTP {response.status_code}: {response.text[:500]}")
            ids.append(response.json()["id"])
    return ids


def seed_baseline(base: str, body: dict[str, Any], count: int) -> list[str]:
    """Insert ``count`` rows through the baseline's async POST endpoint; return their ids."""
    ids = []
    with httpx.Client(base_url=base, timeout=30.0) as client:
        for _ in range(count):
            response = client.post("/async/items", json=body)
            response.raise_for_status()
            ids.append(response.json()["id"])
    return ids


# --------------------------------------------------------------------------- measuring


@dataclass
class Target:
    """An endpoint resolved against this run's servers, tokens, bodies and ids."""

    endpoint: Endpoint
    url: str
    bearer_file: Path | None
    body_file: Path | None
    ids_file: Path | None
    server_pid: int


@dataclass
class Measured:
    """load.py's median over the runs at one concurrency (or why there is none), and the log rows written."""

    key: str
    concurrency: int
    median: dict[str, Any] | None = None
    runs: list[dict[str, Any]] = field(default_factory=list)
    error: str | None = None
    log_rows_added: dict[str, int] = field(default_factory=dict)  # during the measured runs only
    seal_catch_up_s: float | None = None  # after the runs, until the chain held every entry
    unsealed_after_runs: int | None = None


def check_once(target: Target, first_id: str | None) -> str:
    """One request before the load: the endpoint answers as expected with this run's token."""
    url = target.url.replace("{id}", first_id or "")
    headers = {}
    if target.bearer_file:
        headers["Authorization"] = "Bearer " + target.bearer_file.read_text().strip()
    with httpx.Client(timeout=30.0, headers=headers) as client:
        if target.endpoint.method == "POST" and target.body_file:
            response = client.post(
                url, content=target.body_file.read_bytes(), headers={"Content-Type": "application/json"}
            )
        else:
            response = client.get(url)
    if response.status_code not in (200, 201):
        raise RuntimeError(f"{target.endpoint.method} {url}: HTTP {response.status_code}: {response.text[:500]}")
    return f"HTTP {response.status_code}, {len(response.content)} bytes"


def measure(
    target: Target,
    args: argparse.Namespace,
    concurrency: int,
    db_pid: int | None,
    jsonl: Path,
    *,
    duration: int | None = None,
    runs: int | None = None,
) -> Measured:
    """One bounded load.py invocation without its own warm-up: ``runs`` x ``duration`` s (default: the args')."""
    e = target.endpoint
    label = f"{e.key} c={concurrency}" + (" warm-up" if duration is not None else "")
    duration, runs = duration or args.duration, runs or args.runs
    cmd = [
        PYTHON,
        str(args.bench_dir / "load.py"),
        "--url",
        target.url,
        "--method",
        e.method,
        "-c",
        str(concurrency),
        "-d",
        str(duration),
        "--warmup",
        "0",
        "--runs",
        str(runs),
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
    if target.body_file:
        cmd += ["--body-file", str(target.body_file)]
    if target.ids_file:
        cmd += ["--ids-file", str(target.ids_file)]
    before = jsonl.read_text().count("\n") if jsonl.exists() else 0
    bound = runs * (duration + 30) + 60
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
        return Measured(e.key, concurrency, error=error[0])
    record = json.loads(lines[-1])
    return Measured(e.key, concurrency, median=record["median"], runs=record["runs"])


# --------------------------------------------------------------------------- reporting


def machine_info(admin_url: str) -> dict[str, Any]:
    """What the numbers were taken on: they compare only within one run on one machine."""
    cpuinfo = _read("/proc/cpuinfo").splitlines()
    model = next((ln.split(":", 1)[1].strip() for ln in cpuinfo if ln.startswith("model name")), platform.processor())
    meminfo = _read("/proc/meminfo").splitlines()
    mem_kb = next((int(ln.split()[1]) for ln in meminfo if ln.startswith("MemTotal")), 0)
    with psycopg.connect(admin_url) as conn:
        row = conn.execute("SHOW server_version").fetchone()
    versions = {}
    for package in ("fastapi", "sqlalchemy", "sqlmodel", "uvicorn", "asyncpg", "psycopg", "pydantic"):
        with contextlib.suppress(Exception):
            versions[package] = version(package)
    wrk_version = ""
    wrk = shutil.which("wrk")
    if wrk:
        out = subprocess.run([wrk, "--version"], capture_output=True, text=True, check=False)  # noqa: S603
        wrk_version = (out.stdout or out.stderr or " ").splitlines()[0].split(" [", 1)[0].strip()
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


def machine_busy_pct(seconds: float = 2.0) -> float:
    """Share of all CPUs busy (user+nice+system) over ``seconds``, sampled while the servers idle."""

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


def code_digest() -> str:
    """SHA-256 over app/ and migrations/ sources: shows whether the code changed while the run lasted."""
    digest = hashlib.sha256()
    for path in sorted([*REPO.glob("app/**/*.py"), *REPO.glob("migrations/**/*.py")]):
        digest.update(str(path.relative_to(REPO)).encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:16]


def _git_state() -> str:
    git = shutil.which("git")
    if not git:
        return "unknown"
    head = subprocess.run([git, "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True, check=False)  # noqa: S603
    dirty = subprocess.run([git, "status", "--porcelain"], cwd=REPO, capture_output=True, text=True, check=False)  # noqa: S603
    changed = len([line for line in dirty.stdout.splitlines() if not line[3:].startswith("benchmarks/")])
    return head.stdout.strip() + (f" + {changed} uncommitted file(s) outside benchmarks/" if changed else "")


def comparisons(results: list[Measured]) -> list[dict[str, Any]]:
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
    p.add_argument("-c", "--concurrency", type=int, nargs="+", default=[4, 16], help="levels (default 4 16)")
    p.add_argument("-d", "--duration", type=int, default=3, help="seconds per measured run (default 3)")
    p.add_argument("--runs", type=int, default=3, help="measured runs per endpoint and level; the median is kept")
    p.add_argument("--warmup", type=int, default=1, help="unrecorded load seconds before each measurement")
    p.add_argument("--request-timeout", type=int, default=10, help="wrk per-request timeout, seconds")
    p.add_argument("--clients", type=int, default=200, help="clients registered before the reads (default 200)")
    p.add_argument("--baseline-rows", type=int, default=200, help="rows in the baseline table (default 200)")
    p.add_argument(
        "--admin-url",
        default="postgresql://postgres@127.0.0.1:5432/postgres",
        help="loopback PostgreSQL maintenance database used to create and drop the bench databases",
    )
    p.add_argument("--db-name", default="silta_bench_audit", help="Silta's database (dropped and recreated)")
    p.add_argument("--baseline-db-name", default="silta_bench_audit_baseline", help="the baseline's (likewise)")
    p.add_argument("--keep-db", action="store_true", help="leave both databases in place afterwards")
    p.add_argument("--bench-dir", type=Path, default=DEFAULT_BENCH_DIR, help="the shared bench folder")
    p.add_argument("--out-dir", type=Path, default=RESULTS_DIR, help="where the results files go")
    p.add_argument("--no-pin", action="store_true", help="do not pin the servers to CPU 0 and wrk to CPU 1")
    args = p.parse_args(argv)
    problems = []
    if not (1 <= args.duration <= MAX_DURATION_S and 1 <= args.runs <= MAX_RUNS and 0 <= args.warmup <= MAX_WARMUP_S):
        problems.append(f"duration 1-{MAX_DURATION_S} s, runs 1-{MAX_RUNS}, warmup 0-{MAX_WARMUP_S} s")
    if not (1 <= len(args.concurrency) <= MAX_LEVELS and all(1 <= c <= MAX_CONCURRENCY for c in args.concurrency)):
        problems.append(f"1-{MAX_LEVELS} concurrency levels, each 1-{MAX_CONCURRENCY}")
    if not (1 <= args.clients <= MAX_CLIENTS and 1 <= args.baseline_rows <= 10_000):
        problems.append(f"clients 1-{MAX_CLIENTS}, baseline rows 1-10000")
    if not 1 <= args.request_timeout <= 60:
        problems.append("request timeout 1-60 s")
    if "bench" not in args.db_name or "bench" not in args.baseline_db_name or args.db_name == args.baseline_db_name:
        problems.append("the two database names must differ and contain 'bench' (they are dropped)")
    if problems:
        p.error("; ".join(problems))
    ensure_loopback(args.admin_url)
    args.bench_dir = args.bench_dir.resolve()
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
    print(f"measuring {len(ENDPOINTS)} endpoints x c={args.concurrency}: about {estimate / 60:.1f} min of load")

    signal.signal(signal.SIGTERM, _terminate_on_signal)
    started = dt.datetime.now(dt.UTC)
    t0 = time.monotonic()
    procs = Processes()
    work = Path(tempfile.mkdtemp(prefix="silta-audit-bench-"))
    created: list[str] = []
    ok = False
    try:
        report = run(args, procs, work, created, started)
        report["runtime_s"] = time.monotonic() - t0
        args.out_dir.mkdir(parents=True, exist_ok=True)
        stem = args.out_dir / f"audit-cost-{started.strftime('%Y%m%dT%H%M%SZ')}"
        stem.with_suffix(".json").write_text(json.dumps(report, indent=2) + "\n")
        stem.with_suffix(".md").write_text(markdown(report))
        print(f"\nwrote {stem.with_suffix('.md')} and {stem.with_suffix('.json')}\n", flush=True)
        print(markdown(report).split("## Machine", 1)[0], flush=True)
        ok = all(m["median"] is not None for m in report["results"]) and bool(report["chain"]["verify"].get("ok"))
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
    """Set up, start, seed, measure and verify; return the report (``main`` writes it and cleans up)."""
    machine = machine_info(args.admin_url)
    code_before = code_digest()
    silta_url = database_url(args.admin_url, args.db_name)
    baseline_db = database_url(args.admin_url, args.baseline_db_name, scheme="postgresql+psycopg")

    print(f"recreating {args.db_name} and {args.baseline_db_name}", flush=True)
    for name in (args.db_name, args.baseline_db_name):
        recreate_database(args.admin_url, name)
        created.append(name)

    data_dir = work / "silta-data"
    data_dir.mkdir()
    common = {
        **os.environ,
        "SILTA_DATABASE_URL": silta_url,
        "SILTA_DATA_DIR": str(data_dir),
        "SILTA_ENV": "development",
        "PYTHONDONTWRITEBYTECODE": "1",
    }
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
    run_checked([SILTA, "migrate"], cwd=REPO, env=envs["on"])
    token = run_checked(
        [SILTA, "token", "--role", "coordinator", "--region", REGION, "--hours", "2"], cwd=REPO, env=envs["on"]
    )
    token = token.strip()
    bearer = work / "coordinator-05.txt"
    bearer.write_text(token + "\n")

    baseline_dir = work / "baseline"
    baseline_dir.mkdir()
    shutil.copy2(args.bench_dir / "baseline_app.py", baseline_dir / "baseline_app.py")
    baseline_env = {
        **os.environ,
        "DATABASE_URL": baseline_db,
        "PERF_KEY_DIR": str(baseline_dir / "keys"),
        "PYTHONDONTWRITEBYTECODE": "1",
    }
    run_checked([PYTHON, "baseline_app.py", "init"], cwd=baseline_dir, env=baseline_env)

    pin = ["taskset", "-c", args.server_cpu] if args.server_cpu else []
    uvicorn = [PYTHON, "-m", "uvicorn", "--host", "127.0.0.1", "--workers", "1", "--no-access-log"]
    ports = {server: free_port() for server in ("baseline", "on", "off")}
    pids = {
        "baseline": procs.start(
            "baseline",
            [*pin, *uvicorn, "--port", str(ports["baseline"]), "baseline_app:app"],
            cwd=baseline_dir,
            env=baseline_env,
            log=work / "baseline.log",
        )
    }
    for server in ("on", "off"):
        pids[server] = procs.start(
            f"silta-{server}",
            [
                *pin,
                SILTA,
                "serve",
                "--host",
                "127.0.0.1",
                "--port",
                str(ports[server]),
                "--workers",
                "1",
                "--no-migrate",
            ],
            cwd=REPO,
            env=envs[server],
            log=work / f"silta-{server}.log",
        )
    bases = {server: f"http://127.0.0.1:{port}" for server, port in ports.items()}
    for server, health in (("baseline", "/ping"), ("on", "/healthz"), ("off", "/healthz")):
        ensure_loopback(bases[server])
        log = work / ("baseline.log" if server == "baseline" else f"silta-{server}.log")
        wait_ready(procs, pids[server], bases[server] + health, log)
        print(f"  {SERVER_NAMES[server]:<22} {bases[server]} (pid {pids[server]})", flush=True)

    print(f"seeding {args.clients} clients (POST /v1/clients) and {args.baseline_rows} baseline rows", flush=True)
    client_ids = seed_clients(bases["on"], token, args.clients)
    item = {"name": "bench", "region": REGION, "birth_date": "2005-01-01", "score": 1, "payload": {"k": "v"}}
    item_ids = seed_baseline(bases["baseline"], item, args.baseline_rows)
    files = {"client_ids": work / "client-ids.txt", "item_ids": work / "item-ids.txt"}
    files["client_ids"].write_text("\n".join(client_ids) + "\n")
    files["item_ids"].write_text("\n".join(item_ids) + "\n")
    files["worker_body"] = work / "worker.json"
    files["worker_body"].write_text(json.dumps({"region": REGION, "name": "W", "role": "counsellor"}))
    files["item_body"] = work / "item.json"
    files["item_body"].write_text(json.dumps(item))

    targets: dict[str, Target] = {}
    for e in ENDPOINTS:
        silta = e.server != "baseline"
        if e.kind == "read":
            ids, body = files["client_ids" if silta else "item_ids"], None
        else:
            ids, body = None, files["worker_body" if silta else "item_body"]
        targets[e.key] = Target(e, bases[e.server] + e.path, bearer if silta else None, body, ids, pids[e.server])
        ensure_loopback(targets[e.key].url)
    checks = {}
    for key, target in targets.items():
        first = (client_ids if target.endpoint.server != "baseline" else item_ids)[0]
        checks[key] = check_once(target, first if target.endpoint.kind == "read" else None)
        print(f"  check {key:<16} {checks[key]}", flush=True)

    idle_busy = machine_busy_pct()
    print(f"machine busy while the servers idle: {idle_busy:.0f} % of all CPUs", flush=True)
    if idle_busy > DISTURBED_PCT:
        print("  another workload is running: expect DISTURBED runs; compare only within this run", flush=True)
    waited, _ = wait_sealed(silta_url)
    print(f"chain caught up with the seeding's entries ({waited:.1f} s)", flush=True)
    db_pid = postmaster_pid(args.admin_url)
    jsonl = work / "load.jsonl"
    results: list[Measured] = []
    for i, concurrency in enumerate(args.concurrency):
        print(f"load at c={concurrency}", flush=True)
        for kind in ("read", "write"):
            # baseline first, then with/without logging; the order of the two alternates per level
            order = ["baseline", "off", "on"] if i % 2 == 0 else ["baseline", "on", "off"]
            for server in order:
                key = f"baseline.{kind}" if server == "baseline" else f"silta.{kind}.{server}"
                for name, pid in pids.items():
                    if not procs.alive(pid):
                        raise RuntimeError(f"{SERVER_NAMES[name]} died:\n{tail(work / f'silta-{name}.log')}")
                if args.warmup:  # unrecorded, and before the log rows are counted
                    measure(
                        targets[key], args, concurrency, db_pid, work / "warmup.jsonl", duration=args.warmup, runs=1
                    )
                before = log_counts(silta_url)
                one = measure(targets[key], args, concurrency, db_pid, jsonl)
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
    seal_output = run_checked([SILTA, "audit", "seal"], cwd=REPO, env=envs["on"]).strip()
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
        "benchmark": "audit-cost",
        "started": started.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "command": shlex.join([os.path.relpath(PYTHON, REPO), "benchmarks/audit_cost.py", *sys.argv[1:]]),
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

"""What every Silta benchmark needs, so that a script holds only what it measures.

The pieces, in the order a run uses them:

- options: ``add_load_args`` / ``add_setup_args`` (the shared command-line options and their
  bounds), ``arg_problems`` (what is out of bounds), ``settle_args`` (loopback check, CPU pinning);
- processes: ``Processes`` starts every child in its own process group and ends exactly those;
  ``run_checked`` runs a short command (``silta migrate``, ``silta token``) to completion;
- databases: ``create_databases`` (both, recreated empty), ``recreate_database`` /
  ``clone_database`` (a copy of a template) / ``drop_database`` / ``database_exists`` on the
  loopback PostgreSQL, ``database_url``, ``postmaster_pid`` (for load.py's database CPU
  accounting), ``silta_env`` (Silta's environment: database, dev keys or a data set's);
- servers: ``start_baseline`` (the bare-framework yardstick from ``../shared/bench/``, on PostgreSQL
  or SQLite), ``start_server`` (anything else, e.g. Silta via ``uvicorn_argv``), ``wait_ready``,
  ``check_alive``, ``check_once``, ``memory_kb`` (peak and current resident memory);
- data: ``seed_baseline``, ``seed_clients`` (Silta clients through its API, ``seed_code``/``hetu``
  their identity codes);
- load: ``Target`` (one URL of one server, optionally driven by a wrk Lua script of its own),
  ``measure`` (one bounded load.py invocation, wrk pinned to the other CPU), ``Measured`` (its
  median and runs; subclass it to add fields), ``wait_for_quiet`` / ``machine_busy_pct`` /
  ``say_how_busy`` (is another workload running?);
- results: ``report_header``, ``machine_info``, and ``run_benchmark``, which wraps a script's
  ``run`` and ``markdown``: it writes ``results/<name>-<UTC time>.json`` and ``.md`` and, also on
  error, Ctrl-C or SIGTERM, stops every process and drops every database the run created.

A new benchmark (see ``caseload.py`` for a full one)::

    def run(args, procs, work, created, started) -> dict:
        harness.create_databases(args, created)
        env = harness.silta_env(args, work)  # then: silta migrate, silta token, ... with env=env
        baseline = harness.start_baseline(procs, args, work)
        ...  # start Silta with start_server, wait_ready both, build Targets, measure
        return {**harness.report_header("mine", started, __file__), "results": [asdict(m) for m in results]}

    if __name__ == "__main__":
        args = parse_args()  # add_load_args, add_setup_args, arg_problems, settle_args
        sys.exit(harness.run_benchmark("mine", args, run, markdown, endpoints=3))

Only loopback hosts are used, and every wait and load loop here is bounded.
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
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from importlib.metadata import version
from pathlib import Path
from types import FrameType
from typing import Any, TypeVar
from urllib.parse import urlsplit, urlunsplit

import httpx
import psycopg
from psycopg import sql

REPO = Path(__file__).resolve().parents[1]
DEFAULT_BENCH_DIR = REPO.parent / "shared" / "bench"
RESULTS_DIR = REPO / "benchmarks" / "results"
PYTHON = sys.executable

# bounds: every load loop and every wait is finite
MAX_DURATION_S, MAX_RUNS, MAX_WARMUP_S, MAX_CONCURRENCY, MAX_LEVELS = 30, 5, 10, 64, 4
READY_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 10.0
DISTURBED_PCT = 5.0  # load.py's own threshold for "other processes used the machine"
QUIET_PCT = 10.0  # busier than this with the servers idle: another workload is running
PACKAGES = ("fastapi", "sqlalchemy", "sqlmodel", "uvicorn", "asyncpg", "psycopg", "pydantic")


# --------------------------------------------------------------------------- options


def add_load_args(p: argparse.ArgumentParser, *, duration: int) -> None:
    """The load options: concurrency levels, run duration (default ``duration``), runs, warm-up, timeout."""
    p.add_argument("-c", "--concurrency", type=int, nargs="+", default=[4, 16], help="levels (default 4 16)")
    p.add_argument(
        "-d", "--duration", type=int, default=duration, help=f"seconds per measured run (default {duration})"
    )
    p.add_argument("--runs", type=int, default=3, help="measured runs per endpoint and level; the median is kept")
    p.add_argument("--warmup", type=int, default=1, help="unrecorded load seconds before each measurement")
    p.add_argument("--request-timeout", type=int, default=10, help="wrk per-request timeout, seconds")


def add_setup_args(p: argparse.ArgumentParser, *, db_name: str, baseline_db_name: str) -> None:
    """The set-up options: PostgreSQL, the two databases (dropped and recreated), folders, pinning."""
    p.add_argument(
        "--admin-url",
        default="postgresql://postgres@127.0.0.1:5432/postgres",
        help="loopback PostgreSQL maintenance database used to create and drop the bench databases",
    )
    p.add_argument("--db-name", default=db_name, help="Silta's database (dropped and recreated)")
    p.add_argument("--baseline-db-name", default=baseline_db_name, help="the baseline's database (likewise)")
    p.add_argument("--keep-db", action="store_true", help="leave both databases in place afterwards")
    p.add_argument("--bench-dir", type=Path, default=DEFAULT_BENCH_DIR, help="the shared bench folder")
    p.add_argument("--out-dir", type=Path, default=RESULTS_DIR, help="where the results files go")
    p.add_argument("--no-pin", action="store_true", help="do not pin the servers to CPU 0 and wrk to CPU 1")


def arg_problems(args: argparse.Namespace) -> list[str]:
    """What is out of bounds among the options of ``add_load_args`` and ``add_setup_args``."""
    problems = []
    if not (1 <= args.duration <= MAX_DURATION_S and 1 <= args.runs <= MAX_RUNS and 0 <= args.warmup <= MAX_WARMUP_S):
        problems.append(f"duration 1-{MAX_DURATION_S} s, runs 1-{MAX_RUNS}, warmup 0-{MAX_WARMUP_S} s")
    if not (1 <= len(args.concurrency) <= MAX_LEVELS and all(1 <= c <= MAX_CONCURRENCY for c in args.concurrency)):
        problems.append(f"1-{MAX_LEVELS} concurrency levels, each 1-{MAX_CONCURRENCY}")
    if not 1 <= args.request_timeout <= 60:
        problems.append("request timeout 1-60 s")
    if "bench" not in args.db_name or "bench" not in args.baseline_db_name or args.db_name == args.baseline_db_name:
        problems.append("the two database names must differ and contain 'bench' (they are dropped)")
    return problems


def settle_args(args: argparse.Namespace) -> argparse.Namespace:
    """Refuse a non-loopback PostgreSQL; pin servers to CPU 0 and wrk to CPU 1 where there are two CPUs."""
    ensure_loopback(args.admin_url)
    args.bench_dir = args.bench_dir.resolve()
    pin = not args.no_pin and (os.cpu_count() or 1) >= 2 and shutil.which("taskset") is not None
    args.server_cpu, args.wrk_cpu = ("0", "1") if pin else (None, None)
    return args


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


def tail(path: Path, lines: int = 30) -> str:
    """The last ``lines`` lines of a log, for error messages."""
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def run_checked(cmd: Sequence[str], *, cwd: Path, env: dict[str, str], timeout: float = 300) -> str:
    """Run a short command to completion; return its stdout, raise with its output when it fails."""
    done = subprocess.run(  # noqa: S603 - fixed argv, no shell
        list(cmd), cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, check=False
    )
    if done.returncode != 0:
        raise RuntimeError(f"{shlex.join(cmd)} failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
    return done.stdout


# --------------------------------------------------------------------------- databases


def ensure_loopback(url: str) -> None:
    """Exit unless ``url`` names a loopback host: benchmarks send traffic nowhere else."""
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
    """Drop database ``name`` if it exists (closing its connections) and create it empty."""
    drop_database(admin_url, name)
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))


def clone_database(admin_url: str, template: str, name: str) -> float:
    """Recreate ``name`` as a copy of ``template`` (``CREATE DATABASE ... TEMPLATE``); return the seconds it took.

    PostgreSQL refuses to copy a database others are connected to; this says so, with who they are.
    """
    drop_database(admin_url, name)
    with psycopg.connect(admin_url, autocommit=True) as conn:
        others = conn.execute(
            "SELECT pid, usename, application_name, state FROM pg_stat_activity WHERE datname = %s", (template,)
        ).fetchall()
        if others:
            who = "; ".join(f"pid {pid} {user} {app or '-'} {state}" for pid, user, app, state in others)
            raise SystemExit(f"cannot copy {template}: {len(others)} other connection(s) to it ({who})")
        t0 = time.monotonic()
        conn.execute(sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(sql.Identifier(name), sql.Identifier(template)))
        return time.monotonic() - t0


def database_exists(admin_url: str, name: str) -> bool:
    with psycopg.connect(admin_url) as conn:
        return conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone() is not None


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


def create_databases(args: argparse.Namespace, created: list[str]) -> None:
    """Recreate ``--db-name`` and ``--baseline-db-name`` empty; list them in ``created`` to be dropped."""
    print(f"recreating {args.db_name} and {args.baseline_db_name}", flush=True)
    for name in (args.db_name, args.baseline_db_name):
        recreate_database(args.admin_url, name)
        created.append(name)


def silta_env(
    args: argparse.Namespace, work: Path, *, data_dir: Path | None = None, url: str | None = None
) -> dict[str, str]:
    """The environment for Silta's commands and servers: ``--db-name``, a dev data folder (keys) in ``work``.

    ``data_dir`` names an existing keys folder instead (a data set's), ``url`` another database
    (an SQLite file).
    """
    if data_dir is None:
        data_dir = work / "silta-data"
        data_dir.mkdir()
    return {
        **os.environ,
        "SILTA_DATABASE_URL": url or database_url(args.admin_url, args.db_name),
        "SILTA_DATA_DIR": str(data_dir),
        "SILTA_ENV": "development",
        # load runs measure throughput from a handful of subjects, which the rate limits would refuse
        "SILTA_RATE_LIMIT_SEARCH": "off",
        "SILTA_RATE_LIMIT_EXPORT": "off",
        "SILTA_RATE_LIMIT_IMPORT": "off",
        "PYTHONDONTWRITEBYTECODE": "1",
    }


# --------------------------------------------------------------------------- servers


@dataclass(frozen=True)
class Server:
    """A started server: where it answers, its pid, its folder and log, and its health path."""

    name: str
    base: str
    pid: int
    cwd: Path
    log: Path
    health: str


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def pinned(args: argparse.Namespace, argv: Sequence[str]) -> list[str]:
    """``argv`` run on the server CPU (``taskset``) when ``settle_args`` chose to pin."""
    return ["taskset", "-c", args.server_cpu, *argv] if args.server_cpu else list(argv)


def uvicorn_argv(args: argparse.Namespace, app: str, port: int) -> list[str]:
    """One pinned uvicorn worker for ``app`` on 127.0.0.1:``port``, no access log."""
    uvicorn = [PYTHON, "-m", "uvicorn", "--host", "127.0.0.1", "--workers", "1", "--no-access-log"]
    return pinned(args, [*uvicorn, "--port", str(port), app])


def start_server(
    procs: Processes,
    work: Path,
    name: str,
    argv: Callable[[int], Sequence[str]],
    *,
    cwd: Path,
    env: dict[str, str],
    health: str,
) -> Server:
    """Start ``argv(port)`` on a free loopback port, logging to ``work/<name>.log``; do not wait."""
    port = free_port()
    log = work / f"{name}.log"
    pid = procs.start(name, argv(port), cwd=cwd, env=env, log=log)
    return Server(name, f"http://127.0.0.1:{port}", pid, cwd, log, health)


def start_baseline(
    procs: Processes,
    args: argparse.Namespace,
    work: Path,
    *,
    env: dict[str, str] | None = None,
    url: str | None = None,
    name: str = "baseline",
) -> Server:
    """The bare-framework baseline on ``args.baseline_db_name``: copied, ``init``-ed (keys, table), started.

    ``env`` adds to its environment (e.g. ``POOL_SIZE``); ``url`` is another database for it (e.g.
    ``sqlite:////tmp/x/bench.db``: its sync routes only, the ``/async`` ones answer 503 there).
    Its ES256 token is at ``server.cwd / "keys" / "token_es256.txt"``.
    """
    folder = work / name
    folder.mkdir()
    shutil.copy2(args.bench_dir / "baseline_app.py", folder / "baseline_app.py")
    baseline_env = {
        **os.environ,
        "DATABASE_URL": url or database_url(args.admin_url, args.baseline_db_name, scheme="postgresql+psycopg"),
        "PERF_KEY_DIR": str(folder / "keys"),
        "PYTHONDONTWRITEBYTECODE": "1",
        **(env or {}),
    }
    run_checked([PYTHON, "baseline_app.py", "init"], cwd=folder, env=baseline_env)
    return start_server(
        procs,
        work,
        name,
        lambda port: uvicorn_argv(args, "baseline_app:app", port),
        cwd=folder,
        env=baseline_env,
        health="/ping",
    )


def wait_ready(procs: Processes, server: Server) -> None:
    """Poll the server's health path until it answers 200; fail early if it exits (bounded wait)."""
    url = server.base + server.health
    ensure_loopback(url)
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        if not procs.alive(server.pid):
            raise RuntimeError(f"server exited before answering {url}:\n{tail(server.log)}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(url, timeout=2.0).status_code == 200:
                return
        time.sleep(0.2)
    raise RuntimeError(f"{url} not ready after {READY_TIMEOUT_S:.0f} s:\n{tail(server.log)}")


def check_alive(procs: Processes, servers: Sequence[Server]) -> None:
    """Raise, with the log's tail, if any of ``servers`` has exited."""
    for server in servers:
        if not procs.alive(server.pid):
            raise RuntimeError(f"{server.name} server died:\n{tail(server.log)}")


def seed_baseline(base: str, count: int, *, body: dict[str, Any], path: str = "/async/items") -> list[str]:
    """Insert ``count`` rows through the baseline's POST ``path``; return their ids."""
    ids = []
    with httpx.Client(base_url=base, timeout=30.0) as client:
        for _ in range(count):
            response = client.post(path, json=body)
            response.raise_for_status()
            ids.append(response.json()["id"])
    return ids


IDENTITY_CHECK = "0123456789ABCDEFHJKLMNPRSTUVWXY"  # identity-code check characters (as tests/conftest.py)


def hetu(birth: dt.date, individual: int) -> str:
    """A valid Finnish identity code (century sign A for 2000-2099), as tests/conftest.py builds them."""
    digits = f"{birth:%d%m}{birth.year % 100:02d}"
    return f"{digits}A{individual:03d}{IDENTITY_CHECK[int(f'{digits}{individual:03d}') % 31]}"


def seed_code(n: int) -> str:
    """The ``n``-th distinct identity code of ``seed_clients``: born 2004-2006, individual numbers from 100."""
    return hetu(dt.date(2004, 1, 1) + dt.timedelta(days=(n * 7) % 1090), 100 + n // 1090)


def seed_clients(base: str, token: str, count: int, *, region: str, municipality: str) -> list[str]:
    """Register ``count`` clients organised by ``region`` through Silta's API; return their ids.

    Distinct valid identity codes (born 2004-2006, individual numbers from 100; at most 872,000), aftercare begun
    120 days ago, support levels in turn; they live in ``municipality``.
    """
    start = (dt.date.today() - dt.timedelta(days=120)).isoformat()
    ids = []
    with httpx.Client(base_url=base, timeout=30.0, headers={"Authorization": f"Bearer {token}"}) as client:
        for n in range(count):
            body = {
                "personal_id": seed_code(n),
                "first_name": f"Bench{n}",
                "last_name": "Client",
                "organising_region": region,
                "residence_municipality": municipality,
                "aftercare_start": start,
                "support_level": ("standard", "enhanced", "special")[n % 3],
            }
            response = client.post("/v1/clients", json=body)
            if response.status_code != 201:
                raise RuntimeError(f"POST /v1/clients: HTTP {response.status_code}: {response.text[:500]}")
            ids.append(response.json()["id"])
    return ids


def check_once(target: Target, first_id: str | None) -> str:
    """One request before the load: the endpoint answers as expected with this run's token."""
    url = target.url.replace("{id}", first_id or "")
    headers = {}
    if target.bearer_file:
        headers["Authorization"] = "Bearer " + target.bearer_file.read_text().strip()
    with httpx.Client(timeout=30.0, headers=headers) as client:
        if target.method == "POST" and target.body_file:
            response = client.post(
                url, content=target.body_file.read_bytes(), headers={"Content-Type": "application/json"}
            )
        else:
            response = client.get(url)
    if response.status_code not in (200, 201):
        raise RuntimeError(f"{target.method} {url}: HTTP {response.status_code}: {response.text[:500]}")
    return f"HTTP {response.status_code}, {len(response.content)} bytes"


def process_cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a live process on this host, from ``/proc/<pid>/stat`` (0.0 if gone)."""
    with contextlib.suppress(OSError, ValueError, IndexError):
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return 0.0


def memory_kb(pid: int) -> dict[str, int]:
    """VmHWM (peak resident) and VmRSS of a live process, in kB, from ``/proc/<pid>/status``."""
    out = {}
    for line in _read(f"/proc/{pid}/status").splitlines():
        name, _, value = line.partition(":")
        if name in ("VmHWM", "VmRSS"):
            out[name] = int(value.split()[0])
    return out


# --------------------------------------------------------------------------- load


@dataclass
class Target:
    """One URL of one running server, as load.py drives it (``{id}`` is replaced from ``ids_file``).

    ``script`` is a wrk Lua script used instead of load.py's own ``wrk_report.lua`` (it must end
    with the same ``WRKJSON`` line); ``env`` is passed to it (wrk's Lua reads ``os.getenv``).
    """

    key: str
    url: str
    server_pid: int
    method: str = "GET"
    bearer_file: Path | None = None
    body_file: Path | None = None
    ids_file: Path | None = None
    script: Path | None = None
    env: dict[str, str] = field(default_factory=dict)


@dataclass
class Measured:
    """load.py's median over the runs at one concurrency (or why there is none)."""

    key: str
    concurrency: int
    median: dict[str, Any] | None = None
    runs: list[dict[str, Any]] = field(default_factory=list)
    error: str | None = None

    @property
    def disturbed_runs(self) -> int:
        return sum((run.get("foreign_cpu_pct") or 0) > DISTURBED_PCT for run in self.runs)


M = TypeVar("M", bound=Measured)


def measure(
    target: Target,
    args: argparse.Namespace,
    concurrency: int,
    db_pid: int | None,
    jsonl: Path,
    *,
    result: type[M] = Measured,  # type: ignore[assignment]
    warmup: int | None = None,
    duration: int | None = None,
    runs: int | None = None,
    label: str | None = None,
) -> M:
    """One bounded load.py invocation: ``warmup`` s unrecorded, then ``runs`` x ``duration`` s.

    Each defaults to ``args``' option of that name. The record load.py appends to ``jsonl`` becomes
    a ``result`` (``Measured`` or a subclass with defaults for its own fields).
    """
    warmup = args.warmup if warmup is None else warmup
    duration, runs = duration or args.duration, runs or args.runs
    label = label or f"{target.key} c={concurrency}"
    tool = _load_tool(args.bench_dir, target.script, jsonl.parent) if target.script else args.bench_dir
    cmd = [PYTHON, str(tool / "load.py"), "--url", target.url, "--method", target.method]
    cmd += ["-c", str(concurrency), "-d", str(duration), "--warmup", str(warmup), "--runs", str(runs)]
    cmd += ["--timeout", str(args.request_timeout), "--server-pid", str(target.server_pid)]
    cmd += ["--label", label, "--json-out", str(jsonl)]
    if db_pid:
        cmd += ["--db-pid", str(db_pid)]
    if args.wrk_cpu is not None:
        cmd += ["--wrk-cpu", args.wrk_cpu]
    for option, path in (("--bearer-file", target.bearer_file), ("--body-file", target.body_file)):
        if path:
            cmd += [option, str(path)]
    if target.ids_file:
        cmd += ["--ids-file", str(target.ids_file)]
    before = jsonl.read_text().count("\n") if jsonl.exists() else 0
    stdout, stderr, returncode = _load(cmd, bound=warmup + runs * (duration + 30) + 60, env=target.env)
    sys.stdout.write(stdout)
    lines = jsonl.read_text().splitlines() if jsonl.exists() else []
    if returncode != 0 or len(lines) <= before:
        error = (stderr or stdout).strip().splitlines()[-1:] or [f"load.py exited {returncode}"]
        print(f"  {label}: FAILED: {error[0]}", flush=True)
        return result(target.key, concurrency, error=error[0])
    record = json.loads(lines[-1])
    return result(target.key, concurrency, median=record["median"], runs=record["runs"])


def _load_tool(bench_dir: Path, script: Path, folder: Path) -> Path:
    """A copy of load.py next to ``script`` named as its own Lua script (load.py runs the one beside it)."""
    tool = folder / f"load-{script.stem}"
    if not tool.exists():
        tool.mkdir()
        shutil.copy2(bench_dir / "load.py", tool / "load.py")
        shutil.copy2(script, tool / "wrk_report.lua")
    return tool


def _load(cmd: list[str], *, bound: float, env: dict[str, str] | None = None) -> tuple[str, str, int]:
    # its own session, so that wrk (load.py's child) ends with it if this run is interrupted
    proc = subprocess.Popen(  # noqa: S603 - fixed argv, no shell
        cmd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1", **(env or {})},
        start_new_session=True,
    )
    try:
        stdout, stderr = proc.communicate(timeout=bound)
    except BaseException:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=STOP_TIMEOUT_S)
        raise
    return stdout, stderr, proc.returncode


def machine_busy_pct(seconds: float = 3.0) -> float:
    """Share of all CPUs busy (user+nice+system) over ``seconds``, sampled while the servers are idle."""

    def busy_and_total() -> tuple[int, int]:
        fields = [int(x) for x in _read("/proc/stat").split("\n", 1)[0].split()[1:]]
        return fields[0] + fields[1] + fields[2], sum(fields[:8])

    b0, t0 = busy_and_total()
    time.sleep(seconds)
    b1, t1 = busy_and_total()
    return 100.0 * (b1 - b0) / max(t1 - t0, 1)


def say_how_busy(idle_busy: float) -> None:
    """Print how busy the machine was with the servers idle, and warn when another workload runs."""
    print(f"machine busy while the servers idle: {idle_busy:.0f} % of all CPUs", flush=True)
    if idle_busy > DISTURBED_PCT:
        print("  another workload is running: expect DISTURBED runs; compare only within this run", flush=True)


def wait_for_quiet(max_seconds: float) -> float:
    """Wait (at most ``max_seconds``) until the machine is quiet; return how busy it was last (%)."""
    busy = machine_busy_pct()
    deadline = time.monotonic() + max_seconds
    while busy > QUIET_PCT and time.monotonic() < deadline:
        print(f"  machine {busy:.0f} % busy with another workload; waiting", flush=True)
        time.sleep(min(10.0, max(deadline - time.monotonic(), 0)))
        busy = machine_busy_pct()
    return busy


# --------------------------------------------------------------------------- results


def report_header(name: str, started: dt.datetime, script: str) -> dict[str, str]:
    """The first keys of every report: which benchmark, when, and the command that ran it."""
    return {
        "benchmark": name,
        "started": started.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "command": shlex.join([os.path.relpath(PYTHON, REPO), os.path.relpath(script, REPO), *sys.argv[1:]]),
    }


def machine_info(admin_url: str, packages: Sequence[str] = PACKAGES) -> dict[str, Any]:
    """What the numbers were taken on: they compare only within one run on one machine."""
    cpuinfo = _read("/proc/cpuinfo").splitlines()
    model = next((ln.split(":", 1)[1].strip() for ln in cpuinfo if ln.startswith("model name")), platform.processor())
    meminfo = _read("/proc/meminfo").splitlines()
    mem_kb = next((int(ln.split()[1]) for ln in meminfo if ln.startswith("MemTotal")), 0)
    with psycopg.connect(admin_url) as conn:
        row = conn.execute("SHOW server_version").fetchone()
    versions = {}
    for package in packages:
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
        "git": git_state(),
    }


def _read(path: str) -> str:
    try:
        return Path(path).read_text()
    except OSError:
        return ""


def git_state(checkout: Path = REPO) -> str:
    """The checkout's commit, and how many files outside benchmarks/ differ from it."""
    git = shutil.which("git")
    if not git:
        return "unknown"

    def git_out(*argv: str) -> str:
        return subprocess.run([git, *argv], cwd=checkout, capture_output=True, text=True, check=False).stdout  # noqa: S603

    head, dirty = git_out("rev-parse", "--short", "HEAD"), git_out("status", "--porcelain")
    changed = len([line for line in dirty.splitlines() if not line[3:].startswith("benchmarks/")])
    return head.strip() + (f" + {changed} uncommitted file(s) outside benchmarks/" if changed else "")


def all_measured(report: dict[str, Any]) -> bool:
    """The default success test: every measurement has a median."""
    return all(m["median"] is not None for m in report["results"])


Run = Callable[[argparse.Namespace, Processes, Path, list[str], dt.datetime], dict[str, Any]]


def run_benchmark(
    name: str,
    args: argparse.Namespace,
    run: Run,
    markdown: Callable[[dict[str, Any]], str],
    *,
    endpoints: int,
    ok: Callable[[dict[str, Any]], bool] = all_measured,
    written: Callable[[dict[str, Any], Path], None] | None = None,
) -> int:
    """Check the tools, call ``run(args, procs, work, created, started)``, write its report; 0 if ``ok``.

    ``written(report, stem)`` is called once the report files (``stem`` + ``.json``/``.md``) are written.

    ``run`` starts its processes through ``procs``, keeps its files in the temporary folder ``work``
    and appends to ``created`` each database it creates. Whatever happens, every process in
    ``procs`` is stopped and (unless ``--keep-db``) every database in ``created`` dropped; ``work``
    is removed after a successful run and kept, with the server logs, otherwise.
    """
    for needed in (args.bench_dir / "baseline_app.py", args.bench_dir / "load.py", args.bench_dir / "wrk_report.lua"):
        if not needed.exists():
            raise SystemExit(f"missing {needed} (see --bench-dir)")
    if not shutil.which("wrk"):
        raise SystemExit("wrk not found: apt-get install -y wrk")
    estimate = endpoints * len(args.concurrency) * (args.warmup + args.runs * args.duration + 0.7)
    print(f"measuring {endpoints} endpoints x c={args.concurrency}: about {estimate / 60:.1f} min of load", flush=True)

    signal.signal(signal.SIGTERM, _terminate_on_signal)
    started = dt.datetime.now(dt.UTC)
    t0 = time.monotonic()
    procs = Processes()
    work = Path(tempfile.mkdtemp(prefix=f"silta-bench-{name}-"))
    created: list[str] = []
    succeeded = False
    try:
        report = run(args, procs, work, created, started)
        report["runtime_s"] = time.monotonic() - t0
        args.out_dir.mkdir(parents=True, exist_ok=True)
        stem = args.out_dir / f"{name}-{started.strftime('%Y%m%dT%H%M%SZ')}"
        stem.with_suffix(".json").write_text(json.dumps(report, indent=2) + "\n")
        stem.with_suffix(".md").write_text(markdown(report))
        if written:
            written(report, stem)
        print(f"\nwrote {stem.with_suffix('.md')} and {stem.with_suffix('.json')}\n", flush=True)
        print(markdown(report).split("## Machine", 1)[0], flush=True)
        succeeded = ok(report)
    finally:
        print("stopping servers", flush=True)
        procs.stop_all()
        if not args.keep_db:
            for database in created:
                with contextlib.suppress(psycopg.Error):
                    drop_database(args.admin_url, database)
        if succeeded:
            shutil.rmtree(work, ignore_errors=True)
        else:
            print(f"server logs kept in {work}", flush=True)
    return 0 if succeeded else 1

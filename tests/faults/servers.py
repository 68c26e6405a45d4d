"""Real processes for the fault tests: ``silta serve`` on loopback, and a private PostgreSQL cluster.

Everything here listens on 127.0.0.1 only, on a free port, and is stopped by the test that started
it (in a ``finally``). The private cluster exists so that a test may stop and restart *its own*
PostgreSQL: the machine's shared server at 5432 is never touched.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from app.config import Settings
from app.migrate import ROOT
from app.security import mint_dev_token


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def unavailable(message: str) -> None:
    """Fail in CI (``CI=true``), skip with the reason elsewhere."""
    if os.environ.get("CI"):
        pytest.fail(message + ": the fault tests must run in CI")
    pytest.skip(message)


class Server:
    """``silta serve`` (migrate, then uvicorn) as a subprocess, in dev-key mode on ``data_dir``."""

    def __init__(self, data_dir: Path, database_url: str | None = None, **settings: str) -> None:
        self.data_dir, self.database_url = data_dir, database_url
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("SILTA_")}
        self.env.update({f"SILTA_{name.upper()}": value for name, value in settings.items()})
        self.env["SILTA_DATA_DIR"] = str(data_dir)
        if database_url:
            self.env["SILTA_DATABASE_URL"] = database_url
        self.process: subprocess.Popen[bytes] | None = None
        self.port = 0
        self.starts = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def database(self) -> str:
        """The database URL, the embedded SQLite file unless one was given."""
        return self.database_url or f"sqlite:///{self.data_dir / 'silta.db'}"

    @property
    def log(self) -> Path:
        return self.data_dir / f"serve-{self.starts}.log"

    def token(self, *roles: str, region: str | None = None, client_system: str | None = None) -> dict[str, str]:
        """Headers with a token for the embedded default's key (what ``silta token`` prints)."""
        settings = Settings(data_dir=self.data_dir, jwks_file=None, jwks_url=None, jwt_issuer=None, jwt_audience=None)
        subject = f"faults-{'-'.join(roles)}-{region or 'national'}"
        token = mint_dev_token(settings, subject=subject, roles=list(roles), region=region, client_system=client_system)
        return {"Authorization": f"Bearer {token}"}

    def start(self, timeout: float = 60) -> None:
        """Start on a fresh port and wait until ``/readyz`` answers 200."""
        self.starts += 1
        self.port = free_port()
        command = [sys.executable, "-m", "app.cli", "serve", "--host", "127.0.0.1", "--port", str(self.port)]
        with self.log.open("wb") as log:
            self.process = subprocess.Popen(command, env=self.env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"silta serve exited with {self.process.returncode}:\n{self.log.read_text()}")
            try:
                if httpx.get(f"{self.url}/readyz", timeout=2).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        raise AssertionError(f"silta serve not ready within {timeout} s:\n{self.log.read_text()}")

    def kill(self) -> None:
        """SIGKILL: no shutdown code runs, as in a crash or an OOM kill."""
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(10)

    def terminate(self) -> None:
        """SIGTERM: what an orchestrator sends to stop the service gracefully."""
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)

    def wait(self, timeout: float) -> int:
        assert self.process is not None
        return self.process.wait(timeout)

    def stop(self) -> None:
        """Make sure the process is gone (the tests' ``finally``)."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)

    def cli(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        """Run another ``silta`` command against the same data folder and database."""
        command = [sys.executable, "-m", "app.cli", *args]
        return subprocess.run(command, env=self.env, cwd=ROOT, capture_output=True, text=True, timeout=timeout)


class PrivatePostgres:
    """A throw-away PostgreSQL cluster of this test's own: initdb in a temporary folder, a free port.

    initdb refuses to run as root, so as root the cluster belongs to the ``postgres`` OS user.
    """

    def __init__(self) -> None:
        found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"), key=lambda p: int(p.parent.parent.name))
        if not found:
            unavailable("no PostgreSQL server binaries under /usr/lib/postgresql")
        self.bin = found[-1].parent
        self.as_owner: list[str] = []
        if os.geteuid() == 0:
            if shutil.which("runuser") is None:
                unavailable("running as root without runuser: cannot start a private PostgreSQL cluster")
            self.as_owner = ["runuser", "-u", "postgres", "--"]
        self.home = Path(tempfile.mkdtemp(prefix="silta_faults_pg_"))
        self.data = self.home / "data"
        self.port = free_port()
        self.running = False

    @property
    def admin_url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def url(self, database: str) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def _run(self, *args: Any, timeout: float = 120) -> None:
        command = [*self.as_owner, str(self.bin / args[0]), *map(str, args[1:])]
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, cwd=self.home)
        if done.returncode != 0:
            raise AssertionError(f"{args[0]} failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")

    def create(self) -> None:
        if self.as_owner:
            shutil.chown(self.home, user="postgres", group="postgres")
        self._run("initdb", "-D", self.data, "-U", "postgres", "-A", "trust", "-E", "UTF8", "--locale=C", "--no-sync")
        settings = {
            "listen_addresses": "'127.0.0.1'",
            "port": self.port,
            "unix_socket_directories": f"'{self.home}'",
            "max_connections": 60,
            "shared_buffers": "'32MB'",
        }
        with (self.data / "postgresql.conf").open("a") as conf:
            conf.writelines(f"{name} = {value}\n" for name, value in settings.items())
        self.start()

    def start(self) -> None:
        self._run("pg_ctl", "-D", self.data, "-l", self.home / "server.log", "-w", "-t", "60", "start")
        self.running = True

    def stop(self, mode: str = "fast") -> None:
        """``fast``: disconnect every session (as a restart does); ``immediate``: as a crash."""
        self._run("pg_ctl", "-D", self.data, "-m", mode, "-w", "-t", "60", "stop")
        self.running = False

    def destroy(self) -> None:
        try:
            if self.running:
                self.stop("immediate")
        finally:
            shutil.rmtree(self.home, ignore_errors=True)

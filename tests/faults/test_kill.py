"""SIGKILL mid-load: every acknowledged write survives, nothing is half-written, the audit chain holds.

A real ``silta serve`` process takes concurrent writes (workers, registrations, assignments) and is
killed with SIGKILL — no shutdown code runs, as in a crash or an OOM kill — while requests are in
flight. After a restart on the same database, every write that was answered 2xx is there, every
stored row has its change entry (and every change entry its row), every client has both its
responsibility periods, and the sealed audit chain verifies. Once on PostgreSQL, once on the
embedded SQLite file in WAL mode.
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import psycopg
import pytest

from tests.conftest import PG_ADMIN_URL
from tests.faults.checks import chain_verifies, found, half_written, read_back
from tests.faults.conftest import Record
from tests.faults.load import WriteLoad, until
from tests.faults.servers import Server, unavailable

pytestmark = pytest.mark.slow
CLIENTS = 8
KILL_AFTER = 200  # acknowledged writes before the kill


@pytest.fixture(params=["sqlite", "postgresql"])
def database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[str, str]]:
    """(backend, URL): the embedded SQLite file, or a database of its own on the shared PostgreSQL."""
    if request.param == "sqlite":
        yield "sqlite", f"sqlite:///{tmp_path / 'silta.db'}"
        return
    name = f"silta_faults_kill_{os.getpid()}"
    try:
        with psycopg.connect(PG_ADMIN_URL, autocommit=True, connect_timeout=3) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            conn.execute(f'CREATE DATABASE "{name}"')
    except psycopg.OperationalError as exc:
        unavailable(f"PostgreSQL not reachable at {PG_ADMIN_URL} ({exc.__class__.__name__})")
    try:
        yield "postgresql", PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"
    finally:
        with psycopg.connect(PG_ADMIN_URL, autocommit=True, connect_timeout=3) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


async def test_writes_acknowledged_before_a_sigkill_are_all_there_after_a_restart(
    database: tuple[str, str], tmp_path: Path, figures: Record
) -> None:
    backend, url = database
    server = Server(tmp_path, url)
    load = WriteLoad(server, clients=CLIENTS, seconds=90)
    try:
        server.start()
        load_started = time.monotonic()
        running = load.start()
        await until(lambda: load.acknowledged() >= KILL_AFTER or running.done(), 90, "the load to get going")
        killed_at = time.monotonic()
        server.kill()
        await asyncio.wait_for(running, 30)
        answered = [o for o in load.outcomes if o.status is not None]
        cut_off = [o for o in load.outcomes if o.status is None]  # in flight at the kill: no answer
        assert all(200 <= o.status < 300 for o in answered if o.status), load.statuses()
        assert cut_off, "the kill came after the load, not during it"
        wal = _wal_file(url) if backend == "sqlite" else None

        server.start()
        restarted = time.monotonic() - killed_at
        await _every_client_is_served(server, load.acked["client"])
        report = await chain_verifies(server)
        server.terminate()
        assert server.wait(60) == 0

        stored = read_back(url)
        kept = found(load.acked, stored)
        assert kept == {kind: len(ids) for kind, ids in load.acked.items()}, "acknowledged writes lost"
        assert half_written(stored) == []
    finally:
        await load.close()
        server.stop()
    acked = {kind: len(ids) for kind, ids in load.acked.items()}
    figures(
        f"kill-{backend}",
        concurrent_clients=CLIENTS,
        acknowledged=sum(acked.values()),
        found=sum(kept.values()),
        acknowledged_by_kind=acked,
        found_by_kind=kept,
        stored_without_answer=sum(len(stored.rows[kind]) for kind in acked) - sum(acked.values()),
        cut_off_requests=len(cut_off),
        load_seconds_before_kill=round(killed_at - load_started, 2),
        change_entries=stored.change_entries,
        chain_positions_verified=report["checked"],
        **({"wal_bytes_at_kill": wal} if wal is not None else {}),
        restart_to_ready_seconds=round(restarted, 2),
    )


def _wal_file(url: str) -> int:
    """The SQLite file is in WAL mode, and after the kill its -wal file holds the last commits."""
    path = Path(url.removeprefix("sqlite:///"))
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    return Path(f"{path}-wal").stat().st_size


async def _every_client_is_served(server: Server, client_ids: list[str]) -> None:
    """After the restart the service itself answers for each acknowledged registration."""
    headers = server.token("system", region="05", client_system="Lifecare")
    async with httpx.AsyncClient(base_url=server.url, timeout=15) as api:
        for client_id in client_ids:
            response = await api.get(f"/v1/clients/{client_id}", headers=headers)
            assert response.status_code == 200, (client_id, response.text)

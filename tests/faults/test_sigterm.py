"""SIGTERM: the server stops taking connections, finishes the requests in flight, and exits 0.

The requests are made slow the way they are in production, by waiting for the database: under a
write load, another process (this test) takes the SQLite write lock, as a backup or a long import
would, so every write the server is handling waits for it (up to the busy timeout). SIGTERM
arrives while they wait. The server must stay up until the lock is released, answer each of
those writes with its 2xx, exit 0, and leave no write committed but unanswered.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from pathlib import Path

import pytest

from tests.faults.checks import found, half_written, read_back
from tests.faults.conftest import Record
from tests.faults.load import WriteLoad, until
from tests.faults.servers import Server

pytestmark = pytest.mark.slow
HOLD_SECONDS = 2.0  # how long the writes in flight wait for the lock after SIGTERM (busy timeout: 10 s)


def take_write_lock(path: Path) -> sqlite3.Connection:
    """``BEGIN IMMEDIATE`` from outside: every other writer waits until this transaction ends."""
    conn = sqlite3.connect(path, timeout=10, isolation_level=None, check_same_thread=False)
    conn.execute("BEGIN IMMEDIATE")
    return conn


async def test_sigterm_lets_the_requests_in_flight_finish_and_exits_0(tmp_path: Path, figures: Record) -> None:
    server = Server(tmp_path)  # the embedded default: SQLite in the data folder
    lock: sqlite3.Connection | None = None
    load = WriteLoad(server, clients=8, seconds=60)
    try:
        server.start()
        running = load.start()
        await until(lambda: load.acknowledged() >= 30 or running.done(), 60, "the load to get going")
        lock = await asyncio.to_thread(take_write_lock, tmp_path / "silta.db")
        await asyncio.sleep(0.3)  # the clients' next writes reach the server and wait for the lock
        term_at = time.monotonic()
        server.terminate()
        await asyncio.sleep(HOLD_SECONDS)
        assert server.process is not None and server.process.poll() is None, "exited with requests in flight"
        lock.execute("ROLLBACK")
        lock.close()
        lock = None
        code = await asyncio.to_thread(server.wait, 60)
        stopped = time.monotonic() - term_at
        await asyncio.wait_for(running, 30)
        assert code == 0, server.log.read_text()
        assert "timeout graceful shutdown exceeded" not in server.log.read_text()

        answered = [o for o in load.outcomes if o.status is not None]
        assert all(o.status == 201 for o in answered), load.statuses()
        waited = [o for o in answered if o.started < term_at and o.ended > term_at + HOLD_SECONDS]
        assert waited, "no write was in flight through the SIGTERM"
        stored = read_back(server.database)
        assert found(load.acked, stored) == {kind: len(ids) for kind, ids in load.acked.items()}
        assert half_written(stored) == []
        unanswered = sum(len(stored.rows[kind]) - len(ids) for kind, ids in load.acked.items())
        assert unanswered == 0, "a write was committed but its answer never sent"
    finally:
        if lock is not None:
            lock.close()
        await load.close()
        server.stop()
    figures(
        "sigterm-sqlite",
        writes_in_flight_through_sigterm_answered_2xx=len(waited),
        requests_refused_after_sigterm=len(load.outcomes) - len(answered),
        acknowledged=load.acknowledged(),
        committed_but_unanswered=unanswered,
        sigterm_to_exit_seconds=round(stopped, 2),
        exit_code=code,
    )

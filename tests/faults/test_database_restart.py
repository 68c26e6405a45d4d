"""PostgreSQL restarted under load: clean 503s while it is away, recovery without a server restart.

The server runs on a private PostgreSQL cluster started for this test (the machine's shared
server is never touched), under a write load that keeps going through errors, while a probe
polls ``/readyz``. The cluster is stopped (``pg_ctl -m fast``: every session is disconnected, as
in a restart), kept down for a while, and started again. Every answer is a 2xx or a 503
problem+json (never a 500, never a lost connection, none slower than a bound); ``/readyz`` says
503 while the database is away and 200 after; writes succeed again by themselves; what was
acknowledged is stored, nothing is half-written, and the audit chain verifies.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import httpx
import psycopg
import pytest

from tests.faults.checks import chain_verifies, found, half_written, read_back
from tests.faults.conftest import Record
from tests.faults.load import WriteLoad, until
from tests.faults.servers import PrivatePostgres, Server

pytestmark = pytest.mark.slow
OUTAGE_SECONDS = 3.0
ANSWER_BOUND_SECONDS = 10.0  # no request may hang longer than this, database or not


class ReadyProbe:
    """Polls ``/readyz`` every 50 ms until stopped: (sent, answered, status) samples."""

    def __init__(self, server: Server) -> None:
        self.server = server
        self.samples: list[tuple[float, float, int | None]] = []

    async def run(self, stop: asyncio.Event) -> None:
        async with httpx.AsyncClient(base_url=self.server.url, timeout=ANSWER_BOUND_SECONDS) as api:
            while not stop.is_set():
                sent = time.monotonic()
                try:
                    status: int | None = (await api.get("/readyz")).status_code
                except httpx.HTTPError:
                    status = None
                self.samples.append((sent, time.monotonic(), status))
                await asyncio.sleep(0.05)

    def between(self, start: float, end: float) -> set[int | None]:
        """The answers to the probes sent in [start, end]."""
        return {status for sent, _, status in self.samples if start <= sent <= end}


async def test_a_database_restart_under_load_gives_503s_then_recovers_by_itself(
    tmp_path: Path, figures: Record
) -> None:
    cluster = PrivatePostgres()
    server = Server(tmp_path, cluster.url("silta_faults_restart"))
    load = WriteLoad(server, clients=6, seconds=90, keep_going=True, timeout=ANSWER_BOUND_SECONDS)
    probe = ReadyProbe(server)
    probing: asyncio.Task[None] | None = None
    try:
        cluster.create()
        with psycopg.connect(cluster.admin_url, autocommit=True) as conn:
            conn.execute("CREATE DATABASE silta_faults_restart")
        server.start()
        pid = server.process.pid if server.process else None
        probing = asyncio.create_task(probe.run(load.stop))
        running = asyncio.gather(load.start(), probing)
        await until(lambda: load.acknowledged() >= 60, 60, "the load to get going")

        await asyncio.to_thread(cluster.stop, "fast")
        down_at = time.monotonic()
        await asyncio.sleep(OUTAGE_SECONDS)
        restarting_at = time.monotonic()
        await asyncio.to_thread(cluster.start)  # returns once the cluster accepts connections
        back_at = time.monotonic()
        await until(lambda: any(o.status == 201 and o.started > back_at for o in load.outcomes), 60, "recovery")
        await until(lambda: probe.between(back_at, time.monotonic()) >= {200}, 30, "/readyz to say 200")
        await asyncio.sleep(0.5)
        load.stop.set()
        await asyncio.wait_for(running, 30)

        assert server.process is not None and server.process.pid == pid and server.process.poll() is None
        statuses = load.statuses()
        assert set(statuses) <= {"201", "503"}, statuses  # no 500, no dropped connection, no timeout
        assert all(o.problem_json for o in load.outcomes if o.status == 503)
        outage = [o for o in load.outcomes if o.started >= down_at and o.ended <= restarting_at]
        assert outage and all(o.status == 503 for o in outage), statuses
        slowest = max(o.ended - o.started for o in load.outcomes)
        assert slowest < ANSWER_BOUND_SECONDS
        assert probe.between(down_at, restarting_at) == {503}
        first_write = min(o.ended for o in load.outcomes if o.status == 201 and o.started > back_at)
        first_ready = min(answered for sent, answered, status in probe.samples if status == 200 and sent > back_at)

        report = await chain_verifies(server)
        server.terminate()
        assert server.wait(60) == 0
        stored = read_back(server.database)
        acked = {kind: len(ids) for kind, ids in load.acked.items()}
        assert found(load.acked, stored) == acked
        assert half_written(stored) == []
    finally:
        await load.close()
        if probing is not None:
            probing.cancel()
        server.stop()
        cluster.destroy()
    figures(
        "database-restart-postgresql",
        outage_seconds=round(back_at - down_at, 2),
        database_start_seconds=round(back_at - restarting_at, 2),
        recovery_seconds_database_back_to_first_2xx_write=round(first_write - back_at, 3),
        recovery_seconds_database_back_to_readyz_200=round(first_ready - back_at, 3),
        answers_503_during_outage=sum(1 for o in outage if o.status == 503),
        answers=dict(statuses),
        slowest_answer_seconds=round(slowest, 3),
        acknowledged=sum(acked.values()),
        chain_positions_verified=report["checked"],
    )

"""64 concurrent requests on a pool of two connections: every one is answered, none waits for a
connection it can never get (a request holding one connection while it waits for a second would
deadlock the pool under load — the trap issue 9 names)."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx
import pytest

from app.main import create_app
from tests.api.helpers import add_worker, new_hetu, register

pytestmark = pytest.mark.postgres_only


@pytest.fixture
async def small_pool_api(api, settings) -> Any:  # noqa: ANN001  (``api`` resets the database first)
    application = create_app(settings.model_copy(update={"db_pool_size": 2, "db_max_overflow": 0}))
    try:
        transport = httpx.ASGITransport(app=application)
        async with httpx.AsyncClient(transport=transport, base_url="http://silta.test", timeout=120) as client:
            yield client
    finally:
        await application.state.engine.dispose()


async def test_sixty_four_concurrent_requests_on_two_connections_are_all_answered(small_pool_api, auth):
    api = small_pool_api
    system, coordinator = auth("system", region="05"), auth("coordinator", region="05")
    client = await register(api, system)
    worker = await add_worker(api, coordinator, "05")

    def idempotent(number: int) -> dict[str, str]:
        return {**coordinator, "Idempotency-Key": f"pool-{number}"}

    def import_line(number: int) -> str:
        return json.dumps({"type": "worker", "external_id": f"pool-{number}", "name": "Pool", "role": "counsellor"})

    calls = []
    for number in range(8):  # eight of each kind, interleaved
        calls += [
            api.get(f"/v1/clients/{client['id']}", headers=system),
            api.get("/v1/clients", headers=system),
            api.get(f"/v1/clients/{client['id']}/history", headers=system),
            api.get(f"/v1/workers/{worker['id']}", headers=coordinator),
            api.post(
                "/v1/workers", json={"region": "05", "name": f"W{number}", "role": "counsellor"}, headers=coordinator
            ),
            api.post(
                "/v1/workers",
                json={"region": "05", "name": f"I{number}", "role": "counsellor"},
                headers=idempotent(number),
            ),
            api.post(
                "/v1/imports",
                content=import_line(number),
                headers={**coordinator, "Content-Type": "application/x-ndjson", "Idempotency-Key": f"import-{number}"},
            ),
            api.post(
                "/v1/clients",
                json={
                    "personal_id": new_hetu(),
                    "first_name": "Pool",
                    "last_name": "Test",
                    "organising_region": "05",
                    "residence_region": "05",
                    "aftercare_start": client["aftercare_start"],
                },
                headers=system,
            ),
        ]
    responses = await asyncio.gather(*calls)
    statuses = [response.status_code for response in responses]
    assert len(statuses) == 64
    assert all(status in (200, 201) for status in statuses), [r.text for r in responses if r.status_code >= 300]


async def test_a_request_that_finds_no_free_connection_is_503_and_may_retry(api, auth, settings):
    application = create_app(
        settings.model_copy(update={"db_pool_size": 1, "db_max_overflow": 0, "db_pool_timeout": 0.5})
    )
    headers = auth("coordinator", region="05")
    transport = httpx.ASGITransport(app=application)
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://silta.test") as client:
            async with application.state.engine.connect() as held:  # the pool's only connection, taken
                await held.exec_driver_sql("SELECT 1")
                busy = await client.get("/v1/workers", headers=headers)
            assert busy.status_code == 503
            assert (busy.json()["code"], busy.headers["retry-after"]) == ("unavailable", "1")
            assert (await client.get("/v1/workers", headers=headers)).status_code == 200
    finally:
        await application.state.engine.dispose()


def test_a_sqlite_file_has_one_connection_per_process(tmp_path):
    """Every transaction writes (BEGIN IMMEDIATE); with five connections, requests waited for SQLite's
    write lock in its busy handler, which sleeps in growing steps (a p99 of 885 ms at 4 callers)."""
    from app.config import Settings
    from app.db import make_engine

    engine = make_engine(Settings(database_url=f"sqlite:///{tmp_path / 'one.db'}", data_dir=tmp_path))
    assert (engine.pool.size(), engine.pool._max_overflow) == (1, 0)  # type: ignore[attr-defined]

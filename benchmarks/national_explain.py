"""The statements the heavy endpoints send, and ``EXPLAIN (ANALYZE, BUFFERS)`` of the slowest few.

The app runs in this process (``create_app`` on the run's copy, through httpx's ASGI transport,
no server): a ``before/after_cursor_execute`` hook on its engine records each statement with its
parameters and how long it took. Each request is sent twice and the second one is recorded (warm
caches, as under load). Every distinct SELECT is then explained with the same parameters over
asyncpg, inside a transaction that is rolled back, and the slowest by PostgreSQL's own execution
time are kept.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import httpx
from sqlalchemy import event

from app.config import Settings
from app.main import create_app

MAX_EXPLAINED = 80  # distinct SELECTs explained at most


@dataclass(frozen=True)
class Request:
    """One request of one endpoint, with the token (a file) it is sent with."""

    endpoint: str
    method: str
    path: str
    bearer_file: Path
    body: str | None = None


@dataclass
class Sent:
    endpoint: str
    statement: str
    parameters: Any
    ms: float


async def _capture(settings: Settings, requests: Sequence[Request]) -> tuple[list[Sent], dict[str, float]]:
    """The statements of each recorded request, and each recorded request's wall time (ms, in-process)."""
    app = create_app(settings)
    engine = app.state.engine.sync_engine
    sent: list[Sent] = []
    took: dict[str, float] = {}
    current = {"endpoint": "", "record": False}

    def before(_conn: Any, _cursor: Any, _statement: str, _parameters: Any, context: Any, _many: bool) -> None:
        context._bench_t0 = time.perf_counter()

    def after(_conn: Any, _cursor: Any, statement: str, parameters: Any, context: Any, _many: bool) -> None:
        if current["record"]:
            ms = (time.perf_counter() - context._bench_t0) * 1000
            sent.append(Sent(str(current["endpoint"]), statement, parameters, ms))

    event.listen(engine, "before_cursor_execute", before)
    event.listen(engine, "after_cursor_execute", after)
    try:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://silta.test", timeout=60.0) as client:
            for request in requests:
                headers = {"Authorization": "Bearer " + request.bearer_file.read_text().strip()}
                if request.body is not None:
                    headers["Content-Type"] = "application/json"
                # a read twice, the second recorded; a write once (a second would be another request)
                for record in (False, True) if request.method == "GET" else (True,):
                    current.update(endpoint=request.endpoint, record=record)
                    t0 = time.perf_counter()
                    response = await client.request(request.method, request.path, headers=headers, content=request.body)
                    took[request.endpoint] = (time.perf_counter() - t0) * 1000
                    if response.status_code >= 400 and request.method == "GET":  # a repeated write may answer 409
                        raise RuntimeError(f"{request.path}: HTTP {response.status_code} {response.text[:300]}")
                current["record"] = False
    finally:
        event.remove(engine, "before_cursor_execute", before)
        event.remove(engine, "after_cursor_execute", after)
        await app.state.engine.dispose()
    return sent, took


async def _explain(dsn: str, chosen: Sequence[Sent]) -> list[str]:
    conn = await asyncpg.connect(dsn)
    plans = []
    try:
        for one in chosen:
            transaction = conn.transaction()
            await transaction.start()
            try:
                rows = await conn.fetch("EXPLAIN (ANALYZE, BUFFERS) " + one.statement, *(one.parameters or ()))
                plans.append("\n".join(row[0] for row in rows))
            except asyncpg.PostgresError as exc:
                plans.append(f"(EXPLAIN failed: {exc.__class__.__name__}: {exc})")
            finally:
                await transaction.rollback()
    finally:
        await conn.close()
    return plans


def execution_ms(plan: str) -> float:
    """The ``Execution Time`` line of an ``EXPLAIN ANALYZE`` (0 when there is none)."""
    for line in reversed(plan.splitlines()):
        if line.startswith("Execution Time:"):
            return float(line.split(":", 1)[1].split()[0])
    return 0.0


def explain_heavy(
    settings: Settings, dsn: str, requests: Sequence[Request], *, top: int
) -> tuple[list[dict[str, Any]], dict[str, int], dict[str, float]]:
    """The ``top`` distinct SELECTs that take PostgreSQL longest, with their plans; statements per endpoint;
    the wall time (ms) of each endpoint's recorded request.

    Every distinct SELECT sent (at most ``MAX_EXPLAINED``) is explained, and ranked by the plan's own
    execution time: the app-side time of one statement includes asyncpg's first prepare and type
    introspection on a fresh connection, which says nothing about the query.
    """
    sent, took = asyncio.run(_capture(settings, requests))
    per_endpoint: dict[str, int] = {}
    for one in sent:
        per_endpoint[one.endpoint] = per_endpoint.get(one.endpoint, 0) + 1
    selects: dict[str, Sent] = {}
    for one in sent:
        if one.statement.lstrip().upper().startswith(("SELECT", "WITH")) and one.statement not in selects:
            selects[one.statement] = one
    chosen = list(selects.values())[:MAX_EXPLAINED]
    plans = asyncio.run(_explain(dsn, chosen))
    ranked = sorted(zip(chosen, plans, strict=True), key=lambda pair: execution_ms(pair[1]), reverse=True)
    return (
        [
            {
                "endpoint": one.endpoint,
                "ms": execution_ms(plan),
                "app_ms": one.ms,
                "statement": one.statement,
                "plan": plan,
            }
            for one, plan in ranked[:top]
        ],
        per_endpoint,
        took,
    )

"""Small builders for API scenarios."""

from __future__ import annotations

import contextlib
import datetime as dt
import itertools
from collections.abc import Callable, Iterator
from typing import Any

import httpx
from sqlalchemy import event
from sqlalchemy.engine.interfaces import CacheStats

from app.services.clock import today
from tests.conftest import hetu

_individual = itertools.count(200)


def born(years_ago: int = 20) -> dt.date:
    return today().replace(month=3, day=15) - dt.timedelta(days=365 * years_ago)


def new_hetu(birth: dt.date | None = None) -> str:
    return hetu(birth or born(), next(_individual) % 700 + 2)


def client_body(**overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "personal_id": new_hetu(),
        "first_name": "Aino",
        "last_name": "Mäkinen",
        "organising_region": "05",
        "residence_region": "08",
        "aftercare_start": (today() - dt.timedelta(days=30)).isoformat(),
        "support_level": "standard",
    }
    body.update(overrides)
    return {key: value for key, value in body.items() if value is not ...}


async def register(api: httpx.AsyncClient, headers: dict[str, str], **overrides: Any) -> dict[str, Any]:
    response = await api.post("/v1/clients", json=client_body(**overrides), headers=headers)
    assert response.status_code == 201, response.text
    return response.json()


async def add_worker(
    api: httpx.AsyncClient, headers: dict[str, str], region: str, role: str = "social_worker", **extra: Any
) -> dict[str, Any]:
    response = await api.post(
        "/v1/workers",
        json={"region": region, "name": "Worker " + region, "role": role, **extra},
        headers=headers,
    )
    assert response.status_code == 201, response.text
    return response.json()


async def assign(
    api: httpx.AsyncClient,
    headers: dict[str, str],
    client_id: str,
    responsibility: str,
    worker_id: str,
    **extra: Any,
) -> httpx.Response:
    return await api.post(
        f"/v1/clients/{client_id}/assignments",
        json={"responsibility": responsibility, "worker_id": worker_id, **extra},
        headers=headers,
    )


@contextlib.contextmanager
def _listening(app: Any, note: Callable[..., None]) -> Iterator[None]:
    """``note`` sees every statement the app sends while the block runs (reads' engine included:
    its options engine shares the app engine's listeners)."""
    engine = app.state.engine.sync_engine
    event.listen(engine, "before_cursor_execute", note)
    try:
        yield
    finally:
        event.remove(engine, "before_cursor_execute", note)


@contextlib.contextmanager
def statements_sent(app: Any) -> Iterator[list[str]]:
    """The SQL statements the app sends while the block runs (BEGIN and COMMIT are not statements)."""
    sent: list[str] = []

    def note(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        if not statement.startswith("BEGIN"):  # SQLite's BEGIN IMMEDIATE goes through the cursor
            sent.append(statement)

    with _listening(app, note):
        yield sent


@contextlib.contextmanager
def instances_loaded(*models: type) -> Iterator[list[str]]:
    """The ORM instances (their class names) built from rows of ``models`` while the block runs."""
    loaded: list[str] = []

    def note(instance: Any, _context: Any) -> None:
        loaded.append(type(instance).__name__)

    for model in models:
        event.listen(model, "load", note)
    try:
        yield loaded
    finally:
        for model in models:
            event.remove(model, "load", note)


@contextlib.contextmanager
def statements_compiled(app: Any) -> Iterator[list[str]]:
    """The statements the app compiles while the block runs (SQLAlchemy's statement cache missed)."""
    compiled: list[str] = []

    def note(_conn: Any, _cursor: Any, statement: str, _params: Any, context: Any, _many: bool) -> None:
        missed = getattr(context, "cache_hit", None) in (CacheStats.CACHE_MISS, CacheStats.NO_CACHE_KEY)
        if missed and not statement.startswith("BEGIN"):  # SQLite's BEGIN IMMEDIATE is a driver string
            compiled.append(statement)

    with _listening(app, note):
        yield compiled

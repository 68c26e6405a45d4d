"""Contract conventions: problem details everywhere, tokens on every /v1 route, request ids, limits."""

from __future__ import annotations

import re
import uuid

import pytest

from app.config import Settings
from app.main import create_app


def _v1_operations() -> list[tuple[str, str]]:
    spec = create_app(Settings(database_url="sqlite://")).openapi()
    return [
        (method.upper(), path) for path, item in spec["paths"].items() if path.startswith("/v1/") for method in item
    ]


@pytest.mark.parametrize(("method", "path"), _v1_operations())
async def test_every_v1_route_requires_a_token(api, method, path):
    url = re.sub(r"\{[^}]+\}", lambda m: "05" if m.group(0) == "{code}" else str(uuid.uuid4()), path)
    response = await api.request(method, url, json={})
    assert response.status_code == 401
    assert response.headers["content-type"] == "application/problem+json"
    assert response.headers["www-authenticate"] == "Bearer"
    assert response.json()["code"] == "unauthorized"


async def test_unknown_paths_and_methods_are_problems(api, auth):
    missing = await api.get("/v1/nothing-here", headers=auth("system", region="05"))
    assert missing.status_code == 404 and missing.json()["code"] == "not_found"
    assert missing.headers["content-type"] == "application/problem+json"
    wrong = await api.delete("/v1/regions", headers=auth("system", region="05"))
    assert wrong.status_code == 405 and wrong.json()["code"] == "method_not_allowed"


async def test_request_ids_are_echoed_or_made(api, auth):
    given = await api.get("/healthz", headers={"X-Request-ID": "batch-42"})
    assert given.headers["x-request-id"] == "batch-42"
    made = await api.get("/healthz", headers={"X-Request-ID": "bad id with spaces"})
    assert uuid.UUID(made.headers["x-request-id"])


async def test_the_request_id_is_written_to_the_change_log(api, auth, app):
    from sqlalchemy import text

    headers = {**auth("coordinator", region="05"), "X-Request-ID": "req-777"}
    await api.post("/v1/workers", json={"region": "05", "name": "A", "role": "counsellor"}, headers=headers)
    async with app.state.engine.connect() as conn:
        ids = (await conn.execute(text("SELECT request_id FROM change_event"))).scalars().all()
    assert ids == ["req-777"]


async def test_oversized_bodies_are_refused_with_413(api, auth):
    body = b'{"name": "' + b"x" * (1024 * 1024 + 10) + b'"}'
    response = await api.post(
        "/v1/workers",
        content=body,
        headers={**auth("coordinator", region="05"), "content-type": "application/json"},
    )
    assert response.status_code == 413 and response.json()["code"] == "payload_too_large"


async def test_health_and_readiness_need_no_token(api):
    assert (await api.get("/healthz")).json() == {"status": "ok"}
    ready = await api.get("/readyz")
    assert ready.status_code == 200 and ready.json()["revision"] == "0002"


async def test_every_write_leaves_change_log_rows(api, auth, app):
    from sqlalchemy import text

    from tests.api.helpers import add_worker, assign, register

    headers = auth("coordinator", region="05")
    client = await register(api, headers, residence_region="05")
    worker = await add_worker(api, headers, "05")
    start = client["aftercare_start"]
    created = (await assign(api, headers, client["id"], "organising", worker["id"], start_date=start)).json()
    await api.post(f"/v1/assignments/{created['id']}/end", json={"reason": "r"}, headers=headers)
    await api.patch(f"/v1/clients/{client['id']}", json={"last_name": "B"}, headers=headers)
    await api.patch("/v1/regions/05/settings", json={"grace_days": 10}, headers=headers)
    async with app.state.engine.connect() as conn:
        actions = (await conn.execute(text("SELECT action FROM change_event ORDER BY id"))).scalars().all()
    assert actions == [
        "client.registered",
        "gap.opened",
        "worker.created",
        "assignment.created",
        "gap.closed",
        "assignment.ended",
        "gap.opened",
        "client.updated",
        "region.settings_updated",
    ]

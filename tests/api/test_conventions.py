"""Contract conventions: problem details everywhere, tokens on every /v1 route, request ids, limits."""

from __future__ import annotations

import json
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
    from app.migrate import head_revision

    assert ready.status_code == 200 and ready.json()["revision"] == head_revision()


@pytest.mark.parametrize(
    ("text", "stored"),
    [
        ("Ai\x00no", False),  # NUL: PostgreSQL cannot store it at all
        ("Ai\x1bno", False),
        ("Ai\x7fno", False),
        ("Ai\ud800no", False),  # an unpaired surrogate, valid JSON escape, not valid UTF-8
        ("Aino\tMaria", True),
        ("Åsa-Öllö 🙂", True),
    ],
)
async def test_text_the_database_cannot_store_faithfully_is_refused_up_front(api, auth, text, stored):
    from tests.api.helpers import client_body

    headers = auth("system", region="05")
    body = client_body(first_name=text, external_ids=[{"system": "sys", "id": text}])
    raw = json.dumps(body)  # ASCII escapes, as a client would send an unpaired surrogate
    response = await api.post("/v1/clients", content=raw, headers={**headers, "content-type": "application/json"})
    if stored:
        assert response.status_code == 201, response.text
        assert response.json()["first_name"] == text
    else:
        assert response.status_code == 422 and response.json()["code"] == "validation_error"
        assert {error["loc"][0] for error in response.json()["errors"]} == {"first_name", "external_ids"}
        listed = (await api.get("/v1/clients", headers=headers)).json()["items"]
        assert listed == []


@pytest.mark.parametrize(
    ("error", "status", "code"),
    [
        ("data", 422, "invalid_value"),
        ("integrity", 409, "conflict"),
        ("operational", 503, "unavailable"),
        ("other", 500, "internal_error"),
    ],
)
async def test_database_errors_no_service_maps_become_problems_without_sql(error, status, code):
    import httpx
    from sqlalchemy.exc import DataError, IntegrityError, OperationalError

    raised = {
        "data": DataError("INSERT INTO client VALUES ('secret')", {}, Exception("value too long")),
        "integrity": IntegrityError("INSERT INTO client VALUES ('secret')", {}, Exception("duplicate")),
        "operational": OperationalError("SELECT 1", {}, Exception("connection refused")),
        "other": RuntimeError("INSERT INTO client VALUES ('secret')"),
    }[error]
    app = create_app(Settings(database_url="sqlite://"))

    @app.get("/boom")
    async def boom() -> None:
        raise raised

    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as client:
        response = await client.get("/boom")
    assert response.status_code == status and response.json()["code"] == code
    assert "secret" not in response.text and "INSERT" not in response.text


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/v1/regions/05/settings", {"grace_days": "14"}),
        ("/v1/regions/05/settings", {"grace_days": 14.5}),
        ("/v1/regions/05/settings", {"grace_days": None}),
        ("/v1/regions/05/settings", {"aftercare_end_age": True}),
        ("/v1/regions/05/settings", {"caseload_targets": {"counsellor": "30"}}),
        ("WORKER", {"active": "false"}),
        ("WORKER", {"active": 0}),
        ("WORKER", {"name": None}),
        ("CLIENT", {"address_protection": "yes"}),
        ("CLIENT", {"address_protection": 1}),
        ("CLIENT", {"first_name": None}),
    ],
)
async def test_patches_take_json_types_as_they_are_and_no_nulls(api, auth, path, body):
    from tests.api.helpers import add_worker, register

    headers = auth("coordinator", region="05")
    if path == "WORKER":
        path = f"/v1/workers/{(await add_worker(api, headers, '05'))['id']}"
    elif path == "CLIENT":
        path = f"/v1/clients/{(await register(api, headers))['id']}"
    before = (await api.get(path.removesuffix("/settings"), headers=headers)).json()
    response = await api.patch(path, json=body, headers=headers)
    assert response.status_code == 422 and response.json()["code"] == "validation_error", response.text
    assert (await api.get(path.removesuffix("/settings"), headers=headers)).json() == before


@pytest.mark.parametrize("kind", ["client", "worker", "settings"])
async def test_a_patch_that_changes_nothing_makes_no_version_and_no_log_row(api, auth, app, kind):
    from sqlalchemy import text

    from tests.api.helpers import add_worker, register

    headers = auth("coordinator", region="05")
    if kind == "client":
        created = await register(api, headers, external_ids=[{"system": "s", "id": "1"}])
        path, same = (
            f"/v1/clients/{created['id']}",
            {"first_name": created["first_name"], "external_ids": [{"system": "s", "id": "1"}]},
        )
    elif kind == "worker":
        created = await add_worker(api, headers, "05")
        path, same = f"/v1/workers/{created['id']}", {"name": created["name"], "active": True}
    else:
        path, same = "/v1/regions/05/settings", {"grace_days": 14}
    async with app.state.engine.connect() as conn:
        logged = (await conn.execute(text("SELECT count(*) FROM change_event"))).scalar()
    for body in ({}, same):
        response = await api.patch(path, json=body, headers=headers)
        assert response.status_code == 200, response.text
        if kind != "settings":
            assert response.json()["updated_at"] == created["updated_at"]
    async with app.state.engine.connect() as conn:
        assert (await conn.execute(text("SELECT count(*) FROM change_event"))).scalar() == logged

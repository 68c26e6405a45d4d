"""Application logs of a run of requests: JSON lines, each with its request id, and no identity code."""

from __future__ import annotations

import io
import json
import logging
import uuid

import pytest
from sqlalchemy import text

from app import logs
from tests.api.helpers import client_body, new_hetu


@pytest.fixture
def log_lines():
    """What the JSON handler writes while the test runs, at INFO and with the loggers quietened as
    ``logs.configure`` does (httpx would otherwise log the test client's own URLs)."""
    stream = io.StringIO()
    handler, root = logs.handler(stream), logging.getLogger()
    levels = {name: logging.getLogger(name).level for name in (None, *logs.QUIET)}
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    for name in logs.QUIET:
        logging.getLogger(name).setLevel(logging.WARNING)
    yield lambda: stream.getvalue().splitlines()
    root.removeHandler(handler)
    for name, level in levels.items():
        logging.getLogger(name).setLevel(level)


async def test_every_log_line_is_json_with_its_request_id_and_names_no_one(api, auth, log_lines):
    h05 = auth("coordinator", region="05")
    body = client_body()
    code, other = body["personal_id"], new_hetu()
    invalid = other[:-1] + ("A" if other[-1] != "A" else "B")  # a wrong check character
    answers = [
        await api.post("/v1/clients", json=body, headers={**h05, "X-Request-ID": "register-1"}),
        await api.post("/v1/clients/search", json={"personal_id": code}, headers=h05),
        await api.post("/v1/clients/search", json={"personal_id": code.lower()}, headers=auth("system", region="19")),
        await api.post("/v1/clients", json=body, headers=h05),  # the same person again: 409
        await api.post("/v1/clients", json={**body, "personal_id": invalid}, headers=h05),  # 422
        await api.post("/v1/clients/search", json={"personal_id": code}),  # no token: 401
        await api.get(f"/v1/clients/{code}", headers=h05),  # an identity code where an id belongs: 422
        await api.get(f"/v1/lookup/{code}"),  # and on a path that does not exist: 404
    ]
    assert [answer.status_code for answer in answers] == [201, 200, 200, 409, 422, 401, 422, 404]
    request_ids = [answer.headers["X-Request-ID"] for answer in answers]
    assert request_ids[0] == "register-1"

    lines = log_lines()
    records = [json.loads(line) for line in lines]  # every line is one JSON object
    assert all({"timestamp", "level", "logger", "message", "request_id"} <= record.keys() for record in records)
    assert {record["request_id"] for record in records} <= set(request_ids)
    access = [record for record in records if record["logger"] == "silta.access"]
    assert [record["request_id"] for record in access] == request_ids
    assert [(record["method"], record["route"], record["status"]) for record in access] == [
        ("POST", "/v1/clients", 201),
        ("POST", "/v1/clients/search", 200),
        ("POST", "/v1/clients/search", 200),
        ("POST", "/v1/clients", 409),
        ("POST", "/v1/clients", 422),
        ("POST", "/v1/clients/search", 401),
        ("GET", "/v1/clients/{client_id}", 422),
        ("GET", "unmatched", 404),
    ]
    assert all(isinstance(record["duration_ms"], float) and record["duration_ms"] >= 0 for record in access)
    written = "\n".join(lines)
    for personal_id in (code, code.lower(), invalid):
        assert personal_id not in written
    assert logs.MASK not in written  # nothing even tried to log one: the mask was not needed


@pytest.mark.logs_identity_codes
def test_identity_codes_are_masked_in_messages_extras_and_tracebacks():
    stream = io.StringIO()
    logger = logging.getLogger("silta.test-mask")
    logger.addHandler(logs.handler(stream))
    logger.propagate = False
    try:
        try:
            raise ValueError("no client 131052-308T")
        except ValueError:
            logger.exception("lookup of %s failed", "131052-308t", extra={"given": "010594Y9032"})
    finally:
        logger.handlers.clear()
        logger.propagate = True
    record = json.loads(stream.getvalue())
    assert "131052-308T" not in stream.getvalue() and "131052-308t" not in stream.getvalue()
    assert record["message"] == f"lookup of {logs.MASK} failed"
    assert record["given"] == logs.MASK
    assert f"no client {logs.MASK}" in record["exc_info"]


@pytest.mark.parametrize("text", [str(uuid.UUID("00123456-7890-4abc-8def-0123456789ab")), "order 1234567-890A1", "v2"])
def test_the_mask_leaves_ids_alone(text):
    assert logs.IDENTITY_CODE.search(text) is None


async def test_a_request_id_holding_an_identity_code_is_replaced_before_anything_records_it(api, auth, app, log_lines):
    code = new_hetu()
    headers = {**auth("coordinator", region="05"), "X-Request-ID": f"register-{code}"}
    answer = await api.post("/v1/workers", json={"region": "05", "name": "A", "role": "counsellor"}, headers=headers)
    assert answer.status_code == 201
    replaced = answer.headers["X-Request-ID"]
    assert uuid.UUID(replaced)
    assert [json.loads(line)["request_id"] for line in log_lines()] == [replaced]
    async with app.state.engine.connect() as conn:
        assert (await conn.execute(text("SELECT request_id FROM change_event"))).scalars().all() == [replaced]

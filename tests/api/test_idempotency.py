"""Idempotency-Key: a retried POST replays its first response and does nothing twice."""

from __future__ import annotations

import asyncio
import datetime as dt

import psycopg
import pytest
from sqlalchemy import insert, text

from app.models.integration import IdempotencyRecord
from app.services import idempotency
from tests.api.helpers import add_worker, client_body
from tests.api.test_audit_changes import RECIPES, _entries, _world
from tests.conftest import PG_ADMIN_URL, PG_TEST_DB

WORKER = {"region": "05", "name": "Eeva Ojala", "role": "counsellor"}


async def _count(app, table: str) -> int:
    async with app.state.engine.connect() as conn:
        return (await conn.execute(text(f"SELECT count(*) FROM {table}"))).scalar()


POSTS = sorted(op for op in RECIPES if "update" not in op and "delete" not in op)  # PATCH and DELETE take no key


@pytest.mark.parametrize("operation", POSTS)
async def test_every_post_replays_its_first_response_and_writes_once(api, auth, app, operation):
    recipe, _ = RECIPES[operation]
    world = await _world(api, auth)
    call = await recipe(api, auth, world)
    api.headers["Idempotency-Key"] = f"retry-{operation}"
    before = await _entries(app)
    first = await call()
    second = await api.send(first.request)  # the very same request again, as a client retrying it would
    assert first.status_code in (200, 201), first.text
    assert "idempotent-replayed" not in first.headers
    assert second.headers["idempotent-replayed"] == "true"
    assert (second.status_code, second.content) == (first.status_code, first.content)
    assert second.headers["content-type"] == first.headers["content-type"]
    assert len(await _entries(app)) == len(before) + 1


async def test_the_same_key_with_another_body_is_refused(api, auth, app):
    headers = {**auth("coordinator", region="05", sub="batch-1"), "Idempotency-Key": "nightly-0001"}
    assert (await api.post("/v1/workers", json=WORKER, headers=headers)).status_code == 201
    other = await api.post("/v1/workers", json={**WORKER, "name": "Someone Else"}, headers=headers)
    assert other.status_code == 422
    assert other.json()["code"] == "idempotency_key_reused"
    assert other.headers["content-type"] == "application/problem+json"
    elsewhere = await api.post("/v1/clients", json={}, headers=headers)
    assert elsewhere.json()["code"] == "idempotency_key_reused"
    assert await _count(app, "worker") == 1


async def test_key_order_in_the_body_does_not_matter(api, auth, app):
    headers = {**auth("coordinator", region="05", sub="batch-1"), "Idempotency-Key": "k-order"}
    first = await api.post("/v1/workers", json=WORKER, headers=headers)
    second = await api.post("/v1/workers", json=dict(reversed(list(WORKER.items()))), headers=headers)
    assert second.headers.get("idempotent-replayed") == "true"
    assert second.json() == first.json()
    assert await _count(app, "worker") == 1


async def test_keys_are_scoped_to_the_token_subject(api, auth, app):
    for subject in ("system-a", "system-b"):
        headers = {**auth("coordinator", region="05", sub=subject), "Idempotency-Key": "shared-key"}
        response = await api.post("/v1/workers", json=WORKER, headers=headers)
        assert response.status_code == 201
        assert "idempotent-replayed" not in response.headers
    assert await _count(app, "worker") == 2


async def test_a_refused_request_is_replayed_as_refused_and_stores_nothing_else(api, auth, app):
    headers = {**auth("coordinator", region="05", sub="batch-2"), "Idempotency-Key": "bad-region"}
    body = {**WORKER, "region": "08"}  # another region's worker: not allowed
    first = await api.post("/v1/workers", json=body, headers=headers)
    second = await api.post("/v1/workers", json=body, headers=headers)
    assert first.status_code == 403
    assert (second.status_code, second.content, second.headers["idempotent-replayed"]) == (403, first.content, "true")
    assert await _count(app, "worker") == 0
    assert await _count(app, "change_event") == 0


async def test_without_a_key_every_post_is_a_new_request(api, auth, app):
    headers = auth("coordinator", region="05", sub="batch-3")
    for _ in range(2):
        assert (await api.post("/v1/workers", json=WORKER, headers=headers)).status_code == 201
    assert await _count(app, "worker") == 2
    assert await _count(app, "idempotency_key") == 0


async def test_a_key_older_than_24_hours_is_forgotten(api, auth, app):
    headers = {**auth("coordinator", region="05", sub="batch-4"), "Idempotency-Key": "yesterday"}
    assert (await api.post("/v1/workers", json=WORKER, headers=headers)).status_code == 201
    old = dt.datetime.now(dt.UTC) - idempotency.TTL - dt.timedelta(minutes=1)
    async with app.state.engine.begin() as conn:
        await conn.execute(text("UPDATE idempotency_key SET created_at = :old"), {"old": old})
    again = await api.post("/v1/workers", json=WORKER, headers=headers)
    assert again.status_code == 201
    assert "idempotent-replayed" not in again.headers
    assert await _count(app, "worker") == 2
    async with app.state.sessionmaker() as session:
        assert await idempotency.purge_expired(session) == 0  # the old record was replaced by the new one
    assert await _count(app, "idempotency_key") == 1


@pytest.mark.parametrize("key", ["", "has space", "ä-umlaut".encode(), "x" * 256, "131052-308T", "client-010101a123n"])
async def test_malformed_keys_are_refused(api, auth, app, key):
    headers = {**auth("coordinator", region="05"), "Idempotency-Key": key}
    response = await api.post("/v1/workers", json=WORKER, headers=headers)
    assert response.status_code == 422
    assert response.json()["code"] == "validation_error"
    assert await _count(app, "worker") == 0


async def test_a_stored_response_holds_no_identity_code_and_its_request_hash_needs_the_key(api, auth, app):
    """The record of a registration keeps the answer (which shows the code) encrypted, and the hash of
    the request (which holds the code) keyed: the rest of the request is in the client's row, so a
    plain hash would give the code away to ~6,000 guesses."""
    body = client_body()
    headers = {**auth("system", region="05", sub="registrar"), "Idempotency-Key": "register-1"}
    first = await api.post("/v1/clients", json=body, headers=headers)
    assert first.status_code == 201 and first.json()["personal_id"] == body["personal_id"]
    async with app.state.engine.connect() as conn:
        rows = (await conn.execute(text("SELECT * FROM idempotency_key"))).all()
    stored = repr([tuple(row) for row in rows])
    assert body["personal_id"] not in stored and body["personal_id"].encode().hex() not in stored
    unkeyed = idempotency.legacy_request_hash("POST", "/v1/clients", "", first.request.content)
    assert unkeyed not in stored
    again = await api.post("/v1/clients", json=body, headers=headers)
    assert again.headers["idempotent-replayed"] == "true" and again.content == first.content


async def test_a_record_stored_before_keyed_hashes_still_replays(api, auth, app):
    """Records written by the previous release (plain hash, plain body) replay for their 24 hours."""
    headers = {**auth("coordinator", region="05", sub="upgrader"), "Idempotency-Key": "before-upgrade"}
    request = api.build_request("POST", "/v1/workers", json=WORKER, headers=headers)
    old = {
        "subject": "upgrader",
        "key": "before-upgrade",
        "method": "POST",
        "path": "/v1/workers",
        "request_hash": idempotency.legacy_request_hash("POST", "/v1/workers", "", request.content),
        "status_code": 201,
        "headers": {"content-type": "application/json"},
        "body": b'{"id": "from-before"}',
        "created_at": dt.datetime.now(dt.UTC),
    }
    async with app.state.engine.begin() as conn:
        await conn.execute(insert(IdempotencyRecord).values(old))
    replayed = await api.send(request)
    assert replayed.headers["idempotent-replayed"] == "true" and replayed.json() == {"id": "from-before"}
    assert await _count(app, "worker") == 0


async def test_reads_by_post_ignore_the_key(api, auth, app):
    headers = {**auth("system", region="05", sub="searcher"), "Idempotency-Key": "search-1"}
    for _ in range(2):
        response = await api.post("/v1/clients/search", json={"personal_id": "010101-123N"}, headers=headers)
        assert "idempotent-replayed" not in response.headers
    assert await _count(app, "idempotency_key") == 0


async def test_parallel_requests_with_one_key_have_one_effect(api, auth, app, db_backend):
    headers = {**auth("coordinator", region="05", sub="batch-5"), "Idempotency-Key": "parallel"}
    responses = await asyncio.gather(*(api.post("/v1/workers", json=WORKER, headers=headers) for _ in range(8)))
    created = [r for r in responses if r.status_code == 201]
    assert created and all(r.content == created[0].content for r in created)
    assert all(r.status_code == 201 or r.json()["code"] == "idempotency_key_in_use" for r in responses)
    assert sum("idempotent-replayed" not in r.headers for r in created) == 1
    assert await _count(app, "worker") == 1
    assert await _count(app, "change_event") == 1


def _pg_url() -> str:
    return PG_ADMIN_URL.rsplit("/", 1)[0] + "/" + PG_TEST_DB


@pytest.mark.postgres_only
async def test_a_key_whose_first_request_is_still_running_answers_409(api, auth, app):
    subject, key = "batch-6", "in-flight"
    headers = {**auth("coordinator", region="05", sub=subject), "Idempotency-Key": key}
    name = f"idempotency\n{subject}\n{key}"
    with psycopg.connect(_pg_url(), autocommit=True) as running:  # stands in for the first request
        running.execute("SELECT pg_advisory_lock(hashtextextended(%s, 0))", (name,))
        busy = await api.post("/v1/workers", json=WORKER, headers=headers)
        assert busy.status_code == 409
        assert busy.json()["code"] == "idempotency_key_in_use"
        assert await _count(app, "worker") == 0
        running.execute("SELECT pg_advisory_unlock(hashtextextended(%s, 0))", (name,))
    assert (await api.post("/v1/workers", json=WORKER, headers=headers)).status_code == 201


@pytest.mark.postgres_only
async def test_the_unique_key_rolls_back_an_effect_that_raced_past_the_lookup(api, auth, app, monkeypatch):
    """If a second request ever got past the lookup, the primary key refuses its record and its effect."""
    claim = idempotency.IdempotentCall.claim

    async def claim_then_lose_the_race(self, subject, *args):
        await claim(self, subject, *args)
        with psycopg.connect(_pg_url(), autocommit=True) as rival:
            rival.execute(
                "INSERT INTO idempotency_key (subject, key, method, path, request_hash, status_code, headers, body,"
                " created_at) VALUES (%s, %s, 'POST', '/v1/workers', 'x', 201, '{}', '', now())",
                (subject, self.key),
            )

    monkeypatch.setattr(idempotency.IdempotentCall, "claim", claim_then_lose_the_race)
    headers = {**auth("coordinator", region="05", sub="batch-7"), "Idempotency-Key": "raced"}
    response = await api.post("/v1/workers", json=WORKER, headers=headers)
    assert response.status_code == 409
    assert response.json()["code"] == "idempotency_key_in_use"
    assert await _count(app, "worker") == 0
    assert await _count(app, "change_event") == 0


async def test_the_effect_and_the_record_commit_together(api, auth, app):
    headers = {**auth("coordinator", region="05", sub="batch-8"), "Idempotency-Key": "together"}
    worker = await add_worker(api, headers, "05")
    async with app.state.engine.connect() as conn:
        row = (await conn.execute(text("SELECT status_code, path FROM idempotency_key"))).one()
    assert tuple(row) == (201, "/v1/workers")
    assert await _count(app, "worker") == 1
    assert worker["id"]

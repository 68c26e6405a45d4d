"""Bulk import: keyed by the source systems' ids, re-runnable, dry runs, atomic or line by line."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import httpx
import pytest
from sqlalchemy import text

from app import middleware
from app.errors import Unprocessable
from app.services import clients as client_service
from app.services import import_bulk, import_parsing
from app.services import imports as import_service
from app.services.clock import today
from tests.api.helpers import new_hetu

START = (today() - dt.timedelta(days=30)).isoformat()
NDJSON = {"Content-Type": "application/x-ndjson"}


@pytest.fixture(autouse=True, params=["set-based", "services"])
def import_path(request, monkeypatch) -> str:
    """Every test runs on both paths: new rows in bulk, and every line through the API's services."""
    monkeypatch.setattr(import_service, "SET_BASED", request.param == "set-based")
    return request.param


def coord(auth, region: str = "05") -> dict[str, str]:
    return auth("coordinator", region=region, client_system="Lifecare")


def worker(external_id: str, **extra: Any) -> dict[str, Any]:
    return {
        "type": "worker",
        "external_id": external_id,
        "name": f"Worker {external_id}",
        "role": "social_worker",
    } | extra


def client(external_id: str, code: str, system: str = "Lifecare", **extra: Any) -> dict[str, Any]:
    return {
        "type": "client",
        "source_system": system,
        "external_id": external_id,
        "personal_id": code,
        "first_name": "Aino",
        "last_name": "Mäkinen",
        "organising_region": "05",
        "residence_region": "05",
        "aftercare_start": START,
    } | extra


def assignment(client_id: str, worker_id: str, **extra: Any) -> dict[str, Any]:
    return {
        "type": "assignment",
        "source_system": "Lifecare",
        "client_external_id": client_id,
        "worker_external_id": worker_id,
        "responsibility": "organising",
        "start_date": START,
    } | extra


def jsonl(*lines: dict[str, Any] | str) -> bytes:
    return "\n".join(line if isinstance(line, str) else json.dumps(line) for line in lines).encode()


async def post_import(api: httpx.AsyncClient, headers: dict[str, str], body: bytes, **params: Any) -> httpx.Response:
    return await api.post("/v1/imports", content=body, headers={**headers, **NDJSON}, params=params)


def report_of(response: httpx.Response) -> dict[str, Any]:
    """The import report: the answer itself, or inside the 422 problem of a refused atomic import."""
    body = response.json()
    return body["report"] if response.status_code == 422 else body


async def count(app, table: str) -> int:
    async with app.state.engine.connect() as conn:
        return (await conn.execute(text(f"SELECT count(*) FROM {table}"))).scalar_one()  # noqa: S608


async def stored(app) -> dict[str, int]:
    tables = ("worker", "client", "client_external_id", "assignment", "compliance_gap", "change_event")
    return {table: await count(app, table) for table in tables}


async def find(api, headers, external_id: str, system: str = "Lifecare") -> list[dict[str, Any]]:
    body = {"system": system, "external_id": external_id}
    return (await api.post("/v1/clients/search", json=body, headers=headers)).json()["items"]


@pytest.fixture
def file_lines() -> list[dict[str, Any]]:
    """Two workers, two clients and an assignment for each, referring to the earlier lines."""
    return [
        worker("w1"),
        worker("w2", role="counsellor", service="aftercare", email="w2@example.fi"),
        client("c1", new_hetu()),
        client("c2", new_hetu(), support_level="enhanced"),
        assignment("c1", "w1"),
        assignment("c2", "w1"),
    ]


async def test_a_file_creates_workers_clients_and_assignments_referring_to_earlier_lines(api, auth, app, file_lines):
    h = coord(auth)
    response = await post_import(api, h, jsonl(*file_lines))
    assert response.status_code == 200, response.text
    assert response.json() == {
        "dry_run": False,
        "atomic": True,
        "applied": True,
        "lines": 6,
        "created": 6,
        "unchanged": 0,
        "updated": 0,
        "failed": 0,
        "errors": [],
    }
    (c1,) = await find(api, h, "c1")
    assert c1["personal_id"] == file_lines[2]["personal_id"] and c1["compliance"] == "ok"
    workers = (await api.get("/v1/workers", params={"region": "05"}, headers=h)).json()["items"]
    assert {w["external_id"] for w in workers} == {"w1", "w2"}
    named = (await api.get(f"/v1/clients/{c1['id']}/assignments", headers=h)).json()["items"]
    assert [a["worker_id"] for a in named] == [next(w["id"] for w in workers if w["external_id"] == "w1")]
    async with app.state.engine.connect() as conn:
        entries = (await conn.execute(text("SELECT action, request_id FROM change_event ORDER BY id"))).all()
    assert [action for action, _ in entries] == [
        "worker.created",
        "worker.created",
        "client.registered",
        "client.registered",
        "assignment.created",
        "assignment.created",
    ]  # one change entry per applied line, each with the request's id
    assert {request_id for _, request_id in entries} == {response.headers["x-request-id"]}


async def test_rerunning_the_same_file_changes_nothing(api, auth, app, file_lines):
    h = coord(auth)
    assert (await post_import(api, h, jsonl(*file_lines))).status_code == 200
    before = await stored(app)
    again = await post_import(api, h, jsonl(*file_lines))
    assert again.status_code == 200
    assert again.json() | {"errors": None} == {
        "dry_run": False,
        "atomic": True,
        "applied": True,
        "lines": 6,
        "created": 0,
        "unchanged": 6,
        "updated": 0,
        "failed": 0,
        "errors": None,
    }
    assert await stored(app) == before


async def test_a_dry_run_reports_errors_by_line_and_stores_nothing(api, auth, app):
    h = coord(auth)
    body = jsonl(
        worker("w1"),
        "",  # blank lines are skipped but keep the numbering
        "{not json",
        worker("w2", shoe_size=42),
        client("c1", "131052-308T"),  # a valid code, but far too old for aftercare
        client("c2", new_hetu()),
        assignment("c2", "w1"),
        assignment("c2", "nobody", responsibility="residence"),
        "[1, 2]",
        {"type": "pair"},
    )
    response = await post_import(api, h, body, dry_run="true")
    assert response.status_code == 200, response.text
    report = response.json()
    assert report["dry_run"] is True and report["applied"] is False
    assert (report["lines"], report["created"], report["failed"]) == (9, 3, 6)
    assert [(e["line"], e["code"]) for e in report["errors"]] == [
        (3, "invalid_json"),
        (4, "validation_error"),
        (5, "aftercare_age_exceeded"),
        (8, "worker_not_found"),
        (9, "invalid_json"),
        (10, "validation_error"),
    ]
    assert "shoe_size" in report["errors"][1]["detail"]
    assert "131052-308T" not in response.text
    assert await stored(app) == dict.fromkeys(await stored(app), 0)
    assert await find(api, h, "c2") == []


async def test_a_dry_run_of_a_valid_file_counts_what_it_would_do(api, auth, app, file_lines):
    response = await post_import(api, coord(auth), jsonl(*file_lines), dry_run="true", atomic="false")
    assert response.status_code == 200
    assert (response.json()["created"], response.json()["applied"]) == (6, False)
    assert (await stored(app))["change_event"] == 0 and (await stored(app))["client"] == 0


async def test_an_atomic_import_with_one_bad_line_stores_nothing(api, auth, app, file_lines):
    file_lines.insert(3, assignment("c1", "w9"))
    response = await post_import(api, coord(auth), jsonl(*file_lines))
    assert response.status_code == 422
    assert response.headers["content-type"] == "application/problem+json"
    problem = response.json()
    assert problem["code"] == "import_refused" and problem["report"]["applied"] is False
    assert problem["report"]["errors"] == [
        {"line": 4, "code": "worker_not_found", "detail": "region 05 has no worker with external id w9"}
    ]
    assert (problem["report"]["created"], problem["report"]["failed"]) == (6, 1)
    assert await stored(app) == dict.fromkeys(await stored(app), 0)


async def test_a_non_atomic_import_stores_the_good_lines_and_reports_the_others(
    api, auth, app, file_lines, monkeypatch
):
    monkeypatch.setattr(import_service, "BATCH_LINES", 2)  # three commits; lines refer to earlier batches
    h = coord(auth)
    file_lines[3]["residence_region"] = "99"
    response = await post_import(api, h, jsonl(*file_lines), atomic="false")
    assert response.status_code == 200, response.text
    report = response.json()
    assert (report["applied"], report["created"], report["failed"]) == (True, 4, 2)
    assert [(e["line"], e["code"]) for e in report["errors"]] == [(4, "unknown_region"), (6, "client_not_found")]
    assert len(await find(api, h, "c1")) == 1 and await find(api, h, "c2") == []
    assert (await stored(app))["change_event"] == 4


@pytest.mark.parametrize("atomic", ["false", "true"])
async def test_a_line_failing_after_its_writes_leaves_nothing_behind(api, auth, app, monkeypatch, atomic):
    """The failing line's rows, gaps and pending change entry go with its savepoint; the next line is whole.

    Atomic: the first pass (no savepoints) stops at the failure and the file runs again, each line in a
    savepoint, so that the report is complete; nothing is stored.
    """
    real = client_service.reconcile

    async def failing(session, caller, client, *, cause):
        await real(session, caller, client, cause=cause)
        if client.first_name == "Boom":
            raise Unprocessable("late failure", code="late_failure")

    monkeypatch.setattr(client_service, "reconcile", failing)
    real_plan = import_bulk.plan_gaps

    def failing_plan(client, periods, assignments, rows):  # the set-based path's reconcile
        plan = real_plan(client, periods, assignments, rows)
        if client.first_name == "Boom":
            raise Unprocessable("late failure", code="late_failure")
        return plan

    monkeypatch.setattr(import_bulk, "plan_gaps", failing_plan)
    body = jsonl(client("c1", new_hetu(), first_name="Boom"), client("c2", new_hetu()))
    response = await post_import(api, coord(auth), body, atomic=atomic)
    assert report_of(response)["errors"] == [{"line": 1, "code": "late_failure", "detail": "late failure"}]
    assert (response.status_code, report_of(response)["created"]) == ((422, 1) if atomic == "true" else (200, 1))
    counts = await stored(app)
    if atomic == "true":
        assert counts == dict.fromkeys(counts, 0)
        return
    assert (counts["client"], counts["client_external_id"], counts["compliance_gap"], counts["change_event"]) == (
        1,
        1,
        1,
        1,
    )
    async with app.state.engine.connect() as conn:
        changes = (await conn.execute(text("SELECT changes FROM change_event"))).scalar_one()
    changes = changes if isinstance(changes, list) else json.loads(changes)
    assert [c["action"] for c in changes] == ["client.registered", "gap.opened"]
    assert "Boom" not in json.dumps(changes)


async def test_a_line_failing_in_its_own_commit_leaves_no_change_entry(api, auth, app, monkeypatch):
    """The commit writes the line's change entry, then its flush fails: the entry goes with the line."""
    real = client_service.open_request

    async def misdirected(session, caller, client, **kwargs):
        request = await real(session, caller, client, **kwargs)
        if client.first_name == "Boom":
            request.to_region = "99"  # no such region: the foreign key fails when the commit flushes
        return request

    monkeypatch.setattr(client_service, "open_request", misdirected)
    real_registration, real_request, booms = import_bulk.registration, import_bulk.new_request, set()

    def noted(caller_region, data, *args):
        new = real_registration(caller_region, data, *args)
        if data.first_name == "Boom":
            booms.add(new.client.id)
        return new

    def misdirected_in_bulk(caller, client_id, **kwargs):  # refused when the bulk is written: the file
        request = real_request(caller, client_id, **kwargs)  # then runs again through the services
        if client_id in booms:
            request.to_region = "99"
        return request

    monkeypatch.setattr(import_bulk, "registration", noted)
    monkeypatch.setattr(import_bulk, "new_request", misdirected_in_bulk)
    lines = [client("c1", new_hetu(), first_name="Boom", residence_region="08"), client("c2", new_hetu())]
    response = await post_import(api, coord(auth), jsonl(*lines), atomic="false")
    assert response.json()["errors"] == [
        {"line": 1, "code": "conflict", "detail": "the line conflicts with the stored data"}
    ]
    counts = await stored(app)
    assert (counts["client"], counts["change_event"], await count(app, "coordination_request")) == (1, 1, 0)


async def test_a_key_twice_in_one_file_is_created_once(api, auth, app, file_lines):
    response = await post_import(api, coord(auth), jsonl(*file_lines, *file_lines))
    assert (response.json()["created"], response.json()["unchanged"]) == (6, 6)
    assert (await stored(app))["change_event"] == 6


async def test_the_same_identity_code_under_two_systems_is_reported_not_merged(api, auth, app):
    h = coord(auth)
    code = new_hetu()
    in_file = await post_import(
        api,
        h,
        jsonl(client("a1", code, system="Lifecare"), client("p7", code, system="Pro Consona")),
        atomic="false",
    )
    assert in_file.json()["errors"] == [
        {
            "line": 2,
            "code": "duplicate_across_systems",
            "detail": "line 1 has the same identity code under system Lifecare (external id a1)",
        }
    ]
    in_database = await post_import(api, h, jsonl(client("p7", code, system="Pro Consona")), atomic="false")
    assert in_database.json()["errors"] == [
        {
            "line": 1,
            "code": "duplicate_across_systems",
            "detail": "the identity code is registered under system Lifecare (external id a1)",
        }
    ]
    same_system = await post_import(api, h, jsonl(client("a2", code)), atomic="false")
    assert [e["code"] for e in same_system.json()["errors"]] == ["duplicate_client"]
    for response in (in_file, in_database, same_system):
        assert code not in response.text
    assert (await stored(app))["client"] == 1
    # naming the other system's id shows data about the client: the caller's access is logged
    assert await count(app, "access_log_client") == 2


async def test_another_region_gets_no_names_for_a_code_it_is_not_involved_with(api, auth):
    code = new_hetu()
    assert (await post_import(api, coord(auth), jsonl(client("a1", code)))).status_code == 200
    other = client("p7", code, system="Pro Consona", organising_region="08", residence_region="08")
    response = await post_import(api, coord(auth, "08"), jsonl(other), atomic="false")
    (error,) = response.json()["errors"]
    assert error["code"] == "duplicate_client" and "Lifecare" not in error["detail"] and "a1" not in error["detail"]


async def test_same_key_with_new_data_updates_what_the_api_may_change_and_refuses_the_rest(api, auth, app, file_lines):
    h = coord(auth)
    assert (await post_import(api, h, jsonl(*file_lines))).status_code == 200
    before = (await stored(app))["change_event"]
    changed = [
        worker("w1", role="counsellor"),
        client("c1", file_lines[2]["personal_id"], last_name="Uusi"),
        client("c2", file_lines[3]["personal_id"], support_level="enhanced", organising_region="08"),
        client("c2", new_hetu(), support_level="enhanced"),
    ]
    response = await post_import(api, h, jsonl(*changed), atomic="false")
    report = response.json()
    assert (report["updated"], report["failed"]) == (2, 2), report
    assert [(e["line"], e["code"]) for e in report["errors"]] == [(3, "conflicting_data"), (4, "conflicting_data")]
    assert "organising_region" in report["errors"][0]["detail"] and "personal_id" in report["errors"][1]["detail"]
    assert file_lines[3]["personal_id"] not in response.text
    (c1,) = await find(api, h, "c1")
    assert c1["last_name"] == "Uusi"
    assert (await stored(app))["change_event"] == before + 2


async def test_an_assignment_already_held_by_another_worker_is_responsibility_taken(api, auth, file_lines):
    h = coord(auth)
    assert (await post_import(api, h, jsonl(*file_lines))).status_code == 200
    response = await post_import(api, h, jsonl(assignment("c1", "w2")), atomic="false")
    assert [e["code"] for e in response.json()["errors"]] == ["responsibility_taken"]


async def test_permissions_are_the_apis(api, auth, app):
    lines = jsonl(worker("w1"), client("c1", new_hetu()))
    auditor = await post_import(api, auth("auditor", region="05"), lines)
    assert auditor.status_code == 403 and auditor.json()["code"] == "forbidden"
    other_region = await post_import(api, coord(auth, "08"), jsonl(worker("w1", region="05"), client("c1", new_hetu())))
    assert other_region.status_code == 422
    codes = [(e["line"], e["code"]) for e in report_of(other_region)["errors"]]
    assert codes == [(1, "forbidden"), (2, "not_responsible")]
    system = await post_import(api, auth("system", region="05", client_system="Lifecare"), lines, atomic="false")
    assert [(e["line"], e["code"]) for e in system.json()["errors"]] == [(1, "forbidden")]  # workers: coordinators
    assert system.json()["created"] == 1
    assert (await stored(app))["worker"] == 0


async def test_the_source_system_defaults_to_the_parameter_then_the_token(api, auth):
    h = coord(auth)
    line = client("c1", new_hetu())
    del line["source_system"]
    assert (await post_import(api, h, jsonl(line), source_system="Effica")).json()["created"] == 1
    assert len(await find(api, h, "c1", system="Effica")) == 1
    line = client("c2", new_hetu())
    del line["source_system"]
    assert (await post_import(api, h, jsonl(line))).json()["created"] == 1
    assert len(await find(api, h, "c2", system="Lifecare")) == 1
    no_system = await post_import(api, auth("coordinator", region="05"), jsonl(line | {"external_id": "c3"}))
    assert report_of(no_system)["errors"][0]["detail"].startswith("source_system: required")


@pytest.mark.parametrize("content_type", ["application/json", "text/plain", None])
async def test_other_content_types_are_415(api, auth, content_type):
    headers = coord(auth) | ({"Content-Type": content_type} if content_type else {})
    response = await api.post("/v1/imports", content=jsonl(worker("w1")), headers=headers)
    assert response.status_code == 415 and response.json()["code"] == "unsupported_media_type"
    assert response.headers["content-type"] == "application/problem+json"


async def test_jsonl_is_accepted_as_well(api, auth):
    headers = coord(auth) | {"Content-Type": "application/jsonl; charset=utf-8"}
    response = await api.post("/v1/imports", content=jsonl(worker("w1")), headers=headers)
    assert response.status_code == 200 and response.json()["created"] == 1


async def test_too_many_lines_or_too_many_bytes_are_413(api, auth, app, monkeypatch):
    monkeypatch.setattr(import_parsing, "MAX_LINES", 2)
    response = await post_import(api, coord(auth), jsonl(worker("w1"), worker("w2"), worker("w3")))
    assert response.status_code == 413 and response.json()["code"] == "too_many_lines"
    monkeypatch.setattr(middleware, "MAX_IMPORT_BODY", 100)
    response = await post_import(api, coord(auth), jsonl(worker("w1"), worker("w2")))
    assert response.status_code == 413 and response.json()["code"] == "payload_too_large"


async def test_with_an_idempotency_key_the_import_and_its_answer_commit_together(api, auth, app, file_lines):
    """The import runs inside the request's idempotent transaction (on SQLite too: no second writer)."""
    headers = {**coord(auth), **NDJSON, "Idempotency-Key": "nightly-2026-11-30"}
    first = await api.post("/v1/imports", content=jsonl(*file_lines), headers=headers)
    again = await api.post("/v1/imports", content=jsonl(*file_lines), headers=headers)
    assert first.status_code == 200 and first.json()["created"] == 6
    assert again.headers["idempotent-replayed"] == "true" and again.content == first.content
    assert (await stored(app))["change_event"] == 6
    other = await api.post("/v1/imports", content=jsonl(*file_lines[:2]), headers=headers)
    assert other.json()["code"] == "idempotency_key_reused"


async def test_a_refused_import_with_an_idempotency_key_stores_only_its_answer(api, auth, app, file_lines):
    file_lines.append(assignment("c1", "w9"))
    headers = {**coord(auth), **NDJSON, "Idempotency-Key": "refused-1"}
    first = await api.post("/v1/imports", content=jsonl(*file_lines), headers=headers)
    again = await api.post("/v1/imports", content=jsonl(*file_lines), headers=headers)
    assert first.status_code == 422 and report_of(first)["created"] == 6
    assert again.status_code == 422 and again.headers["idempotent-replayed"] == "true"
    counts = await stored(app)
    assert counts == dict.fromkeys(counts, 0)


async def test_imported_lines_reach_the_change_feed(api, auth, file_lines):
    assert (await post_import(api, coord(auth), jsonl(*file_lines))).status_code == 200
    page = (await api.get("/v1/events", params={"after": 0, "limit": 500}, headers=coord(auth))).json()
    types = [event["type"] for event in page["items"]]
    assert types.count("worker.created") == 2 and types.count("client.registered") == 2
    assert types.count("assignment.created") == 2
    assert file_lines[2]["personal_id"] not in str(page)

"""Access and disclosure logs, the tamper-evident chain, auditor queries, and answers as known then."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import uuid

import pytest
from sqlalchemy import event, text

from app.models.assignment import Assignment, ComplianceGap
from app.models.client import Client, ResponsibilityPeriod
from app.models.request import CoordinationRequest
from app.models.worker import Worker
from app.services import chain
from app.services.clock import today
from tests.api.helpers import add_worker, assign, instances_loaded, register, statements_compiled, statements_sent

DAY = dt.timedelta(days=1)


def sys(auth, region, **claims):
    return auth("system", region=region, **claims)


def coord(auth, region):
    return auth("coordinator", region=region)


def key(app, value: str) -> str:
    return uuid.UUID(value).hex if app.state.engine.dialect.name == "sqlite" else value


async def rows(app, sql: str, **params) -> list[dict]:
    async with app.state.engine.connect() as conn:
        return [dict(row._mapping) for row in await conn.execute(text(sql), params)]


async def accesses(app) -> list[dict]:
    found = await rows(
        app, "SELECT id, actor_region, endpoint, method, purpose, client_ids FROM access_log ORDER BY id"
    )
    for row in found:
        if isinstance(row["client_ids"], str):
            row["client_ids"] = json.loads(row["client_ids"])
    return found


@pytest.fixture
async def world(api, auth):
    hook_body = {"url": "https://hooks.example.org/silta", "secret": "0123456789abcdef"}
    hook = (await api.post("/v1/webhooks", json=hook_body, headers=sys(auth, "05"))).json()
    client = await register(api, sys(auth, "05"))
    w05 = await add_worker(api, coord(auth, "05"), "05")
    w08 = await add_worker(api, coord(auth, "08"), "08")
    start = client["aftercare_start"]
    org = (await assign(api, sys(auth, "05"), client["id"], "organising", w05["id"], start_date=start)).json()
    await assign(api, sys(auth, "08"), client["id"], "residence", w08["id"], start_date=start)
    decision = (
        await api.post(
            f"/v1/clients/{client['id']}/cost-decisions",
            json={
                "service_type": "other",
                "payer_region": "08",
                "payer_service": "aftercare",
                "valid_from": today().isoformat(),
                "legal_basis": "x",
            },
            headers=sys(auth, "05"),
        )
    ).json()
    pair = (
        await api.post(
            f"/v1/clients/{client['id']}/pairs",
            json={"worker_ids": [w05["id"], w08["id"]], "kind": "cross_region"},
            headers=sys(auth, "05"),
        )
    ).json()
    waiting = await register(api, sys(auth, "05"))  # no workers: gaps, a request and a queue entry
    requests = (await api.get("/v1/coordination-requests", headers=coord(auth, "05"))).json()["items"]
    request = next(r for r in requests if r["client_id"] == waiting["id"])
    return {
        "client": client,
        "cid": client["id"],
        "org": org,
        "decision": decision,
        "pair": pair,
        "w08": w08,
        "waiting": waiting,
        "request": request,
        "hook": hook,
    }


PERSONAL_READS = [
    ("GET", "/v1/clients/{cid}", None),
    ("GET", "/v1/clients", None),
    ("POST", "/v1/clients/search", "SEARCH"),
    ("GET", "/v1/clients/{cid}/responsibility", None),
    ("GET", "/v1/clients/{cid}/history", None),
    ("GET", "/v1/clients/{cid}/assignments", None),
    ("GET", "/v1/clients/{cid}/compliance", None),
    ("GET", "/v1/clients/{cid}/pairs", None),
    ("GET", "/v1/clients/{cid}/cost-decisions", None),
    ("GET", "/v1/cost-decisions/{decision}", None),
    ("GET", "/v1/clients/{cid}/access-report", None),
    ("GET", "/v1/cost-decisions", None),
    ("GET", "/v1/workers/{w08}/pairs", None),
    ("GET", "/v1/pairs/{pair}", None),
    ("GET", "/v1/events", None),
    ("GET", "/v1/webhooks/{hook}/deliveries", None),
    ("GET", "/v1/coordination-requests", None),
    ("GET", "/v1/coordination-requests/{request}", "WAITING"),
    ("GET", "/v1/compliance/gaps", "WAITING"),
    ("GET", "/v1/regions/{region}/caseload", "WAITING"),
    ("GET", "/v1/audit/events", None),
    ("GET", "/v1/audit/access-log", "AUDIT"),
    ("GET", "/v1/audit/disclosures", "DISCLOSED"),
    ("GET", "/v1/audit/export?log=change", None),
]


PLACEHOLDERS = {
    "cid": "client_id",
    "decision": "decision_id",
    "w08": "worker_id",
    "request": "request_id",
    "pair": "pair_id",
    "hook": "webhook_id",
    "region": "code",
}


def _template(path: str) -> str:
    """The route's path template for a path of the table above."""
    template = path.split("?")[0]
    for short, name in PLACEHOLDERS.items():
        template = template.replace("{" + short + "}", "{" + name + "}")
    return template


@pytest.mark.parametrize(("method", "path", "body"), PERSONAL_READS)
async def test_every_personal_data_read_leaves_one_access_entry(api, auth, app, world, method, path, body):
    url = path.format(
        cid=world["cid"],
        decision=world["decision"]["id"],
        w08=world["w08"]["id"],
        request=world["request"]["id"],
        pair=world["pair"]["id"],
        hook=world["hook"]["id"],
        region="05",
    )
    payload = {"personal_id": world["client"]["personal_id"]} if body == "SEARCH" else None
    headers = {**coord(auth, "05"), "X-Purpose-Of-Use": "care"}
    if path.startswith("/v1/audit"):
        headers = {**auth("auditor"), "X-Purpose-Of-Use": "care"}
    if body == "AUDIT":
        await api.get(f"/v1/clients/{world['cid']}", headers=coord(auth, "05"))
    if body == "DISCLOSED":
        await api.get(f"/v1/clients/{world['cid']}", headers=coord(auth, "08"))
    before = await accesses(app)
    response = await api.request(method, url, json=payload, headers=headers)
    assert response.status_code == 200, response.text
    after = await accesses(app)
    assert len(after) == len(before) + 1
    entry = after[-1]
    assert (entry["method"], entry["endpoint"], entry["purpose"]) == (method, _template(path), "care")
    expected = world["waiting"]["id"] if body == "WAITING" else world["cid"]
    assert expected in entry["client_ids"]


def _schemas_naming_clients(spec: dict) -> set[str]:
    """Component schemas that carry a client id, directly or through the schemas they contain."""
    schemas = spec["components"]["schemas"]

    def names(schema: dict, seen: set[str]) -> bool:
        if "$ref" in schema:
            ref = schema["$ref"].split("/")[-1]
            return ref not in seen and names(schemas[ref], seen | {ref})
        if {"client_id", "client_ids"} & set(schema.get("properties", {})):
            return True
        parts = [*schema.get("properties", {}).values(), *schema.get("anyOf", []), *schema.get("allOf", [])]
        if "items" in schema:
            parts.append(schema["items"])
        return any(names(part, seen) for part in parts)

    return {name for name, schema in schemas.items() if names(schema, {name})}


def test_every_read_that_names_clients_is_access_logged_here():
    """A new GET answering with client ids fails this until it is in PERSONAL_READS (and so logged)."""
    from app.config import Settings
    from app.main import create_app

    spec = create_app(Settings(database_url="sqlite://")).openapi()
    naming = _schemas_naming_clients(spec)
    reads = set()
    for path, item in spec["paths"].items():
        for method, operation in item.items():
            content = operation.get("responses", {}).get("200", {}).get("content", {})
            schema = json.dumps(content)
            if (
                any(f'"#/components/schemas/{name}"' in schema for name in naming)
                or method == "get"
                and path
                in {
                    "/v1/cost-decisions/export",
                    "/v1/audit/export",
                    "/v1/regions/{code}/caseload/export",
                }
            ):
                reads.add((method.upper(), path))
    writes = {(m, p) for m, p in reads if m != "GET" and p != "/v1/clients/search"}
    covered = {(method, _template(path)) for method, path, _ in PERSONAL_READS}
    # the caseload CSV lists workers only; the cost export (logged by its route, payer-region callers only)
    # is not in the table above because the table reads as region 05's coordinator
    exempt = {("GET", "/v1/regions/{code}/caseload/export"), ("GET", "/v1/cost-decisions/export")}
    assert reads - writes - exempt <= covered, sorted(reads - writes - exempt - covered)


async def test_the_purpose_defaults_by_role_and_must_be_known(api, auth, app, world):
    await api.get(f"/v1/clients/{world['cid']}", headers=sys(auth, "05"))
    await api.get(f"/v1/clients/{world['cid']}", headers=auth("auditor"))
    assert [e["purpose"] for e in (await accesses(app))[-2:]] == ["coordination", "audit"]
    wrong = await api.get(f"/v1/clients/{world['cid']}", headers={**sys(auth, "05"), "X-Purpose-Of-Use": "curiosity"})
    assert wrong.status_code == 422 and wrong.json()["code"] == "validation_error"


async def test_disclosures_exactly_when_another_region_is_shown_the_data(api, auth, app, world):
    cid = world["cid"]
    await api.get(f"/v1/clients/{cid}", headers=sys(auth, "05"))  # the organising region: no disclosure
    await api.get(f"/v1/clients/{cid}", headers=auth("auditor"))  # a national auditor: none either
    assert await rows(app, "SELECT id FROM disclosure_log") == []
    await api.get(f"/v1/clients/{cid}/history", headers=sys(auth, "08"))  # the residence region: disclosed
    (disclosure,) = await rows(app, "SELECT client_id, from_region, to_region, basis, purpose FROM disclosure_log")
    assert (disclosure["from_region"], disclosure["to_region"], disclosure["purpose"]) == ("05", "08", "coordination")
    assert "region 08" in disclosure["basis"]
    listed = (await api.get("/v1/audit/disclosures", params={"client_id": cid}, headers=auth("auditor"))).json()
    assert [(d["from_region"], d["to_region"]) for d in listed["items"]] == [("05", "08")]


async def test_logging_a_list_costs_the_same_statements_for_one_client_or_twenty(api, auth, app):
    headers = sys(auth, "05")
    await register(api, headers)
    statements: list[str] = []

    def count(conn, cursor, statement, *args):  # noqa: ANN001
        statements.append(statement)

    engine = app.state.engine.sync_engine
    event.listen(engine, "before_cursor_execute", count)
    try:
        await api.get("/v1/clients", headers=headers)
        one = len(statements)
        event.remove(engine, "before_cursor_execute", count)
        for _ in range(19):
            await register(api, headers)
        statements.clear()
        event.listen(engine, "before_cursor_execute", count)
        await api.get("/v1/clients", headers=headers)
        twenty = len(statements)
    finally:
        if event.contains(engine, "before_cursor_execute", count):
            event.remove(engine, "before_cursor_execute", count)
    assert twenty == one, (one, twenty)
    assert len((await accesses(app))[-1]["client_ids"]) == 20


async def test_reading_a_client_costs_two_statements_logging_included(api, auth, app):
    """One statement reads the client with everything its view shows and whether the caller sees it
    whole; the access entry and its index rows are one more on PostgreSQL (two on SQLite), the
    disclosure one more again (was eight statements, then six)."""
    entry = 1 if app.state.engine.dialect.name == "postgresql" else 2
    client = await register(api, sys(auth, "05"))
    for headers, disclosed in ((sys(auth, "05"), 0), (sys(auth, "08"), 1)):  # 08: the residence region
        with statements_sent(app) as sent:
            response = await api.get(f"/v1/clients/{client['id']}", headers=headers)
        assert response.status_code == 200 and response.json()["access"] == "full"
        assert len(sent) == 1 + entry + disclosed, sent
        assert len(await rows(app, "SELECT id FROM disclosure_log")) == disclosed


async def test_responsibility_as_of_asks_nothing_it_already_knows(api, auth, app):
    """The periods it loads name today's organiser for the disclosure; the named worker comes with its
    assignment; the client's read says it has no pair or cost decision, so neither is asked for (was
    thirteen statements for the residence region, then ten)."""
    client = await register(api, sys(auth, "05"))
    worker = await add_worker(api, coord(auth, "05"), "05")
    assert (await assign(api, sys(auth, "05"), client["id"], "organising", worker["id"])).status_code == 201
    entry = 1 if app.state.engine.dialect.name == "postgresql" else 2  # the access entry with its index
    for headers, disclosed in ((sys(auth, "05"), 0), (sys(auth, "08"), 1)):  # 08: the residence region
        with statements_sent(app) as sent:
            response = await api.get(
                f"/v1/clients/{client['id']}/responsibility?as_of={today().isoformat()}", headers=headers
            )
        assert response.status_code == 200, response.text
        assert response.json()["organising"]["named_worker"]["name"] == worker["name"]
        # client (with what it has), periods, assignments with their workers, gaps, requests (registration
        # asked 08 to name a worker), access entry (and its index): no worker, pair or cost decision query
        assert len(sent) == 5 + entry + disclosed, sent
        assert not any(s.startswith(("SELECT worker", "SELECT work_pair", "SELECT cost_decision")) for s in sent)
        disclosures = await rows(app, "SELECT from_region, to_region FROM disclosure_log")
        assert [(row["from_region"], row["to_region"]) for row in disclosures] == [("05", "08")] * disclosed


async def test_responsibility_as_of_builds_no_orm_instance_of_the_clients_timeline(api, auth):
    """A read changes nothing: the client (its id and dates), its periods, assignments (with their
    workers), gaps and requests are plain rows, whose ORM loading cost more than the statements (issue 9)."""
    client = await register(api, sys(auth, "05"))
    worker = await add_worker(api, coord(auth, "05"), "05")
    assert (await assign(api, sys(auth, "05"), client["id"], "organising", worker["id"])).status_code == 201
    timeline = (Client, ResponsibilityPeriod, Assignment, ComplianceGap, Worker, CoordinationRequest)
    with instances_loaded(*timeline) as loaded:
        response = await api.get(f"/v1/clients/{client['id']}/responsibility", headers=sys(auth, "08"))
    assert response.status_code == 200, response.text
    answer = response.json()
    assert answer["organising"]["region"] == "05" and answer["residence"]["region"] == "08"
    assert answer["organising"]["named_worker"]["name"] == worker["name"]
    assert answer["organising"]["named_worker"]["role"] == worker["role"]
    assert [gap["responsibility"] for gap in answer["missing"]] == ["residence"]
    assert [(r["kind"], r["to_region"]) for r in answer["pending_requests"]] == [("assign_residence_worker", "08")]
    assert loaded == []


async def test_reads_that_disclose_compile_no_statement_once_warm(api, auth, app):
    """The residence region's reads insert a disclosure: its insert was a multi-row VALUES statement,
    built and compiled anew for every such read (issue 9)."""
    client = await register(api, sys(auth, "05"))
    paths = [f"/v1/clients/{client['id']}", f"/v1/clients/{client['id']}/responsibility?as_of={today().isoformat()}"]
    for path in paths:
        assert (await api.get(path, headers=sys(auth, "08"))).status_code == 200  # warms the statement cache
        with statements_compiled(app) as compiled:
            response = await api.get(path, headers=sys(auth, "08"))
        assert response.status_code == 200 and compiled == [], compiled
    assert len(await rows(app, "SELECT id FROM disclosure_log")) == 2 * len(paths)


async def seal(app, *, full: bool = False) -> int:
    async with app.state.sessionmaker() as session:
        return await chain.seal(session, full=full)


async def verify(api, auth) -> dict:
    response = await api.get("/v1/audit/verify", headers=auth("auditor"))
    assert response.status_code == 200, response.text
    return response.json()


async def tamper(app, sql: str, **params) -> None:
    """A database administrator's raw SQL, past the append-only triggers (replica role on PostgreSQL)."""
    async with app.state.engine.begin() as conn:
        if app.state.engine.dialect.name == "postgresql":
            await conn.execute(text("SET LOCAL session_replication_role = replica"))
        await conn.execute(text(sql), params)


async def test_the_chain_seals_everything_and_verifies(api, auth, app, world):
    await api.get(f"/v1/clients/{world['cid']}/history", headers=sys(auth, "08"))
    pending = await verify(api, auth)
    assert pending["ok"] and pending["unsealed"] > 0 and pending["sealed"] == 0
    sealed = await seal(app)
    report = await verify(api, auth)
    assert report["ok"] and report["unsealed"] == 0 and report["sealed"] == sealed == report["head_position"]
    assert report["checked"] == sealed
    assert await seal(app) == 0  # nothing twice


async def test_sealing_a_batch_sends_one_short_cached_insert_whatever_its_size(api, auth, app, world):
    """A multi-row VALUES insert was compiled anew for every batch (thousands of parameters at load):
    the event loop stalled for it, and every request waiting on the process with it (the p99)."""
    for _ in range(12):
        await api.get(f"/v1/clients/{world['cid']}", headers=sys(auth, "08"))
    with statements_sent(app) as sent:
        sealed = await seal(app)
    inserts = [statement for statement in sent if statement.startswith("INSERT INTO audit_chain")]
    placeholders = [statement.count("?") + statement.count("$") for statement in inserts]
    assert sealed > 12 and placeholders == [6] * len(inserts) and inserts, inserts
    assert (await verify(api, auth))["ok"]


@pytest.mark.parametrize(
    ("attack", "problem"),
    [
        ("modify_change", "entry_modified"),
        ("modify_access", "entry_modified"),
        ("modify_disclosure", "entry_modified"),
        ("delete_entry", "entry_deleted"),
        ("delete_link", "position_missing"),
        ("rewrite_link", "chain_modified"),
        ("insert_entry", "forged_entry"),
        ("copy_entry", "forged_entry"),
        ("delete_index", "index_modified"),
        ("rehash_unkeyed", "chain_modified"),
    ],
)
async def test_the_chain_detects_each_kind_of_tampering(api, auth, app, world, attack, problem):
    await api.get(f"/v1/clients/{world['cid']}/history", headers=sys(auth, "08"))
    await seal(app)
    assert (await verify(api, auth))["ok"]
    if attack == "modify_change":
        await tamper(
            app, "UPDATE change_event SET actor = 'someone else' WHERE id = (SELECT min(id) FROM change_event)"
        )
    elif attack == "modify_access":
        await tamper(app, "UPDATE access_log SET purpose = 'care' WHERE id = (SELECT min(id) FROM access_log)")
    elif attack == "modify_disclosure":
        await tamper(app, "UPDATE disclosure_log SET to_region = '19'")
    elif attack == "delete_entry":
        await tamper(app, "DELETE FROM disclosure_log")
    elif attack == "delete_link":
        await tamper(app, "DELETE FROM audit_chain WHERE position = 2")
    elif attack == "rewrite_link":
        await tamper(app, "UPDATE audit_chain SET chain_hash = :h WHERE position = 3", h="f" * 64)
    elif attack == "copy_entry":  # the app's own database user may insert: a replayed copy of a real entry
        await tamper(
            app,
            "INSERT INTO access_log (occurred_at, actor, roles, actor_region, client_system, request_id, method,"
            " endpoint, purpose, client_ids, mac) SELECT occurred_at, actor, roles, actor_region, client_system,"
            " request_id, method, endpoint, purpose, client_ids, mac FROM access_log WHERE id = (SELECT min(id) FROM"
            " access_log)",
        )
        await seal(app)
    elif attack == "delete_index":  # the rows the client's access report reads
        await tamper(app, "DELETE FROM access_log_client")
    elif attack == "rehash_unkeyed":  # rewrite an entry and recompute the chain as plain SHA-256 would allow
        import hashlib

        await tamper(
            app, "UPDATE audit_chain SET chain_hash = :h WHERE position = 1", h=hashlib.sha256(b"x").hexdigest()
        )
    else:
        await tamper(
            app,
            "INSERT INTO access_log (occurred_at, actor, roles, actor_region, method, endpoint, purpose,"
            " client_ids, mac) VALUES (CURRENT_TIMESTAMP, 'ghost', 'system', '08', 'GET', '/v1/clients', 'care',"
            " '[]', :mac)",
            mac="0" * 64,
        )
    report = await verify(api, auth)
    assert not report["ok"] and report["problem"] == problem
    if problem != "forged_entry":
        assert report["first_broken_position"] is not None


async def test_cutting_off_the_end_of_the_chain_is_caught_by_a_checkpoint(api, auth, app, world):
    await api.get(f"/v1/clients/{world['cid']}/history", headers=sys(auth, "08"))
    checkpoint = (await api.post("/v1/audit/checkpoints", headers=auth("auditor"))).json()
    head = checkpoint["position"]
    await tamper(app, "DELETE FROM audit_chain WHERE position = :p", p=head)
    await tamper(app, "DELETE FROM disclosure_log")
    check = await api.post(
        "/v1/audit/checkpoints/verify", json={"signature": checkpoint["signature"]}, headers=auth("admin")
    )
    assert check.json()["valid"] is False


async def test_a_signed_checkpoint_verifies_later_and_catches_a_rewrite(api, auth, app, world):
    created = await api.post("/v1/audit/checkpoints", headers=auth("auditor"))
    assert created.status_code == 201
    checkpoint = created.json()
    assert checkpoint["position"] > 0
    keys = (await api.get("/v1/audit/keys", headers=auth("auditor"))).json()
    assert keys["keys"][0]["kid"] == "silta-audit" and "d" not in keys["keys"][0]
    await api.get(f"/v1/clients/{world['cid']}", headers=sys(auth, "05"))  # the chain grows on: still valid
    await seal(app)
    check = await api.post(
        "/v1/audit/checkpoints/verify", json={"signature": checkpoint["signature"]}, headers=auth("admin")
    )
    assert check.json()["valid"] is True and check.json()["position"] == checkpoint["position"]
    forged = checkpoint["signature"][:-4] + ("AAAA" if not checkpoint["signature"].endswith("AAAA") else "BBBB")
    bad = await api.post("/v1/audit/checkpoints/verify", json={"signature": forged}, headers=auth("admin"))
    assert bad.json()["valid"] is False
    await tamper(app, "UPDATE audit_chain SET chain_hash = :h WHERE position = 1", h="e" * 64)
    broken = await api.post(
        "/v1/audit/checkpoints/verify", json={"signature": checkpoint["signature"]}, headers=auth("admin")
    )
    assert broken.json()["valid"] is False
    assert (await api.post("/v1/audit/checkpoints", headers=auth("auditor", region="05"))).status_code == 403
    assert (await api.get("/v1/audit/verify", headers=coord(auth, "05"))).status_code == 403


@pytest.mark.postgres_only
async def test_concurrent_writers_leave_a_chain_without_gaps(api, auth, app):
    """8 writers × 50 writes at once (and a sealer running through them): every entry sealed once."""
    headers = coord(auth, "05")

    async def writer(n: int) -> None:
        for i in range(50):
            response = await api.post(
                "/v1/workers", json={"region": "05", "name": f"W{n}-{i}", "role": "counsellor"}, headers=headers
            )
            assert response.status_code == 201

    async def sealer() -> None:
        for _ in range(20):
            await seal(app)
            await asyncio.sleep(0.05)

    await asyncio.gather(*(writer(n) for n in range(8)), sealer())
    await seal(app)
    report = await verify(api, auth)
    assert report["ok"] and report["unsealed"] == 0
    (count,) = await rows(app, "SELECT count(*) AS n FROM change_event")
    assert count["n"] == 400
    positions = [r["position"] for r in await rows(app, "SELECT position FROM audit_chain ORDER BY position")]
    assert positions == list(range(1, len(positions) + 1))
    (linked,) = await rows(app, "SELECT count(*) AS n FROM audit_chain WHERE log = 'change'")
    assert linked["n"] == 400


async def test_known_at_reproduces_the_answer_before_a_correction(api, auth, world):
    cid = world["cid"]
    day_ago_20 = (today() - 20 * DAY).isoformat()
    before_correction = (
        await api.get(f"/v1/clients/{cid}/responsibility", params={"as_of": day_ago_20}, headers=sys(auth, "05"))
    ).json()
    assert before_correction["organising"]["named_worker"]["assignment_id"] == world["org"]["id"]
    await asyncio.sleep(0.01)
    moment = dt.datetime.now(dt.UTC).isoformat()
    await asyncio.sleep(0.01)
    # the correction: the worker in fact left 25 days ago
    corrected = await api.post(
        f"/v1/assignments/{world['org']['id']}/end",
        json={"end_date": (today() - 25 * DAY).isoformat(), "reason": "recorded late"},
        headers=sys(auth, "05"),
    )
    assert corrected.status_code == 200, corrected.text
    now = (
        await api.get(f"/v1/clients/{cid}/responsibility", params={"as_of": day_ago_20}, headers=sys(auth, "05"))
    ).json()
    assert now["organising"]["named_worker"] is None and now["compliance"] == "gap"
    then = (
        await api.get(
            f"/v1/clients/{cid}/responsibility",
            params={"as_of": day_ago_20, "known_at": moment},
            headers=sys(auth, "05"),
        )
    ).json()
    assert then["organising"]["named_worker"]["assignment_id"] == world["org"]["id"]


async def test_auditor_queries_filter_page_and_stay_in_the_region(api, auth, app, world):
    other = await register(api, sys(auth, "02"), organising_region="02", residence_region="02")
    changes = (
        await api.get("/v1/audit/events", params={"client_id": world["cid"], "limit": 2}, headers=auth("auditor"))
    ).json()
    assert len(changes["items"]) == 2 and changes["next_cursor"]
    rest = (
        await api.get(
            "/v1/audit/events",
            params={"client_id": world["cid"], "limit": 50, "cursor": changes["next_cursor"]},
            headers=auth("auditor"),
        )
    ).json()
    ids = [e["id"] for e in changes["items"] + rest["items"]]
    assert ids == sorted(ids, reverse=True) and len(ids) == len(set(ids))
    regional = (await api.get("/v1/audit/events", headers=auth("auditor", region="05"))).json()["items"]
    touched = {change["client_id"] for entry in regional for change in entry["changes"] if change["client_id"]}
    assert other["id"] not in touched and world["cid"] in touched
    assert (await api.get("/v1/audit/events", headers=coord(auth, "05"))).status_code == 403
    await api.get(f"/v1/clients/{world['cid']}", headers=sys(auth, "08", client_system="Lifecare"))
    access = (await api.get("/v1/audit/access-log", params={"region": "08"}, headers=auth("auditor"))).json()["items"]
    assert access and all(entry["actor_region"] == "08" for entry in access)
    # the auditor's own reads were logged too, as audits
    assert (await accesses(app))[-1]["purpose"] == "audit"


async def test_each_filter_narrows_the_audit_listings_to_the_matching_entries(api, auth, app, world):
    await api.get(f"/v1/clients/{world['cid']}/history", headers=sys(auth, "08", client_system="Lifecare"))
    await api.get(f"/v1/clients/{world['waiting']['id']}", headers=coord(auth, "05"))
    auditor = auth("auditor")

    async def listed(path: str, **filters: str) -> list[dict]:
        response = await api.get(path, params={**filters, "limit": 500}, headers=auditor)
        assert response.status_code == 200, response.text
        return response.json()["items"]

    async def check(path: str, everything: list[dict], name: str, value: str, keep) -> None:
        top = max(e["id"] for e in everything)  # the auditor's own reads add access entries as it goes
        expected = [e["id"] for e in everything if keep(e)]
        assert expected and (len(everything) == 1 or len(expected) < len(everything)), (path, name)  # it narrows
        assert [e["id"] for e in await listed(path, **{name: value}) if e["id"] <= top] == expected, (path, name)

    def at(entry: dict) -> dt.datetime:
        return dt.datetime.fromisoformat(entry["occurred_at"])

    cid = world["cid"]
    for path, link, own in (
        (
            "/v1/audit/events",
            "SELECT event_id AS id FROM change_event_client",
            (("action", "action"), ("entity_type", "entity_type")),
        ),
        (
            "/v1/audit/access-log",
            "SELECT entry_id AS id FROM access_log_client",
            (("region", "actor_region"), ("purpose", "purpose")),
        ),
    ):
        everything = await listed(path)
        middle = everything[len(everything) // 2]
        about = {row["id"] for row in await rows(app, link + " WHERE client_id = :c", c=key(app, cid))}
        await check(path, everything, "client_id", cid, lambda e, about=about: e["id"] in about)
        await check(path, everything, "actor", middle["actor"], lambda e, m=middle: e["actor"] == m["actor"])
        for param, field in own:
            value = next(e[field] for e in everything if e[field])
            await check(path, everything, param, value, lambda e, f=field, v=value: e[f] == v)
        await check(path, everything, "since", middle["occurred_at"], lambda e, m=middle: at(e) >= at(m))
        await check(path, everything, "until", middle["occurred_at"], lambda e, m=middle: at(e) < at(m))

    everything = await listed("/v1/audit/disclosures")
    (first,) = everything
    for name in ("client_id", "to_region", "from_region"):
        await check("/v1/audit/disclosures", everything, name, first[name], lambda e, n=name: e[n] == first[n])
    await check("/v1/audit/disclosures", everything, "since", first["occurred_at"], lambda e: True)
    assert await listed("/v1/audit/disclosures", until=first["occurred_at"]) == []
    assert await listed("/v1/audit/disclosures", to_region="02") == []


async def test_the_clients_access_report_covers_two_years_with_disclosures(api, auth, world):
    await api.get(f"/v1/clients/{world['cid']}", headers={**sys(auth, "08"), "X-Purpose-Of-Use": "care"})
    report = await api.get(f"/v1/clients/{world['cid']}/access-report", headers=auth("auditor"))
    assert report.status_code == 200, report.text
    body = report.json()
    assert dt.datetime.fromisoformat(body["until"]) - dt.datetime.fromisoformat(body["since"]) == dt.timedelta(days=730)
    (shown,) = [item for item in body["items"] if item["actor_region"] == "08"]
    assert shown["purpose"] == "care" and [d["to_region"] for d in shown["disclosed_to"]] == ["08"]
    assert (await api.get(f"/v1/clients/{world['cid']}/access-report", headers=coord(auth, "19"))).status_code == 404
    assert (await api.get(f"/v1/clients/{world['cid']}/access-report", headers=sys(auth, "05"))).status_code == 403


async def test_the_export_carries_chain_positions_for_re_verification(api, auth, app, world):
    await seal(app)
    response = await api.get("/v1/audit/export", params={"log": "change"}, headers=auth("auditor"))
    assert response.status_code == 200
    lines = [json.loads(line) for line in response.text.splitlines()]
    assert lines and all(line["chain_position"] and line["log"] == "change" for line in lines)
    from app.services.audit import MAC_KEY

    key = app.state.sessionmaker.kw["info"][MAC_KEY].mac
    previous, hashes = "0" * 64, {}
    for link in await rows(
        app, "SELECT position, log, entry_id, entry_mac, chain_hash FROM audit_chain ORDER BY position"
    ):
        previous = chain.link_hash(key, previous, link["log"], link["entry_id"], link["entry_mac"])
        hashes[link["position"]] = previous
    assert all(hashes[line["chain_position"]] == line["chain_hash"] for line in lines)
    assert (
        await api.get("/v1/audit/export", params={"log": "change"}, headers=auth("auditor", region="05"))
    ).status_code == 403


def test_silta_audit_verify_command(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from app.cli import cli

    monkeypatch.setenv("SILTA_DATA_DIR", str(tmp_path))
    monkeypatch.delenv("SILTA_DATABASE_URL", raising=False)
    from app.config import get_settings

    get_settings.cache_clear()
    try:
        runner = CliRunner()
        assert runner.invoke(cli, ["migrate"]).exit_code == 0
        assert runner.invoke(cli, ["audit", "seal"]).exit_code == 0
        result = runner.invoke(cli, ["audit", "verify"])
        assert result.exit_code == 0 and json.loads(result.output)["ok"] is True
    finally:
        get_settings.cache_clear()


async def test_the_benchmark_switches_turn_the_logs_off(api, auth, app, settings):
    """Only benchmarks use these (production refuses them): they must really switch logging off."""
    import httpx

    from app.main import create_app

    quiet = create_app(settings.model_copy(update={"audit_access_log": False, "audit_change_log": False}))
    try:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=quiet), base_url="http://silta.test") as client:
            created = await client.post(
                "/v1/workers", json={"region": "05", "name": "Q", "role": "counsellor"}, headers=coord(auth, "05")
            )
            assert created.status_code == 201
            registered = await register(client, sys(auth, "05"))
            assert (await client.get(f"/v1/clients/{registered['id']}", headers=sys(auth, "05"))).status_code == 200
        assert await rows(app, "SELECT id FROM change_event") == []
        assert await accesses(app) == []
    finally:
        await quiet.state.engine.dispose()
    await api.get(f"/v1/clients/{registered['id']}", headers=sys(auth, "05"))  # the normal app logs
    assert len(await accesses(app)) == 1


async def test_a_regional_auditor_sees_only_its_own_clients_in_access_entries(api, auth, app, world):
    other = await register(api, sys(auth, "02"), organising_region="02", residence_region="02")
    national = auth("auditor")
    listed = await api.post(
        "/v1/clients/search", json={"personal_id": world["client"]["personal_id"]}, headers=national
    )
    assert listed.status_code == 200
    await api.get("/v1/clients", headers=national)  # one entry naming clients of 05 and of 02
    entries = (await api.get("/v1/audit/access-log", headers=auth("auditor", region="05"))).json()["items"]
    named = {client for entry in entries for client in entry["client_ids"]}
    assert world["cid"] in named and other["id"] not in named


@pytest.fixture
def transactions(app, monkeypatch):
    """Transactions the driver starts (PostgreSQL only: asyncpg's BEGIN), counted while the test runs."""
    if app.state.engine.dialect.name != "postgresql":
        pytest.skip("reads commit statement by statement on PostgreSQL only (app.db.read_engine)")
    import asyncpg

    started: list[str] = []
    begin = asyncpg.Connection.transaction

    def counting(self, *args, **kwargs):  # noqa: ANN001, ANN202 - asyncpg's signature
        started.append("BEGIN")
        return begin(self, *args, **kwargs)

    monkeypatch.setattr(asyncpg.Connection, "transaction", counting)
    return started


async def test_a_read_sends_no_begin_and_a_write_does(api, auth, app, transactions):
    """A GET's SELECT and its access entry (one statement) need no transaction around them: the BEGIN
    and COMMIT were half a client read's round trips (issue 9). A write keeps its transaction."""
    client = await register(api, sys(auth, "05"))
    transactions.clear()
    assert (await api.get(f"/v1/clients/{client['id']}", headers=sys(auth, "05"))).status_code == 200
    assert transactions == []
    assert [row["endpoint"] for row in await accesses(app)][-1] == "/v1/clients/{client_id}"
    await register(api, sys(auth, "05"))
    assert transactions  # the registration's own transaction (and its rate limit's)


async def test_a_read_that_discloses_writes_its_entry_and_disclosure_in_one_transaction(api, auth, app, transactions):
    client = await register(api, sys(auth, "05"))
    transactions.clear()
    assert (await api.get(f"/v1/clients/{client['id']}", headers=sys(auth, "08"))).status_code == 200
    assert transactions == ["BEGIN"]  # the residence region is shown 05's data: entry and disclosure together
    assert len(await rows(app, "SELECT id FROM disclosure_log")) == 1


async def test_a_disclosure_that_fails_takes_its_access_entry_with_it(api, auth, app, transactions, monkeypatch):
    """Nothing half-stored: an access entry is never left without the disclosure it made."""
    from app.services import audit

    client = await register(api, sys(auth, "05"))
    before = len(await rows(app, "SELECT id FROM access_log"))
    monkeypatch.setattr(audit, "INSERT_DISCLOSURE", text("SELECT 1 / 0"))  # fails after the entry is in
    response = await api.get(f"/v1/clients/{client['id']}", headers=sys(auth, "08"))
    assert response.status_code >= 500  # (the driver's error is answered as the database's)
    assert len(await rows(app, "SELECT id FROM access_log")) == before
    assert await rows(app, "SELECT id FROM disclosure_log") == []
    monkeypatch.undo()
    assert (await api.get(f"/v1/clients/{client['id']}", headers=sys(auth, "08"))).status_code == 200
    assert len(await rows(app, "SELECT id FROM access_log")) == before + 1  # the connection came back clean


async def test_the_suites_guard_refuses_a_write_in_a_reads_session(app, transactions):
    """conftest's listener: every API test on PostgreSQL fails if a GET writes outside the access log."""
    async with app.state.read_sessionmaker() as session:
        connection = await session.connection()
        with pytest.raises(AssertionError, match="a read request wrote outside the access log"):
            await connection.execute(text("UPDATE region SET grace_days = grace_days WHERE code = 'zz'"))

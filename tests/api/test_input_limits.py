"""Input limits: a refused input answers problem+json with the right status and stores nothing.

The cases come from the app's own OpenAPI document, so a new operation is held to them as soon
as it exists: every operation with a request body gets the 413, 415 and unknown-field checks;
every bounded string, list, number and date of a JSON body or a query is sent one step past its
bound; every list gets bad page sizes and malformed cursors; and every input must have a bound
to begin with. "Stores nothing" is read back: the row count of every table the service writes
(the change log and the access log included) is the same after the refusal as before it, on a
database holding a client with assignments, a pair, a cost decision and requests to act on.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import re
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Annotated, Any

import httpx
import pytest
from pydantic import BaseModel, Field, StringConstraints
from sqlalchemy import select, text

from app.config import Settings
from app.main import create_app
from app.middleware import body_limit
from app.models.common import Day, Moment
from app.models.pair import WorkPair
from app.services.clock import today
from tests.api.helpers import add_worker, assign, register
from tests.conftest import MUTABLE_TABLES, _reset

SPEC = create_app(Settings(database_url="sqlite://")).openapi()
JSON_BODY = "application/json"
PROBLEM = "application/problem+json"
TOO_EARLY = {"date": "0001-01-01", "date-time": "0001-01-01T00:00:00+01:00"}
TOO_LATE = {"date": "9999-12-31", "date-time": "9999-12-31T23:59:59-01:00"}


def _resolve(node: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in node:
        kind, name = node["$ref"].split("/")[-2:]
        node = SPEC["components"][kind][name]
    return node


def _operations() -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path, item in SPEC["paths"].items():
        for method, operation in item.items():
            if path.startswith("/v1/"):
                yield method.upper(), path, operation


def _query(operation: dict[str, Any]) -> dict[str, dict[str, Any]]:
    parameters = (_resolve(p) for p in operation.get("parameters", []))
    return {p["name"]: p for p in parameters if p["in"] == "query"}


OPERATIONS = list(_operations())
WITH_BODY = [(m, p, op) for m, p, op in OPERATIONS if "requestBody" in op]
WITH_JSON_BODY = [(m, p, op) for m, p, op in WITH_BODY if JSON_BODY in op["requestBody"]["content"]]
LISTS = [(m, p, op) for m, p, op in OPERATIONS if "limit" in _query(op)]
PAGED = [(m, p, op) for m, p, op in LISTS if "cursor" in _query(op)]
BODILESS_POSTS = [(m, p, op) for m, p, op in OPERATIONS if m == "POST" and "requestBody" not in op]


def ids(operations: list[tuple[str, str, dict[str, Any]]]) -> list[str]:
    return [f"{method} {path}" for method, path, _ in operations]


def body_schema(operation: dict[str, Any]) -> dict[str, Any]:
    return _resolve(operation["requestBody"]["content"][JSON_BODY]["schema"])


def example_body(operation: dict[str, Any]) -> dict[str, Any]:
    """The documented example (tests/test_openapi_contract.py makes sure every body has one)."""
    media = operation["requestBody"]["content"][JSON_BODY]
    return dict(media.get("example") or body_schema(operation)["examples"][0])


# --- values just inside and just past a schema's bounds --------------------------------------


def _branches(schema: dict[str, Any]) -> list[dict[str, Any]]:
    schema = _resolve(schema)
    options = schema.get("anyOf") or schema.get("oneOf")
    return [_resolve(s) for s in options if s.get("type") != "null"] if options else [schema]


def sample(schema: dict[str, Any]) -> Any:
    """A small valid value for ``schema``."""
    schema = _branches(schema)[0]
    if "examples" in schema:
        return schema["examples"][0]
    if "enum" in schema:
        return schema["enum"][0]
    kind = schema.get("type")
    if kind == "string":
        fixed = {"uuid": str(uuid.uuid4()), "date": today().isoformat(), "date-time": f"{today()}T12:00:00Z"}
        if schema.get("format") in fixed:
            return fixed[schema["format"]]
        return "05" if schema.get("pattern") == r"^\d{2}$" else "x" * max(1, schema.get("minLength", 1))
    if kind in ("integer", "number"):
        return schema.get("minimum", 1)
    if kind == "array":
        return [sample(schema["items"]) for _ in range(max(1, schema.get("minItems", 1)))]
    if kind == "object":
        return {name: sample(schema["properties"][name]) for name in schema.get("required", [])}
    return None


def past_bounds(schema: dict[str, Any]) -> Iterator[tuple[str, list[Any], Any]]:
    """(what, where inside the value, value) for each value one step past a bound of ``schema``."""
    for branch in _branches(schema):
        kind, form = branch.get("type"), branch.get("format")
        if kind == "string" and "maxLength" in branch:
            yield f"{branch['maxLength'] + 1} characters", [], "x" * (branch["maxLength"] + 1)
        if kind == "string" and form in TOO_EARLY:
            yield "year 0001", [], TOO_EARLY[form]
            yield "year 9999", [], TOO_LATE[form]
        if kind in ("integer", "number"):
            number = int if kind == "integer" else float  # 1001, not 1001.0: past the bound, not of a wrong type
            if "maximum" in branch:
                yield "above the maximum", [], number(branch["maximum"]) + 1
            if "minimum" in branch:
                yield "below the minimum", [], number(branch["minimum"]) - 1
            if "exclusiveMinimum" in branch:
                yield "at the exclusive minimum", [], number(branch["exclusiveMinimum"])
        if kind == "array":
            if "maxItems" in branch:
                yield f"{branch['maxItems'] + 1} items", [], [sample(branch["items"])] * (branch["maxItems"] + 1)
            for what, inside, value in past_bounds(branch["items"]):
                yield f"an item {what}", [0, *inside], [value]
        if kind == "object":
            for name, field in branch.get("properties", {}).items():
                for what, inside, value in past_bounds(field):
                    yield f"{name}: {what}", [name, *inside], {**sample(branch), name: value}
            values, names = branch.get("additionalProperties"), _resolve(branch.get("propertyNames", {}))
            if isinstance(values, dict) and "enum" in names:
                key = names["enum"][0]
                for what, inside, value in past_bounds(values):
                    yield f"{key}: {what}", [key, *inside], {key: value}


def body_cases(operation: dict[str, Any]) -> list[tuple[str, list[Any], dict[str, Any]]]:
    """(what, error location, body) for every field of the body sent one step past a bound."""
    cases = []
    for name, field in body_schema(operation)["properties"].items():
        for what, inside, value in past_bounds(field):
            cases.append((f"{name}: {what}", [name, *inside], {**example_body(operation), name: value}))
    return cases


def parameter_cases(operation: dict[str, Any]) -> list[tuple[str, str, str, Any]]:
    """(in, name, what, value) for every path or query parameter sent one step past a bound."""
    parameters = (_resolve(p) for p in operation.get("parameters", []))
    return [
        (parameter["in"], parameter["name"], what, value)
        for parameter in parameters
        if parameter["in"] in ("path", "query")
        for what, inside, value in past_bounds(parameter["schema"])
        if not inside
    ]


WITH_BOUNDED_BODY = [(m, p, op) for m, p, op in WITH_JSON_BODY if body_cases(op)]
WITH_BOUNDED_PARAMETERS = [(m, p, op) for m, p, op in OPERATIONS if parameter_cases(op)]


# --- the database to act on, and reading it back -----------------------------------------------


async def build_world(api, auth) -> dict[str, str]:
    """Path parameters naming real rows: a client of 05 living in 08, both named workers, a proposed
    pair, a proposed cost decision, open coordination requests, a webhook with deliveries."""
    s05, s08 = auth("system", region="05"), auth("system", region="08")
    hook = {"url": "https://hooks.example.org/silta", "event_types": [], "secret": "0123456789abcdef"}
    webhook = await api.post("/v1/webhooks", json=hook, headers=s05)  # first: the writes below are delivered
    client = await register(api, s05)
    w05 = await add_worker(api, auth("coordinator", region="05"), "05")
    w08 = await add_worker(api, auth("coordinator", region="08"), "08")
    organising = await assign(api, s05, client["id"], "organising", w05["id"])
    assert (await assign(api, s08, client["id"], "residence", w08["id"])).status_code == 201
    pair = await api.post(
        f"/v1/clients/{client['id']}/pairs",
        json={"worker_ids": [w05["id"], w08["id"]], "kind": "cross_region"},
        headers=s05,
    )
    decision = await api.post(
        f"/v1/clients/{client['id']}/cost-decisions",
        json={
            "service_type": "supported_housing",
            "payer_region": "08",
            "payer_service": "aftercare",
            "valid_from": today().isoformat(),
            "legal_basis": "Sosiaalihuoltolaki 21 b §",
        },
        headers=s05,
    )
    request = await api.post(
        "/v1/coordination-requests", json={"client_id": client["id"], "to_region": "08", "kind": "other"}, headers=s05
    )
    for response in (webhook, organising, pair, decision, request):
        assert response.status_code == 201, response.text
    deliveries = await api.get(f"/v1/webhooks/{webhook.json()['id']}/deliveries", headers=s05)
    return {
        "client_id": client["id"],
        "worker_id": w05["id"],
        "assignment_id": organising.json()["id"],
        "pair_id": pair.json()["id"],
        "decision_id": decision.json()["id"],
        "request_id": request.json()["id"],
        "webhook_id": webhook.json()["id"],
        "delivery_id": str(deliveries.json()["items"][0]["id"]),
        "code": "05",
    }


_WORLDS: dict[str, dict[str, str]] = {}


@pytest.fixture
async def http(app) -> AsyncIterator[httpx.AsyncClient]:
    """A client on the app that, unlike ``api``, leaves the database as it is."""
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://silta.test") as client:
        yield client


@pytest.fixture
async def world(app, db_backend, http, auth) -> dict[str, str]:
    """The world of ``build_world``, built once per backend and reused while it stands (another
    module's reset makes it build again). Sharing it is safe because every test using it asserts
    that it stored nothing; tests that write use ``api`` and a world of their own."""
    built = _WORLDS.get(db_backend)
    if built is None or not await _standing(app, built):
        await _reset(app, db_backend)
        built = _WORLDS[db_backend] = await build_world(http, auth)
    return built


async def _standing(app, built: dict[str, str]) -> bool:
    async with app.state.engine.connect() as conn:
        found = await conn.execute(select(WorkPair.id).where(WorkPair.id == uuid.UUID(built["pair_id"])))
        return found.first() is not None


@pytest.fixture
def caller(auth) -> dict[str, str]:
    """Every role, so that no refusal below is the role's: the input alone is refused."""
    return auth("system", "coordinator", "auditor", "admin", region="05")


def url(path: str, world: dict[str, str]) -> str:
    return re.sub(r"\{(\w+)\}", lambda match: world[match.group(1)], path)


def required_query(operation: dict[str, Any]) -> dict[str, Any]:
    return {name: sample(p["schema"]) for name, p in _query(operation).items() if p.get("required")}


async def stored(app) -> dict[str, int]:
    """Rows per table the service writes to (every write also adds to change_event and audit_chain).

    Not rate_limit_bucket: a request to a rate-limited endpoint spends the caller's quota by design,
    whatever becomes of it (app/services/rate_limit.py)."""
    tables = [table for table in MUTABLE_TABLES if table != "rate_limit_bucket"] + ["region_settings_version"]
    counts = " UNION ALL ".join(f"SELECT '{table}', COUNT(*) FROM {table}" for table in tables)
    async with app.state.engine.connect() as conn:
        return {table: count for table, count in (await conn.execute(text(counts))).all()}


async def refused(http, app, method: str, target: str, status: int, code: str, **request: Any) -> dict[str, Any]:
    """Send the request; it must be refused with ``status`` and ``code`` as problem+json, storing nothing."""
    before = await stored(app)
    response = await http.request(method, target, **request)
    assert (response.status_code, response.headers["content-type"]) == (status, PROBLEM), response.text
    problem = response.json()
    assert (problem["status"], problem["code"], problem["type"]) == (status, code, f"urn:silta:problem:{code}")
    assert await stored(app) == before, "a refused request stored something"
    return problem


def named(problem: dict[str, Any], loc: list[Any]) -> bool:
    return any(error["loc"][: len(loc)] == loc for error in problem["errors"])


# --- the checks --------------------------------------------------------------------------------


async def test_the_read_back_notices_a_stored_write(api, app, caller):
    before = await stored(app)
    created = await api.post(
        "/v1/workers", json={"region": "05", "name": "Control", "role": "counsellor"}, headers=caller
    )
    assert created.status_code == 201
    after = await stored(app)
    assert after["worker"] == before["worker"] + 1 and after["change_event"] > before["change_event"]


async def _chunks(body: bytes) -> AsyncIterator[bytes]:
    for start in range(0, len(body), 64 * 1024):
        yield body[start : start + 64 * 1024]


@pytest.mark.parametrize(("method", "path", "operation"), WITH_BODY, ids=ids(WITH_BODY))
async def test_a_body_over_the_limit_is_413(http, app, world, caller, method, path, operation):
    limit = body_limit(path)
    media_type = next(iter(operation["requestBody"]["content"]))
    big = b'{"padding": "' + b"x" * limit + b'"}'
    headers = {**caller, "content-type": media_type}
    target = url(path, world)
    await refused(http, app, method, target, 413, "payload_too_large", content=big, headers=headers)
    await refused(http, app, method, target, 413, "payload_too_large", content=_chunks(big), headers=headers)
    lying = {**headers, "content-length": "2"}
    await refused(http, app, method, target, 413, "payload_too_large", content=big, headers=lying)


@pytest.mark.parametrize(("method", "path", "operation"), WITH_BODY, ids=ids(WITH_BODY))
async def test_a_body_of_another_media_type_is_415(http, app, world, caller, method, path, operation):
    accepted = set(operation["requestBody"]["content"])
    content = json.dumps(example_body(operation) if JSON_BODY in accepted else {}).encode()
    wrong = ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x", "application/xml"]
    for media_type in [None, *(m for m in wrong if m not in accepted)]:
        headers = {**caller, **({"content-type": media_type} if media_type else {})}
        await refused(
            http, app, method, url(path, world), 415, "unsupported_media_type", content=content, headers=headers
        )


@pytest.mark.parametrize(("method", "path", "operation"), WITH_JSON_BODY, ids=ids(WITH_JSON_BODY))
async def test_an_unknown_field_is_refused_whatever_the_json_media_type(
    http, app, world, caller, method, path, operation
):
    content = json.dumps({**example_body(operation), "surprise": True}).encode()
    for media_type in ["application/json", "application/json; charset=UTF-8", "application/vnd.silta+json"]:
        headers = {**caller, "content-type": media_type}
        problem = await refused(
            http, app, method, url(path, world), 422, "validation_error", content=content, headers=headers
        )
        assert named(problem, ["surprise"]), problem


@pytest.mark.parametrize(("method", "path", "operation"), WITH_BOUNDED_BODY, ids=ids(WITH_BOUNDED_BODY))
async def test_body_values_past_their_bounds_are_refused(http, app, world, caller, method, path, operation):
    for what, loc, body in body_cases(operation):
        problem = await refused(http, app, method, url(path, world), 422, "validation_error", json=body, headers=caller)
        assert named(problem, loc), f"{what}: {problem}"


@pytest.mark.parametrize(("method", "path", "operation"), WITH_BOUNDED_PARAMETERS, ids=ids(WITH_BOUNDED_PARAMETERS))
async def test_parameters_past_their_bounds_are_refused(http, app, world, caller, method, path, operation):
    declared = list(operation.get("requestBody", {}).get("content", {}))
    headers = {**caller, "content-type": declared[0]} if declared and JSON_BODY not in declared else caller
    for where, name, what, value in parameter_cases(operation):
        params = {**required_query(operation), **({name: value} if where == "query" else {})}
        target = url(path, {**world, **({name: str(value)} if where == "path" else {})})
        problem = await refused(http, app, method, target, 422, "validation_error", params=params, headers=headers)
        assert named(problem, [where, name]), f"{name}: {what}: {problem}"


@pytest.mark.parametrize(("method", "path", "operation"), LISTS, ids=ids(LISTS))
async def test_page_sizes_outside_1_to_500_are_refused(http, app, world, caller, method, path, operation):
    for limit in ["-1", "0", "501", str(10**30), "ten"]:
        params = {**required_query(operation), "limit": limit}
        target = url(path, world)
        problem = await refused(http, app, method, target, 422, "validation_error", params=params, headers=caller)
        assert named(problem, ["query", "limit"]), problem


def _cursor(values: Any) -> str:
    return base64.urlsafe_b64encode(json.dumps(values).encode()).decode().rstrip("=")


MALFORMED_CURSORS = [
    "!!not-base64!!",
    "äö",
    _cursor({"id": 1}),
    _cursor([1, 2]),
    _cursor(["a", "b", "c"]),
    _cursor(["9" * 30]),
    _cursor(["-5"]),
    _cursor(["2026-01-01T00:00:00", str(uuid.uuid4())]),  # no offset: not one of ours
    _cursor([TOO_EARLY["date-time"], str(uuid.uuid4())]),
    _cursor([TOO_LATE["date-time"], str(uuid.uuid4())]),
    _cursor([TOO_EARLY["date"], str(uuid.uuid4())]),
    _cursor([TOO_LATE["date"], str(uuid.uuid4())]),
]


@pytest.mark.parametrize(("method", "path", "operation"), PAGED, ids=ids(PAGED))
async def test_malformed_cursors_are_refused(http, app, world, caller, method, path, operation):
    target, query = url(path, world), required_query(operation)
    for cursor in MALFORMED_CURSORS:
        params = {**query, "cursor": cursor}
        await refused(http, app, method, target, 422, "invalid_cursor", params=params, headers=caller)
    too_long = {**query, "cursor": "A" * 513}
    problem = await refused(http, app, method, target, 422, "validation_error", params=too_long, headers=caller)
    assert named(problem, ["query", "cursor"])


@pytest.mark.parametrize(("method", "path", "operation"), BODILESS_POSTS, ids=ids(BODILESS_POSTS))
async def test_a_post_without_a_body_needs_no_content_type(api, auth, caller, method, path, operation):
    response = await api.post(url(path, await build_world(api, auth)), headers=caller)
    assert response.status_code not in (413, 415, 422), response.text


async def test_the_other_region_confirms_a_pair_with_a_bare_post(api, auth):
    world = await build_world(api, auth)
    confirmed = await api.post(f"/v1/pairs/{world['pair_id']}/confirm", headers=auth("coordinator", region="08"))
    assert confirmed.status_code == 200 and confirmed.json()["status"] == "active", confirmed.text
    assert "content-type" not in confirmed.request.headers


# --- every input has a bound to test -----------------------------------------------------------

UNBOUNDED_QUANTIFIER = re.compile(r"[*+]|\{\d+,\}")


def unbounded(where: str, schema: dict[str, Any]) -> Iterator[str]:
    """Where ``schema`` lets a caller send an arbitrarily long, large or far-off value."""
    for branch in _branches(schema):
        kind, form = branch.get("type"), branch.get("format")
        if "enum" in branch or "const" in branch or kind in ("boolean", "null"):
            continue
        if kind == "string" and form in TOO_EARLY:
            if not {"formatMinimum", "formatMaximum"} <= set(branch):
                yield f"{where}: a {form} without formatMinimum/formatMaximum"
        elif kind == "string":
            pattern = branch.get("pattern", "")
            fixed = pattern.startswith("^") and pattern.endswith("$") and not UNBOUNDED_QUANTIFIER.search(pattern)
            if "maxLength" not in branch and form != "uuid" and not fixed:
                yield f"{where}: a string without maxLength"
        elif kind in ("integer", "number"):
            if "maximum" not in branch or not {"minimum", "exclusiveMinimum"} & set(branch):
                yield f"{where}: a number without minimum and maximum"
        elif kind == "array":
            if "maxItems" not in branch:
                yield f"{where}: a list without maxItems"
            yield from unbounded(f"{where}[]", branch["items"])
        elif kind == "object":
            for name, field in branch.get("properties", {}).items():
                yield from unbounded(f"{where}.{name}", field)
            values = branch.get("additionalProperties")
            if isinstance(values, dict):
                if "enum" not in _resolve(branch.get("propertyNames", {})) and "maxProperties" not in branch:
                    yield f"{where}: a map without propertyNames or maxProperties"
                yield from unbounded(f"{where}{{}}", values)
        elif kind is None and not branch:
            yield f"{where}: any value at all"


@pytest.mark.parametrize(("method", "path", "operation"), OPERATIONS, ids=ids(OPERATIONS))
def test_every_input_has_a_bound(method, path, operation):
    found = []
    for parameter in map(_resolve, operation.get("parameters", [])):
        if parameter["in"] in ("path", "query"):
            found += unbounded(f"{parameter['in']} {parameter['name']}", parameter["schema"])
    for media_type, media in operation.get("requestBody", {}).get("content", {}).items():
        if media_type == JSON_BODY:
            found += unbounded("body", media["schema"])
    assert found == []


class Loose(BaseModel):
    name: str
    tags: list[Annotated[str, StringConstraints(max_length=5)]]
    count: int
    weights: dict[str, float]
    since: dt.date
    region: Annotated[str, StringConstraints(pattern=r"^\d{2}$")]
    note: Annotated[str, StringConstraints(pattern=r"^a+$")]


class Tight(BaseModel):
    name: str = Field(max_length=100)
    tags: list[Annotated[str, StringConstraints(max_length=5)]] = Field(max_length=3)
    count: int = Field(ge=0, le=9)
    since: Day | None = None
    until: Moment
    region: Annotated[str, StringConstraints(pattern=r"^\d{2}$")]
    id: uuid.UUID


def test_the_bound_check_finds_what_is_unbounded():
    assert sorted(unbounded("body", Loose.model_json_schema())) == [
        "body.count: a number without minimum and maximum",
        "body.name: a string without maxLength",
        "body.note: a string without maxLength",
        "body.since: a date without formatMinimum/formatMaximum",
        "body.tags: a list without maxItems",
        "body.weights: a map without propertyNames or maxProperties",
        "body.weights{}: a number without minimum and maximum",
    ]
    assert list(unbounded("body", Tight.model_json_schema())) == []

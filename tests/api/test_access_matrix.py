"""Access-control matrix (OWASP API1, broken object-level authorisation): every operation × every caller.

67 operations × 11 callers = 737 cells, each with the exact status the contract gives it
(PRODUCT.md "Who uses it", API.md), run on SQLite and on PostgreSQL. An operation of the app
without a row here, or a row whose operation no longer exists, fails
``test_every_operation_has_a_row``; so does a route left out of the OpenAPI document.

The callers: the system and the coordinator of the organising region (05), of the residence
region (08) and of an uninvolved region (19); a national auditor, and region-scoped auditors of an
involved (05) and of an uninvolved region (19: the one that shows the scope holds); the admin; no
token. The world: a client organised by 05 and living in 08 with both named workers, a
proposed cross-region pair, an open request from 05 to 08, a proposed cost decision paid by 08,
a webhook subscription of 05 with one delivery, and the audit entries all that left. Reads share
it; every write cell first builds a fresh target of its own (a client, worker, pair, request,
decision or subscription), so one caller's success never changes what the next caller meets.

A caller that must not learn that the client exists gets 404 on its resources, never 403, and
its lists answer 200 without any of the world's ids (``HIDDEN``). Callers involved in nothing (the
uninvolved region and its auditor, the admin, no token) also get, for ids that exist nowhere, exactly what they
get for the world's: an answer that differs would tell them which ids exist.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import itertools
import json
import re
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import httpx
import pytest
from fastapi.routing import APIRoute

from app.services.clock import today
from tests.api.helpers import born, client_body
from tests.conftest import _reset, hetu

CALLERS = (
    "sys05",
    "coord05",
    "sys08",
    "coord08",
    "sys19",
    "coord19",
    "auditor",
    "auditor05",
    "auditor19",
    "admin",
    "anonymous",
)
GROUPS = {
    "org": ("sys05", "coord05"),
    "res": ("sys08", "coord08"),
    "out": ("sys19", "coord19"),
    "systems": ("sys05", "sys08", "sys19"),
    "auditors": ("auditor", "auditor05", "auditor19"),
}
HIDDEN = "200 without any of the world's ids"
OUTSIDERS = ("sys19", "coord19", "auditor19", "admin", "anonymous")  # involved in no client of the world
SECRET_PARAMS = {"client_id", "assignment_id", "request_id", "pair_id", "decision_id", "webhook_id"}
Expected = int | str


def row(default: Expected, **cells: Expected) -> dict[str, Expected]:
    """Status per caller: ``default`` (no token: 401), then the groups named, then single callers."""
    statuses = dict.fromkeys(CALLERS, default) | {"anonymous": 401}
    for name, status in cells.items():
        statuses.update(dict.fromkeys(GROUPS.get(name, ()), status))
    for name, status in cells.items():
        if name not in GROUPS:
            assert name in statuses, f"unknown caller {name}"
            statuses[name] = status
    return statuses


PUBLIC = row(200, anonymous=200)
ANY_TOKEN = row(200)
CLIENT_READ = row(200, out=404, admin=403, auditor19=404)  # the client's own: involved regions, their auditors
REGION_LIST = row(200, out=HIDDEN, admin=403, auditor19=HIDDEN)  # filtered lists: an uninvolved region sees none
REGION_OWN = row(403, org=200, auditors=200, auditor19=403)  # one region's figures: its own callers and auditors
AUDIT_LOG = row(403, auditors=200, auditor19=HIDDEN)
CHAIN = row(403, auditor=200, admin=200)
HOLDERS_WRITE = row(403, org=201, res=201, out=404)
ORGANISING_WRITE = row(403, org=201, out=404)
RECEIVER_ANSWER = row(403, coord08=200, out=404, auditor19=404)  # the receiving region's coordinator answers
OWN_WEBHOOK = row(404, org=200, auditors=403, admin=403)


@dataclasses.dataclass
class Req:
    """One call of a cell: path parameters (besides the world's), body and query."""

    ids: dict[str, str] = dataclasses.field(default_factory=dict)
    json: Any = None
    params: dict[str, str] | None = None
    content: bytes | None = None  # a body that is not JSON (an import file), sent as ``media_type``
    media_type: str | None = None


@dataclasses.dataclass(frozen=True)
class Row:
    expect: dict[str, Expected]
    build: Callable[[World], Awaitable[Req]]
    fresh: bool  # a write: ``build`` makes a new target for every cell


MATRIX: dict[tuple[str, str], Row] = {}


def read(method: str, path: str, expect: dict[str, Expected], **req: Any) -> None:
    """A row whose cells all call the shared world the same way."""

    async def build(world: World) -> Req:
        return Req(**req)

    MATRIX[(method, path)] = Row(expect, build, fresh=False)


def write(method: str, path: str, expect: dict[str, Expected], *, fresh: bool = True) -> Callable[[Any], Any]:
    """A row whose cells each build a fresh target with the decorated recipe (``fresh=False``: a read)."""

    def register(build: Callable[[World], Awaitable[Req]]) -> Callable[[World], Awaitable[Req]]:
        MATRIX[(method, path)] = Row(expect, build, fresh=fresh)
        return build

    return register


class World:
    """The shared world, and builders of fresh targets (always made by the same builder callers)."""

    _codes = itertools.count()

    def __init__(self, api: httpx.AsyncClient, headers: dict[str, dict[str, str]]) -> None:
        self.api, self.headers = api, headers
        self.ids: dict[str, str] = {}
        self.secret: dict[str, str] = {}

    async def call(self, who: str, method: str, url: str, **kwargs: Any) -> Any:
        response = await self.api.request(method, url, headers=self.headers[who], **kwargs)
        assert response.is_success, f"building the world: {method} {url} -> {response.status_code} {response.text}"
        return response.json() if response.content else None

    def client_body(self) -> dict[str, Any]:
        n = next(self._codes)  # unique identity codes for the whole module, whatever other modules used
        return client_body(personal_id=hetu(born() - dt.timedelta(days=n // 700), n % 700 + 100))

    async def worker(self, region: str) -> str:
        body = {"region": region, "name": f"Worker {region}", "role": "social_worker"}
        return str((await self.call(f"coord{region}", "POST", "/v1/workers", json=body))["id"])

    async def client(self, *, named: bool = False) -> dict[str, str]:
        """A client organised by 05 living in 08; ``named``: with both named workers."""
        client = await self.call("sys05", "POST", "/v1/clients", json=self.client_body())
        made = {"client_id": client["id"], "personal_id": client["personal_id"]}
        if named:
            for who, responsibility, worker in (("sys05", "organising", self.w05), ("sys08", "residence", self.w08)):
                body = {"responsibility": responsibility, "worker_id": worker, "start_date": client["aftercare_start"]}
                assignment = await self.call(who, "POST", f"/v1/clients/{client['id']}/assignments", json=body)
                made[responsibility] = assignment["id"]
        return made

    async def pair(self, client_id: str) -> str:
        body = {"worker_ids": [self.w05, self.w08], "kind": "cross_region"}
        return str((await self.call("sys05", "POST", f"/v1/clients/{client_id}/pairs", json=body))["id"])

    async def request(self, client_id: str) -> str:
        body = {"client_id": client_id, "to_region": "08", "kind": "other", "message": "please call"}
        return str((await self.call("sys05", "POST", "/v1/coordination-requests", json=body))["id"])

    async def decision(self, client_id: str) -> str:
        url = f"/v1/clients/{client_id}/cost-decisions"
        return str((await self.call("sys05", "POST", url, json=decision_body()))["id"])

    async def webhook(self, *, delivery: bool = False) -> dict[str, str]:
        body = {
            "url": "https://hooks.example.org/silta",
            "secret": "0123456789abcdef",
            "event_types": ["worker.created"],
        }
        made = {"webhook_id": (await self.call("sys05", "POST", "/v1/webhooks", json=body))["id"]}
        if delivery:
            await self.worker("05")  # a worker.created event of region 05: one delivery
            log = await self.call("sys05", "GET", f"/v1/webhooks/{made['webhook_id']}/deliveries")
            made["delivery_id"] = str(log["items"][0]["id"])
        return made

    async def build(self) -> None:
        self.w05, self.w08 = await self.worker("05"), await self.worker("08")
        client = await self.client(named=True)
        cid = client["client_id"]
        self.personal_id = client["personal_id"]
        hook = await self.webhook(delivery=True)
        self.secret = {
            "client_id": cid,
            "organising assignment": client["organising"],
            "residence assignment": client["residence"],
            "pair_id": await self.pair(cid),
            "request_id": await self.request(cid),
            "decision_id": await self.decision(cid),
            "webhook_id": hook["webhook_id"],
        }
        await self.call("sys08", "GET", f"/v1/clients/{cid}")  # a disclosure to the residence region
        self.ids = {
            "code": "05",
            "worker_id": self.w08,
            "assignment_id": client["organising"],
            "delivery_id": hook["delivery_id"],
            **self.secret,
        }


def decision_body() -> dict[str, str]:
    return {
        "service_type": "supported_housing",
        "payer_region": "08",
        "payer_service": "aftercare",
        "valid_from": today().isoformat(),
        "legal_basis": "SHL 21 §",
    }


def tokens(auth: Callable[..., dict[str, str]]) -> dict[str, dict[str, str]]:
    headers = {}
    for region in ("05", "08", "19"):
        headers[f"sys{region}"] = auth("system", region=region, sub=f"matrix-sys{region}", client_system="Lifecare")
        headers[f"coord{region}"] = auth("coordinator", region=region, sub=f"matrix-coord{region}")
    headers["auditor"] = auth("auditor", sub="matrix-auditor")
    headers["auditor05"] = auth("auditor", region="05", sub="matrix-auditor05")
    headers["auditor19"] = auth("auditor", region="19", sub="matrix-auditor19")
    headers["admin"] = auth("admin", sub="matrix-admin")
    headers["anonymous"] = {}
    assert set(headers) == set(CALLERS)
    return headers


# --- operations, health and reference data -------------------------------------------------------

read("GET", "/healthz", PUBLIC)
read("GET", "/readyz", PUBLIC)
read("GET", "/metrics", PUBLIC)
read("GET", "/v1/regions", ANY_TOKEN)
read("GET", "/v1/regions/{code}", ANY_TOKEN)
read("GET", "/v1/municipalities/{code}", ANY_TOKEN, ids={"code": "019"})


@write("PATCH", "/v1/regions/{code}/settings", row(403, coord05=200, admin=200))
async def _settings(world: World) -> Req:
    await world.call("admin", "PATCH", "/v1/regions/05/settings", json={"grace_days": 14})
    return Req(json={"grace_days": 15})


# --- workers ----------------------------------------------------------------------------------------

read("GET", "/v1/workers", ANY_TOKEN)
read("GET", "/v1/workers/{worker_id}", ANY_TOKEN)


@write("POST", "/v1/workers", row(403, coord05=201))
async def _create_worker(world: World) -> Req:
    return Req(json={"region": "05", "name": "New Worker", "role": "counsellor"})


@write("PATCH", "/v1/workers/{worker_id}", row(403, coord05=200))
async def _update_worker(world: World) -> Req:
    return Req(ids={"worker_id": await world.worker("05")}, json={"name": "Renamed Worker"})


# --- imports --------------------------------------------------------------------------------------


@write("POST", "/v1/imports", row(403, org=200, res=200, out=422))
async def _import(world: World) -> Req:
    """A one-line file registering a fresh client (organised by 05, living in 08) under a new key.

    An uninvolved region's line breaks the registration rule: the atomic import is refused (422).
    """
    line = {**world.client_body(), "type": "client", "source_system": "matrix", "external_id": uuid.uuid4().hex}
    return Req(content=json.dumps(line).encode(), media_type="application/x-ndjson")


# --- clients --------------------------------------------------------------------------------------

read("GET", "/v1/clients", REGION_LIST)
read("GET", "/v1/clients/{client_id}", CLIENT_READ)
read("GET", "/v1/clients/{client_id}/responsibility", CLIENT_READ)
read("GET", "/v1/clients/{client_id}/history", CLIENT_READ)


@write("POST", "/v1/clients/search", REGION_LIST, fresh=False)
async def _search(world: World) -> Req:
    return Req(json={"personal_id": world.personal_id})


@write("POST", "/v1/clients", row(403, org=201, res=201))
async def _create_client(world: World) -> Req:
    return Req(json=world.client_body())


@write("PATCH", "/v1/clients/{client_id}", row(403, org=200, res=200, out=404))
async def _update_client(world: World) -> Req:
    return Req(ids=await world.client(), json={"last_name": "Uusitalo"})


@write("POST", "/v1/clients/{client_id}/moves", HOLDERS_WRITE)
async def _move(world: World) -> Req:
    return Req(ids=await world.client(), json={"residence_region": "19", "effective_date": today().isoformat()})


@write("POST", "/v1/clients/{client_id}/organising-transfers", ORGANISING_WRITE)
async def _transfer(world: World) -> Req:
    effective = (today() + dt.timedelta(days=5)).isoformat()
    return Req(ids=await world.client(), json={"to_region": "19", "effective_date": effective, "reason": "moved"})


@write("POST", "/v1/clients/{client_id}/end", row(403, org=200, out=404))
async def _end_client(world: World) -> Req:
    return Req(ids=await world.client(), json={"end_date": today().isoformat(), "reason": "own wish"})


# --- assignments and compliance ---------------------------------------------------------------------

read("GET", "/v1/clients/{client_id}/assignments", CLIENT_READ)
read("GET", "/v1/clients/{client_id}/compliance", CLIENT_READ)
read("GET", "/v1/compliance/gaps", REGION_LIST)


@write("POST", "/v1/clients/{client_id}/assignments", ORGANISING_WRITE)
async def _assign(world: World) -> Req:
    return Req(ids=await world.client(), json={"responsibility": "organising", "worker_id": world.w05})


@write("POST", "/v1/assignments/{assignment_id}/end", row(403, org=200, out=404))
async def _end_assignment(world: World) -> Req:
    client = await world.client(named=True)
    return Req(ids={"assignment_id": client["organising"]}, json={"reason": "worker changes"})


# --- coordination requests ------------------------------------------------------------------------

read("GET", "/v1/coordination-requests", REGION_LIST)
read("GET", "/v1/coordination-requests/{request_id}", CLIENT_READ)


@write("POST", "/v1/coordination-requests", HOLDERS_WRITE)
async def _create_request(world: World) -> Req:
    client = await world.client()
    return Req(json={"client_id": client["client_id"], "to_region": "19", "kind": "other", "message": "m"})


async def _open_request(world: World) -> Req:
    client = await world.client()
    return Req(ids={"request_id": await world.request(client["client_id"])}, json={"note": "ok"})


write("POST", "/v1/coordination-requests/{request_id}/accept", RECEIVER_ANSWER)(_open_request)
write("POST", "/v1/coordination-requests/{request_id}/decline", RECEIVER_ANSWER)(_open_request)
write("POST", "/v1/coordination-requests/{request_id}/cancel", row(403, org=200, out=404, auditor19=404))(_open_request)


# --- work pairs -----------------------------------------------------------------------------------

read("GET", "/v1/clients/{client_id}/pairs", CLIENT_READ)
read("GET", "/v1/workers/{worker_id}/pairs", REGION_LIST)
read("GET", "/v1/pairs/{pair_id}", CLIENT_READ)


@write("POST", "/v1/clients/{client_id}/pairs", HOLDERS_WRITE)
async def _propose_pair(world: World) -> Req:
    client = await world.client(named=True)
    return Req(ids=client, json={"worker_ids": [world.w05, world.w08], "kind": "cross_region"})


async def _proposed_pair(world: World) -> Req:
    client = await world.client(named=True)
    return Req(ids={"pair_id": await world.pair(client["client_id"])}, json={"reason": "no longer needed"})


@write("POST", "/v1/pairs/{pair_id}/confirm", RECEIVER_ANSWER | {"auditor19": 403})  # a role check before the lookup
async def _confirm_pair(world: World) -> Req:
    return Req(ids=(await _proposed_pair(world)).ids)  # no body


write("POST", "/v1/pairs/{pair_id}/end", row(403, org=200, res=200, out=404))(_proposed_pair)


# --- cost decisions -------------------------------------------------------------------------------

read("GET", "/v1/clients/{client_id}/cost-decisions", CLIENT_READ)
read("GET", "/v1/cost-decisions", REGION_LIST)
read("GET", "/v1/cost-decisions/summary", REGION_OWN, params={"region": "05"})
COST_EXPORT = row(403, coord05=200, auditors=200, auditor19=403)
read("GET", "/v1/cost-decisions/export", COST_EXPORT, params={"payer_region": "05"})
read("GET", "/v1/cost-decisions/{decision_id}", CLIENT_READ)


@write("POST", "/v1/clients/{client_id}/cost-decisions", HOLDERS_WRITE)
async def _propose_decision(world: World) -> Req:
    return Req(ids=await world.client(), json=decision_body())


async def _proposed_decision(world: World, body: dict[str, str]) -> Req:
    client = await world.client()
    return Req(ids={"decision_id": await world.decision(client["client_id"])}, json=body)


@write("POST", "/v1/cost-decisions/{decision_id}/agree", RECEIVER_ANSWER)
async def _agree(world: World) -> Req:
    return await _proposed_decision(world, {"note": "agreed"})


@write("POST", "/v1/cost-decisions/{decision_id}/dispute", RECEIVER_ANSWER)
async def _dispute(world: World) -> Req:
    return await _proposed_decision(world, {"reason": "not ours to pay"})


# --- caseload -------------------------------------------------------------------------------------

read("GET", "/v1/regions/{code}/caseload", REGION_OWN)
read("GET", "/v1/regions/{code}/caseload/suggestion", REGION_OWN)
read("GET", "/v1/regions/{code}/caseload/export", REGION_OWN)
read("GET", "/v1/caseload/overview", row(200, systems=403))


# --- audit ----------------------------------------------------------------------------------------

read("GET", "/v1/audit/events", AUDIT_LOG)
read("GET", "/v1/audit/access-log", AUDIT_LOG)
read("GET", "/v1/audit/disclosures", AUDIT_LOG)
read(
    "GET",
    "/v1/clients/{client_id}/access-report",
    row(403, coord05=200, coord08=200, coord19=404, auditors=200, auditor19=404),
)
read("GET", "/v1/audit/verify", CHAIN)
read("GET", "/v1/audit/keys", CHAIN)
read("GET", "/v1/audit/export", row(403, auditor=200), params={"log": "change"})


@write("POST", "/v1/audit/checkpoints", row(403, auditor=201, admin=201))
async def _checkpoint(world: World) -> Req:
    return Req()


@write("POST", "/v1/audit/checkpoints/verify", CHAIN)
async def _verify_checkpoint(world: World) -> Req:
    return Req(json={"signature": (await world.call("auditor", "POST", "/v1/audit/checkpoints"))["signature"]})


# --- integration ----------------------------------------------------------------------------------

read("GET", "/v1/events", row(200, out=HIDDEN, auditors=403, admin=403))
read("GET", "/v1/webhooks", row(200, res=HIDDEN, out=HIDDEN, auditors=403, admin=403))
read("GET", "/v1/webhooks/{webhook_id}", OWN_WEBHOOK)
read("GET", "/v1/webhooks/{webhook_id}/deliveries", OWN_WEBHOOK)


@write("POST", "/v1/webhooks", row(201, auditors=403, admin=403))
async def _create_webhook(world: World) -> Req:
    return Req(json={"url": "https://hooks.example.org/new", "secret": "0123456789abcdef", "event_types": ["x.y"]})


@write("DELETE", "/v1/webhooks/{webhook_id}", row(404, org=204, auditors=403, admin=403))
async def _delete_webhook(world: World) -> Req:
    return Req(ids=await world.webhook())


@write("POST", "/v1/webhooks/{webhook_id}/deliveries/{delivery_id}/redeliver", OWN_WEBHOOK)
async def _redeliver(world: World) -> Req:
    return Req(ids=await world.webhook(delivery=True))


# --- the tests ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
async def world(app: Any, backend: tuple[str, str], auth: Callable[..., dict[str, str]]) -> AsyncIterator[World]:
    await _reset(app, backend[0])
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://silta.test") as api:
        built = World(api, tokens(auth))
        await built.build()
        yield built


def cells(fresh: bool) -> list[Any]:
    return [
        pytest.param(key, caller, id=f"{key[0]} {key[1]} as {caller}")
        for key, entry in MATRIX.items()
        if entry.fresh == fresh
        for caller in CALLERS
    ]


async def check(world: World, key: tuple[str, str], caller: str) -> None:
    method, path = key
    entry = MATRIX[key]
    req = await entry.build(world)
    url = path.format(**(world.ids | req.ids))
    headers = world.headers[caller] | ({"Content-Type": req.media_type} if req.media_type else {})
    response = await world.api.request(
        method, url, headers=headers, json=req.json, params=req.params, content=req.content
    )
    expected = entry.expect[caller]
    shown = f"{method} {url} as {caller}: {response.status_code} {response.text[:300]}"
    if expected == HIDDEN:
        leaked = [name for name, value in world.secret.items() if value in response.text]
        assert (response.status_code, leaked) == (200, []), shown
    else:
        assert response.status_code == expected, shown


@pytest.mark.parametrize(("key", "caller"), cells(fresh=False))
async def test_read(world: World, key: tuple[str, str], caller: str) -> None:
    await check(world, key, caller)


@pytest.mark.parametrize(("key", "caller"), cells(fresh=True))
async def test_write(world: World, key: tuple[str, str], caller: str) -> None:
    await check(world, key, caller)


def test_every_operation_has_a_row(app: Any) -> None:
    documented = {(method.upper(), path) for path, item in app.openapi()["paths"].items() for method in item}
    routed = {(method, route.path) for route in app.routes if isinstance(route, APIRoute) for method in route.methods}
    assert sorted(routed - documented) == [], "routes missing from the OpenAPI document escape the matrix"
    assert sorted(documented - set(MATRIX)) == [], "operations without a row in the access matrix"
    assert sorted(set(MATRIX) - documented) == [], "rows of operations that no longer exist"
    size = f"{len(MATRIX)} operations × {len(CALLERS)} callers = {len(MATRIX) * len(CALLERS)} cells"
    assert size in (__doc__ or ""), f"the module docstring should say: {size}"


def unknown_id_cells() -> list[Any]:
    return [
        pytest.param(key, caller, id=f"{key[0]} {key[1]} as {caller}")
        for key in MATRIX
        if SECRET_PARAMS & set(re.findall(r"{(\w+)}", key[1])) or key == ("POST", "/v1/coordination-requests")
        for caller in OUTSIDERS
    ]


@pytest.mark.parametrize(("key", "caller"), unknown_id_cells())
async def test_outsiders_get_the_same_answer_for_unknown_ids(world: World, key: tuple[str, str], caller: str) -> None:
    method, path = key
    entry = MATRIX[key]
    req = await entry.build(world)  # for the body; its target is left alone
    unknown = {name: str(uuid.uuid4()) for name in SECRET_PARAMS}
    url = path.format(**(world.ids | req.ids | unknown))
    body = req.json | {"client_id": unknown["client_id"]} if req.json and "client_id" in req.json else req.json
    response = await world.api.request(method, url, headers=world.headers[caller], json=body, params=req.params)
    assert response.status_code == entry.expect[caller], f"{method} {url} as {caller}: {response.text[:300]}"

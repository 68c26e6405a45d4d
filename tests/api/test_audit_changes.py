"""Every write leaves exactly one change entry, in its own transaction, without identity codes."""

from __future__ import annotations

import datetime as dt
import json
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import pytest
from sqlalchemy import text

from app.config import Settings
from app.main import create_app
from app.services.clock import today
from tests.api.helpers import add_worker, assign, client_body, register

DAY = dt.timedelta(days=1)
Call = Callable[[], Awaitable[httpx.Response]]


def sys(auth, region):
    return auth("system", region=region, client_system="Lifecare")


def coord(auth, region):
    return auth("coordinator", region=region)


async def _world(api, auth) -> dict[str, Any]:
    client = await register(api, sys(auth, "05"))
    w05 = await add_worker(api, coord(auth, "05"), "05")
    w08 = await add_worker(api, coord(auth, "08"), "08")
    d19 = await add_worker(api, coord(auth, "19"), "19", role="other", service="disability")
    start = client["aftercare_start"]
    org = (await assign(api, sys(auth, "05"), client["id"], "organising", w05["id"], start_date=start)).json()
    res = (await assign(api, sys(auth, "08"), client["id"], "residence", w08["id"], start_date=start)).json()
    return {"client": client, "cid": client["id"], "w05": w05, "w08": w08, "d19": d19, "org": org, "res": res}


async def _request(api, auth, w, to_region="08") -> dict:
    body = {"client_id": w["cid"], "to_region": to_region, "kind": "other", "message": "m"}
    return (await api.post("/v1/coordination-requests", json=body, headers=sys(auth, "05"))).json()


async def _pair(api, auth, w) -> dict:
    body = {"worker_ids": [w["w05"]["id"], w["w08"]["id"]], "kind": "cross_region"}
    return (await api.post(f"/v1/clients/{w['cid']}/pairs", json=body, headers=sys(auth, "05"))).json()


async def _decision(api, auth, w) -> dict:
    body = {
        "service_type": "supported_housing",
        "payer_region": "08",
        "payer_service": "aftercare",
        "valid_from": today().isoformat(),
        "legal_basis": "SHL 21 §",
    }
    return (await api.post(f"/v1/clients/{w['cid']}/cost-decisions", json=body, headers=sys(auth, "05"))).json()


async def r_settings(api, auth, w) -> Call:
    return lambda: api.patch("/v1/regions/05/settings", json={"grace_days": 10}, headers=coord(auth, "05"))


async def r_create_worker(api, auth, w) -> Call:
    body = {"region": "05", "name": "New", "role": "counsellor"}
    return lambda: api.post("/v1/workers", json=body, headers=coord(auth, "05"))


async def r_update_worker(api, auth, w) -> Call:
    return lambda: api.patch(f"/v1/workers/{w['w08']['id']}", json={"active": False}, headers=coord(auth, "08"))


async def r_create_client(api, auth, w) -> Call:
    return lambda: api.post("/v1/clients", json=client_body(), headers=sys(auth, "05"))


async def r_update_client(api, auth, w) -> Call:
    return lambda: api.patch(f"/v1/clients/{w['cid']}", json={"last_name": "Uusi"}, headers=sys(auth, "05"))


async def r_move(api, auth, w) -> Call:
    body = {"residence_region": "19", "effective_date": today().isoformat()}
    return lambda: api.post(f"/v1/clients/{w['cid']}/moves", json=body, headers=sys(auth, "08"))


async def r_transfer(api, auth, w) -> Call:
    body = {"to_region": "19", "effective_date": (today() + 5 * DAY).isoformat(), "reason": "x"}
    return lambda: api.post(f"/v1/clients/{w['cid']}/organising-transfers", json=body, headers=sys(auth, "05"))


async def r_end_client(api, auth, w) -> Call:
    body = {"end_date": today().isoformat(), "reason": "x"}
    return lambda: api.post(f"/v1/clients/{w['cid']}/end", json=body, headers=sys(auth, "05"))


async def r_assign(api, auth, w) -> Call:
    other = await register(api, sys(auth, "05"), residence_region="05")
    return lambda: assign(api, sys(auth, "05"), other["id"], "organising", w["w05"]["id"])


async def r_end_assignment(api, auth, w) -> Call:
    return lambda: api.post(f"/v1/assignments/{w['res']['id']}/end", json={"reason": "x"}, headers=sys(auth, "08"))


async def r_create_request(api, auth, w) -> Call:
    body = {"client_id": w["cid"], "to_region": "19", "kind": "other", "message": "m"}
    return lambda: api.post("/v1/coordination-requests", json=body, headers=sys(auth, "05"))


async def r_accept(api, auth, w) -> Call:
    pair = await _pair(api, auth, w)
    items = (await api.get("/v1/coordination-requests", params={"status": "open"}, headers=coord(auth, "08"))).json()
    (request,) = [r for r in items["items"] if r.get("pair_id") == pair["id"]]
    return lambda: api.post(f"/v1/coordination-requests/{request['id']}/accept", json={}, headers=coord(auth, "08"))


async def r_decline(api, auth, w) -> Call:
    request = await _request(api, auth, w)
    return lambda: api.post(f"/v1/coordination-requests/{request['id']}/decline", json={}, headers=coord(auth, "08"))


async def r_cancel(api, auth, w) -> Call:
    request = await _request(api, auth, w)
    return lambda: api.post(f"/v1/coordination-requests/{request['id']}/cancel", json={}, headers=sys(auth, "05"))


async def r_propose_pair(api, auth, w) -> Call:
    return lambda: _pair_call(api, auth, w)


async def _pair_call(api, auth, w) -> httpx.Response:
    body = {"worker_ids": [w["w05"]["id"], w["w08"]["id"]], "kind": "cross_region"}
    return await api.post(f"/v1/clients/{w['cid']}/pairs", json=body, headers=sys(auth, "05"))


async def r_confirm_pair(api, auth, w) -> Call:
    pair = await _pair(api, auth, w)
    return lambda: api.post(f"/v1/pairs/{pair['id']}/confirm", headers=coord(auth, "08"))


async def r_end_pair(api, auth, w) -> Call:
    pair = await _pair(api, auth, w)
    return lambda: api.post(f"/v1/pairs/{pair['id']}/end", json={"reason": "x"}, headers=sys(auth, "05"))


async def r_propose_decision(api, auth, w) -> Call:
    return lambda: _decision_call(api, auth, w)


async def _decision_call(api, auth, w) -> httpx.Response:
    body = {
        "service_type": "supported_housing",
        "payer_region": "08",
        "payer_service": "aftercare",
        "valid_from": today().isoformat(),
        "legal_basis": "SHL 21 §",
    }
    return await api.post(f"/v1/clients/{w['cid']}/cost-decisions", json=body, headers=sys(auth, "05"))


async def r_agree(api, auth, w) -> Call:
    decision = await _decision(api, auth, w)
    return lambda: api.post(f"/v1/cost-decisions/{decision['id']}/agree", json={}, headers=coord(auth, "08"))


async def r_dispute(api, auth, w) -> Call:
    decision = await _decision(api, auth, w)
    body = {"reason": "not ours"}
    return lambda: api.post(f"/v1/cost-decisions/{decision['id']}/dispute", json=body, headers=coord(auth, "08"))


async def _hook(api, auth) -> dict:
    body = {"url": "https://hooks.example.org/silta", "secret": "0123456789abcdef"}
    return (await api.post("/v1/webhooks", json=body, headers=sys(auth, "05"))).json()


async def r_create_webhook(api, auth, w) -> Call:
    body = {"url": "https://hooks.example.org/other", "event_types": ["gap.opened"], "secret": "0123456789abcdef"}
    return lambda: api.post("/v1/webhooks", json=body, headers=sys(auth, "05"))


async def r_delete_webhook(api, auth, w) -> Call:
    hook = await _hook(api, auth)
    return lambda: api.delete(f"/v1/webhooks/{hook['id']}", headers=coord(auth, "05"))


async def r_redeliver(api, auth, w) -> Call:
    hook = await _hook(api, auth)
    await add_worker(api, coord(auth, "05"), "05")
    deliveries = (await api.get(f"/v1/webhooks/{hook['id']}/deliveries", headers=sys(auth, "05"))).json()["items"]
    url = f"/v1/webhooks/{hook['id']}/deliveries/{deliveries[0]['id']}/redeliver"
    return lambda: api.post(url, headers=sys(auth, "05"))


async def r_import(api, auth, w) -> Call:
    """A one-line file: an import leaves one change entry per applied line."""
    line = json.dumps({"type": "worker", "external_id": "imported-1", "name": "Imported", "role": "counsellor"})
    headers = {**coord(auth, "05"), "Content-Type": "application/x-ndjson"}
    return lambda: api.post("/v1/imports", content=line.encode(), headers=headers)


RECIPES: dict[str, tuple[Callable[..., Awaitable[Call]], str]] = {
    "integration-create_webhook": (r_create_webhook, "webhook.created"),
    "integration-delete_webhook": (r_delete_webhook, "webhook.deleted"),
    "integration-redeliver": (r_redeliver, "webhook.redelivery"),
    "regions-update_region_settings": (r_settings, "region.settings_updated"),
    "workers-create_worker": (r_create_worker, "worker.created"),
    "workers-update_worker": (r_update_worker, "worker.updated"),
    "clients-create_client": (r_create_client, "client.registered"),
    "clients-update_client": (r_update_client, "client.updated"),
    "clients-create_move": (r_move, "residence.ended"),
    "clients-create_organising_transfer": (r_transfer, "request.created"),
    "clients-end_client": (r_end_client, "client.ended"),
    "assignments-create_assignment": (r_assign, "assignment.created"),
    "assignments-end_assignment": (r_end_assignment, "assignment.ended"),
    "coordination-create_request": (r_create_request, "request.created"),
    "coordination-accept_request": (r_accept, "pair.confirmed"),
    "coordination-decline_request": (r_decline, "request.declined"),
    "coordination-cancel_request": (r_cancel, "request.cancelled"),
    "pairs-propose_pair": (r_propose_pair, "pair.proposed"),
    "pairs-confirm_pair": (r_confirm_pair, "pair.confirmed"),
    "pairs-end_pair": (r_end_pair, "pair.ended"),
    "cost-decisions-propose_decision": (r_propose_decision, "cost_decision.proposed"),
    "cost-decisions-agree": (r_agree, "cost_decision.agreed"),
    "cost-decisions-dispute": (r_dispute, "cost_decision.disputed"),
    "imports-create_import": (r_import, "worker.created"),
}
# POSTs that change no data: a search, and the audit chain's own checkpoints (sealing is not a change)
READS_BY_POST = {"clients-search_clients", "audit-create_checkpoint", "audit-verify_checkpoint"}


def _write_operations() -> set[str]:
    spec = create_app(Settings(database_url="sqlite://")).openapi()
    return {
        op["operationId"]
        for path, item in spec["paths"].items()
        for method, op in item.items()
        if method in {"post", "put", "patch", "delete"} and op["operationId"] not in READS_BY_POST
    }


def test_every_write_route_has_a_recipe_here():
    """A new write endpoint fails this until it is shown (below) to leave its change entry."""
    assert _write_operations() == set(RECIPES)


async def _entries(app) -> list[dict]:
    async with app.state.engine.connect() as conn:
        rows = await conn.execute(
            text("SELECT id, action, actor_region, client_system, request_id, changes FROM change_event ORDER BY id")
        )
        return [dict(row._mapping) for row in rows]


@pytest.mark.parametrize("operation", sorted(RECIPES))
async def test_each_write_leaves_exactly_one_change_entry(api, auth, app, operation):
    recipe, action = RECIPES[operation]
    world = await _world(api, auth)
    call = await recipe(api, auth, world)
    before = await _entries(app)
    response = await call()
    assert response.status_code in (200, 201, 204), response.text
    after = await _entries(app)
    assert len(after) == len(before) + 1, [e["action"] for e in after[len(before) :]]
    entry = after[-1]
    assert entry["action"] == action
    assert entry["request_id"] == response.headers["x-request-id"]
    changes = entry["changes"] if isinstance(entry["changes"], list) else json.loads(entry["changes"])
    assert changes and all({"action", "entity_type", "entity_id", "before", "after"} <= set(c) for c in changes)
    assert world["client"]["personal_id"] not in json.dumps(changes)


async def test_a_failed_write_leaves_no_entry(api, auth, app):
    world = await _world(api, auth)
    before = await _entries(app)
    refused = await assign(api, sys(auth, "05"), world["cid"], "organising", world["w08"]["id"])
    assert refused.status_code == 422
    conflict = await api.post(
        "/v1/clients", json={**client_body(), "personal_id": world["client"]["personal_id"]}, headers=sys(auth, "05")
    )
    assert conflict.status_code == 409
    assert await _entries(app) == before


async def test_one_entry_lists_every_entity_and_client_a_write_touched(api, auth, app):
    world = await _world(api, auth)
    other = await register(api, sys(auth, "05"))
    await assign(api, sys(auth, "08"), other["id"], "residence", world["w08"]["id"])
    off = await api.patch(f"/v1/workers/{world['w08']['id']}", json={"active": False}, headers=coord(auth, "08"))
    assert off.status_code == 200
    entry = (await _entries(app))[-1]
    changes = entry["changes"] if isinstance(entry["changes"], list) else json.loads(entry["changes"])
    actions = [c["action"] for c in changes]
    assert actions.count("assignment.ended") == 2 and "worker.updated" in actions and "gap.opened" in actions
    hexed = app.state.engine.dialect.name == "sqlite"
    async with app.state.engine.connect() as conn:
        touched = (
            (
                await conn.execute(
                    text("SELECT client_id FROM change_event_client WHERE event_id = :id"), {"id": entry["id"]}
                )
            )
            .scalars()
            .all()
        )
    ids = {str(uuid.UUID(str(value))) if hexed else str(value) for value in touched}
    assert ids == {world["cid"], other["id"]}

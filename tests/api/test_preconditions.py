"""ETag and If-Match: no client-information system overwrites a change it has not seen."""

from __future__ import annotations

import asyncio

import httpx
import pytest
from fastapi.routing import APIRoute
from sqlalchemy import text

from app.deps import conditional
from app.main import ROUTERS, create_app, operation_id
from app.models.client import ClientPublic
from app.services.preconditions import etag_of
from tests.api.helpers import add_worker, register
from tests.api.test_audit_changes import RECIPES, _entries, _world

STALE = '"0123456789abcdef0123456789abcdef"'


def _conditional_operations() -> set[str]:
    def uses_conditional(dependant) -> bool:
        return any(dep.call is conditional or uses_conditional(dep) for dep in dependant.dependencies)

    return {
        operation_id(route)
        for module in ROUTERS
        for route in module.router.routes
        if isinstance(route, APIRoute) and uses_conditional(route.dependant)
    }


EXPECTED = {
    "clients-update_client",
    "clients-create_move",
    "clients-create_organising_transfer",
    "clients-end_client",
    "workers-update_worker",
    "pairs-confirm_pair",
    "pairs-end_pair",
    "cost-decisions-agree",
    "cost-decisions-dispute",
    "coordination-accept_request",
    "coordination-decline_request",
    "coordination-cancel_request",
}


def test_every_change_to_a_single_resource_takes_if_match():
    assert _conditional_operations() == EXPECTED


@pytest.mark.parametrize("operation", sorted(EXPECTED))
async def test_a_stale_tag_is_refused_and_nothing_changes(api, auth, app, operation):
    recipe, _ = RECIPES[operation]
    world = await _world(api, auth)
    call = await recipe(api, auth, world)
    before = await _entries(app)
    api.headers["If-Match"] = STALE
    refused = await call()
    assert refused.status_code == 412, refused.text
    assert refused.json()["code"] == "precondition_failed"
    assert refused.headers["content-type"] == "application/problem+json"
    assert await _entries(app) == before
    api.headers["If-Match"] = "*"
    assert (await call()).status_code in (200, 201)


async def _etag(api, url, headers) -> str:
    response = await api.get(url, headers=headers)
    assert response.status_code == 200, response.text
    return response.headers["etag"]


async def test_each_single_resource_has_an_etag_that_changes_with_it(api, auth):
    headers = auth("coordinator", region="05")
    worker = await add_worker(api, headers, "05")
    url = f"/v1/workers/{worker['id']}"
    tag = await _etag(api, url, headers)
    assert tag.startswith('"') and tag == await _etag(api, url, headers)
    changed = await api.patch(url, json={"name": "Eeva Ojala"}, headers={**headers, "If-Match": tag})
    assert changed.status_code == 200, changed.text
    new_tag = await _etag(api, url, headers)
    assert new_tag != tag
    assert changed.headers["etag"] == new_tag
    again = await api.patch(url, json={"name": "Someone"}, headers={**headers, "If-Match": tag})
    assert again.status_code == 412


async def test_a_write_with_the_current_tag_answers_the_next_tag(api, auth):
    world = await _world(api, auth)
    org, other = auth("system", region="05"), auth("coordinator", region="08")
    cid = world["cid"]
    pair = (
        await api.post(
            f"/v1/clients/{cid}/pairs",
            json={"worker_ids": [world["w05"]["id"], world["w08"]["id"]], "kind": "cross_region"},
            headers=org,
        )
    ).json()
    request = (
        await api.post(
            "/v1/coordination-requests",
            json={"client_id": cid, "to_region": "08", "kind": "other", "message": "m"},
            headers=org,
        )
    ).json()
    cases = [
        (f"/v1/clients/{cid}", lambda h: api.patch(f"/v1/clients/{cid}", json={"first_name": "Iida"}, headers=h), org),
        (f"/v1/pairs/{pair['id']}", lambda h: api.post(f"/v1/pairs/{pair['id']}/confirm", headers=h), other),
        (
            f"/v1/coordination-requests/{request['id']}",
            lambda h: api.post(f"/v1/coordination-requests/{request['id']}/decline", json={"note": "no"}, headers=h),
            other,
        ),
    ]
    for url, write, headers in cases:
        tag = await _etag(api, url, headers)
        done = await write({**headers, "If-Match": tag})
        assert done.status_code == 200, (url, done.text)
        assert done.headers["etag"] == await _etag(api, url, headers) != tag
        assert (await write({**headers, "If-Match": tag})).status_code == 412


async def test_weak_tags_and_garbage_never_match(api, auth):
    headers = auth("coordinator", region="05")
    worker = await add_worker(api, headers, "05")
    url = f"/v1/workers/{worker['id']}"
    tag = await _etag(api, url, headers)
    for given in (f"W/{tag}", tag.strip('"'), "garbage", ""):
        response = await api.patch(url, json={"name": "X"}, headers={**headers, "If-Match": given})
        assert response.status_code == 412, given
    listed = await api.patch(url, json={"name": "X"}, headers={**headers, "If-Match": f"{STALE}, {tag}"})
    assert listed.status_code == 200


async def test_a_caller_who_may_not_see_the_resource_gets_404_not_412(api, auth):
    world = await _world(api, auth)
    outsider = {**auth("system", region="19"), "If-Match": STALE}
    response = await api.patch(f"/v1/clients/{world['cid']}", json={"first_name": "X"}, headers=outsider)
    assert response.status_code == 404


async def test_a_deployment_can_require_if_match(settings, auth, api):
    strict = create_app(settings.model_copy(update={"require_if_match": True}))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=strict), base_url="http://silta.test") as client:
        headers = auth("coordinator", region="05")
        worker = await add_worker(client, headers, "05")  # creating needs no tag
        url = f"/v1/workers/{worker['id']}"
        missing = await client.patch(url, json={"name": "X"}, headers=headers)
        assert missing.status_code == 428
        assert missing.json()["code"] == "precondition_required"
        tag = await _etag(client, url, headers)
        assert (await client.patch(url, json={"name": "X"}, headers={**headers, "If-Match": tag})).status_code == 200
    await strict.state.engine.dispose()


@pytest.mark.postgres_only
async def test_two_writers_with_the_same_tag_have_one_winner(api, auth):
    headers = auth("system", region="05")
    client = await register(api, headers)
    url = f"/v1/clients/{client['id']}"
    tag = await _etag(api, url, headers)
    responses = await asyncio.gather(
        *(api.patch(url, json={"first_name": f"Name{i}"}, headers={**headers, "If-Match": tag}) for i in range(6))
    )
    assert sorted(r.status_code for r in responses) == [200] + [412] * 5


async def test_an_etag_is_no_hash_of_the_identity_code(api, auth, app):
    """A tag travels where bodies do not (proxies, HTTP logs, a stored idempotent answer's headers), and
    the rest of a client's representation is in its row: a hash over the code would give it away to a
    few thousand guesses. The code never changes, so leaving it out keeps the tag exact."""
    headers = auth("system", region="05")
    client = await register(api, headers)
    read = await api.get(f"/v1/clients/{client['id']}", headers=headers)
    shown = ClientPublic.model_validate(read.json())
    assert shown.personal_id == client["personal_id"]
    assert read.headers["etag"] == etag_of(shown.model_copy(update={"personal_id": "010101-123N"}))
    ended = await api.post(
        f"/v1/clients/{client['id']}/end",
        json={"end_date": read.json()["aftercare_start"], "reason": "own wish"},
        headers=headers | {"Idempotency-Key": "end-1", "If-Match": read.headers["etag"]},
    )
    assert ended.status_code == 200, ended.text
    async with app.state.engine.connect() as conn:
        stored = (await conn.execute(text("SELECT headers FROM idempotency_key"))).scalar()
    assert ended.headers["etag"].strip('"') in str(stored)  # kept with the answer: it must not be an oracle

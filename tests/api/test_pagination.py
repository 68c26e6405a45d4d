"""Cursor pagination: inserts between pages neither hide an item that was there nor show one twice."""

from __future__ import annotations

import itertools

import pytest

from tests.api.helpers import add_worker, register

_n = itertools.count()


def coord(auth):
    return auth("coordinator", region="05")


async def _worker(api, auth):
    await add_worker(api, coord(auth), "05")


async def _client(api, auth):
    await register(api, auth("system", region="05"))


async def _request(api, auth):
    client = await register(api, auth("system", region="05"))
    body = {"client_id": client["id"], "to_region": "19", "kind": "other", "message": "m"}
    assert (await api.post("/v1/coordination-requests", json=body, headers=coord(auth))).status_code == 201


async def _webhook(api, auth):
    body = {"url": f"https://hooks.example.org/{next(_n)}", "secret": "0123456789abcdef"}
    assert (await api.post("/v1/webhooks", json=body, headers=coord(auth))).status_code == 201


LISTS = {
    "workers": ("/v1/workers?region=05", _worker, coord),
    "clients": ("/v1/clients", _client, coord),
    "requests": ("/v1/coordination-requests?from_region=05", _request, coord),
    "webhooks": ("/v1/webhooks", _webhook, coord),
    "audit events": ("/v1/audit/events", _worker, lambda auth: auth("auditor")),
}


@pytest.mark.parametrize("name", sorted(LISTS))
async def test_inserts_between_pages_miss_nothing_and_repeat_nothing(api, auth, name):
    url, create, reader = LISTS[name]
    for _ in range(5):
        await create(api, auth)
    first = (await api.get(url, headers=reader(auth))).json()["items"]
    existing = {item["id"] for item in first}
    assert len(existing) >= 5
    seen, cursor = [], None
    for _ in range(50):  # bounded
        params = {"limit": 2, **({"cursor": cursor} if cursor else {})}
        response = await api.get(url, params=params, headers=reader(auth))
        assert response.status_code == 200, response.text
        page = response.json()
        seen += [item["id"] for item in page["items"]]
        await create(api, auth)  # a concurrent insert between pages
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert len(seen) == len(set(seen)), "an item was shown twice"
    assert existing <= set(seen), "an item that was there all along was skipped"


@pytest.mark.parametrize("cursor", ["not-base64!", "bm90LWpzb24", "WyJhIiwiYiIsImMiXQ"])
async def test_a_forged_cursor_is_a_clear_error(api, auth, cursor):
    response = await api.get("/v1/workers", params={"cursor": cursor}, headers=coord(auth))
    assert response.status_code == 422
    assert response.json()["code"] in {"invalid_cursor", "validation_error"}


async def test_per_client_lists_page_too(api, auth):
    headers = auth("system", region="05")
    client = await register(api, headers)
    bodies = [
        {
            "service_type": kind,
            "payer_region": "08",
            "payer_service": "aftercare",
            "valid_from": client["aftercare_start"],
            "legal_basis": "SHL",
        }
        for kind in ("supported_housing", "other")
    ]
    for body in bodies:
        assert (
            await api.post(f"/v1/clients/{client['id']}/cost-decisions", json=body, headers=headers)
        ).status_code == 201
    url = f"/v1/clients/{client['id']}/cost-decisions"
    first = (await api.get(url, params={"limit": 1}, headers=headers)).json()
    second = (await api.get(url, params={"limit": 1, "cursor": first["next_cursor"]}, headers=headers)).json()
    assert first["next_cursor"] and second["next_cursor"] is None
    assert first["items"][0]["id"] != second["items"][0]["id"]
    for path in ("assignments", "pairs"):
        page = (await api.get(f"/v1/clients/{client['id']}/{path}", params={"limit": 1}, headers=headers)).json()
        assert page == {"items": [], "next_cursor": None}


async def test_a_clients_pairs_page_by_time_proposed(api, auth):
    from tests.api.test_audit_changes import _pair, _world

    world = await _world(api, auth)
    ids = []
    for _ in range(3):
        pair = await _pair(api, auth, world)
        ids.append(pair["id"])
        ended = await api.post(
            f"/v1/pairs/{pair['id']}/end", json={"reason": "redo"}, headers=auth("system", region="05")
        )
        assert ended.status_code == 200, ended.text
    seen, cursor = [], None
    for _ in range(5):
        params = {"limit": 1, **({"cursor": cursor} if cursor else {})}
        page = (
            await api.get(f"/v1/clients/{world['cid']}/pairs", params=params, headers=auth("system", region="05"))
        ).json()
        seen += [p["id"] for p in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == ids

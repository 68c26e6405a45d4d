"""The change feed: per region, in commit order, no gaps, no duplicates, the new state in each event."""

from __future__ import annotations

import asyncio
import datetime as dt

import pytest
from sqlalchemy import text

from app.services import feed
from app.services.clock import today
from tests.api.helpers import add_worker, client_body, register


async def _all(api, headers, after=0, limit=500) -> list[dict]:
    events = []
    while True:
        response = await api.get("/v1/events", params={"after": after, "limit": limit}, headers=headers)
        assert response.status_code == 200, response.text
        page = response.json()
        events += page["items"]
        if not page["items"]:
            return events
        after = page["items"][-1]["seq"]


async def test_a_registration_reaches_both_regions_and_no_other(api, auth):
    client = await register(api, auth("system", region="05"))
    for region in ("05", "08"):
        events = await _all(api, auth("system", region=region))
        assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
        registered = next(e for e in events if e["type"] == "client.registered")
        assert registered["client_id"] == client["id"]
        assert registered["entity_type"] == "client"
        assert registered["data"]["first_name"] == client["first_name"]
        assert "personal_id" not in str(events) and client["personal_id"] not in str(events)
        assert any(e["type"] == "gap.opened" for e in events)
    assert await _all(api, auth("system", region="19")) == []


async def test_workers_and_requests_reach_the_regions_they_name(api, auth):
    await add_worker(api, auth("coordinator", region="19"), "19")
    client = await register(api, auth("system", region="05"))
    body = {"client_id": client["id"], "to_region": "19", "kind": "other", "message": "please"}
    assert (
        await api.post("/v1/coordination-requests", json=body, headers=auth("system", region="05"))
    ).status_code == 201
    types19 = [e["type"] for e in await _all(api, auth("coordinator", region="19"))]
    assert types19 == ["worker.created", "request.created"]  # asked about a client it does not hold: only the request


async def test_following_after_in_small_pages_sees_each_event_once(api, auth):
    headers = auth("coordinator", region="05")
    for _ in range(7):
        await add_worker(api, headers, "05")
    seen, after, written = [], 0, 7
    while True:
        page = (await api.get("/v1/events", params={"after": after, "limit": 3}, headers=headers)).json()
        seen += [e["seq"] for e in page["items"]]
        if page["next_cursor"] is None:
            break
        after = int(page["next_cursor"])
        await add_worker(api, headers, "05")  # inserts between pages are picked up, not skipped
        written += 1
    assert seen == list(range(1, written + 1))
    assert written >= 9


async def test_a_protected_address_is_shown_only_to_its_region(api, auth):
    body = client_body(
        address_protection=True, organising_region="05", residence_municipality="837", residence_region="08"
    )
    client = await register(api, auth("system", region="05"), **body)
    move = {"residence_municipality": "211", "effective_date": today().isoformat()}  # 211: also in region 08
    moved = await api.post(f"/v1/clients/{client['id']}/moves", json=move, headers=auth("system", region="08"))
    assert moved.status_code == 201, moved.text
    for region, expected in (("05", None), ("08", "211")):
        events = await _all(api, auth("system", region=region))
        registered = next(e for e in events if e["type"] == "client.registered")
        assert registered["data"]["responsibility"]["residence"]["region"] == "08"
        assert registered["data"]["responsibility"]["residence"]["municipality"] == (expected and "837")
        move_event = next(e for e in events if e["type"] == "client.moved")
        assert move_event["data"]["municipality"] == expected, region
        assert registered["data"]["responsibility"]["organising"]["region"] == "05"


async def test_only_a_region_system_or_coordinator_reads_its_feed(api, auth):
    for headers in (auth("auditor"), auth("auditor", region="05"), auth("admin")):
        assert (await api.get("/v1/events", headers=headers)).status_code == 403
    assert (await api.get("/v1/events", params={"after": -1}, headers=auth("system", region="05"))).status_code == 422


async def test_a_cursor_older_than_the_retention_window_is_gone(api, auth, app):
    headers = auth("coordinator", region="05")
    for _ in range(3):
        await add_worker(api, headers, "05")
    old = dt.datetime.now(dt.UTC) - dt.timedelta(days=40)
    async with app.state.engine.begin() as conn:
        await conn.execute(text("UPDATE feed_event SET occurred_at = :old WHERE seq <= 2"), {"old": old})
    async with app.state.sessionmaker() as session:
        assert await feed.purge(session, dt.timedelta(days=30)) == 2
    gone = await api.get("/v1/events", params={"after": 1}, headers=headers)
    assert gone.status_code == 410
    assert gone.json()["code"] == "cursor_expired"
    assert gone.json()["purged_through"] == 2
    kept = await api.get("/v1/events", params={"after": 2}, headers=headers)
    assert [e["seq"] for e in kept.json()["items"]] == [3]


async def test_a_rolled_back_write_leaves_no_event_and_no_gap(api, auth):
    headers = auth("coordinator", region="05")
    await add_worker(api, headers, "05")
    refused = await api.post("/v1/workers", json={"region": "05", "name": "", "role": "x"}, headers=headers)
    assert refused.status_code == 422
    other = await api.post("/v1/workers", json={"region": "08", "name": "N", "role": "counsellor"}, headers=headers)
    assert other.status_code == 403
    await add_worker(api, headers, "05")
    assert [e["seq"] for e in await _all(api, headers)] == [1, 2]


@pytest.mark.postgres_only
async def test_a_consumer_following_eight_writers_sees_every_event_exactly_once(api, auth):
    headers = auth("coordinator", region="05")
    writers, writes = 8, 15
    done = asyncio.Event()
    seen: list[int] = []

    async def writer() -> None:
        for _ in range(writes):
            await add_worker(api, headers, "05")

    async def consumer() -> None:
        after = 0
        for _ in range(10_000):  # bounded: stops once the writers are done and the feed is drained
            finished = done.is_set()
            page = (await api.get("/v1/events", params={"after": after, "limit": 7}, headers=headers)).json()
            seen.extend(e["seq"] for e in page["items"])
            if page["items"]:
                after = page["items"][-1]["seq"]
            elif finished:
                return
            await asyncio.sleep(0)

    async def writers_then_done() -> None:
        await asyncio.gather(*(writer() for _ in range(writers)))
        done.set()

    await asyncio.gather(writers_then_done(), consumer())
    assert seen == list(range(1, writers * writes + 1))

"""Changes dated in the future or the past take effect on their own dates, not on the day they are recorded."""

from __future__ import annotations

import asyncio
import datetime as dt

import pytest
from sqlalchemy import text

from app.services.clock import today
from tests.api.helpers import add_worker, assign, register

DAY = dt.timedelta(days=1)


@pytest.fixture
async def covered(api, auth):
    """A client of 05 living in 08 with both named workers since aftercare began (30 days ago)."""
    h05, h08 = auth("system", region="05"), auth("system", region="08")
    client = await register(api, h05)
    w05 = await add_worker(api, auth("coordinator", region="05"), "05")
    w08 = await add_worker(api, auth("coordinator", region="08"), "08")
    start = client["aftercare_start"]
    org = (await assign(api, h05, client["id"], "organising", w05["id"], start_date=start)).json()
    res = (await assign(api, h08, client["id"], "residence", w08["id"], start_date=start)).json()
    return {"client": client, "h05": h05, "h08": h08, "w05": w05, "w08": w08, "org": org, "res": res}


async def compliance(api, headers, client_id, on: dt.date | None = None):
    params = {"as_of": on.isoformat()} if on else {}
    return (await api.get(f"/v1/clients/{client_id}/compliance", params=params, headers=headers)).json()


async def missing(api, headers, client_id, on: dt.date | None = None) -> list[tuple[str, str, str]]:
    body = await compliance(api, headers, client_id, on)
    return [(gap["responsibility"], gap["region"], gap["since"]) for gap in body["missing"]]


async def assignments(api, headers, client_id):
    return (await api.get(f"/v1/clients/{client_id}/assignments", headers=headers)).json()["items"]


async def test_a_move_announced_for_next_month_changes_nothing_until_then(api, auth, covered):
    cid, move_day = covered["client"]["id"], today() + dt.timedelta(days=30)
    moved = await api.post(
        f"/v1/clients/{cid}/moves",
        json={"residence_municipality": "564", "effective_date": move_day.isoformat()},
        headers=covered["h08"],
    )
    assert moved.status_code == 201, moved.text
    # today the client still lives in 08 with its named worker, compliant
    assert moved.json()["residence_region"] == "08" and moved.json()["compliance"] == "ok"
    assert await missing(api, covered["h05"], cid) == []
    (res,) = [a for a in await assignments(api, covered["h05"], cid) if a["responsibility"] == "residence"]
    assert (res["end_date"], res["end_reason"]) == (move_day.isoformat(), "moved")
    # from the move date 19 must name a worker; its gap is not on 19's list before then
    assert await missing(api, covered["h05"], cid, move_day) == [("residence", "19", move_day.isoformat())]
    h19 = auth("coordinator", region="19")
    assert (await api.get("/v1/compliance/gaps", headers=h19)).json()["items"] == []


async def test_a_future_move_ends_the_old_regions_gap_on_the_move_date_not_today(api, auth):
    h05, h08 = auth("system", region="05"), auth("system", region="08")
    client = await register(api, h05)
    w05 = await add_worker(api, auth("coordinator", region="05"), "05")
    await assign(api, h05, client["id"], "organising", w05["id"], start_date=client["aftercare_start"])
    move_day = today() + dt.timedelta(days=10)
    moved = await api.post(
        f"/v1/clients/{client['id']}/moves",
        json={"residence_region": "19", "effective_date": move_day.isoformat()},
        headers=h08,
    )
    assert moved.status_code == 201, moved.text
    since = client["aftercare_start"]
    assert await missing(api, h05, client["id"]) == [("residence", "08", since)]
    assert [g["client_id"] for g in (await api.get("/v1/compliance/gaps", headers=h08)).json()["items"]] == [
        client["id"]
    ]
    assert await missing(api, h05, client["id"], move_day - DAY) == [("residence", "08", since)]
    assert await missing(api, h05, client["id"], move_day) == [("residence", "19", move_day.isoformat())]


async def test_a_backdated_move_leaves_one_residence_gap(api, auth):
    h05, h08 = auth("system", region="05"), auth("system", region="08")
    client = await register(api, h05)
    w05 = await add_worker(api, auth("coordinator", region="05"), "05")
    await assign(api, h05, client["id"], "organising", w05["id"], start_date=client["aftercare_start"])
    move_day = today() - dt.timedelta(days=10)
    moved = await api.post(
        f"/v1/clients/{client['id']}/moves",
        json={"residence_region": "19", "effective_date": move_day.isoformat()},
        headers=h08,
    )
    assert moved.status_code == 201, moved.text
    assert await missing(api, h05, client["id"]) == [("residence", "19", move_day.isoformat())]
    assert await missing(api, h05, client["id"], move_day - DAY) == [("residence", "08", client["aftercare_start"])]
    assert (await api.get("/v1/compliance/gaps", headers=h08)).json()["items"] == []


async def test_the_old_region_may_name_a_worker_until_an_announced_move(api, auth):
    h05, h08 = auth("system", region="05"), auth("system", region="08")
    client = await register(api, h05)
    move_day = today() + dt.timedelta(days=20)
    await api.post(
        f"/v1/clients/{client['id']}/moves",
        json={"residence_region": "19", "effective_date": move_day.isoformat()},
        headers=h08,
    )
    w08 = await add_worker(api, auth("coordinator", region="08"), "08")
    named = await assign(api, h08, client["id"], "residence", w08["id"])
    assert named.status_code == 201, named.text
    assert (named.json()["end_date"], named.json()["end_reason"]) == (move_day.isoformat(), "moved")
    assert ("residence", "08") not in [(r, g) for r, g, _ in await missing(api, h05, client["id"])]
    w19 = await add_worker(api, auth("coordinator", region="19"), "19")
    early = await assign(api, auth("system", region="19"), client["id"], "residence", w19["id"])
    assert early.status_code == 403 and early.json()["code"] == "not_responsible"
    on_time = await assign(
        api, auth("system", region="19"), client["id"], "residence", w19["id"], start_date=move_day.isoformat()
    )
    assert on_time.status_code == 201, on_time.text
    assert await missing(api, h05, client["id"], move_day) == [
        ("organising", "05", client["aftercare_start"]),
    ]


async def test_an_assignment_starting_next_week_leaves_the_gap_open_until_then(api, auth):
    headers = auth("coordinator", region="05")
    client = await register(api, headers, residence_region="05")
    worker = await add_worker(api, headers, "05")
    start = today() + dt.timedelta(days=7)
    assert (
        await assign(api, headers, client["id"], "organising", worker["id"], start_date=start.isoformat())
    ).status_code == 201
    assert (await compliance(api, headers, client["id"]))["status"] == "gap"
    assert [g["client_id"] for g in (await api.get("/v1/compliance/gaps", headers=headers)).json()["items"]] == [
        client["id"]
    ]
    listed = (await api.get("/v1/clients", params={"compliance": "gap"}, headers=headers)).json()["items"]
    assert [c["id"] for c in listed] == [client["id"]]
    assert (await compliance(api, headers, client["id"], start - DAY))["status"] == "gap"
    assert (await compliance(api, headers, client["id"], start))["status"] == "ok"


async def test_an_assignment_ending_in_the_future_is_still_held_until_then(api, auth, covered):
    cid, end = covered["client"]["id"], today() + dt.timedelta(days=14)
    ended = await api.post(
        f"/v1/assignments/{covered['org']['id']}/end",
        json={"end_date": end.isoformat(), "reason": "leaves"},
        headers=covered["h05"],
    )
    assert ended.status_code == 200, ended.text
    assert (await compliance(api, covered["h05"], cid))["status"] == "ok"
    assert await missing(api, covered["h05"], cid, end) == [("organising", "05", end.isoformat())]
    # it may be ended earlier still, but not later and not twice once over
    later = await api.post(
        f"/v1/assignments/{covered['org']['id']}/end",
        json={"end_date": (end + DAY).isoformat(), "reason": "x"},
        headers=covered["h05"],
    )
    assert later.status_code == 422 and later.json()["code"] == "invalid_dates"
    sooner = await api.post(
        f"/v1/assignments/{covered['org']['id']}/end",
        json={"end_date": (end - DAY).isoformat(), "reason": "sooner"},
        headers=covered["h05"],
    )
    assert sooner.status_code == 200 and sooner.json()["end_date"] == (end - DAY).isoformat()
    # the successor can be named from that day, not before
    successor = await add_worker(api, auth("coordinator", region="05"), "05")
    clash = await assign(api, covered["h05"], cid, "organising", successor["id"], start_date=today().isoformat())
    assert clash.status_code == 409 and clash.json()["code"] == "responsibility_taken"
    follow = await assign(api, covered["h05"], cid, "organising", successor["id"], start_date=(end - DAY).isoformat())
    assert follow.status_code == 201, follow.text
    assert await missing(api, covered["h05"], cid, end) == []


@pytest.mark.parametrize("event", ["move", "deactivation", "early_end"])
async def test_an_assignment_ending_in_the_future_is_cut_short_by_later_events(api, auth, covered, event):
    cid, planned_end = covered["client"]["id"], today() + dt.timedelta(days=60)
    await api.post(
        f"/v1/assignments/{covered['res']['id']}/end",
        json={"end_date": planned_end.isoformat(), "reason": "planned"},
        headers=covered["h08"],
    )
    cut = today() + dt.timedelta(days=5)
    if event == "move":
        response = await api.post(
            f"/v1/clients/{cid}/moves",
            json={"residence_region": "19", "effective_date": cut.isoformat()},
            headers=covered["h08"],
        )
        expected = (cut, "moved")
    elif event == "deactivation":
        response = await api.patch(
            f"/v1/workers/{covered['w08']['id']}", json={"active": False}, headers=auth("coordinator", region="08")
        )
        expected = (today(), "worker_deactivated")
    else:
        response = await api.post(
            f"/v1/clients/{cid}/end", json={"end_date": cut.isoformat(), "reason": "moves on"}, headers=covered["h05"]
        )
        expected = (cut + DAY, "aftercare_ended")
    assert response.status_code in (200, 201), response.text
    (res,) = [a for a in await assignments(api, covered["h05"], cid) if a["responsibility"] == "residence"]
    assert (res["end_date"], res["end_reason"]) == (expected[0].isoformat(), expected[1])


async def test_an_early_end_next_month_keeps_the_client_active_until_then(api, auth, covered):
    cid, last_day = covered["client"]["id"], today() + dt.timedelta(days=30)
    ended = await api.post(
        f"/v1/clients/{cid}/end", json={"end_date": last_day.isoformat(), "reason": "moves on"}, headers=covered["h05"]
    )
    assert ended.status_code == 200, ended.text
    assert ended.json()["status"] == "active" and ended.json()["aftercare_end"] == last_day.isoformat()
    # the worker leaves next week: a successor may still be named, and holds until aftercare ends
    await api.post(
        f"/v1/assignments/{covered['org']['id']}/end",
        json={"end_date": (today() + dt.timedelta(days=7)).isoformat(), "reason": "leaves"},
        headers=covered["h05"],
    )
    successor = await add_worker(api, auth("coordinator", region="05"), "05")
    named = await assign(
        api,
        covered["h05"],
        cid,
        "organising",
        successor["id"],
        start_date=(today() + dt.timedelta(days=7)).isoformat(),
    )
    assert named.status_code == 201, named.text
    assert (named.json()["end_date"], named.json()["end_reason"]) == ((last_day + DAY).isoformat(), "aftercare_ended")
    assert (await compliance(api, covered["h05"], cid, last_day))["status"] == "ok"
    assert (await compliance(api, covered["h05"], cid, last_day + DAY))["status"] == "ended"


@pytest.mark.postgres_only
async def test_deactivation_racing_assignments_leaves_no_inactive_worker_named(api, auth, app):
    """Each assignment either lands before the deactivation (and is ended by it) or is refused."""
    headers = auth("coordinator", region="05")
    worker = await add_worker(api, headers, "05")
    clients = [await register(api, headers, residence_region="05") for _ in range(12)]
    deactivate = api.patch(f"/v1/workers/{worker['id']}", json={"active": False}, headers=headers)
    calls = [assign(api, headers, c["id"], "organising", worker["id"]) for c in clients[:6]]
    calls += [deactivate] + [assign(api, headers, c["id"], "organising", worker["id"]) for c in clients[6:]]
    responses = await asyncio.gather(*calls)
    assert all(r.status_code in (200, 201) or r.json()["code"] == "worker_inactive" for r in responses), [
        r.text for r in responses if r.status_code >= 300
    ]
    async with app.state.engine.connect() as conn:
        held = (
            await conn.execute(
                text("SELECT count(*) FROM assignment WHERE worker_id = :id AND valid_to IS NULL"),
                {"id": worker["id"]},
            )
        ).scalar()
    assert held == 0

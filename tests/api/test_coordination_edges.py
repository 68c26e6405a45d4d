"""Coordination edges found in review: minimal views, pairs ending with their assignments, known_at, lock order."""

from __future__ import annotations

import asyncio
import datetime as dt

import pytest
from sqlalchemy import text

from app.services.clock import today
from tests.api.helpers import add_worker, assign, register

DAY = dt.timedelta(days=1)


def sys(auth, region):
    return auth("system", region=region)


def coord(auth, region):
    return auth("coordinator", region=region)


@pytest.fixture
async def named(api, auth):
    """05 organises, client lives in Tampere (08, municipality 837), both named; a disability worker in 19."""
    client = await register(api, sys(auth, "05"), residence_region="08", residence_municipality="837")
    w05 = await add_worker(api, coord(auth, "05"), "05", name="Sanna Virtanen")
    w08 = await add_worker(api, coord(auth, "08"), "08", name="Mikko Laine")
    d19 = await add_worker(api, coord(auth, "19"), "19", role="other", service="disability")
    start = client["aftercare_start"]
    org = (await assign(api, sys(auth, "05"), client["id"], "organising", w05["id"], start_date=start)).json()
    res = (await assign(api, sys(auth, "08"), client["id"], "residence", w08["id"], start_date=start)).json()
    return {"client": client, "w05": w05, "w08": w08, "d19": d19, "org": org, "res": res}


async def pair_of(api, auth, cid, proposer, workers, kind="cross_region"):
    body = {"worker_ids": [w["id"] for w in workers], "kind": kind}
    response = await api.post(f"/v1/clients/{cid}/pairs", json=body, headers=sys(auth, proposer))
    assert response.status_code == 201, response.text
    return response.json()


async def test_a_region_only_asked_gets_only_the_minimal_view_everywhere(api, auth, named):
    cid = named["client"]["id"]
    body = {"client_id": cid, "to_region": "19", "kind": "other", "message": "please"}
    assert (await api.post("/v1/coordination-requests", json=body, headers=sys(auth, "05"))).status_code == 201
    h19 = sys(auth, "19")
    assert (await api.get(f"/v1/clients/{cid}", headers=h19)).json()["access"] == "request"
    leaks = {}
    history = (await api.get(f"/v1/clients/{cid}/history", headers=h19)).json()
    if any((e.get("details") or {}).get("municipality") == "837" for e in history.get("items", [])):
        leaks["history.municipality"] = "837"
    resp = (await api.get(f"/v1/clients/{cid}/responsibility", headers=h19)).json()
    if (resp.get("organising") or {}).get("named_worker"):
        leaks["responsibility.named_worker"] = resp["organising"]["named_worker"]["name"]
    items = (await api.get(f"/v1/clients/{cid}/assignments", headers=h19)).json().get("items", [])
    if items:
        leaks["assignments"] = [a["worker_name"] for a in items]
    listed = (await api.get("/v1/clients", params={"region": "08"}, headers=h19)).json()["items"]
    if any(c["id"] == cid and c["residence_municipality"] for c in listed):
        leaks["list.residence_municipality"] = "837"
    found = await api.post("/v1/clients/search", json={"personal_id": named["client"]["personal_id"]}, headers=h19)
    if found.status_code == 200 and found.json()["items"]:
        leaks["search_by_personal_id"] = "matches"
    assert leaks == {}


async def test_a_pair_ends_when_its_assignment_ends_earlier_than_scheduled(api, auth, named):
    s, cid = named, named["client"]["id"]
    pair = await pair_of(api, auth, cid, "05", [s["w05"], s["w08"]])
    assert (await api.post(f"/v1/pairs/{pair['id']}/confirm", headers=coord(auth, "08"))).status_code == 200
    later = today() + 5 * DAY
    body = {"end_date": later.isoformat(), "reason": "leaves"}
    assert (
        await api.post(f"/v1/assignments/{s['res']['id']}/end", json=body, headers=sys(auth, "08"))
    ).status_code == 200
    off = await api.patch(f"/v1/workers/{s['w08']['id']}", json={"active": False}, headers=coord(auth, "08"))
    assert off.status_code == 200
    tomorrow = (today() + DAY).isoformat()
    then = (
        await api.get(f"/v1/clients/{cid}/responsibility", params={"as_of": tomorrow}, headers=sys(auth, "05"))
    ).json()
    assert then["residence"]["named_worker"] is None
    assert then["pairs"] == []


async def test_a_pair_on_an_assignment_with_an_announced_end_ends_with_it(api, auth, named):
    s, cid = named, named["client"]["id"]
    move = today() + 30 * DAY
    body = {"residence_region": "19", "effective_date": move.isoformat()}
    assert (await api.post(f"/v1/clients/{cid}/moves", json=body, headers=sys(auth, "08"))).status_code == 201
    pair = await pair_of(api, auth, cid, "05", [s["w05"], s["w08"]])
    confirmed = (await api.post(f"/v1/pairs/{pair['id']}/confirm", headers=coord(auth, "08"))).json()
    after = (move + 10 * DAY).isoformat()
    then = (await api.get(f"/v1/clients/{cid}/responsibility", params={"as_of": after}, headers=sys(auth, "05"))).json()
    assert then["residence"]["region"] == "19"
    assert (confirmed["end_date"], then["pairs"]) == (move.isoformat(), [])


async def test_the_confirming_region_can_end_the_cross_service_pair_it_confirmed(api, auth, named):
    s, cid = named, named["client"]["id"]
    pair = await pair_of(api, auth, cid, "08", [s["w08"], s["d19"]], kind="cross_service")
    assert (await api.post(f"/v1/pairs/{pair['id']}/confirm", headers=coord(auth, "19"))).status_code == 200
    ended = await api.post(f"/v1/pairs/{pair['id']}/end", json={"reason": "done"}, headers=coord(auth, "19"))
    assert ended.status_code == 200, ended.text


async def test_a_transfer_to_the_residence_region_settles_its_residence_request(api, auth):
    client = await register(api, sys(auth, "05"))  # asks 08 to name a residence worker
    effective = today() + 10 * DAY
    body = {"to_region": "08", "effective_date": effective.isoformat(), "reason": "x"}
    request = (
        await api.post(f"/v1/clients/{client['id']}/organising-transfers", json=body, headers=sys(auth, "05"))
    ).json()
    accepted = await api.post(f"/v1/coordination-requests/{request['id']}/accept", json={}, headers=coord(auth, "08"))
    assert accepted.status_code == 200
    still = (await api.get("/v1/coordination-requests", params={"status": "open"}, headers=coord(auth, "08"))).json()
    assert [r["kind"] for r in still["items"]] == []


async def test_responsibility_known_at_shows_requests_and_pairs_as_they_stood(api, auth, named):
    s, cid = named, named["client"]["id"]
    body = {"client_id": cid, "to_region": "08", "kind": "other", "message": "m"}
    asked = (await api.post("/v1/coordination-requests", json=body, headers=sys(auth, "05"))).json()
    pair = await pair_of(api, auth, cid, "05", [s["w05"], s["w08"]])
    await api.post(f"/v1/pairs/{pair['id']}/confirm", headers=coord(auth, "08"))
    await asyncio.sleep(0.05)
    known_at = dt.datetime.now(dt.UTC).isoformat().replace("+00:00", "Z")
    await asyncio.sleep(0.05)
    await api.post(
        f"/v1/coordination-requests/{asked['id']}/decline", json={"note": "later"}, headers=coord(auth, "08")
    )
    await api.post(f"/v1/pairs/{pair['id']}/end", json={"reason": "later"}, headers=sys(auth, "05"))
    params = {"as_of": today().isoformat(), "known_at": known_at}
    then = (await api.get(f"/v1/clients/{cid}/responsibility", params=params, headers=sys(auth, "05"))).json()
    assert [(r["status"], r["answer_note"]) for r in then["pending_requests"]] == [("open", None)]
    assert [(p["status"], p["end_reason"]) for p in then["pairs"]] == [("active", None)]


@pytest.mark.postgres_only
async def test_deactivation_and_answering_a_confirmation_do_not_deadlock(api, auth, app, named):
    s, cid = named, named["client"]["id"]
    pair = await pair_of(api, auth, cid, "08", [s["w08"], s["d19"]], kind="cross_service")
    items = (await api.get("/v1/coordination-requests", params={"status": "open"}, headers=coord(auth, "19"))).json()
    (request,) = [r for r in items["items"] if r["kind"] == "confirm_pair"]
    async with app.state.engine.connect() as conn:  # plays 08's cancel: client, request, then pair (answers.py order)
        tx = await conn.begin()
        await conn.execute(text("SELECT id FROM client WHERE id = :id FOR UPDATE"), {"id": cid})
        await conn.execute(text("SELECT id FROM coordination_request WHERE id = :id FOR UPDATE"), {"id": request["id"]})
        deactivation = asyncio.create_task(
            api.patch(f"/v1/workers/{s['d19']['id']}", json={"active": False}, headers=coord(auth, "19"))
        )
        await asyncio.sleep(0.5)
        cancel_step = asyncio.create_task(
            conn.execute(text("UPDATE work_pair SET version = version WHERE id = :id"), {"id": pair["id"]})
        )
        await asyncio.wait({deactivation, cancel_step}, timeout=10)
        await tx.rollback()
        response = await deactivation
    # the deactivation waited for the client row the answer held: it was never half-applied
    assert response.status_code == 200, response.text


async def propose_transfer(api, auth, cid, to_region="19", days=10):
    body = {"to_region": to_region, "effective_date": (today() + days * DAY).isoformat(), "reason": "studies"}
    return await api.post(f"/v1/clients/{cid}/organising-transfers", json=body, headers=sys(auth, "05"))


@pytest.mark.parametrize(
    ("who", "action", "status", "code"),
    [
        ("coordinator-19", "accept", 200, None),
        ("coordinator-19", "decline", 200, None),
        ("coordinator-05", "accept", 403, "forbidden"),  # the proposer cannot accept its own proposal
        ("system-19", "accept", 403, "forbidden"),  # answering is a coordinator's
        ("auditor-19", "accept", 403, "forbidden"),
        ("coordinator-02", "accept", 404, "request_not_found"),  # uninvolved
        ("coordinator-02", "cancel", 404, "request_not_found"),
        ("coordinator-19", "cancel", 403, "not_responsible"),
        ("system-05", "cancel", 200, None),
    ],
)
async def test_who_may_answer_an_organising_transfer(api, auth, named, who, action, status, code):
    request = (await propose_transfer(api, auth, named["client"]["id"])).json()
    role, _, region = who.partition("-")
    response = await api.post(
        f"/v1/coordination-requests/{request['id']}/{action}", json={"note": "n"}, headers=auth(role, region=region)
    )
    assert response.status_code == status, response.text
    if code:
        assert response.json()["code"] == code


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({"to_region": "05"}, "invalid_transfer_region"),  # to itself
        ({"to_region": "91"}, "invalid_transfer_region"),  # Åland organises no aftercare
        ({"days": -1}, "invalid_dates"),  # backdated
        ({"days": 365 * 10}, "invalid_dates"),  # after aftercare ends
    ],
)
async def test_transfer_proposals_that_break_a_rule(api, auth, named, body, code):
    response = await propose_transfer(api, auth, named["client"]["id"], **body)
    assert response.status_code == 422 and response.json()["code"] == code


async def test_no_transfer_is_proposed_for_an_ended_client(api, auth, named):
    cid = named["client"]["id"]
    ended = await api.post(
        f"/v1/clients/{cid}/end", json={"end_date": (today() - DAY).isoformat(), "reason": "x"}, headers=sys(auth, "05")
    )
    assert ended.status_code == 200
    response = await propose_transfer(api, auth, cid)
    assert response.status_code == 422 and response.json()["code"] == "client_ended"


async def test_a_transfer_overtaken_by_an_early_end_is_stale_at_acceptance(api, auth, named):
    cid = named["client"]["id"]
    request = (await propose_transfer(api, auth, cid, days=20)).json()
    ended = await api.post(
        f"/v1/clients/{cid}/end",
        json={"end_date": (today() + 10 * DAY).isoformat(), "reason": "x"},
        headers=sys(auth, "05"),
    )
    assert ended.status_code == 200
    stale = await api.post(f"/v1/coordination-requests/{request['id']}/accept", json={}, headers=coord(auth, "19"))
    assert stale.status_code == 409 and stale.json()["code"] == "transfer_stale"


async def test_a_region_only_asked_writes_nothing(api, auth, named):
    s, cid = named, named["client"]["id"]
    body = {"client_id": cid, "to_region": "19", "kind": "other", "message": "please"}
    assert (await api.post("/v1/coordination-requests", json=body, headers=sys(auth, "05"))).status_code == 201
    h19 = sys(auth, "19")
    w19 = await add_worker(api, coord(auth, "19"), "19")
    attempts = [
        await assign(api, h19, cid, "residence", w19["id"]),
        await api.post(
            f"/v1/clients/{cid}/pairs",
            json={"worker_ids": [s["w05"]["id"], w19["id"]], "kind": "cross_service"},
            headers=h19,
        ),
        await api.post(
            f"/v1/clients/{cid}/organising-transfers",
            json={"to_region": "02", "effective_date": (today() + DAY).isoformat(), "reason": "x"},
            headers=h19,
        ),
        await api.post(f"/v1/clients/{cid}/end", json={"end_date": today().isoformat(), "reason": "x"}, headers=h19),
        await api.post("/v1/coordination-requests", json={**body, "to_region": "02"}, headers=h19),
        await api.post(f"/v1/assignments/{s['org']['id']}/end", json={"reason": "x"}, headers=h19),
    ]
    assert [r.status_code for r in attempts] == [403] * 5 + [403], [r.text for r in attempts]


async def test_pair_transitions_at_the_edges(api, auth, named):
    s, cid = named, named["client"]["id"]
    pair = await pair_of(api, auth, cid, "05", [s["w05"], s["w08"]])
    withdrawn = await api.post(f"/v1/pairs/{pair['id']}/end", json={"reason": "no"}, headers=sys(auth, "08"))
    assert withdrawn.status_code == 200 and withdrawn.json()["status"] == "ended"  # the confirming side withdraws
    late = await api.post(f"/v1/pairs/{pair['id']}/confirm", headers=coord(auth, "08"))
    assert late.status_code == 409 and late.json()["code"] == "pair_not_proposed"
    # a cross-service pair inside one region: that region's coordinator confirms, no request is opened
    d08 = await add_worker(api, coord(auth, "08"), "08", role="other", service="disability")
    inside = await pair_of(api, auth, cid, "08", [s["w08"], d08], kind="cross_service")
    assert inside["confirm_region"] == "08"
    confirmed = await api.post(f"/v1/pairs/{inside['id']}/confirm", headers=coord(auth, "08"))
    assert confirmed.status_code == 200 and confirmed.json()["status"] == "active"
    # a move ends the residence worker's assignment, and the pair with it, on the move date
    move = today() + 7 * DAY
    moved = await api.post(
        f"/v1/clients/{cid}/moves",
        json={"residence_region": "19", "effective_date": move.isoformat()},
        headers=sys(auth, "08"),
    )
    assert moved.status_code == 201
    (stored,) = [
        p
        for p in (await api.get(f"/v1/clients/{cid}/pairs", headers=sys(auth, "05"))).json()["items"]
        if p["id"] == inside["id"]
    ]
    assert (stored["status"], stored["end_date"]) == ("active", move.isoformat())


async def test_a_transfer_ends_the_cross_region_pair_with_the_organising_assignment(api, auth, named):
    s, cid = named, named["client"]["id"]
    pair = await pair_of(api, auth, cid, "05", [s["w05"], s["w08"]])
    await api.post(f"/v1/pairs/{pair['id']}/confirm", headers=coord(auth, "08"))
    request = (await propose_transfer(api, auth, cid, days=10)).json()
    assert (
        await api.post(f"/v1/coordination-requests/{request['id']}/accept", json={}, headers=coord(auth, "19"))
    ).status_code == 200
    (stored,) = (await api.get(f"/v1/clients/{cid}/pairs", headers=sys(auth, "05"))).json()["items"]
    assert stored["end_date"] == (today() + 10 * DAY).isoformat()


async def test_the_request_for_a_future_move_is_due_a_grace_period_after_the_move(api, auth, named):
    cid = named["client"]["id"]
    move = today() + 30 * DAY
    await api.post(
        f"/v1/clients/{cid}/moves",
        json={"residence_region": "19", "effective_date": move.isoformat()},
        headers=sys(auth, "08"),
    )
    (request,) = (
        await api.get("/v1/coordination-requests", params={"to_region": "19"}, headers=sys(auth, "19"))
    ).json()["items"]
    assert request["due_date"] == (move + 14 * DAY).isoformat()

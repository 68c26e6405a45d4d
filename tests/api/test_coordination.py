"""Coordination requests: opened by hand and by the rules, answered once, by the right region only."""

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


async def requests_of(api, headers, **params):
    response = await api.get("/v1/coordination-requests", params=params, headers=headers)
    assert response.status_code == 200, response.text
    return response.json()["items"]


async def ask(api, headers, client_id, to_region="19", kind="other", **extra):
    body = {"client_id": client_id, "to_region": to_region, "kind": kind, "message": "please", **extra}
    return await api.post("/v1/coordination-requests", json=body, headers=headers)


async def answer(api, headers, request_id, action, note="noted"):
    return await api.post(f"/v1/coordination-requests/{request_id}/{action}", json={"note": note}, headers=headers)


@pytest.fixture
async def placed(api, auth):
    """A client placed by 05 and living in 08: registration asked 08 to name a residence worker."""
    client = await register(api, sys(auth, "05"))
    (request,) = await requests_of(api, sys(auth, "08"), to_region="08")
    return {"client": client, "request": request}


async def test_registration_asks_the_residence_region_and_both_sides_see_it(api, auth, placed):
    request = placed["request"]
    assert (request["kind"], request["from_region"], request["to_region"], request["status"]) == (
        "assign_residence_worker",
        "05",
        "08",
        "open",
    )
    assert [r["id"] for r in await requests_of(api, sys(auth, "05"), from_region="05")] == [request["id"]]
    assert await requests_of(api, sys(auth, "19")) == []
    assert (await api.get(f"/v1/coordination-requests/{request['id']}", headers=sys(auth, "19"))).status_code == 404
    assert len(await requests_of(api, auth("auditor"))) == 1
    assert len(await requests_of(api, auth("auditor", region="08"))) == 1
    assert await requests_of(api, auth("auditor", region="19")) == []
    assert (await api.get("/v1/coordination-requests", headers=auth("admin"))).status_code == 403


async def test_naming_the_worker_fulfils_the_request(api, auth, placed):
    worker = await add_worker(api, coord(auth, "08"), "08")
    named = await assign(api, sys(auth, "08"), placed["client"]["id"], "residence", worker["id"])
    assert named.status_code == 201
    request = (await api.get(f"/v1/coordination-requests/{placed['request']['id']}", headers=sys(auth, "05"))).json()
    assert request["status"] == "accepted" and request["assignment_id"] == named.json()["id"]
    assert request["answer_note"] == "fulfilled by the assignment"


@pytest.mark.parametrize(
    ("who", "action", "status", "code"),
    [
        ("system-08", "decline", 403, "forbidden"),  # answering is a coordinator's
        ("coordinator-05", "decline", 403, "forbidden"),  # the asker does not answer
        ("coordinator-19", "decline", 404, "request_not_found"),  # uninvolved: cannot tell it exists
        ("auditor", "decline", 403, "forbidden"),
        ("coordinator-08", "cancel", 403, "not_responsible"),  # the receiver does not cancel
        ("coordinator-08", "accept", 422, "accept_by_assignment"),
        ("coordinator-08", "decline", 200, None),
        ("system-05", "cancel", 200, None),
        ("coordinator-05", "cancel", 200, None),
    ],
)
async def test_who_may_answer(api, auth, placed, who, action, status, code):
    role, _, region = who.partition("-")
    headers = auth(role, region=region or None)
    response = await answer(api, headers, placed["request"]["id"], action)
    assert response.status_code == status, response.text
    if code:
        assert response.json()["code"] == code
        stored = (await api.get(f"/v1/coordination-requests/{placed['request']['id']}", headers=sys(auth, "05"))).json()
        assert stored["status"] == "open"
    else:
        body = response.json()
        assert body["status"] == {"decline": "declined", "cancel": "cancelled"}[action]
        assert body["answer_note"] == "noted" and body["answered_at"]


@pytest.mark.parametrize("second", ["accept", "decline", "cancel"])
async def test_an_answered_request_cannot_be_answered_again(api, auth, placed, second):
    assert (await answer(api, coord(auth, "08"), placed["request"]["id"], "decline")).status_code == 200
    headers = coord(auth, "05") if second == "cancel" else coord(auth, "08")
    again = await answer(api, headers, placed["request"]["id"], second)
    assert again.status_code == 409 and again.json()["code"] == "request_answered"


@pytest.mark.parametrize(
    ("headers_of", "body", "status", "code"),
    [
        ("system-05", {"kind": "other"}, 201, None),
        ("system-08", {"kind": "other", "to_region": "05"}, 201, None),
        ("system-05", {"kind": "assign_residence_worker", "to_region": "08"}, 409, "request_pending"),
        ("system-05", {"kind": "assign_organising_worker", "to_region": "08"}, 422, "not_holding_region"),
        ("system-05", {"kind": "accept_organising_transfer"}, 422, "kind_not_allowed"),
        ("system-05", {"kind": "confirm_pair"}, 422, "kind_not_allowed"),
        ("system-05", {"kind": "review_cost_decision"}, 422, "kind_not_allowed"),
        ("system-05", {"to_region": "05"}, 422, "invalid_request_region"),
        ("system-05", {"to_region": "91"}, 422, "invalid_request_region"),  # Åland organises no aftercare
        ("system-05", {"to_region": "99"}, 404, "region_not_found"),
        ("system-05", {"due_date": "YESTERDAY"}, 422, "invalid_dates"),
        ("system-05", {"kind": "nonsense"}, 422, "validation_error"),
        ("system-05", {"message": "x" * 4001}, 422, "validation_error"),
        ("system-19", {}, 404, "client_not_found"),
        ("auditor", {}, 403, "forbidden"),
        ("admin", {}, 403, "forbidden"),
    ],
)
async def test_asking_another_region(api, auth, placed, headers_of, body, status, code):
    role, _, region = headers_of.partition("-")
    if body.get("due_date") == "YESTERDAY":
        body = {**body, "due_date": (today() - DAY).isoformat()}
    response = await ask(api, auth(role, region=region or None), placed["client"]["id"], **body)
    assert response.status_code == status, response.text
    if code:
        assert response.json()["code"] == code
    else:
        created = response.json()
        assert created["status"] == "open" and created["overdue"] is False
        assert created["due_date"] == (today() + dt.timedelta(days=14)).isoformat()  # the receiver's grace


async def test_a_region_asked_sees_the_client_only_minimally_and_only_while_the_request_is_open(api, auth):
    client = await register(
        api,
        sys(auth, "05"),
        external_ids=[{"system": "cis", "id": "77"}],
        residence_region=None,
        residence_municipality="837",
    )
    path = f"/v1/clients/{client['id']}"
    assert (await api.get(path, headers=sys(auth, "19"))).status_code == 404
    request = (await ask(api, sys(auth, "05"), client["id"])).json()
    seen = (await api.get(path, headers=sys(auth, "19"))).json()
    assert seen["access"] == "request"
    assert seen["personal_id"] is None and seen["external_ids"] == [] and seen["residence_municipality"] is None
    assert seen["last_name"] == client["last_name"] and seen["organising_region"] == "05"
    full = (await api.get(path, headers=sys(auth, "05"))).json()
    assert full["access"] == "full" and full["personal_id"] == client["personal_id"]
    # read-only: the asked region holds nothing, so it changes nothing
    patched = await api.patch(path, json={"last_name": "X"}, headers=sys(auth, "19"))
    assert patched.status_code == 403 and patched.json()["code"] == "not_responsible"
    moved = await api.post(
        f"{path}/moves", json={"residence_region": "19", "effective_date": today().isoformat()}, headers=sys(auth, "19")
    )
    assert moved.status_code == 403
    assert (await answer(api, sys(auth, "05"), request["id"], "cancel")).status_code == 200
    assert (await api.get(path, headers=sys(auth, "19"))).status_code == 404


async def test_overdue_requests_are_listed_as_such(api, auth, app, placed):
    other = (await ask(api, sys(auth, "05"), placed["client"]["id"], to_region="08")).json()
    async with app.state.engine.begin() as conn:
        await conn.execute(
            text("UPDATE coordination_request SET due_date = :due WHERE id = :id"),
            {
                "due": today() - DAY,
                "id": other["id"] if app.state.engine.dialect.name == "postgresql" else other["id"].replace("-", ""),
            },
        )
    late = await requests_of(api, coord(auth, "08"), overdue="true")
    assert [r["id"] for r in late] == [other["id"]] and late[0]["overdue"] is True
    on_time = await requests_of(api, coord(auth, "08"), overdue="false")
    assert [r["id"] for r in on_time] == [placed["request"]["id"]]
    assert (await answer(api, coord(auth, "08"), other["id"], "decline")).status_code == 200
    assert await requests_of(api, coord(auth, "08"), overdue="true") == []  # answered is never overdue
    assert [r["id"] for r in await requests_of(api, coord(auth, "08"), status="declined")] == [other["id"]]


async def test_request_lists_page_without_repeats(api, auth):
    headers = sys(auth, "05")
    ids = set()
    for _ in range(5):
        client = await register(api, headers)
        ids.add((await ask(api, headers, client["id"])).json()["id"])
    seen, cursor = [], None
    while True:
        params = {"limit": 2, "to_region": "19", **({"cursor": cursor} if cursor else {})}
        page = (await api.get("/v1/coordination-requests", params=params, headers=headers)).json()
        seen += [r["id"] for r in page["items"]]
        cursor = page["next_cursor"]
        if not cursor:
            break
    assert sorted(seen) == sorted(ids) and len(seen) == 5


async def test_a_move_cancels_the_request_to_the_region_left_and_asks_the_new_one(api, auth, placed):
    moved = await api.post(
        f"/v1/clients/{placed['client']['id']}/moves",
        json={"residence_region": "19", "effective_date": today().isoformat()},
        headers=sys(auth, "08"),
    )
    assert moved.status_code == 201
    old = (await api.get(f"/v1/coordination-requests/{placed['request']['id']}", headers=sys(auth, "05"))).json()
    assert old["status"] == "cancelled" and old["answer_note"] == "the client moved elsewhere"
    (new,) = await requests_of(api, sys(auth, "05"), to_region="19")
    assert (new["kind"], new["status"]) == ("assign_residence_worker", "open")


async def test_deactivating_a_residence_worker_asks_the_region_for_a_new_one(api, auth, placed):
    worker = await add_worker(api, coord(auth, "08"), "08")
    await assign(api, sys(auth, "08"), placed["client"]["id"], "residence", worker["id"])
    off = await api.patch(f"/v1/workers/{worker['id']}", json={"active": False}, headers=coord(auth, "08"))
    assert off.status_code == 200
    asked = await requests_of(api, coord(auth, "08"), to_region="08", status="open")
    assert [(r["kind"], r["from_region"]) for r in asked] == [("assign_residence_worker", "05")]


async def test_an_early_end_cancels_what_is_still_asked(api, auth, placed):
    other = (await ask(api, sys(auth, "05"), placed["client"]["id"])).json()
    ended = await api.post(
        f"/v1/clients/{placed['client']['id']}/end",
        json={"end_date": (today() - DAY).isoformat(), "reason": "moved abroad"},
        headers=sys(auth, "05"),
    )
    assert ended.status_code == 200, ended.text
    statuses = {r["id"]: r["status"] for r in await requests_of(api, auth("auditor"))}
    assert statuses == {placed["request"]["id"]: "cancelled", other["id"]: "cancelled"}


@pytest.fixture
async def named(api, auth):
    """A client of 05 living in 08, both workers named from the start."""
    client = await register(api, sys(auth, "05"))
    w05 = await add_worker(api, coord(auth, "05"), "05")
    w08 = await add_worker(api, coord(auth, "08"), "08")
    start = client["aftercare_start"]
    org = (await assign(api, sys(auth, "05"), client["id"], "organising", w05["id"], start_date=start)).json()
    res = (await assign(api, sys(auth, "08"), client["id"], "residence", w08["id"], start_date=start)).json()
    return {"client": client, "org": org, "res": res}


async def propose(api, auth, client_id, to_region="19", days=10, region="05"):
    effective = today() + dt.timedelta(days=days)
    response = await api.post(
        f"/v1/clients/{client_id}/organising-transfers",
        json={"to_region": to_region, "effective_date": effective.isoformat(), "reason": "moves for studies"},
        headers=sys(auth, region),
    )
    assert response.status_code == 201, response.text
    return response.json(), effective


async def test_accepting_an_organising_transfer_moves_the_responsibility_on_its_date(api, auth, named):
    cid = named["client"]["id"]
    request, effective = await propose(api, auth, cid)
    seen = (await api.get(f"/v1/clients/{cid}", headers=coord(auth, "19"))).json()
    assert seen["access"] == "request" and seen["personal_id"] is None
    accepted = await answer(api, coord(auth, "19"), request["id"], "accept", note="welcome")
    assert accepted.status_code == 200, accepted.text
    assert accepted.json()["status"] == "accepted"
    before = (
        await api.get(
            f"/v1/clients/{cid}/responsibility",
            params={"as_of": (effective - DAY).isoformat()},
            headers=sys(auth, "05"),
        )
    ).json()
    assert before["organising"]["region"] == "05" and before["compliance"] == "ok"
    after = (
        await api.get(
            f"/v1/clients/{cid}/responsibility", params={"as_of": effective.isoformat()}, headers=sys(auth, "05")
        )
    ).json()
    assert after["organising"]["region"] == "19" and after["organising"]["named_worker"] is None
    assert [(g["responsibility"], g["region"], g["since"]) for g in after["missing"]] == [
        ("organising", "19", effective.isoformat())
    ]
    org = [a for a in (await api.get(f"/v1/clients/{cid}/assignments", headers=sys(auth, "05"))).json()["items"]]
    assert [(a["responsibility"], a["end_date"], a["end_reason"]) for a in org if a["id"] == named["org"]["id"]] == [
        ("organising", effective.isoformat(), "organising_transferred")
    ]
    # the receiver now holds a responsibility: full view, and it may name its worker from the date
    full = (await api.get(f"/v1/clients/{cid}", headers=coord(auth, "19"))).json()
    assert full["access"] == "full"
    w19 = await add_worker(api, coord(auth, "19"), "19")
    early = await assign(api, sys(auth, "19"), cid, "organising", w19["id"])
    assert early.status_code == 403
    on_time = await assign(api, sys(auth, "19"), cid, "organising", w19["id"], start_date=effective.isoformat())
    assert on_time.status_code == 201, on_time.text


async def test_declining_an_organising_transfer_changes_nothing(api, auth, named):
    cid = named["client"]["id"]
    request, effective = await propose(api, auth, cid)
    declined = await answer(api, coord(auth, "19"), request["id"], "decline", note="no capacity")
    assert declined.status_code == 200 and declined.json()["status"] == "declined"
    later = (
        await api.get(
            f"/v1/clients/{cid}/responsibility", params={"as_of": effective.isoformat()}, headers=sys(auth, "05")
        )
    ).json()
    assert later["organising"]["region"] == "05" and later["compliance"] == "ok"
    assert (await api.get(f"/v1/clients/{cid}", headers=coord(auth, "19"))).status_code == 404
    again, _ = await propose(api, auth, cid)  # a declined proposal may be made again
    assert again["status"] == "open"


async def test_a_transfer_to_the_residence_region_leaves_one_worker_to_name(api, auth, named):
    cid = named["client"]["id"]
    request, effective = await propose(api, auth, cid, to_region="08")
    assert (await answer(api, coord(auth, "08"), request["id"], "accept")).status_code == 200
    items = (await api.get(f"/v1/clients/{cid}/assignments", headers=sys(auth, "08"))).json()["items"]
    assert {a["id"]: a["end_date"] for a in items} == {
        named["org"]["id"]: effective.isoformat(),
        named["res"]["id"]: effective.isoformat(),
    }
    after = (
        await api.get(f"/v1/clients/{cid}/compliance", params={"as_of": effective.isoformat()}, headers=sys(auth, "08"))
    ).json()
    assert [(g["responsibility"], g["region"]) for g in after["missing"]] == [("organising", "08")]


async def test_a_transfer_applies_the_receivers_age_limit(api, auth, named):
    await api.patch("/v1/regions/19/settings", json={"aftercare_end_age": 25}, headers=coord(auth, "19"))
    cid = named["client"]["id"]
    request, _ = await propose(api, auth, cid)
    assert (await answer(api, coord(auth, "19"), request["id"], "accept")).status_code == 200
    birth = dt.date.fromisoformat(named["client"]["birth_date"])
    client = (await api.get(f"/v1/clients/{cid}", headers=sys(auth, "19"))).json()
    assert client["aftercare_end"] == (birth.replace(year=birth.year + 25) - DAY).isoformat()


async def test_a_transfer_past_the_receivers_age_limit_is_refused_at_acceptance(api, auth):
    from tests.api.helpers import born, new_hetu

    await api.patch("/v1/regions/05/settings", json={"aftercare_end_age": 25}, headers=coord(auth, "05"))
    client = await register(api, sys(auth, "05"), personal_id=new_hetu(born(24)))
    request, _ = await propose(api, auth, client["id"])
    refused = await answer(api, coord(auth, "19"), request["id"], "accept")
    assert refused.status_code == 409 and refused.json()["code"] == "past_age_limit"
    stored = (await api.get(f"/v1/coordination-requests/{request['id']}", headers=sys(auth, "05"))).json()
    assert stored["status"] == "open"


@pytest.mark.postgres_only
async def test_two_simultaneous_answers_have_one_winner(api, auth, app, placed):
    request = (await ask(api, sys(auth, "05"), placed["client"]["id"], to_region="08")).json()
    headers = coord(auth, "08")
    responses = await asyncio.gather(*(answer(api, headers, request["id"], "decline") for _ in range(2)))
    assert sorted(r.status_code for r in responses) == [200, 409]
    assert [r.json()["code"] for r in responses if r.status_code == 409] == ["request_answered"]
    async with app.state.engine.connect() as conn:
        logged = (
            await conn.execute(
                text("SELECT count(*) FROM change_event WHERE action = 'request.declined' AND entity_id = :id"),
                {"id": request["id"]},
            )
        ).scalar()
    assert logged == 1


@pytest.mark.postgres_only
async def test_simultaneous_accept_and_cancel_of_a_transfer_do_not_both_happen(api, auth, app, named):
    request, _ = await propose(api, auth, named["client"]["id"])
    responses = await asyncio.gather(
        answer(api, coord(auth, "19"), request["id"], "accept"),
        answer(api, coord(auth, "05"), request["id"], "cancel"),
    )
    assert sorted(r.status_code for r in responses) == [200, 409]
    async with app.state.engine.connect() as conn:
        organising = (
            await conn.execute(
                text(
                    "SELECT count(*) FROM responsibility_period WHERE client_id = :id AND responsibility = 'organising'"
                ),
                {"id": named["client"]["id"]},
            )
        ).scalar()
    accepted = any(r.status_code == 200 and r.json()["status"] == "accepted" for r in responses)
    assert organising == (2 if accepted else 1)

"""Work pairs: proposed by one side, confirmed by the other, ended by either side or by the rules."""

from __future__ import annotations

import asyncio
import datetime as dt
import json

import pytest
from sqlalchemy import text

from app.models.pair import WorkPair
from app.models.request import CoordinationRequest
from app.services.clock import today
from tests.api.helpers import add_worker, assign, instances_loaded, register

DAY = dt.timedelta(days=1)


def sys(auth, region):
    return auth("system", region=region)


def coord(auth, region):
    return auth("coordinator", region=region)


@pytest.fixture
async def named(api, auth):
    """A client of 05 living in 08 with both named workers, and a disability worker in 19."""
    client = await register(api, sys(auth, "05"))
    w05 = await add_worker(api, coord(auth, "05"), "05")
    w08 = await add_worker(api, coord(auth, "08"), "08")
    d19 = await add_worker(api, coord(auth, "19"), "19", role="other", service="disability")
    start = client["aftercare_start"]
    org = (await assign(api, sys(auth, "05"), client["id"], "organising", w05["id"], start_date=start)).json()
    res = (await assign(api, sys(auth, "08"), client["id"], "residence", w08["id"], start_date=start)).json()
    return {"client": client, "w05": w05, "w08": w08, "d19": d19, "org": org, "res": res}


async def propose(api, headers, client_id, workers, kind="cross_region"):
    body = {"worker_ids": [w["id"] for w in workers], "kind": kind}
    return await api.post(f"/v1/clients/{client_id}/pairs", json=body, headers=headers)


async def confirm_requests(api, headers):
    params = {"status": "open"}
    items = (await api.get("/v1/coordination-requests", params=params, headers=headers)).json()["items"]
    return [r for r in items if r["kind"] == "confirm_pair"]


async def test_a_cross_region_pair_is_proposed_then_confirmed_by_the_other_region(api, auth, named):
    s = named
    proposed = await propose(api, sys(auth, "05"), s["client"]["id"], [s["w05"], s["w08"]])
    assert proposed.status_code == 201, proposed.text
    pair = proposed.json()
    assert (pair["status"], pair["proposed_by_region"], pair["confirm_region"]) == ("proposed", "05", "08")
    assert sorted(pair["assignment_ids"]) == sorted([s["org"]["id"], s["res"]["id"]])
    (request,) = await confirm_requests(api, coord(auth, "08"))
    assert request["pair_id"] == pair["id"] and request["from_region"] == "05"
    confirmed = await api.post(f"/v1/pairs/{pair['id']}/confirm", headers=coord(auth, "08"))
    assert confirmed.status_code == 200, confirmed.text
    assert confirmed.json()["status"] == "active" and confirmed.json()["start_date"] == today().isoformat()
    assert await confirm_requests(api, coord(auth, "08")) == []
    settled = (await api.get(f"/v1/coordination-requests/{request['id']}", headers=coord(auth, "08"))).json()
    assert settled["status"] == "accepted"
    again = await api.post(f"/v1/pairs/{pair['id']}/confirm", headers=coord(auth, "08"))
    assert again.status_code == 409 and again.json()["code"] == "pair_not_proposed"
    listed = (await api.get(f"/v1/clients/{s['client']['id']}/pairs", headers=sys(auth, "08"))).json()["items"]
    assert [p["id"] for p in listed] == [pair["id"]]
    now = (await api.get(f"/v1/clients/{s['client']['id']}/responsibility", headers=sys(auth, "05"))).json()
    assert [p["id"] for p in now["pairs"]] == [pair["id"]]
    yesterday = (
        await api.get(
            f"/v1/clients/{s['client']['id']}/responsibility",
            params={"as_of": (today() - DAY).isoformat()},
            headers=sys(auth, "05"),
        )
    ).json()
    assert yesterday["pairs"] == []


@pytest.mark.parametrize("confirmed", [False, True])
async def test_deactivating_a_worker_ends_each_of_its_assignments_pairs_once(api, app, auth, named, confirmed):
    """The pair ends with the worker's assignment; ending the worker's own pairs must not end it again.

    (Without a flush between the two, the second look found the pair still live in the database and
    ended it twice: a second ``pair.ended`` entry, and for a proposal a 409 on its cancelled request.)
    """
    s = named
    pair = (await propose(api, sys(auth, "05"), s["client"]["id"], [s["w05"], s["w08"]])).json()
    if confirmed:
        assert (await api.post(f"/v1/pairs/{pair['id']}/confirm", headers=coord(auth, "08"))).status_code == 200
    off = await api.patch(f"/v1/workers/{s['w05']['id']}", json={"active": False}, headers=coord(auth, "05"))
    assert off.status_code == 200, off.text
    async with app.state.engine.connect() as conn:
        stored = (await conn.execute(text("SELECT changes FROM change_event"))).scalars()
        changes = [change for entry in stored for change in (json.loads(entry) if isinstance(entry, str) else entry)]
    ended = [c for c in changes if c["action"] == "pair.ended" and c["entity_id"] == pair["id"]]
    cancelled = [c for c in changes if c["action"] == "request.cancelled"]
    assert (len(ended), len(cancelled)) == (1, 0 if confirmed else 1)
    assert await confirm_requests(api, coord(auth, "08")) == []


@pytest.mark.parametrize(
    ("who", "status", "code"),
    [
        ("coordinator-05", 403, "forbidden"),  # the proposer does not confirm its own proposal
        ("system-08", 403, "forbidden"),  # confirming is a coordinator's
        ("coordinator-19", 404, "pair_not_found"),  # uninvolved
        ("auditor", 403, "forbidden"),
    ],
)
async def test_only_the_other_regions_coordinator_confirms(api, auth, named, who, status, code):
    s = named
    pair = (await propose(api, sys(auth, "05"), s["client"]["id"], [s["w05"], s["w08"]])).json()
    role, _, region = who.partition("-")
    response = await api.post(f"/v1/pairs/{pair['id']}/confirm", headers=auth(role, region=region or None))
    assert response.status_code == status and response.json()["code"] == code
    stored = (await api.get(f"/v1/clients/{s['client']['id']}/pairs", headers=sys(auth, "05"))).json()["items"]
    assert stored[0]["status"] == "proposed"


@pytest.mark.parametrize(("action", "status"), [("accept", "active"), ("decline", "ended")])
async def test_answering_the_confirmation_request_confirms_or_refuses_the_pair(api, auth, named, action, status):
    s = named
    pair = (await propose(api, sys(auth, "08"), s["client"]["id"], [s["w05"], s["w08"]])).json()
    assert pair["confirm_region"] == "05"
    (request,) = await confirm_requests(api, coord(auth, "05"))
    answered = await api.post(
        f"/v1/coordination-requests/{request['id']}/{action}", json={"note": "ok"}, headers=coord(auth, "05")
    )
    assert answered.status_code == 200, answered.text
    (stored,) = (await api.get(f"/v1/clients/{s['client']['id']}/pairs", headers=sys(auth, "05"))).json()["items"]
    assert stored["status"] == status


async def test_the_proposer_withdrawing_the_request_withdraws_the_pair(api, auth, named):
    s = named
    await propose(api, sys(auth, "05"), s["client"]["id"], [s["w05"], s["w08"]])
    (request,) = await confirm_requests(api, sys(auth, "05"))
    cancelled = await api.post(
        f"/v1/coordination-requests/{request['id']}/cancel", json={"note": "wrong pair"}, headers=sys(auth, "05")
    )
    assert cancelled.status_code == 200
    (stored,) = (await api.get(f"/v1/clients/{s['client']['id']}/pairs", headers=sys(auth, "05"))).json()["items"]
    assert (stored["status"], stored["start_date"], stored["end_reason"]) == ("ended", None, "wrong pair")


@pytest.mark.parametrize(
    ("case", "status", "code"),
    [
        ("same_worker_twice", 422, "validation_error"),
        ("unknown_worker", 422, "worker_not_found"),
        ("not_the_named_worker", 422, "not_named_workers"),
        ("inactive_worker", 422, "worker_inactive"),
        ("one_worker", 422, "validation_error"),
        ("uninvolved_region", 404, "client_not_found"),
        ("auditor", 403, "forbidden"),
        ("already_proposed", 409, "pair_exists"),
    ],
)
async def test_cross_region_proposals_that_break_a_rule(api, auth, named, case, status, code):
    s = named
    headers, workers = sys(auth, "05"), [s["w05"], s["w08"]]
    if case == "same_worker_twice":
        workers = [s["w05"], s["w05"]]
    elif case == "unknown_worker":
        workers = [s["w05"], {"id": "00000000-0000-4000-8000-000000000000"}]
    elif case == "not_the_named_worker":
        workers = [s["w05"], await add_worker(api, coord(auth, "08"), "08")]
    elif case == "inactive_worker":
        spare = await add_worker(api, coord(auth, "08"), "08")
        await api.patch(f"/v1/workers/{spare['id']}", json={"active": False}, headers=coord(auth, "08"))
        workers = [s["w05"], spare]
    elif case == "one_worker":
        workers = [s["w05"]]
    elif case == "uninvolved_region":
        headers = sys(auth, "19")
    elif case == "auditor":
        headers = auth("auditor")
    elif case == "already_proposed":
        assert (await propose(api, sys(auth, "08"), s["client"]["id"], workers)).status_code == 201
    response = await propose(api, headers, s["client"]["id"], workers)
    assert response.status_code == status, response.text
    assert response.json()["code"] == code


async def test_no_cross_region_pair_when_one_region_holds_both(api, auth):
    client = await register(api, sys(auth, "05"), residence_region="05")
    w05 = await add_worker(api, coord(auth, "05"), "05")
    other = await add_worker(api, coord(auth, "05"), "05")
    await assign(api, sys(auth, "05"), client["id"], "organising", w05["id"])
    response = await propose(api, sys(auth, "05"), client["id"], [w05, other])
    assert response.status_code == 422 and response.json()["code"] == "no_cross_region"


async def test_a_cross_service_pair_joins_a_named_worker_with_another_service(api, auth, named):
    s = named
    proposed = await propose(api, sys(auth, "08"), s["client"]["id"], [s["w08"], s["d19"]], kind="cross_service")
    assert proposed.status_code == 201, proposed.text
    pair = proposed.json()
    assert pair["confirm_region"] == "19" and pair["assignment_ids"] == [s["res"]["id"]]
    # the disability region sees the client minimally through the confirmation request
    seen = (await api.get(f"/v1/clients/{s['client']['id']}", headers=coord(auth, "19"))).json()
    assert seen["access"] == "request"
    confirmed = await api.post(f"/v1/pairs/{pair['id']}/confirm", headers=coord(auth, "19"))
    assert confirmed.status_code == 200 and confirmed.json()["status"] == "active"
    mine = (await api.get(f"/v1/workers/{s['d19']['id']}/pairs", headers=sys(auth, "08"))).json()["items"]
    assert [p["id"] for p in mine] == [pair["id"]]
    # once the request is settled 19 no longer sees the client, but it still sees (and may end) its side of the pair
    assert (await api.get(f"/v1/clients/{s['client']['id']}", headers=sys(auth, "19"))).status_code == 404
    theirs = (await api.get(f"/v1/workers/{s['d19']['id']}/pairs", headers=sys(auth, "19"))).json()["items"]
    assert [p["id"] for p in theirs] == [pair["id"]]
    assert (await api.get(f"/v1/workers/{s['d19']['id']}/pairs", headers=sys(auth, "02"))).json()["items"] == []
    # the same two workers again, or a worker of the same service, are refused
    twice = await propose(api, sys(auth, "08"), s["client"]["id"], [s["w08"], s["d19"]], kind="cross_service")
    assert twice.status_code == 409 and twice.json()["code"] == "pair_exists"
    same = await add_worker(api, coord(auth, "19"), "19")
    refused = await propose(api, sys(auth, "08"), s["client"]["id"], [s["w08"], same], kind="cross_service")
    assert refused.status_code == 422 and refused.json()["code"] == "same_service"
    foreign = await propose(api, sys(auth, "05"), s["client"]["id"], [s["w08"], s["d19"]], kind="cross_service")
    assert foreign.status_code == 403 and foreign.json()["code"] == "not_responsible"


async def test_a_pair_ends_when_an_assignment_of_it_ends(api, auth, named):
    s = named
    pair = (await propose(api, sys(auth, "05"), s["client"]["id"], [s["w05"], s["w08"]])).json()
    await api.post(f"/v1/pairs/{pair['id']}/confirm", headers=coord(auth, "08"))
    end = today() + dt.timedelta(days=5)
    await api.post(
        f"/v1/assignments/{s['res']['id']}/end",
        json={"end_date": end.isoformat(), "reason": "leaves"},
        headers=sys(auth, "08"),
    )
    (stored,) = (await api.get(f"/v1/clients/{s['client']['id']}/pairs", headers=sys(auth, "05"))).json()["items"]
    # it stays in force until the assignment's last day, then reads as ended
    assert (stored["status"], stored["end_date"]) == ("active", end.isoformat())
    assert stored["end_reason"] == "assignment ended: leaves"
    later = (
        await api.get(
            f"/v1/clients/{s['client']['id']}/responsibility",
            params={"as_of": end.isoformat()},
            headers=sys(auth, "05"),
        )
    ).json()
    assert later["pairs"] == []


async def test_a_pair_ends_when_a_worker_of_it_is_deactivated(api, auth, named):
    s = named
    pair = (await propose(api, sys(auth, "08"), s["client"]["id"], [s["w08"], s["d19"]], kind="cross_service")).json()
    await api.post(f"/v1/pairs/{pair['id']}/confirm", headers=coord(auth, "19"))
    await api.patch(f"/v1/workers/{s['d19']['id']}", json={"active": False}, headers=coord(auth, "19"))
    (stored,) = (await api.get(f"/v1/clients/{s['client']['id']}/pairs", headers=sys(auth, "08"))).json()["items"]
    assert (stored["status"], stored["end_date"], stored["end_reason"]) == (
        "ended",
        today().isoformat(),
        "worker deactivated",
    )


@pytest.mark.parametrize(
    ("who", "status", "code"),
    [
        ("system-05", 200, None),
        ("system-08", 200, None),
        ("system-19", 404, "pair_not_found"),
        ("auditor", 403, "forbidden"),
    ],
)
async def test_either_side_ends_a_pair(api, auth, named, who, status, code):
    s = named
    pair = (await propose(api, sys(auth, "05"), s["client"]["id"], [s["w05"], s["w08"]])).json()
    await api.post(f"/v1/pairs/{pair['id']}/confirm", headers=coord(auth, "08"))
    role, _, region = who.partition("-")
    response = await api.post(
        f"/v1/pairs/{pair['id']}/end", json={"reason": "no longer needed"}, headers=auth(role, region=region or None)
    )
    assert response.status_code == status, response.text
    if code:
        assert response.json()["code"] == code
    else:
        assert response.json()["status"] == "ended" and response.json()["end_date"] == today().isoformat()
        again = await api.post(f"/v1/pairs/{pair['id']}/end", json={"reason": "x"}, headers=sys(auth, "05"))
        assert again.status_code == 409 and again.json()["code"] == "pair_ended"
        # a new pair of the same two workers may follow
        assert (await propose(api, sys(auth, "05"), s["client"]["id"], [s["w05"], s["w08"]])).status_code == 201


async def test_pair_history_shows_each_step(api, auth, named):
    s = named
    pair = (await propose(api, sys(auth, "05"), s["client"]["id"], [s["w05"], s["w08"]])).json()
    await api.post(f"/v1/pairs/{pair['id']}/confirm", headers=coord(auth, "08"))
    await api.post(f"/v1/pairs/{pair['id']}/end", json={"reason": "done"}, headers=sys(auth, "08"))
    items = (await api.get(f"/v1/clients/{s['client']['id']}/history", headers=sys(auth, "05"))).json()["items"]
    steps = [(e["type"], e["date"]) for e in items if e["type"].startswith(("pair.", "request.")) and "pair" in str(e)]
    assert ("pair.proposed", today().isoformat()) in steps
    assert ("pair.confirmed", today().isoformat()) in steps
    assert ("pair.ended", today().isoformat()) in steps
    assert ("request.accepted", today().isoformat()) in steps


@pytest.mark.postgres_only
async def test_simultaneous_proposals_make_one_cross_region_pair(api, auth, app, named):
    s = named
    responses = await asyncio.gather(
        *(propose(api, sys(auth, region), s["client"]["id"], [s["w05"], s["w08"]]) for region in ("05", "08") * 3)
    )
    assert sorted(r.status_code for r in responses) == [201] + [409] * 5
    async with app.state.engine.connect() as conn:
        live = (
            await conn.execute(
                text("SELECT count(*) FROM work_pair WHERE client_id = :id AND status IN ('proposed', 'active')"),
                {"id": s["client"]["id"]},
            )
        ).scalar()
    assert live == 1


async def test_the_database_refuses_a_second_live_cross_region_pair(api, auth, app, named):
    """The partial unique index holds even when application checks are bypassed."""
    from sqlalchemy.exc import IntegrityError

    s = named
    pair = (await propose(api, sys(auth, "05"), s["client"]["id"], [s["w05"], s["w08"]])).json()
    other = await add_worker(api, coord(auth, "08"), "08")
    w1, w2 = sorted([s["w05"]["id"], other["id"]])
    hexed = app.state.engine.dialect.name == "sqlite"

    def key(value: str) -> str:
        return value.replace("-", "") if hexed else value

    with pytest.raises(IntegrityError):
        async with app.state.engine.begin() as conn:
            await conn.execute(
                text(
                    "INSERT INTO work_pair (id, client_id, kind, status, worker_1_id, worker_2_id, proposed_by_region,"
                    " confirm_region, proposed_by, proposed_at, version) VALUES (:id, :client, 'cross_region',"
                    " 'proposed', :w1, :w2, '05', '08', 'x', CURRENT_TIMESTAMP, 1)"
                ),
                {
                    "id": key("11111111-1111-4111-8111-111111111111"),
                    "client": key(s["client"]["id"]),
                    "w1": key(w1),
                    "w2": key(w2),
                },
            )
    assert pair["status"] == "proposed"


async def test_responsibility_as_of_shows_the_pair_in_force_from_plain_rows(api, auth, named):
    """``responsibility?as_of`` reads the client's pairs as plain rows, no WorkPair instance (issue 9)."""
    cid = named["client"]["id"]
    pair = (await propose(api, sys(auth, "05"), cid, [named["w05"], named["w08"]])).json()
    assert (await api.post(f"/v1/pairs/{pair['id']}/confirm", headers=coord(auth, "08"))).status_code == 200
    with instances_loaded(WorkPair, CoordinationRequest) as loaded:
        response = await api.get(f"/v1/clients/{cid}/responsibility", headers=sys(auth, "08"))
    assert response.status_code == 200, response.text
    shown = response.json()["pairs"]
    assert [(p["id"], p["status"], p["start_date"]) for p in shown] == [(pair["id"], "active", today().isoformat())]
    assert sorted(shown[0]["worker_ids"]) == sorted([named["w05"]["id"], named["w08"]["id"]])
    assert loaded == []

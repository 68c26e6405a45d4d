"""Moves, organising-transfer proposals, early ends, history and answers for past dates."""

from __future__ import annotations

import datetime as dt

import pytest

from app.services.clock import today
from tests.api.helpers import add_worker, assign, register


@pytest.fixture
async def covered(api, auth):
    """A client of 05 living in 08 with both named workers since 20 days ago."""
    h05, h08 = auth("system", region="05"), auth("system", region="08")
    client = await register(api, h05)
    w05 = await add_worker(api, auth("coordinator", region="05"), "05")
    w08 = await add_worker(api, auth("coordinator", region="08"), "08")
    start = (today() - dt.timedelta(days=20)).isoformat()
    org = (await assign(api, h05, client["id"], "organising", w05["id"], start_date=start)).json()
    res = (await assign(api, h08, client["id"], "residence", w08["id"], start_date=start)).json()
    return {"client": client, "h05": h05, "h08": h08, "org": org, "res": res}


async def test_a_move_closes_the_old_residence_and_asks_the_new_region(api, auth, covered):
    cid = covered["client"]["id"]
    move_day = today() - dt.timedelta(days=5)
    moved = await api.post(
        f"/v1/clients/{cid}/moves",
        json={"residence_municipality": "564", "effective_date": move_day.isoformat()},
        headers=covered["h08"],
    )
    assert moved.status_code == 201, moved.text
    body = moved.json()
    assert body["residence_region"] == "19" and body["compliance"] == "gap"
    assert [(g["responsibility"], g["region"], g["since"]) for g in body["missing"]] == [
        ("residence", "19", move_day.isoformat())
    ]
    before = (
        await api.get(
            f"/v1/clients/{cid}/responsibility",
            params={"as_of": (move_day - dt.timedelta(days=1)).isoformat()},
            headers=covered["h05"],
        )
    ).json()
    assert before["residence"]["region"] == "08" and before["compliance"] == "ok"
    assert before["residence"]["named_worker"]["assignment_id"] == covered["res"]["id"]
    after = (await api.get(f"/v1/clients/{cid}/responsibility", headers=covered["h05"])).json()
    assert after["residence"]["region"] == "19" and after["residence"]["named_worker"] is None
    assert any(r["kind"] == "assign_residence_worker" and r["to_region"] == "19" for r in after["pending_requests"])
    # the new region now sees the client through the open request; the old one still through its history
    assert (await api.get(f"/v1/clients/{cid}", headers=auth("system", region="19"))).status_code == 200
    assert (await api.get(f"/v1/clients/{cid}", headers=covered["h08"])).status_code == 200


async def test_a_move_within_the_region_keeps_the_named_worker(api, auth):
    headers = auth("system", region="08")
    client = await register(api, auth("system", region="05"), residence_region=None, residence_municipality="837")
    w08 = await add_worker(api, auth("coordinator", region="08"), "08")
    await assign(api, headers, client["id"], "residence", w08["id"])
    moved = await api.post(
        f"/v1/clients/{client['id']}/moves",
        json={"residence_municipality": "211", "effective_date": today().isoformat()},
        headers=headers,
    )
    assert moved.status_code == 201 and moved.json()["residence_municipality"] == "211"
    now = (await api.get(f"/v1/clients/{client['id']}/responsibility", headers=headers)).json()
    assert now["residence"]["named_worker"]["worker_id"] == w08["id"]


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        ({"residence_region": "08", "effective_date": "TODAY"}, 422, "no_change"),
        ({"residence_region": "19", "effective_date": "LONG_AGO"}, 422, "invalid_dates"),
        ({"residence_region": "19"}, 422, "validation_error"),
        (
            {"residence_municipality": "837", "residence_region": "19", "effective_date": "TODAY"},
            422,
            "municipality_region_mismatch",
        ),
    ],
)
async def test_bad_moves_are_refused(api, covered, body, status, code):
    dates = {"TODAY": today().isoformat(), "LONG_AGO": "2000-01-01"}
    body = {key: dates.get(value, value) for key, value in body.items()}
    response = await api.post(f"/v1/clients/{covered['client']['id']}/moves", json=body, headers=covered["h05"])
    assert response.status_code == status and response.json()["code"] == code


async def test_a_move_needs_an_involved_writer(api, auth, covered):
    path = f"/v1/clients/{covered['client']['id']}/moves"
    body = {"residence_region": "19", "effective_date": today().isoformat()}
    assert (await api.post(path, json=body, headers=auth("system", region="19"))).status_code == 404
    assert (await api.post(path, json=body, headers=auth("auditor"))).status_code == 403


async def test_moving_abroad_needs_only_the_organising_worker(api, covered):
    cid = covered["client"]["id"]
    moved = await api.post(
        f"/v1/clients/{cid}/moves",
        json={"residence_outside": "abroad", "effective_date": today().isoformat()},
        headers=covered["h05"],
    )
    assert moved.status_code == 201 and moved.json()["compliance"] == "ok"
    assert moved.json()["residence_outside"] == "abroad"


async def test_organising_transfer_is_only_proposed_until_accepted(api, auth, covered):
    cid = covered["client"]["id"]
    path = f"/v1/clients/{cid}/organising-transfers"
    body = {
        "to_region": "08",
        "effective_date": (today() + dt.timedelta(days=30)).isoformat(),
        "reason": "moved",
    }
    refused = await api.post(path, json=body, headers=covered["h08"])
    assert refused.status_code == 403 and refused.json()["code"] == "not_responsible"
    proposed = await api.post(path, json=body, headers=covered["h05"])
    assert proposed.status_code == 201
    assert proposed.json()["kind"] == "accept_organising_transfer" and proposed.json()["status"] == "open"
    again = await api.post(path, json=body, headers=covered["h05"])
    assert again.status_code == 409 and again.json()["code"] == "transfer_pending"
    same = await api.post(path, json={**body, "to_region": "05"}, headers=covered["h05"])
    assert same.status_code == 422
    now = (await api.get(f"/v1/clients/{cid}/responsibility", headers=covered["h05"])).json()
    assert now["organising"]["region"] == "05"
    assert any(r["kind"] == "accept_organising_transfer" for r in now["pending_requests"])


async def test_ending_aftercare_early_ends_assignments_and_gaps(api, covered):
    cid = covered["client"]["id"]
    path = f"/v1/clients/{cid}/end"
    body = {"end_date": today().isoformat(), "reason": "moved abroad for good"}
    assert (await api.post(path, json=body, headers=covered["h08"])).status_code == 403
    ended = await api.post(path, json=body, headers=covered["h05"])
    assert ended.status_code == 200 and ended.json()["aftercare_end"] == today().isoformat()
    assert (await api.post(path, json=body, headers=covered["h05"])).json()["code"] == "client_ended"
    tomorrow = (today() + dt.timedelta(days=1)).isoformat()
    compliance = (
        await api.get(f"/v1/clients/{cid}/compliance", params={"as_of": tomorrow}, headers=covered["h05"])
    ).json()
    assert compliance["status"] == "ended" and compliance["missing"] == []
    assignments = (await api.get(f"/v1/clients/{cid}/assignments", headers=covered["h05"])).json()["items"]
    assert {item["end_date"] for item in assignments} == {tomorrow}


async def test_history_lists_every_step_oldest_first(api, covered):
    cid = covered["client"]["id"]
    await api.post(
        f"/v1/clients/{cid}/moves",
        json={"residence_region": "19", "effective_date": today().isoformat()},
        headers=covered["h05"],
    )
    items = (await api.get(f"/v1/clients/{cid}/history", headers=covered["h05"])).json()["items"]
    types = [item["type"] for item in items]
    for expected in (
        "aftercare.started",
        "organising.started",
        "residence.started",
        "assignment.created",
        "gap.opened",
        "gap.closed",
        "residence.ended",
        "assignment.ended",
        "request.created",
    ):
        assert expected in types
    assert [item["date"] for item in items] == sorted(item["date"] for item in items)


async def test_responsibility_as_known_at_an_earlier_moment(api, covered):
    cid = covered["client"]["id"]
    marker = (await api.get(f"/v1/clients/{cid}/responsibility", headers=covered["h05"])).json()["known_at"]
    await api.post(
        f"/v1/assignments/{covered['org']['id']}/end",
        json={"end_date": (today() - dt.timedelta(days=3)).isoformat(), "reason": "correction"},
        headers=covered["h05"],
    )
    as_of = (today() - dt.timedelta(days=1)).isoformat()
    now = (await api.get(f"/v1/clients/{cid}/responsibility", params={"as_of": as_of}, headers=covered["h05"])).json()
    then = (
        await api.get(
            f"/v1/clients/{cid}/responsibility",
            params={"as_of": as_of, "known_at": marker},
            headers=covered["h05"],
        )
    ).json()
    assert now["organising"]["named_worker"] is None
    assert then["organising"]["named_worker"]["assignment_id"] == covered["org"]["id"]

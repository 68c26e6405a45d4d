"""Naming workers: the two-region rule, eligibility, ending, and the one-holder guarantee."""

from __future__ import annotations

import asyncio
import datetime as dt
import uuid

import pytest
import sqlalchemy.exc
from sqlalchemy import text

from app.services import state
from app.services.clock import today
from tests.api.helpers import add_worker, assign, client_body, register, statements_sent


@pytest.fixture
async def two_regions(api, auth):
    """A client organised by 05 living in 08, with a social worker in each region."""
    h05, h08 = auth("coordinator", region="05"), auth("coordinator", region="08")
    client = await register(api, h05)
    return {
        "client": client,
        "h05": h05,
        "h08": h08,
        "w05": await add_worker(api, h05, "05"),
        "w08": await add_worker(api, h08, "08", role="counsellor"),
    }


async def test_both_regions_name_a_worker_and_compliance_turns_ok(api, two_regions):
    s = two_regions
    cid = s["client"]["id"]
    assert (await assign(api, s["h05"], cid, "organising", s["w05"]["id"])).status_code == 201
    half = (await api.get(f"/v1/clients/{cid}/compliance", headers=s["h05"])).json()
    assert half["status"] == "gap" and [m["responsibility"] for m in half["missing"]] == ["residence"]
    assert (await assign(api, s["h08"], cid, "residence", s["w08"]["id"])).status_code == 201
    full = (await api.get(f"/v1/clients/{cid}/compliance", headers=s["h08"])).json()
    assert full == {"status": "ok", "as_of": today().isoformat(), "missing": []}
    responsibility = (await api.get(f"/v1/clients/{cid}/responsibility", headers=s["h05"])).json()
    assert responsibility["organising"]["named_worker"]["worker_id"] == s["w05"]["id"]
    assert responsibility["residence"]["named_worker"]["worker_id"] == s["w08"]["id"]


async def test_naming_a_worker_costs_ten_statements_on_postgresql(api, app, two_regions):
    """The client's periods, assignments and gaps are read once for the rules, the gaps and the feed, which
    reads no holders or protected addresses again and moves both regions' feed positions in one statement
    (was 18 statements, the periods read three times). On PostgreSQL the change entry and its index rows
    are one statement, and the subscriptions, feed positions and feed events another (was 13)."""
    s = two_regions
    with statements_sent(app) as sent:
        response = await assign(api, s["h05"], s["client"]["id"], "organising", s["w05"]["id"])
    assert response.status_code == 201
    # worker, client, periods, assignments, gaps, the insert, open requests, the gap closed, change entry and
    # its index (one statement on PostgreSQL), then webhook subscriptions, the feed positions of 05 and 08
    # (one statement) and the feed events: on PostgreSQL one statement
    assert len(sent) == (10 if app.state.engine.dialect.name == "postgresql" else 13), sent
    assert len([sql for sql in sent if sql.startswith("SELECT responsibility_period.")]) == 1


async def test_rows_read_in_a_transaction_are_read_again_in_the_next(api, app, two_regions):
    s = two_regions
    cid = uuid.UUID(s["client"]["id"])
    async with app.state.sessionmaker() as session:
        assert (await state.all_rows(session, cid))[1] == []
        await session.commit()
        assert (await assign(api, s["h05"], str(cid), "organising", s["w05"]["id"])).status_code == 201
        assert [a.worker_id for a in (await state.all_rows(session, cid))[1]] == [uuid.UUID(s["w05"]["id"])]


async def test_organising_region_cannot_assign_residence_worker(api, two_regions):
    s = two_regions
    response = await assign(api, s["h05"], s["client"]["id"], "residence", s["w08"]["id"])
    assert response.status_code == 403 and response.json()["code"] == "not_responsible"


@pytest.mark.parametrize(
    ("responsibility", "worker", "headers", "code", "status"),
    [
        ("organising", "w08", "h05", "worker_not_in_region", 422),
        ("residence", "w05", "h08", "worker_not_in_region", 422),
        ("organising", "w05", "h08", "not_responsible", 403),
    ],
)
async def test_assignment_eligibility(api, two_regions, responsibility, worker, headers, code, status):
    s = two_regions
    response = await assign(api, s[headers], s["client"]["id"], responsibility, s[worker]["id"])
    assert response.status_code == status and response.json()["code"] == code


async def test_inactive_and_unknown_workers_are_refused(api, two_regions):
    s = two_regions
    await api.patch(f"/v1/workers/{s['w05']['id']}", json={"active": False}, headers=s["h05"])
    inactive = await assign(api, s["h05"], s["client"]["id"], "organising", s["w05"]["id"])
    assert inactive.status_code == 422 and inactive.json()["code"] == "worker_inactive"
    unknown = await assign(api, s["h05"], s["client"]["id"], "organising", str(uuid.uuid4()))
    assert unknown.status_code == 422 and unknown.json()["code"] == "worker_not_found"


async def test_no_residence_assignment_when_regions_are_the_same(api, auth):
    headers = auth("system", region="05")
    client = await register(api, headers, residence_region="05")
    worker = await add_worker(api, auth("coordinator", region="05"), "05")
    response = await assign(api, headers, client["id"], "residence", worker["id"])
    assert response.status_code == 422 and response.json()["code"] == "residence_same_as_organising"


async def test_special_support_needs_a_social_worker_as_organising_worker(api, auth):
    headers = auth("coordinator", region="05")
    client = await register(api, headers, support_level="special")
    counsellor = await add_worker(api, headers, "05", role="counsellor")
    social_worker = await add_worker(api, headers, "05", role="social_worker")
    refused = await assign(api, headers, client["id"], "organising", counsellor["id"])
    assert refused.status_code == 422 and refused.json()["code"] == "social_worker_required"
    assert (await assign(api, headers, client["id"], "organising", social_worker["id"])).status_code == 201


async def test_a_taken_responsibility_answers_409(api, two_regions):
    s = two_regions
    cid = s["client"]["id"]
    assert (await assign(api, s["h05"], cid, "organising", s["w05"]["id"])).status_code == 201
    other = await add_worker(api, s["h05"], "05")
    response = await assign(api, s["h05"], cid, "organising", other["id"])
    assert response.status_code == 409 and response.json()["code"] == "responsibility_taken"


async def test_uninvolved_region_gets_404_and_auditor_403(api, auth, two_regions):
    s = two_regions
    w19 = await add_worker(api, auth("coordinator", region="19"), "19")
    response = await assign(api, auth("system", region="19"), s["client"]["id"], "organising", w19["id"])
    assert response.status_code == 404
    assert (await assign(api, auth("auditor"), s["client"]["id"], "organising", s["w05"]["id"])).status_code == 403
    assert (await assign(api, {}, s["client"]["id"], "organising", s["w05"]["id"])).status_code == 401


async def test_start_date_must_fall_within_the_responsibility(api, two_regions):
    s = two_regions
    early = (dt.date.fromisoformat(s["client"]["aftercare_start"]) - dt.timedelta(days=1)).isoformat()
    response = await assign(api, s["h05"], s["client"]["id"], "organising", s["w05"]["id"], start_date=early)
    assert response.status_code == 422 and response.json()["code"] == "invalid_dates"


async def test_ending_an_assignment_reopens_the_gap_and_keeps_history(api, two_regions):
    s = two_regions
    cid = s["client"]["id"]
    start = (today() - dt.timedelta(days=10)).isoformat()
    created = (await assign(api, s["h05"], cid, "organising", s["w05"]["id"], start_date=start)).json()
    path = f"/v1/assignments/{created['id']}/end"
    assert (await api.post(path, json={"reason": "x"}, headers=s["h08"])).status_code == 403
    assert (await api.post(path, json={"reason": "x"}, headers={})).status_code == 401
    ended = await api.post(path, json={"reason": "left the job"}, headers=s["h05"])
    assert ended.status_code == 200 and ended.json()["end_date"] == today().isoformat()
    again = await api.post(path, json={"reason": "again"}, headers=s["h05"])
    assert again.status_code == 409 and again.json()["code"] == "assignment_ended"
    compliance = (await api.get(f"/v1/clients/{cid}/compliance", headers=s["h05"])).json()
    organising_gap = [m for m in compliance["missing"] if m["responsibility"] == "organising"]
    assert organising_gap and organising_gap[0]["since"] == today().isoformat()
    yesterday = (today() - dt.timedelta(days=1)).isoformat()
    past = (await api.get(f"/v1/clients/{cid}/assignments", params={"as_of": yesterday}, headers=s["h05"])).json()
    assert [item["id"] for item in past["items"]] == [created["id"]]
    now = (
        await api.get(f"/v1/clients/{cid}/assignments", params={"as_of": today().isoformat()}, headers=s["h05"])
    ).json()
    assert now["items"] == []
    assert (
        await api.post(f"/v1/assignments/{uuid.uuid4()}/end", json={"reason": "x"}, headers=s["h05"])
    ).status_code == 404


async def test_the_database_refuses_a_second_open_holder(api, two_regions, app):
    s = two_regions
    cid = s["client"]["id"]
    assert (await assign(api, s["h05"], cid, "organising", s["w05"]["id"])).status_code == 201
    sqlite = app.state.engine.dialect.name == "sqlite"
    ids = {
        name: (uuid.UUID(value).hex if sqlite else value)
        for name, value in (("id", str(uuid.uuid4())), ("client", cid), ("worker", s["w05"]["id"]))
    }
    with pytest.raises(sqlalchemy.exc.IntegrityError):
        async with app.state.engine.begin() as conn:
            await conn.execute(
                text(
                    "INSERT INTO assignment (id, client_id, responsibility, region, worker_id, valid_from, recorded_at)"
                    " "
                    "VALUES (:id, :client, 'organising', '05', :worker, :start, :now)"
                ),
                {**ids, "start": today(), "now": dt.datetime.now(dt.UTC)},
            )


@pytest.mark.postgres_only
async def test_parallel_assignments_of_one_responsibility_have_one_winner(api, auth, app):
    headers = auth("coordinator", region="05")
    client = await register(api, headers)
    workers = [await add_worker(api, headers, "05") for _ in range(20)]
    responses = await asyncio.gather(*(assign(api, headers, client["id"], "organising", w["id"]) for w in workers))
    statuses = sorted(response.status_code for response in responses)
    assert statuses == [201] + [409] * 19
    assert all(r.json()["code"] == "responsibility_taken" for r in responses if r.status_code == 409)
    async with app.state.engine.connect() as conn:
        open_rows = (
            await conn.execute(
                text("SELECT count(*) FROM assignment WHERE client_id = :id AND valid_to IS NULL"),
                {"id": client["id"]},
            )
        ).scalar()
    assert open_rows == 1


@pytest.mark.postgres_only
async def test_parallel_registrations_of_one_code_make_one_client(api, auth, app):
    body = client_body()
    responses = await asyncio.gather(
        *(api.post("/v1/clients", json=body, headers=auth("system", region="05")) for _ in range(10))
    )
    statuses = sorted(response.status_code for response in responses)
    assert statuses == [201] + [409] * 9
    assert all(r.json()["code"] == "duplicate_client" for r in responses if r.status_code == 409)
    async with app.state.engine.connect() as conn:
        assert (await conn.execute(text("SELECT count(*) FROM client"))).scalar() == 1
        assert (await conn.execute(text("SELECT count(*) FROM responsibility_period"))).scalar() == 2


@pytest.mark.parametrize("end_date", ["2100-12-31", "1900-01-01"])  # the extremes callers may send
async def test_end_dates_outside_the_assignment_and_aftercare_are_refused(api, two_regions, end_date):
    s = two_regions
    created = (await assign(api, s["h05"], s["client"]["id"], "organising", s["w05"]["id"])).json()
    response = await api.post(
        f"/v1/assignments/{created['id']}/end", json={"end_date": end_date, "reason": "x"}, headers=s["h05"]
    )
    assert response.status_code == 422 and response.json()["code"] == "invalid_dates"


async def test_an_uninvolved_region_cannot_tell_an_assignment_exists(api, auth, two_regions):
    s = two_regions
    created = (await assign(api, s["h05"], s["client"]["id"], "organising", s["w05"]["id"])).json()
    response = await api.post(
        f"/v1/assignments/{created['id']}/end", json={"reason": "x"}, headers=auth("system", region="19")
    )
    assert response.status_code == 404 and response.json()["code"] == "assignment_not_found"

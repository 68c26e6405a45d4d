"""Regions, settings, municipalities and the gap list."""

from __future__ import annotations

import datetime as dt
import json

import pytest

from app.services.clock import today
from tests.api.helpers import born, new_hetu, register


async def test_a_region_and_a_municipality(api, auth):
    headers = auth("admin")
    region = (await api.get("/v1/regions/05", headers=headers)).json()
    assert region["name_fi"] == "Varsinais-Suomen hyvinvointialue"
    assert region["settings"]["grace_days"] == 14 and region["settings"]["aftercare_end_age"] == 23
    assert (await api.get("/v1/regions/91", headers=headers)).status_code == 404
    assert (await api.get("/v1/regions/5", headers=headers)).status_code == 422
    municipality = (await api.get("/v1/municipalities/837", headers=headers)).json()
    assert municipality == {"code": "837", "name_fi": "Tampere", "region": "08", "classification_year": 2025}
    assert (await api.get("/v1/municipalities/588", headers=headers)).status_code == 404


@pytest.mark.parametrize(
    ("role", "region", "status"),
    [
        ("coordinator", "05", 200),
        ("admin", None, 200),
        ("coordinator", "08", 403),
        ("system", "05", 403),
        ("auditor", None, 403),
    ],
)
async def test_settings_belong_to_the_regions_coordinator_or_an_admin(api, auth, role, region, status):
    response = await api.patch("/v1/regions/05/settings", json={"grace_days": 21}, headers=auth(role, region=region))
    assert response.status_code == status


@pytest.mark.parametrize(
    "body",
    [
        {"aftercare_end_age": 26},
        {"aftercare_end_age": 22},
        {"grace_days": -1},
        {"caseload_targets": {"boss": 3}},
        {"caseload_weights": {"standard": 0}},
        {"colour": "red"},
    ],
)
async def test_bad_settings_are_refused(api, auth, body):
    response = await api.patch("/v1/regions/05/settings", json=body, headers=auth("admin"))
    assert response.status_code == 422


async def test_a_longer_aftercare_policy_moves_the_end_of_active_clients(api, auth):
    headers = auth("coordinator", region="05")
    client = await register(api, headers)
    response = await api.patch(
        "/v1/regions/05/settings",
        json={"aftercare_end_age": 25, "caseload_targets": {"counsellor": 30}},
        headers=headers,
    )
    settings = response.json()["settings"]
    assert settings["aftercare_end_age"] == 25
    assert settings["caseload_targets"] == {"social_worker": 50, "counsellor": 30, "special_counsellor": 25}
    after = (await api.get(f"/v1/clients/{client['id']}", headers=headers)).json()
    birth = dt.date.fromisoformat(client["birth_date"])
    assert after["aftercare_end"] == (birth.replace(year=birth.year + 25) - dt.timedelta(days=1)).isoformat()
    older = new_hetu(born(24))
    assert (await register(api, headers, personal_id=older))["status"] == "active"


async def test_the_grace_period_sets_the_due_date_and_overdue_gaps_are_listed(api, auth):
    headers = auth("coordinator", region="05")
    await api.patch("/v1/regions/05/settings", json={"grace_days": 0}, headers=headers)
    old = await register(api, headers, aftercare_start=(today() - dt.timedelta(days=40)).isoformat())
    assert old["missing"][0]["due"] == today().isoformat()
    gaps = (await api.get("/v1/compliance/gaps", params={"overdue": "false"}, headers=headers)).json()["items"]
    assert [gap["client_id"] for gap in gaps] == [old["id"]]
    assert (await api.get("/v1/compliance/gaps", params={"overdue": "true"}, headers=headers)).json()["items"] == []
    assert (await api.get("/v1/compliance/gaps", params={"region": "08"}, headers=headers)).status_code == 403
    national = (await api.get("/v1/compliance/gaps", params={"region": "08"}, headers=auth("auditor"))).json()
    assert [gap["region"] for gap in national["items"]] == ["08"]
    assert (await api.get("/v1/compliance/gaps", headers=auth("admin"))).status_code == 403


async def test_a_lower_age_limit_ends_clients_past_it_today_never_in_the_past(api, auth, app):
    from sqlalchemy import text

    headers = auth("coordinator", region="05")
    await api.patch("/v1/regions/05/settings", json={"aftercare_end_age": 25}, headers=headers)
    older = await register(api, headers, personal_id=new_hetu(born(24)))
    younger = await register(api, headers)
    lowered = await api.patch("/v1/regions/05/settings", json={"aftercare_end_age": 23}, headers=headers)
    assert lowered.status_code == 200, lowered.text
    after = (await api.get(f"/v1/clients/{older['id']}", headers=headers)).json()
    assert after["aftercare_end"] == today().isoformat() and after["status"] == "active"
    birth = dt.date.fromisoformat(younger["birth_date"])
    moved = (await api.get(f"/v1/clients/{younger['id']}", headers=headers)).json()
    assert moved["aftercare_end"] == (birth.replace(year=birth.year + 23) - dt.timedelta(days=1)).isoformat()
    async with app.state.engine.connect() as conn:
        entry = (
            await conn.execute(
                text("SELECT id, changes FROM change_event WHERE action = 'region.settings_updated' ORDER BY id DESC")
            )
        ).first()
        touched = (
            await conn.execute(text("SELECT client_id FROM change_event_client WHERE event_id = :id"), {"id": entry[0]})
        ).scalars()
        assert {str(value).replace("-", "") for value in touched} >= {older["id"].replace("-", "")}
    changes = entry[1] if isinstance(entry[1], list) else json.loads(entry[1])
    assert "client.aftercare_end_changed" in [change["action"] for change in changes]


async def test_a_lower_age_limit_is_refused_while_an_upcoming_client_would_be_past_it(api, auth):
    headers = auth("coordinator", region="05")
    await api.patch("/v1/regions/05/settings", json={"aftercare_end_age": 25}, headers=headers)
    start = (today() + dt.timedelta(days=400)).isoformat()
    upcoming = await register(api, headers, personal_id=new_hetu(born(23)), aftercare_start=start)
    refused = await api.patch("/v1/regions/05/settings", json={"aftercare_end_age": 23}, headers=headers)
    assert refused.status_code == 409 and refused.json()["code"] == "clients_past_age_limit"
    assert refused.json()["client_ids"] == [upcoming["id"]]
    region = (await api.get("/v1/regions/05", headers=headers)).json()
    assert region["settings"]["aftercare_end_age"] == 25

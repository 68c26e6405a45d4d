"""Registering, reading, searching and updating clients (two-region rule, access, identity codes)."""

from __future__ import annotations

import datetime as dt
import uuid

import pytest
from sqlalchemy import text

from app.services.clock import today
from tests.api.helpers import add_worker, assign, born, client_body, new_hetu, register


async def test_registration_opens_a_gap_for_each_region(api, auth):
    client = await register(api, auth("system", region="05"))
    assert client["status"] == "active" and client["compliance"] == "gap"
    assert {(gap["responsibility"], gap["region"]) for gap in client["missing"]} == {
        ("organising", "05"),
        ("residence", "08"),
    }
    assert client["aftercare_end"] == (born().replace(year=born().year + 23) - dt.timedelta(days=1)).isoformat()


async def test_registration_records_a_change_without_the_identity_code(api, auth, app):
    body = client_body()
    response = await api.post("/v1/clients", json=body, headers=auth("system", region="05", client_system="Lifecare"))
    client_id = uuid.UUID(response.json()["id"])
    async with app.state.engine.connect() as conn:
        rows = (
            await conn.execute(
                text("SELECT action, client_system, CAST(changes AS TEXT) FROM change_event WHERE client_id = :id"),
                {"id": client_id.hex if app.state.engine.dialect.name == "sqlite" else str(client_id)},
            )
        ).all()
    assert [row[0] for row in rows] == ["client.registered"]
    (action, system, changes) = rows[0]
    assert system == "Lifecare" and "gap.opened" in changes
    assert body["personal_id"] not in changes


async def test_same_region_client_needs_only_the_organising_worker(api, auth):
    client = await register(api, auth("coordinator", region="05"), residence_region="05")
    assert [gap["responsibility"] for gap in client["missing"]] == ["organising"]


async def test_municipality_alone_determines_the_residence_region(api, auth):
    client = await register(api, auth("system", region="05"), residence_region=None, residence_municipality="837")
    assert client["residence_region"] == "08" and client["residence_municipality"] == "837"


async def test_municipality_must_agree_with_the_region(api, auth):
    response = await api.post(
        "/v1/clients",
        json=client_body(residence_municipality="837", residence_region="05"),
        headers=auth("system", region="05"),
    )
    assert response.status_code == 422 and response.json()["code"] == "municipality_region_mismatch"


@pytest.mark.parametrize(
    "residence",
    [{"residence_municipality": "478"}, {"residence_outside": "aland"}, {"residence_outside": "abroad"}],
)
async def test_client_outside_the_regions_needs_only_the_organising_worker(api, auth, residence):
    client = await register(api, auth("system", region="05"), residence_region=None, **residence)
    assert client["residence_region"] is None and client["residence_outside"] in {"aland", "abroad"}
    assert [gap["responsibility"] for gap in client["missing"]] == ["organising"]


@pytest.mark.parametrize(
    ("overrides", "code"),
    [
        ({"personal_id": "010203-1234"}, "invalid_personal_id"),
        ({"personal_id": "010203A9999"}, "invalid_personal_id"),
        ({"organising_region": "91"}, "unknown_region"),
        ({"residence_region": "99"}, "unknown_region"),
        ({"residence_region": None}, "residence_required"),
        ({"residence_municipality": "999", "residence_region": None}, "unknown_municipality"),
        ({"personal_id": new_hetu(born(30))}, "aftercare_age_exceeded"),
        ({"aftercare_start": (today() + dt.timedelta(days=3650)).isoformat()}, "invalid_dates"),
        ({"support_level": "extreme"}, "validation_error"),
        ({"unexpected": 1}, "validation_error"),
        ({"first_name": ""}, "validation_error"),
    ],
)
async def test_registration_refuses_bad_input_and_stores_nothing(api, auth, overrides, code):
    headers = auth("system", region="05")
    response = await api.post("/v1/clients", json=client_body(**overrides), headers=headers)
    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["code"] == code
    listed = await api.get("/v1/clients", headers=headers)
    assert listed.json()["items"] == []


async def test_temporary_identity_codes_are_refused(api, auth):
    from tests.conftest import hetu

    response = await api.post(
        "/v1/clients", json=client_body(personal_id=hetu(born(), 950)), headers=auth("system", region="05")
    )
    assert response.status_code == 422 and response.json()["code"] == "temporary_personal_id"


async def test_validation_errors_list_the_fields(api, auth):
    response = await api.post("/v1/clients", json={"first_name": 5}, headers=auth("system", region="05"))
    body = response.json()
    assert response.status_code == 422 and body["code"] == "validation_error"
    assert {tuple(error["loc"])[:1] for error in body["errors"]} >= {("personal_id",), ("organising_region",)}


@pytest.mark.parametrize(("role", "region"), [("auditor", None), ("admin", None), ("auditor", "05")])
async def test_only_systems_and_coordinators_register(api, auth, role, region):
    response = await api.post("/v1/clients", json=client_body(), headers=auth(role, region=region))
    assert response.status_code == 403 and response.json()["code"] == "forbidden"


async def test_an_uninvolved_region_cannot_register(api, auth):
    response = await api.post("/v1/clients", json=client_body(), headers=auth("system", region="19"))
    assert response.status_code == 403 and response.json()["code"] == "not_responsible"


async def test_the_residence_region_may_register_and_asks_the_organising_region(api, auth):
    client = await register(api, auth("system", region="08"))
    responsibility = (
        await api.get(f"/v1/clients/{client['id']}/responsibility", headers=auth("system", region="08"))
    ).json()
    assert [(r["kind"], r["to_region"]) for r in responsibility["pending_requests"]] == [
        ("assign_organising_worker", "05")
    ]


async def test_a_registered_code_is_a_duplicate_naming_the_client_to_involved_regions(api, auth):
    body = client_body()
    first = (await api.post("/v1/clients", json=body, headers=auth("system", region="05"))).json()
    again = await api.post(
        "/v1/clients",
        json={**body, "personal_id": f"  {body['personal_id'].lower()} "},
        headers=auth("system", region="08"),
    )
    assert again.status_code == 409 and again.json()["code"] == "duplicate_client"
    assert again.json()["existing_id"] == first["id"]


async def test_a_duplicate_does_not_reveal_the_client_to_an_uninvolved_region(api, auth):
    body = client_body()
    await register(api, auth("system", region="05"), personal_id=body["personal_id"])
    again = await api.post(
        "/v1/clients",
        json={**body, "organising_region": "19", "residence_region": "19"},
        headers=auth("system", region="19"),
    )
    assert again.status_code == 409 and again.json()["existing_id"] is None


async def test_a_duplicate_does_not_tell_a_region_only_asked_about_the_client_whose_code_it_is(api, auth):
    """A region with an open request about a client sees it without its code (search finds nothing);
    registering the code again must not hand it the client's id instead."""
    body = client_body(organising_region="05", residence_region="05")
    client = await register(api, auth("system", region="05"), **body)
    request = {"client_id": client["id"], "to_region": "19", "kind": "other", "message": "please call"}
    assert (await api.post("/v1/coordination-requests", json=request, headers=auth("system", region="05"))).is_success
    asked = auth("system", region="19")
    assert (await api.get(f"/v1/clients/{client['id']}", headers=asked)).json()["personal_id"] is None
    again = await api.post(
        "/v1/clients", json={**body, "organising_region": "19", "residence_region": "19"}, headers=asked
    )
    assert again.status_code == 409 and again.json()["existing_id"] is None


async def test_century_signs_are_distinct_people(api, auth):
    from tests.conftest import hetu

    birth = born()
    first = await register(api, auth("system", region="05"), personal_id=hetu(birth, 321, "A"))
    second = await register(api, auth("system", region="05"), personal_id=hetu(birth, 321, "B"))
    assert first["id"] != second["id"] and second["personal_id"][6] == "B"


async def test_uninvolved_regions_get_404_and_auditors_see_by_scope(api, auth):
    client = await register(api, auth("system", region="05"))
    path = f"/v1/clients/{client['id']}"
    assert (await api.get(path, headers=auth("system", region="08"))).status_code == 200
    assert (await api.get(path, headers=auth("auditor"))).status_code == 200
    assert (await api.get(path, headers=auth("auditor", region="05"))).status_code == 200
    for headers in (
        auth("system", region="19"),
        auth("coordinator", region="19"),
        auth("auditor", region="19"),
    ):
        response = await api.get(path, headers=headers)
        assert response.status_code == 404 and response.json()["code"] == "client_not_found"
    assert (await api.get(path, headers=auth("admin"))).status_code == 403
    assert (await api.get(f"/v1/clients/{uuid.uuid4()}", headers=auth("system", region="05"))).status_code == 404
    assert (await api.get("/v1/clients/not-a-uuid", headers=auth("system", region="05"))).status_code == 422


async def test_a_protected_address_is_shown_only_to_the_residence_region(api, auth):
    client = await register(
        api,
        auth("system", region="05"),
        residence_region=None,
        residence_municipality="837",
        address_protection=True,
    )
    path = f"/v1/clients/{client['id']}"
    organising = (await api.get(path, headers=auth("system", region="05"))).json()
    residence = (await api.get(path, headers=auth("system", region="08"))).json()
    assert organising["residence_municipality"] is None and organising["address_protection"] is True
    assert residence["residence_municipality"] == "837"
    listed = (await api.get("/v1/clients", headers=auth("system", region="05"))).json()["items"]
    assert [c["residence_municipality"] for c in listed] == [None]
    moved = await api.post(
        f"{path}/moves",
        json={"residence_municipality": "564", "effective_date": today().isoformat()},
        headers=auth("system", region="08"),
    )
    assert moved.status_code == 201, moved.text

    async def municipalities(region: str | None) -> list[str | None]:
        headers = auth("system", region=region) if region else auth("auditor")
        timeline = (await api.get(f"{path}/history", headers=headers)).json()["items"]
        return [e["details"]["municipality"] for e in timeline if e["type"] == "residence.started"]

    assert await municipalities("05") == [None, None]
    assert await municipalities("08") == ["837", None]  # its own past, not where the client went
    assert await municipalities("19") == [None, "564"]
    assert await municipalities(None) == [None, None]


async def test_list_filters_and_pages_without_repeats(api, auth):
    headers = auth("coordinator", region="05")
    ids = {(await register(api, headers))["id"] for _ in range(5)}
    same_region = await register(api, headers, residence_region="05")
    worker = await add_worker(api, headers, "05")
    assert (await assign(api, headers, same_region["id"], "organising", worker["id"])).status_code == 201
    seen, cursor = [], None
    while True:
        page = (
            await api.get("/v1/clients", params={"limit": 2, **({"cursor": cursor} if cursor else {})}, headers=headers)
        ).json()
        seen += [item["id"] for item in page["items"]]
        assert all("personal_id" not in item for item in page["items"])
        cursor = page["next_cursor"]
        if not cursor:
            break
    assert len(seen) == len(set(seen)) == 6
    ok = (await api.get("/v1/clients", params={"compliance": "ok"}, headers=headers)).json()["items"]
    assert [item["id"] for item in ok] == [same_region["id"]]
    gap = (await api.get("/v1/clients", params={"compliance": "gap"}, headers=headers)).json()["items"]
    assert {item["id"] for item in gap} == ids
    in_08 = (await api.get("/v1/clients", params={"region": "08"}, headers=headers)).json()["items"]
    assert {item["id"] for item in in_08} == ids
    assert (await api.get("/v1/clients", headers=auth("system", region="19"))).json()["items"] == []


@pytest.mark.parametrize(
    "params", [{"cursor": "!!!"}, {"cursor": "WyJhIl0"}, {"limit": 0}, {"limit": 501}, {"compliance": "bad"}]
)
async def test_list_refuses_bad_paging(api, auth, params):
    response = await api.get("/v1/clients", params=params, headers=auth("system", region="05"))
    assert response.status_code == 422 and response.json()["code"] in {"validation_error", "invalid_cursor"}


async def test_search_by_identity_code_or_external_id(api, auth):
    body = client_body(external_ids=[{"system": "Lifecare", "id": "LC-1"}])
    client = await register(api, auth("system", region="05"), **body)
    by_code = await api.post(
        "/v1/clients/search",
        json={"personal_id": body["personal_id"].lower()},
        headers=auth("system", region="08"),
    )
    assert [item["id"] for item in by_code.json()["items"]] == [client["id"]]
    by_external = await api.post(
        "/v1/clients/search",
        json={"system": "Lifecare", "external_id": "LC-1"},
        headers=auth("system", region="05"),
    )
    assert [item["id"] for item in by_external.json()["items"]] == [client["id"]]
    hidden = await api.post(
        "/v1/clients/search", json={"personal_id": body["personal_id"]}, headers=auth("system", region="19")
    )
    assert hidden.json()["items"] == []
    both = await api.post(
        "/v1/clients/search",
        json={"personal_id": body["personal_id"], "system": "x"},
        headers=auth("system", region="05"),
    )
    assert both.status_code == 422


async def test_external_ids_are_unique_per_system(api, auth):
    await register(api, auth("system", region="05"), external_ids=[{"system": "Lifecare", "id": "LC-9"}])
    response = await api.post(
        "/v1/clients",
        json=client_body(external_ids=[{"system": "Lifecare", "id": "LC-9"}]),
        headers=auth("system", region="05"),
    )
    assert response.status_code == 409 and response.json()["code"] == "duplicate_external_id"


async def test_update_changes_names_and_is_refused_to_others(api, auth):
    client = await register(api, auth("system", region="05"))
    path = f"/v1/clients/{client['id']}"
    updated = await api.patch(
        path,
        json={"first_name": "Aina", "external_ids": [{"system": "Pegasos", "id": "P1"}]},
        headers=auth("system", region="08"),
    )
    assert updated.status_code == 200 and updated.json()["first_name"] == "Aina"
    assert updated.json()["external_ids"] == [{"system": "Pegasos", "id": "P1"}]
    assert (await api.patch(path, json={"first_name": "X"}, headers=auth("system", region="19"))).status_code == 404
    assert (await api.patch(path, json={"first_name": "X"}, headers=auth("auditor"))).status_code == 403
    assert (await api.patch(path, json={"personal_id": "x"}, headers=auth("system", region="05"))).status_code == 422
    assert (await api.patch(path, json={"first_name": None}, headers=auth("system", region="05"))).status_code == 422


async def test_special_support_needs_a_social_worker_before_the_change(api, auth):
    headers = auth("coordinator", region="05")
    client = await register(api, headers)
    counsellor = await add_worker(api, headers, "05", role="counsellor")
    assert (await assign(api, headers, client["id"], "organising", counsellor["id"])).status_code == 201
    response = await api.patch(f"/v1/clients/{client['id']}", json={"support_level": "special"}, headers=headers)
    assert response.status_code == 422 and response.json()["code"] == "social_worker_required"

"""Workers: managed by their region's coordinators; deactivation opens gaps."""

from __future__ import annotations

import uuid

import pytest

from tests.api.helpers import add_worker, assign, register


async def test_a_coordinator_adds_and_changes_workers_of_its_region(api, auth):
    headers = auth("coordinator", region="05")
    worker = await add_worker(api, headers, "05", email="anna@example.fi", external_id="HR-1")
    assert worker["active"] is True and worker["service"] == "aftercare"
    got = await api.get(f"/v1/workers/{worker['id']}", headers=auth("system", region="08"))
    assert got.status_code == 200 and got.json()["email"] == "anna@example.fi"
    changed = await api.patch(
        f"/v1/workers/{worker['id']}", json={"role": "counsellor", "email": None}, headers=headers
    )
    assert changed.status_code == 200 and changed.json()["role"] == "counsellor" and changed.json()["email"] is None


@pytest.mark.parametrize(
    ("role", "region", "status"),
    [("system", "05", 403), ("coordinator", "08", 403), ("auditor", None, 403), ("admin", None, 403)],
)
async def test_only_the_regions_coordinator_adds_workers(api, auth, role, region, status):
    response = await api.post(
        "/v1/workers",
        json={"region": "05", "name": "X", "role": "counsellor"},
        headers=auth(role, region=region),
    )
    assert response.status_code == status


@pytest.mark.parametrize(
    "body",
    [
        {"region": "05", "name": "X", "role": "boss"},
        {"region": "05", "name": "", "role": "counsellor"},
        {"region": "5", "name": "X", "role": "counsellor"},
        {"region": "05", "name": "X", "role": "counsellor", "email": "nope"},
        {"region": "05", "name": "X", "role": "counsellor", "salary": 1},
    ],
)
async def test_bad_workers_are_refused(api, auth, body):
    response = await api.post("/v1/workers", json=body, headers=auth("coordinator", region="05"))
    assert response.status_code == 422 and response.json()["code"] == "validation_error"


async def test_external_ids_are_unique_within_a_region(api, auth):
    headers = auth("coordinator", region="05")
    await add_worker(api, headers, "05", external_id="HR-7")
    response = await api.post(
        "/v1/workers",
        json={"region": "05", "name": "Y", "role": "counsellor", "external_id": "HR-7"},
        headers=headers,
    )
    assert response.status_code == 409 and response.json()["code"] == "duplicate_worker"


async def test_workers_list_filters_and_pages(api, auth):
    h05 = auth("coordinator", region="05")
    for role in ("social_worker", "counsellor", "counsellor"):
        await add_worker(api, h05, "05", role=role)
    await add_worker(api, auth("coordinator", region="08"), "08")
    counsellors = (await api.get("/v1/workers", params={"region": "05", "role": "counsellor"}, headers=h05)).json()
    assert len(counsellors["items"]) == 2
    first = (await api.get("/v1/workers", params={"limit": 3}, headers=h05)).json()
    second = (await api.get("/v1/workers", params={"limit": 3, "cursor": first["next_cursor"]}, headers=h05)).json()
    assert len(first["items"]) == 3 and len(second["items"]) == 1 and second["next_cursor"] is None
    assert (await api.get(f"/v1/workers/{uuid.uuid4()}", headers=h05)).status_code == 404


async def test_deactivating_a_worker_ends_assignments_and_lists_the_clients(api, auth):
    headers = auth("coordinator", region="05")
    worker = await add_worker(api, headers, "05")
    clients = [await register(api, headers) for _ in range(2)]
    for client in clients:  # named from the start, so the gap after deactivation is the worker's doing
        named = await assign(
            api, headers, client["id"], "organising", worker["id"], start_date=client["aftercare_start"]
        )
        assert named.status_code == 201
    other = await api.patch(
        f"/v1/workers/{worker['id']}", json={"active": False}, headers=auth("coordinator", region="08")
    )
    assert other.status_code == 403
    response = await api.patch(f"/v1/workers/{worker['id']}", json={"active": False}, headers=headers)
    assert response.status_code == 200
    assert {item["client_id"] for item in response.json()["affected_clients"]} == {c["id"] for c in clients}
    for client in clients:
        compliance = (await api.get(f"/v1/clients/{client['id']}/compliance", headers=headers)).json()
        assert "organising" in [gap["responsibility"] for gap in compliance["missing"]]
    gaps = (await api.get("/v1/compliance/gaps", headers=headers)).json()["items"]
    assert {gap["cause"] for gap in gaps} == {"worker_deactivated"}


async def test_the_organising_social_worker_of_special_support_keeps_the_role(api, auth):
    headers = auth("coordinator", region="05")
    worker = await add_worker(api, headers, "05")
    client = await register(api, headers, support_level="special")
    await assign(api, headers, client["id"], "organising", worker["id"])
    response = await api.patch(f"/v1/workers/{worker['id']}", json={"role": "counsellor"}, headers=headers)
    assert response.status_code == 422 and response.json()["code"] == "social_worker_required"

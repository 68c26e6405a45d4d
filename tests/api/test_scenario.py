"""A real story end to end: placed by Varsinais-Suomi (05), moves to Pirkanmaa (08), then to Pohjois-Pohjanmaa (19)."""

from __future__ import annotations

import datetime as dt

from app.services.clock import today
from tests.api.helpers import add_worker, assign, register


def days(n: int) -> str:
    return (today() + dt.timedelta(days=n)).isoformat()


async def test_a_young_person_moves_twice_and_every_phase_can_be_answered(api, auth):
    vs, pirkanmaa, ppo = auth("system", region="05"), auth("system", region="08"), auth("system", region="19")
    vs_coord, pirkanmaa_coord = auth("coordinator", region="05"), auth("coordinator", region="08")

    # 200 days ago: placed by 05, living in 05, with 05's social worker named from the start
    client = await register(api, vs, residence_region="05", aftercare_start=days(-200))
    cid = client["id"]
    w05 = await add_worker(api, vs_coord, "05", name="Sanna Virtanen")
    assert (await assign(api, vs, cid, "organising", w05["id"], start_date=days(-200))).status_code == 201

    # 150 days ago: moved to Tampere (Pirkanmaa), recorded now; Pirkanmaa is asked to name a worker
    moved = await api.post(
        f"/v1/clients/{cid}/moves", json={"residence_municipality": "837", "effective_date": days(-150)}, headers=vs
    )
    assert moved.status_code == 201, moved.text
    asked = (await api.get("/v1/coordination-requests", params={"to_region": "08"}, headers=pirkanmaa)).json()
    (request,) = asked["items"]
    assert (request["kind"], request["from_region"], request["status"]) == ("assign_residence_worker", "05", "open")

    # Pirkanmaa names its worker from 140 days ago: the request is fulfilled by that assignment
    w08 = await add_worker(api, pirkanmaa_coord, "08", role="counsellor", name="Mikko Laine")
    named = await assign(api, pirkanmaa, cid, "residence", w08["id"], start_date=days(-140))
    assert named.status_code == 201, named.text
    fulfilled = (await api.get(f"/v1/coordination-requests/{request['id']}", headers=vs)).json()
    assert fulfilled["status"] == "accepted" and fulfilled["assignment_id"] == named.json()["id"]

    # today: 05 proposes the work pair, Pirkanmaa's coordinator confirms it
    pair = (
        await api.post(
            f"/v1/clients/{cid}/pairs", json={"worker_ids": [w05["id"], w08["id"]], "kind": "cross_region"}, headers=vs
        )
    ).json()
    confirmed = await api.post(f"/v1/pairs/{pair['id']}/confirm", headers=pirkanmaa_coord)
    assert confirmed.status_code == 200 and confirmed.json()["status"] == "active"

    # in 30 days: moves on to Oulu (Pohjois-Pohjanmaa), announced now by Pirkanmaa
    onward = await api.post(
        f"/v1/clients/{cid}/moves",
        json={"residence_municipality": "564", "effective_date": days(30)},
        headers=pirkanmaa,
    )
    assert onward.status_code == 201, onward.text
    assert onward.json()["residence_region"] == "08"  # still Pirkanmaa until the move

    async def on(day: int) -> dict:
        response = await api.get(f"/v1/clients/{cid}/responsibility", params={"as_of": days(day)}, headers=vs)
        assert response.status_code == 200, response.text
        return response.json()

    def named_worker(held: dict | None) -> str | None:
        return held["named_worker"]["worker_id"] if held and held["named_worker"] else None

    phase = await on(-170)  # living in 05: one region, one worker
    assert (phase["organising"]["region"], phase["residence"]["region"]) == ("05", "05")
    assert named_worker(phase["organising"]) == w05["id"] and phase["compliance"] == "ok"

    phase = await on(-145)  # moved to 08, no worker there yet
    assert phase["residence"]["region"] == "08" and phase["residence"]["since"] == days(-150)
    assert named_worker(phase["residence"]) is None and phase["compliance"] == "gap"
    assert [(g["responsibility"], g["region"], g["since"]) for g in phase["missing"]] == [
        ("residence", "08", days(-150))
    ]

    phase = await on(-100)  # both named, no pair yet
    assert named_worker(phase["residence"]) == w08["id"] and phase["compliance"] == "ok"
    assert phase["pairs"] == []

    phase = await on(0)  # the pair is in force
    assert [p["id"] for p in phase["pairs"]] == [pair["id"]] and phase["compliance"] == "ok"

    phase = await on(40)  # in Oulu: 19 must name a worker; 08's worker and the pair ended on the move date
    assert phase["residence"]["region"] == "19" and phase["residence"]["since"] == days(30)
    assert named_worker(phase["residence"]) is None and phase["pairs"] == []
    assert [(g["responsibility"], g["region"], g["since"]) for g in phase["missing"]] == [("residence", "19", days(30))]
    assert named_worker(phase["organising"]) == w05["id"]
    assert any(r["kind"] == "assign_residence_worker" and r["to_region"] == "19" for r in phase["pending_requests"])

    # Pohjois-Pohjanmaa holds the residence from the move date on, so it already sees the client fully
    seen = await api.get(f"/v1/clients/{cid}", headers=ppo)
    assert seen.status_code == 200 and seen.json()["access"] == "full"
    (to_ppo,) = (await api.get("/v1/coordination-requests", params={"to_region": "19"}, headers=ppo)).json()["items"]
    assert (to_ppo["kind"], to_ppo["from_region"], to_ppo["details"]["effective_date"]) == (
        "assign_residence_worker",
        "05",
        days(30),
    )

    # the history has every step, on the date it took effect
    items = (await api.get(f"/v1/clients/{cid}/history", headers=vs)).json()["items"]
    steps = [(e["type"], e["date"], e["region"]) for e in items]
    expected = [
        ("aftercare.started", days(-200), None),
        ("organising.started", days(-200), "05"),
        ("residence.started", days(-200), "05"),
        ("assignment.created", days(-200), "05"),
        ("residence.ended", days(-150), "05"),
        ("residence.started", days(-150), "08"),
        ("gap.opened", days(-150), "08"),
        ("assignment.created", days(-140), "08"),
        ("gap.closed", days(-140), "08"),
        ("request.created", days(0), "08"),
        ("request.accepted", days(0), "08"),
        ("pair.proposed", days(0), "05"),
        ("pair.confirmed", days(0), "08"),
        ("request.created", days(0), "19"),
        ("residence.ended", days(30), "08"),
        ("residence.started", days(30), "19"),
        ("assignment.ended", days(30), "08"),
        ("pair.ended", days(30), None),
        ("gap.opened", days(30), "19"),
    ]
    missing = [step for step in expected if step not in steps]
    assert missing == [], steps
    dates = [e["date"] for e in items]
    assert dates == sorted(dates)  # oldest first

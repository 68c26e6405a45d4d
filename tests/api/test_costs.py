"""Cost decisions: an append-only register of who pays for what, agreed by both sides."""

from __future__ import annotations

import asyncio
import csv
import datetime as dt
import io
import json

import pytest
from sqlalchemy import text

from app.services.clock import today
from tests.api.helpers import register

DAY = dt.timedelta(days=1)


def sys(auth, region):
    return auth("system", region=region)


def coord(auth, region):
    return auth("coordinator", region=region)


def day(n: int) -> str:
    return (today() + dt.timedelta(days=n)).isoformat()


def body(**overrides):
    return {
        "service_type": "mental_health_housing",
        "payer_region": "08",
        "payer_service": "mental_health_substance",
        "valid_from": day(-30),
        "legal_basis": "Sosiaalihuoltolaki 21 b §",
        "legal_basis_code": "SHL-21b",
        "reference": "PSHVA/123/2026",
        "amount_cap_eur": "1250.50",
        "notes": "supported housing in Tampere",
        **overrides,
    }


@pytest.fixture
async def client(api, auth):
    """A client of 05 living in 08."""
    return await register(api, sys(auth, "05"), aftercare_start=day(-60))


async def propose(api, auth, client_id, region="05", **overrides):
    return await api.post(f"/v1/clients/{client_id}/cost-decisions", json=body(**overrides), headers=sys(auth, region))


async def agree(api, auth, decision_id, region="08"):
    return await api.post(f"/v1/cost-decisions/{decision_id}/agree", json={}, headers=coord(auth, region))


async def dispute(api, auth, decision_id, region="08", reason="the placement was 05's"):
    return await api.post(
        f"/v1/cost-decisions/{decision_id}/dispute", json={"reason": reason}, headers=coord(auth, region)
    )


async def agreed(api, auth, client_id, **overrides):
    created = await propose(api, auth, client_id, **overrides)
    assert created.status_code == 201, created.text
    response = await agree(api, auth, created.json()["id"])
    assert response.status_code == 200, response.text
    return response.json()


async def in_force(api, auth, client_id, on: str, **params):
    response = await api.get(
        f"/v1/clients/{client_id}/cost-decisions", params={"as_of": on, **params}, headers=sys(auth, "05")
    )
    assert response.status_code == 200, response.text
    return [d["id"] for d in response.json()["items"]]


async def test_a_proposal_is_stored_exactly_and_asks_the_payer(api, auth, client):
    created = await propose(api, auth, client["id"])
    assert created.status_code == 201, created.text
    decision = created.json()
    assert decision["status"] == "proposed" and decision["counterparty_region"] == "08"
    assert decision["amount_cap_eur"] == "1250.50"  # a string: never a float on the wire
    asked = (
        await api.get(
            "/v1/coordination-requests", params={"to_region": "08", "status": "open"}, headers=sys(auth, "08")
        )
    ).json()["items"]
    assert [(r["kind"], r["cost_decision_id"]) for r in asked if r["kind"] == "review_cost_decision"] == [
        ("review_cost_decision", decision["id"])
    ]


@pytest.mark.parametrize(
    ("payer", "proposer", "counterparty"),
    [("08", "05", "08"), ("05", "05", "08"), ("08", "08", "05"), ("19", "05", "19")],
)
async def test_the_counterparty_is_the_payer_or_the_other_region(api, auth, client, payer, proposer, counterparty):
    created = await propose(api, auth, client["id"], region=proposer, payer_region=payer)
    assert created.status_code == 201, created.text
    assert created.json()["counterparty_region"] == counterparty
    answered = await agree(api, auth, created.json()["id"], region=counterparty)
    assert answered.status_code == 200 and answered.json()["status"] == "agreed"


@pytest.mark.parametrize(
    ("who", "action", "status", "code"),
    [
        ("coordinator-08", "agree", 200, None),
        ("coordinator-08", "dispute", 200, None),
        ("coordinator-05", "agree", 403, "forbidden"),  # the proposer does not answer itself
        ("system-08", "agree", 403, "forbidden"),  # answering is a coordinator's
        ("coordinator-19", "agree", 404, "cost_decision_not_found"),
        ("auditor", "agree", 403, "forbidden"),
    ],
)
async def test_who_may_answer(api, auth, client, who, action, status, code):
    decision = (await propose(api, auth, client["id"])).json()
    role, _, region = who.partition("-")
    payload = {"reason": "not ours"} if action == "dispute" else {}
    response = await api.post(
        f"/v1/cost-decisions/{decision['id']}/{action}", json=payload, headers=auth(role, region=region or None)
    )
    assert response.status_code == status, response.text
    if code:
        assert response.json()["code"] == code
    else:
        assert response.json()["status"] == {"agree": "agreed", "dispute": "disputed"}[action]


@pytest.mark.parametrize("first", ["agree", "dispute"])
@pytest.mark.parametrize("second", ["agree", "dispute"])
async def test_an_answered_decision_is_never_answered_again(api, auth, client, first, second):
    decision = (await propose(api, auth, client["id"])).json()
    assert (await (agree if first == "agree" else dispute)(api, auth, decision["id"])).status_code == 200
    again = await (agree if second == "agree" else dispute)(api, auth, decision["id"])
    assert again.status_code == 409 and again.json()["code"] == "decision_answered"


async def test_a_dispute_needs_a_reason(api, auth, client):
    decision = (await propose(api, auth, client["id"])).json()
    response = await dispute(api, auth, decision["id"], reason="")
    assert response.status_code == 422 and response.json()["code"] == "validation_error"


async def test_answering_the_review_request_agrees_or_disputes(api, auth, client):
    decision = (await propose(api, auth, client["id"])).json()
    (request,) = [
        r
        for r in (await api.get("/v1/coordination-requests", headers=coord(auth, "08"))).json()["items"]
        if r["kind"] == "review_cost_decision"
    ]
    no_reason = await api.post(
        f"/v1/coordination-requests/{request['id']}/decline", json={"note": ""}, headers=coord(auth, "08")
    )
    assert no_reason.status_code == 422
    cancel = await api.post(
        f"/v1/coordination-requests/{request['id']}/cancel", json={"note": "oops"}, headers=sys(auth, "05")
    )
    assert cancel.status_code == 422 and cancel.json()["code"] == "cannot_cancel"
    declined = await api.post(
        f"/v1/coordination-requests/{request['id']}/decline", json={"note": "not ours"}, headers=coord(auth, "08")
    )
    assert declined.status_code == 200, declined.text
    stored = (await api.get(f"/v1/cost-decisions/{decision['id']}", headers=sys(auth, "05"))).json()
    assert (stored["status"], stored["answer_reason"]) == ("disputed", "not ours")


@pytest.mark.parametrize(
    ("overrides", "status", "code"),
    [
        ({"valid_to": day(-30)}, 422, "invalid_dates"),
        ({"valid_to": day(-40)}, 422, "invalid_dates"),
        ({"valid_from": day(365 * 10)}, 422, "invalid_dates"),  # after aftercare ends
        ({"payer_region": "91"}, 422, "invalid_payer_region"),
        ({"payer_region": "99"}, 404, "region_not_found"),
        ({"amount_cap_eur": "12.345"}, 422, "validation_error"),  # no fractions of a cent
        ({"amount_cap_eur": "-1.00"}, 422, "validation_error"),
        ({"service_type": "yacht"}, 422, "validation_error"),
        ({"payer_service": "navy"}, 422, "validation_error"),
        ({"legal_basis": ""}, 422, "validation_error"),
        ({"supersedes": "00000000-0000-4000-8000-000000000000"}, 422, "invalid_supersedes"),
    ],
)
async def test_proposals_that_break_a_rule_store_nothing(api, auth, client, overrides, status, code):
    response = await propose(api, auth, client["id"], **overrides)
    assert response.status_code == status, response.text
    assert response.json()["code"] == code
    assert (await api.get(f"/v1/clients/{client['id']}/cost-decisions", headers=sys(auth, "05"))).json()["items"] == []


@pytest.mark.parametrize(
    ("who", "status", "code"),
    [("system-19", 404, "client_not_found"), ("auditor", 403, "forbidden"), ("admin", 403, "forbidden")],
)
async def test_only_a_holding_region_proposes(api, auth, client, who, status, code):
    role, _, region = who.partition("-")
    response = await api.post(
        f"/v1/clients/{client['id']}/cost-decisions", json=body(), headers=auth(role, region=region or None)
    )
    assert response.status_code == status and response.json()["code"] == code


async def test_paying_for_itself_with_nobody_else_involved_has_no_counterparty(api, auth):
    own = await register(api, sys(auth, "05"), residence_region="05")
    response = await propose(api, auth, own["id"], payer_region="05")
    assert response.status_code == 422 and response.json()["code"] == "no_counterparty"


@pytest.mark.parametrize(
    ("first", "second", "overlap"),
    [
        ((-30, 30), (30, 90), False),  # adjacent
        ((-30, 30), (29, 90), True),
        ((-30, None), (100, None), True),  # both open-ended
        ((-30, None), (-60, -30), False),  # ends the day the open-ended one begins
        ((0, 10), (-30, None), True),
    ],
)
async def test_agreed_decisions_never_overlap(api, auth, client, first, second, overlap):
    await agreed(api, auth, client["id"], valid_from=day(first[0]), valid_to=first[1] and day(first[1]))
    response = await propose(api, auth, client["id"], valid_from=day(second[0]), valid_to=second[1] and day(second[1]))
    if overlap:
        assert response.status_code == 409 and response.json()["code"] == "overlapping_decision"
    else:
        assert response.status_code == 201, response.text
        assert (await agree(api, auth, response.json()["id"])).status_code == 200
    # another service type never clashes
    other = await propose(api, auth, client["id"], service_type="supported_housing", valid_from=day(second[0]))
    assert other.status_code == 201


async def test_two_proposals_may_overlap_but_only_one_can_be_agreed(api, auth, client):
    first = (await propose(api, auth, client["id"])).json()
    second = (await propose(api, auth, client["id"], valid_from=day(0))).json()
    assert (await agree(api, auth, first["id"])).status_code == 200
    refused = await agree(api, auth, second["id"])
    assert refused.status_code == 409 and refused.json()["code"] == "overlapping_decision"
    assert refused.json()["decision_id"] == first["id"]
    stored = (await api.get(f"/v1/cost-decisions/{second['id']}", headers=sys(auth, "05"))).json()
    assert stored["status"] == "proposed"


async def test_a_correction_supersedes_only_once_agreed(api, auth, client):
    old = await agreed(api, auth, client["id"], valid_to=day(30))
    fix = await propose(api, auth, client["id"], valid_to=day(60), supersedes=old["id"], amount_cap_eur="1400.00")
    assert fix.status_code == 201, fix.text  # overlaps only the decision it replaces
    assert (await api.get(f"/v1/cost-decisions/{old['id']}", headers=sys(auth, "05"))).json()["status"] == "agreed"
    assert await in_force(api, auth, client["id"], day(0)) == [old["id"]]
    assert (await agree(api, auth, fix.json()["id"])).status_code == 200
    replaced = (await api.get(f"/v1/cost-decisions/{old['id']}", headers=sys(auth, "05"))).json()
    assert (replaced["status"], replaced["superseded_by"]) == ("superseded", fix.json()["id"])
    assert await in_force(api, auth, client["id"], day(0)) == [fix.json()["id"]]
    assert await in_force(api, auth, client["id"], day(45)) == [fix.json()["id"]]
    # a superseded decision is not corrected again, and a proposal is answered before it is corrected
    again = await propose(api, auth, client["id"], supersedes=old["id"])
    assert again.status_code == 409 and again.json()["code"] == "already_superseded"
    pending = (await propose(api, auth, client["id"], valid_from=day(200))).json()
    early = await propose(api, auth, client["id"], valid_from=day(200), supersedes=pending["id"])
    assert early.status_code == 409 and early.json()["code"] == "not_supersedable"
    mismatch = await propose(api, auth, client["id"], service_type="other", supersedes=fix.json()["id"])
    assert mismatch.status_code == 422 and mismatch.json()["code"] == "invalid_supersedes"


async def test_a_disputed_decision_is_corrected_by_a_new_one(api, auth, client):
    disputed = (await propose(api, auth, client["id"], payer_region="05")).json()
    assert (await dispute(api, auth, disputed["id"])).status_code == 200
    fix = (await propose(api, auth, client["id"], payer_region="08", supersedes=disputed["id"])).json()
    assert (await agree(api, auth, fix["id"])).status_code == 200
    chain = {
        d["id"]: d
        for d in (await api.get(f"/v1/clients/{client['id']}/cost-decisions", headers=sys(auth, "05"))).json()["items"]
    }
    assert chain[disputed["id"]]["status"] == "superseded" and chain[fix["id"]]["supersedes"] == disputed["id"]


async def test_as_of_answers_at_each_boundary(api, auth, client):
    first = await agreed(api, auth, client["id"], valid_from=day(-30), valid_to=day(10))
    second = await agreed(api, auth, client["id"], valid_from=day(10), valid_to=None, payer_region="05")
    assert await in_force(api, auth, client["id"], day(-31)) == []
    assert await in_force(api, auth, client["id"], day(-30)) == [first["id"]]
    assert await in_force(api, auth, client["id"], day(9)) == [first["id"]]
    assert await in_force(api, auth, client["id"], day(10)) == [second["id"]]
    assert await in_force(api, auth, client["id"], day(1000)) == [second["id"]]
    assert await in_force(api, auth, client["id"], day(0), service_type="supported_housing") == []
    view = (
        await api.get(f"/v1/clients/{client['id']}/responsibility", params={"as_of": day(10)}, headers=sys(auth, "05"))
    ).json()
    assert [(d["id"], d["payer_region"]) for d in view["cost_decisions"]] == [(second["id"], "05")]


async def test_responsibility_known_at_reproduces_the_register_before_an_agreement(api, auth, client):
    decision = (await propose(api, auth, client["id"])).json()
    moment = dt.datetime.now(dt.UTC).isoformat()
    await asyncio.sleep(0.01)
    assert (await agree(api, auth, decision["id"])).status_code == 200
    path = f"/v1/clients/{client['id']}/responsibility"
    then = (await api.get(path, params={"known_at": moment}, headers=sys(auth, "05"))).json()
    now = (await api.get(path, headers=sys(auth, "05"))).json()
    assert then["cost_decisions"] == [] and [d["id"] for d in now["cost_decisions"]] == [decision["id"]]


async def test_no_put_patch_or_delete_exists(api, auth, client):
    decision = (await propose(api, auth, client["id"])).json()
    for method in ("PUT", "PATCH", "DELETE"):
        response = await api.request(method, f"/v1/cost-decisions/{decision['id']}", json={}, headers=sys(auth, "05"))
        assert response.status_code == 405 and response.headers["content-type"] == "application/problem+json"


@pytest.mark.postgres_only  # the append-only trigger is PostgreSQL's (the embedded SQLite default has none)
async def test_the_register_is_append_only_in_postgresql(api, auth, app, client):
    from sqlalchemy.exc import DBAPIError

    decision = (await propose(api, auth, client["id"])).json()
    assert (await agree(api, auth, decision["id"])).status_code == 200
    for statement in (
        "UPDATE cost_decision SET payer_region = '05' WHERE id = :id",
        "DELETE FROM cost_decision WHERE id = :id",
        "UPDATE cost_decision_event SET status = 'disputed' WHERE decision_id = :id",
        "DELETE FROM cost_decision_event WHERE decision_id = :id",
    ):
        with pytest.raises(DBAPIError, match="append-only"):
            async with app.state.engine.begin() as conn:
                await conn.execute(text(statement), {"id": decision["id"]})
    stored = (await api.get(f"/v1/cost-decisions/{decision['id']}", headers=sys(auth, "05"))).json()
    assert (stored["payer_region"], stored["status"]) == ("08", "agreed")


@pytest.mark.postgres_only
async def test_two_simultaneous_overlapping_agreements_have_one_winner(api, auth, app, client):
    first = (await propose(api, auth, client["id"])).json()
    second = (await propose(api, auth, client["id"], valid_from=day(0))).json()
    responses = await asyncio.gather(agree(api, auth, first["id"]), agree(api, auth, second["id"]))
    assert sorted(r.status_code for r in responses) == [200, 409]
    assert [r.json()["code"] for r in responses if r.status_code == 409] == ["overlapping_decision"]
    async with app.state.engine.connect() as conn:
        agreed_rows = (
            await conn.execute(text("SELECT count(*) FROM cost_decision_event WHERE status = 'agreed'"))
        ).scalar()
    assert agreed_rows == 1


async def test_lists_by_payer_and_status_show_only_the_callers_party(api, auth, client):
    a = await agreed(api, auth, client["id"], valid_to=day(0))
    b = (await propose(api, auth, client["id"], valid_from=day(0), payer_region="19")).json()
    c = (await propose(api, auth, client["id"], valid_from=day(100), service_type="other")).json()
    assert (await dispute(api, auth, c["id"])).status_code == 200

    async def ids(headers, **params):
        response = await api.get("/v1/cost-decisions", params=params, headers=headers)
        assert response.status_code == 200, response.text
        return {d["id"] for d in response.json()["items"]}

    assert await ids(sys(auth, "05")) == {a["id"], b["id"], c["id"]}
    assert await ids(sys(auth, "08"), payer_region="08") == {a["id"], c["id"]}
    assert await ids(sys(auth, "19")) == {b["id"]}  # a party as payer, though not involved with the client
    assert await ids(sys(auth, "05"), status="agreed") == {a["id"]}
    assert await ids(sys(auth, "05"), status="proposed") == {b["id"]}
    assert await ids(sys(auth, "05"), status="disputed") == {c["id"]}
    assert await ids(auth("auditor")) == {a["id"], b["id"], c["id"]}
    assert await ids(sys(auth, "02")) == set()
    # 19 sees the decision it is asked to pay, not other decisions of the client
    assert (await api.get(f"/v1/cost-decisions/{a['id']}", headers=sys(auth, "19"))).status_code == 404


async def test_summary_per_region(api, auth, client):
    await agreed(api, auth, client["id"], valid_from=day(-30), amount_cap_eur="1000.25")
    await agreed(api, auth, client["id"], service_type="supported_housing", amount_cap_eur=None)
    waiting = (await propose(api, auth, client["id"], service_type="other", valid_from=day(5))).json()
    disputed = (await propose(api, auth, client["id"], service_type="disability_housing")).json()
    await dispute(api, auth, disputed["id"])
    summary = (await api.get("/v1/cost-decisions/summary", params={"region": "08"}, headers=coord(auth, "08"))).json()
    assert (summary["open_disputes"], summary["awaiting_our_answer"], summary["awaiting_their_answer"]) == (1, 1, 0)
    assert summary["paying"] == [
        {"service_type": "mental_health_housing", "decisions": 1, "amount_cap_eur": "1000.25"},
        {"service_type": "supported_housing", "decisions": 1, "amount_cap_eur": "0.00"},
    ]
    mine = (await api.get("/v1/cost-decisions/summary", params={"region": "05"}, headers=sys(auth, "05"))).json()
    assert (mine["awaiting_their_answer"], mine["paying"]) == (1, [])
    assert waiting["status"] == "proposed"
    other = await api.get("/v1/cost-decisions/summary", params={"region": "08"}, headers=sys(auth, "05"))
    assert other.status_code == 403


@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
async def test_export_streams_the_register_without_identity_codes(api, auth, client, fmt):
    decision = await agreed(api, auth, client["id"])
    (await propose(api, auth, client["id"], service_type="other")).json()
    response = await api.get(
        "/v1/cost-decisions/export", params={"payer_region": "08", "format": fmt}, headers=coord(auth, "08")
    )
    assert response.status_code == 200, response.text
    assert client["personal_id"] not in response.text and client["last_name"] not in response.text
    if fmt == "csv":
        assert response.headers["content-type"].startswith("text/csv")
        rows = list(csv.DictReader(io.StringIO(response.text)))
    else:
        rows = [json.loads(line) for line in response.text.splitlines()]
    assert len(rows) == 2
    (row,) = [r for r in rows if r["id"] == decision["id"]]
    assert str(row["birth_year"]) == client["birth_date"][:4] and row["client_id"] == client["id"]
    assert (row["status"], str(row["amount_cap_eur"])) == ("agreed", "1250.50")


@pytest.mark.parametrize(
    ("path", "params"),
    [("/v1/cost-decisions/export", {"payer_region": "08", "format": "jsonl"}), ("/v1/audit/export", {"log": "change"})],
)
async def test_json_lines_exports_keep_each_record_on_its_line_whatever_its_text(api, auth, client, path, params):
    """Text with the line breaks JSON leaves raw (NEL, U+2028, U+2029) must not split its record for a
    reader that splits lines the way str.splitlines does: it would drop or choke on that record."""
    basis = "SHL 21 b §\x85from March\u2028see plan\u2029end"
    decision = (await propose(api, auth, client["id"], legal_basis=basis)).json()
    response = await api.get(path, params=params, headers=auth("auditor"))
    assert response.status_code == 200, response.text
    records = [json.loads(line) for line in response.text.splitlines()]
    assert len(records) == response.text.count("\n")
    assert basis in json.dumps(records, ensure_ascii=False) and decision["id"] in response.text


@pytest.mark.parametrize(
    ("who", "status"), [("system-08", 403), ("coordinator-05", 403), ("auditor-08", 200), ("auditor", 200)]
)
async def test_export_is_for_the_payers_finance(api, auth, who, status):
    role, _, region = who.partition("-")
    response = await api.get(
        "/v1/cost-decisions/export", params={"payer_region": "08"}, headers=auth(role, region=region or None)
    )
    assert response.status_code == status


async def test_the_counterparty_is_the_current_other_region_not_a_future_holder(api, auth):
    client = await register(api, sys(auth, "05"), residence_region="19", aftercare_start=day(-60))
    await api.post(
        f"/v1/clients/{client['id']}/moves",
        json={"residence_region": "08", "effective_date": day(30)},
        headers=sys(auth, "19"),
    )
    created = await propose(api, auth, client["id"], payer_region="05")
    assert created.status_code == 201, created.text
    assert created.json()["counterparty_region"] == "19"


async def test_a_correction_restates_the_whole_period(api, auth, client):
    old = await agreed(api, auth, client["id"], valid_from=day(-30))
    later = await propose(api, auth, client["id"], valid_from=day(10), supersedes=old["id"], payer_region="19")
    assert later.status_code == 422 and later.json()["code"] == "invalid_supersedes"
    earlier = await propose(api, auth, client["id"], valid_from=day(-40), supersedes=old["id"], payer_region="19")
    assert earlier.status_code == 201, earlier.text


async def test_known_at_hides_a_supersession_recorded_later(api, auth, client):
    old = await agreed(api, auth, client["id"], valid_to=day(30))
    await asyncio.sleep(0.01)
    moment = dt.datetime.now(dt.UTC).isoformat()
    await asyncio.sleep(0.01)
    fix = (await propose(api, auth, client["id"], valid_to=day(60), supersedes=old["id"])).json()
    assert (await agree(api, auth, fix["id"])).status_code == 200
    then = (
        await api.get(
            f"/v1/clients/{client['id']}/responsibility", params={"known_at": moment}, headers=sys(auth, "05")
        )
    ).json()
    assert [(d["id"], d["status"], d["superseded_by"]) for d in then["cost_decisions"]] == [(old["id"], "agreed", None)]


async def test_the_review_request_names_its_decision_in_the_change_log(api, auth, app, client):
    decision = (await propose(api, auth, client["id"])).json()
    async with app.state.engine.connect() as conn:
        changes = (
            await conn.execute(text("SELECT changes FROM change_event WHERE action = 'cost_decision.proposed'"))
        ).scalar_one()
    changes = changes if isinstance(changes, list) else json.loads(changes)
    (created,) = [c for c in changes if c["action"] == "request.created"]
    assert created["after"]["cost_decision_id"] == decision["id"]


async def test_agreeing_one_correction_closes_the_rival_ones(api, auth, client):
    old = await agreed(api, auth, client["id"])
    first = (await propose(api, auth, client["id"], supersedes=old["id"], amount_cap_eur="1.00")).json()
    second = (await propose(api, auth, client["id"], supersedes=old["id"], amount_cap_eur="2.00")).json()
    assert (await agree(api, auth, first["id"])).status_code == 200
    late = await agree(api, auth, second["id"])
    assert late.status_code == 409 and late.json()["code"] == "already_superseded"
    reviews = (await api.get("/v1/coordination-requests", params={"status": "open"}, headers=coord(auth, "08"))).json()
    assert [r for r in reviews["items"] if r["cost_decision_id"] == second["id"]] == []


async def test_a_slow_export_reader_does_not_block_writers(api, auth, client):
    for n in range(3):
        await agreed(api, auth, client["id"], service_type=["other", "supported_housing", "disability_housing"][n])
    params = {"payer_region": "08", "format": "jsonl"}
    async with api.stream("GET", "/v1/cost-decisions/export", params=params, headers=coord(auth, "08")) as stream:
        lines = stream.aiter_lines()
        assert json.loads(await anext(lines))["payer_region"] == "08"
        written = await asyncio.wait_for(
            api.post("/v1/clients", json=client_body_for_export(), headers=sys(auth, "05")), timeout=5
        )
        assert written.status_code == 201


def client_body_for_export():
    from tests.api.helpers import client_body

    return client_body()


@pytest.mark.postgres_only
async def test_truncate_is_refused_on_the_register(api, auth, app, client):
    from sqlalchemy.exc import DBAPIError

    decision = (await propose(api, auth, client["id"])).json()
    assert (await agree(api, auth, decision["id"])).status_code == 200
    for table in ("cost_decision_event", "cost_decision", "change_event", "access_log", "audit_chain"):
        with pytest.raises(DBAPIError, match="append-only"):
            async with app.state.engine.begin() as conn:
                await conn.execute(text(f"TRUNCATE {table} CASCADE"))


async def test_responsibility_as_of_builds_no_statement_per_request(api, auth, client, monkeypatch):
    """Its reads (cost decisions, their answers and successors included) are built once: building a
    statement and its cache key cost more than sending it (issue 9)."""
    from app.services import access, costs, history

    decision = await agreed(api, auth, client["id"])

    def built_per_request(*_args, **_kwargs):  # noqa: ANN202
        raise AssertionError("a statement was built during the request")

    for module in (costs, history):
        monkeypatch.setattr(module, "select", built_per_request)
    monkeypatch.setattr(access, "held", built_per_request)
    response = await api.get(
        f"/v1/clients/{client['id']}/responsibility", params={"as_of": day(0)}, headers=sys(auth, "05")
    )
    assert response.status_code == 200, response.text
    assert [d["id"] for d in response.json()["cost_decisions"]] == [decision["id"]]

"""Caseload: per-worker load against targets, per-role figures, the queue, suggestion, overview."""

from __future__ import annotations

import asyncio
import csv
import datetime as dt
import io
import uuid
from decimal import Decimal

import pytest
from sqlalchemy import event, func, select, text

from app.domain.access import SYSTEM, Caller
from app.errors import Forbidden
from app.models.caseload import CaseloadOverview
from app.models.common import utcnow
from app.services.caseload import OverviewSnapshot, _named_on, overview
from app.services.clock import today
from tests.api.helpers import add_worker, assign, register

DAY = dt.timedelta(days=1)


def coord(auth, region):
    return auth("coordinator", region=region)


async def caseload(api, headers, region="08", **params):
    response = await api.get(f"/v1/regions/{region}/caseload", params=params, headers=headers)
    assert response.status_code == 200, response.text
    return response.json()


def by_worker(report):
    return {w["worker_id"]: w for w in report["workers"]}


@pytest.fixture
async def region08(api, auth):
    """Region 08 with two counsellors and a social worker; five clients of 05 living in 08."""
    h = coord(auth, "08")
    busy = await add_worker(api, h, "08", role="counsellor", name="Busy")
    idle = await add_worker(api, h, "08", role="counsellor", name="Idle")
    social = await add_worker(api, h, "08", role="social_worker", name="Social")
    clients = [
        await register(api, auth("system", region="05"), support_level=level)
        for level in ("standard", "standard", "enhanced", "special", "standard")
    ]
    start = clients[0]["aftercare_start"]
    for client in clients[:4]:
        named = await assign(api, h, client["id"], "residence", busy["id"], start_date=start)
        assert named.status_code == 201, named.text
    return {"busy": busy, "idle": idle, "social": social, "clients": clients}


async def test_each_worker_against_the_target(api, auth, region08):
    report = await caseload(api, coord(auth, "08"))
    workers = by_worker(report)
    busy = workers[region08["busy"]["id"]]
    assert busy["clients"] == 4 and busy["clients_by_support_level"] == {"enhanced": 1, "special": 1, "standard": 2}
    assert Decimal(busy["weighted_load"]) == Decimal("5.5")  # 1 + 1 + 1.5 + 2
    assert busy["target"] == 25 and Decimal(busy["utilisation"]) == Decimal("0.22") and busy["status"] == "green"
    assert workers[region08["idle"]["id"]]["clients"] == 0
    roles = {r["role"]: r for r in report["roles"]}
    assert roles["counsellor"]["workers"] == 2 and roles["counsellor"]["clients"] == 4
    assert Decimal(roles["counsellor"]["max_load"]) == Decimal("5.5") and roles["counsellor"]["spread"] is None
    assert roles["social_worker"]["target"] == 50
    # the fifth client is in the queue: missing its residence worker
    assert [(q["client_id"], q["responsibility"]) for q in report["queue"]] == [
        (region08["clients"][4]["id"], "residence")
    ]
    assert report["queue_total"] == 1


async def test_a_client_named_twice_by_one_worker_counts_once(api, auth):
    """One region holding both responsibilities of a client: its worker covers both, counted once."""
    h = coord(auth, "05")
    worker = await add_worker(api, h, "05", role="counsellor")
    client = await register(api, auth("system", region="05"), residence_region="05")
    await assign(api, h, client["id"], "organising", worker["id"])
    report = await caseload(api, h, region="05")
    assert by_worker(report)[worker["id"]]["clients"] == 1


async def _cross_region_pair_with_busy(api, auth, region08) -> dict:
    """A worker of 05, named for 08's first client, in a confirmed pair with 08's busy worker."""
    client = region08["clients"][0]
    w05 = await add_worker(api, coord(auth, "05"), "05")
    await assign(api, auth("system", region="05"), client["id"], "organising", w05["id"])
    pair = await api.post(
        f"/v1/clients/{client['id']}/pairs",
        json={"worker_ids": [w05["id"], region08["busy"]["id"]], "kind": "cross_region"},
        headers=auth("system", region="05"),
    )
    await api.post(f"/v1/pairs/{pair.json()['id']}/confirm", headers=coord(auth, "08"))
    return w05


async def test_pairs_are_shown_apart_from_the_load(api, auth, region08):
    await _cross_region_pair_with_busy(api, auth, region08)
    busy = by_worker(await caseload(api, coord(auth, "08")))[region08["busy"]["id"]]
    assert busy["active_pairs"] == 1 and busy["clients"] == 4


async def test_a_cross_region_pair_counts_for_its_worker_in_each_regions_report(api, auth, region08):
    """Each region counts only its own workers' pairs, whichever of the pair's two workers is theirs."""
    w05 = await _cross_region_pair_with_busy(api, auth, region08)
    in_05 = by_worker(await caseload(api, coord(auth, "05"), region="05"))
    in_08 = by_worker(await caseload(api, coord(auth, "08")))
    assert in_05[w05["id"]]["active_pairs"] == 1 and in_08[region08["busy"]["id"]]["active_pairs"] == 1
    assert region08["busy"]["id"] not in in_05 and w05["id"] not in in_08


async def test_per_role_clients_and_per_worker_loads_come_apart_from_one_count(api, auth):
    """The per-role and the per-worker counts share one statement: neither leaks into the other."""
    h = coord(auth, "05")
    first = await add_worker(api, h, "05", role="counsellor", name="First")
    second = await add_worker(api, h, "05", role="counsellor", name="Second")
    social = await add_worker(api, h, "05", role="social_worker", name="Social")
    clients = [await register(api, auth("system", region="05"), residence_region="05") for _ in range(4)]
    for client, worker in zip(clients, (first, first, second, social), strict=True):
        response = await assign(api, h, client["id"], "organising", worker["id"])
        assert response.status_code == 201, response.text
    report = await caseload(api, h, region="05")
    assert {r["role"]: r["clients"] for r in report["roles"]} == {"counsellor": 3, "social_worker": 1}
    workers = by_worker(report)
    assert set(workers) == {first["id"], second["id"], social["id"]}
    assert [workers[w["id"]]["clients"] for w in (first, second, social)] == [2, 1, 1]


async def test_as_of_before_and_after_a_reassignment(api, auth, region08):
    h = coord(auth, "08")
    client = region08["clients"][0]
    listed = (await api.get(f"/v1/clients/{client['id']}/assignments", headers=h)).json()["items"]
    (current,) = [a for a in listed if a["responsibility"] == "residence"]
    handover = today() - 5 * DAY
    await api.post(
        f"/v1/assignments/{current['id']}/end", json={"end_date": handover.isoformat(), "reason": "handover"}, headers=h
    )
    assert (
        await assign(api, h, client["id"], "residence", region08["idle"]["id"], start_date=handover.isoformat())
    ).status_code == 201
    before = by_worker(await caseload(api, h, as_of=(handover - DAY).isoformat()))
    after = by_worker(await caseload(api, h, as_of=handover.isoformat()))
    assert before[region08["busy"]["id"]]["clients"] == 4
    assert region08["idle"]["id"] not in before  # added today: not a worker of the region back then
    assert (after[region08["busy"]["id"]]["clients"], after[region08["idle"]["id"]]["clients"]) == (3, 1)


async def test_new_targets_count_from_their_date(api, auth, region08):
    h = coord(auth, "08")
    changed = await api.patch("/v1/regions/08/settings", json={"caseload_targets": {"counsellor": 5}}, headers=h)
    assert changed.status_code == 200
    busy = by_worker(await caseload(api, h))[region08["busy"]["id"]]
    assert (busy["target"], busy["status"]) == (5, "amber")  # 5.5 / 5: exactly 110 %, still amber
    await api.patch("/v1/regions/08/settings", json={"caseload_targets": {"counsellor": 4}}, headers=h)
    busy = by_worker(await caseload(api, h))[region08["busy"]["id"]]
    assert (busy["target"], busy["status"]) == (4, "red")
    yesterday = by_worker(await caseload(api, h, as_of=(today() - DAY).isoformat()))[region08["busy"]["id"]]
    assert yesterday["target"] == 25 and yesterday["status"] == "green"
    weights = await api.patch("/v1/regions/08/settings", json={"caseload_weights": {"special": 3.0}}, headers=h)
    assert weights.status_code == 200
    assert Decimal(by_worker(await caseload(api, h))[region08["busy"]["id"]]["weighted_load"]) == Decimal("6.5")


@pytest.mark.parametrize(
    ("who", "body", "status"),
    [
        ("coordinator-08", {"caseload_targets": {"counsellor": 30}}, 200),
        ("admin", {"caseload_weights": {"enhanced": 1.2}}, 200),
        ("system-08", {"caseload_targets": {"counsellor": 30}}, 403),
        ("coordinator-05", {"caseload_targets": {"counsellor": 30}}, 403),
        ("auditor", {"caseload_targets": {"counsellor": 30}}, 403),
        ("coordinator-08", {"caseload_targets": {"counsellor": 0}}, 422),
        ("coordinator-08", {"caseload_weights": {"special": 0}}, 422),
        ("coordinator-08", {"caseload_weights": {"vip": 2}}, 422),
    ],
)
async def test_only_the_regions_coordinator_or_an_admin_changes_targets(api, auth, app, who, body, status):
    role, _, region = who.partition("-")
    response = await api.patch("/v1/regions/08/settings", json=body, headers=auth(role, region=region or None))
    assert response.status_code == status, response.text
    async with app.state.engine.connect() as conn:
        logged = (
            await conn.execute(text("SELECT count(*) FROM change_event WHERE action = 'region.settings_updated'"))
        ).scalar()
    assert logged == (1 if status == 200 else 0)


@pytest.mark.parametrize(
    ("who", "status"),
    [
        ("coordinator-08", 200),
        ("system-08", 200),
        ("auditor-08", 200),
        ("auditor", 200),
        ("coordinator-05", 403),
        ("admin", 403),
    ],
)
async def test_who_sees_a_regions_caseload(api, auth, who, status):
    role, _, region = who.partition("-")
    response = await api.get("/v1/regions/08/caseload", headers=auth(role, region=region or None))
    assert response.status_code == status
    assert (await api.get("/v1/regions/91/caseload", headers=auth("auditor"))).status_code == 404


async def test_suggestion_picks_the_most_room_and_assignment_can_use_it(api, auth, region08):
    h = coord(auth, "08")
    suggested = (await api.get("/v1/regions/08/caseload/suggestion", params={"role": "counsellor"}, headers=h)).json()
    assert suggested["worker"]["worker_id"] == region08["idle"]["id"]
    client = region08["clients"][4]
    assert (await assign(api, h, client["id"], "residence", region08["idle"]["id"])).status_code == 201
    newcomer = await register(api, auth("system", region="05"))
    named = await assign(api, h, newcomer["id"], "residence", "suggested")
    assert named.status_code == 201, named.text
    # idle now has 1 client of 25 (4 %), the social worker 0 of 50: the social worker has the most room
    assert named.json()["worker_id"] == region08["social"]["id"]
    nobody = await api.get("/v1/regions/08/caseload/suggestion", params={"service": "disability"}, headers=h)
    assert nobody.status_code == 200 and nobody.json()["worker"] is None
    wrong = await assign(api, auth("system", region="05"), client["id"], "residence", "suggested")
    assert wrong.status_code == 403 and wrong.json()["code"] == "not_responsible"


async def test_a_suggestion_for_special_support_is_a_social_worker(api, auth):
    h = coord(auth, "05")
    await add_worker(api, h, "05", role="counsellor")
    social = await add_worker(api, h, "05", role="social_worker")
    client = await register(api, auth("system", region="05"), residence_region="05", support_level="special")
    named = await assign(api, h, client["id"], "organising", "suggested")
    assert named.status_code == 201 and named.json()["worker_id"] == social["id"]
    empty = await register(api, auth("system", region="02"), organising_region="02", residence_region="02")
    refused = await assign(api, auth("system", region="02"), empty["id"], "organising", "suggested")
    assert refused.status_code == 422 and refused.json()["code"] == "no_suggestion"


async def test_overview_has_every_region_and_no_personal_data(api, auth, region08):
    response = await api.get("/v1/caseload/overview", headers=auth("admin"))
    assert response.status_code == 200
    body = response.json()
    assert len(body["regions"]) == 22
    r08 = next(r for r in body["regions"] if r["region"] == "08")
    assert r08["workers_by_role"] == {"counsellor": 2, "social_worker": 1} and r08["open_gaps"] == 1
    r05 = next(r for r in body["regions"] if r["region"] == "05")
    assert r05["clients"] == 5 and r05["open_gaps"] == 5
    for client in region08["clients"]:
        assert client["personal_id"] not in response.text and client["id"] not in response.text
        assert client["last_name"] not in response.text and client["first_name"] not in response.text
    for worker in ("busy", "idle", "social"):
        assert region08[worker]["id"] not in response.text
    assert '"Busy"' not in response.text and '"Idle"' not in response.text
    assert (await api.get("/v1/caseload/overview", headers=auth("system", region="08"))).status_code == 403


async def test_csv_export(api, auth, region08):
    response = await api.get("/v1/regions/08/caseload/export", headers=coord(auth, "08"))
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/csv")
    rows = {row["worker_id"]: row for row in csv.DictReader(io.StringIO(response.text))}
    busy = rows[region08["busy"]["id"]]
    assert (busy["clients"], busy["enhanced"], busy["weighted_load"], busy["status"]) == ("4", "1", "5.5", "green")
    assert (await api.get("/v1/regions/08/caseload/export", headers=coord(auth, "05"))).status_code == 403


async def _generate(app, *, workers: int, clients: int) -> None:
    """A region (08) of ``workers`` workers and ``clients`` clients, each client named by one of them."""
    hexed = app.state.engine.dialect.name == "sqlite"

    def key(value: uuid.UUID) -> str:
        return value.hex if hexed else str(value)

    start, end = today() - 100 * DAY, today() + 700 * DAY
    now = dt.datetime.now(dt.UTC)
    roles = ("counsellor", "social_worker", "special_counsellor")
    worker_ids = [uuid.uuid4() for _ in range(workers)]
    client_rows, period_rows, assignment_rows = [], [], []
    for n in range(clients):
        client_id = uuid.uuid4()
        client_rows.append(
            {
                "id": key(client_id),
                "pid": f"gen-{n}",  # a placeholder hash: the reports never open an identity code
                "sealed": b"",
                "level": ("standard", "enhanced", "special")[n % 3],
                "start": start,
                "end": end,
                "now": now,
            }
        )
        for responsibility, region in (("organising", "05"), ("residence", "08")):
            period_rows.append(
                {
                    "id": key(uuid.uuid4()),
                    "client": key(client_id),
                    "resp": responsibility,
                    "region": region,
                    "start": start,
                    "now": now,
                }
            )
        assignment_rows.append(
            {
                "id": key(uuid.uuid4()),
                "client": key(client_id),
                "worker": key(worker_ids[n % workers]),
                "start": start,
                "now": now,
            }
        )
    async with app.state.engine.begin() as conn:
        await conn.execute(
            text(
                "INSERT INTO worker (id, name, region, role, service, active, version, created_at, updated_at)"
                " VALUES (:id, :name, '08', :role, 'aftercare', true, 1, :now, :now)"
            ),
            [{"id": key(w), "name": f"W{i}", "role": roles[i % 3], "now": now} for i, w in enumerate(worker_ids)],
        )
        await conn.execute(
            text(
                "INSERT INTO client (id, personal_id_hash, personal_id_cipher, personal_id_key, first_name, last_name,"
                " birth_date, support_level, address_protection, aftercare_start, aftercare_end, version, created_at,"
                " updated_at) VALUES (:id, :pid, :sealed, 'none', 'G', 'G', '2005-01-01', :level, false, :start, :end,"
                " 1, :now, :now)"
            ),
            client_rows,
        )
        await conn.execute(
            text(
                "INSERT INTO responsibility_period (id, client_id, responsibility, region, valid_from, recorded_at)"
                " VALUES (:id, :client, :resp, :region, :start, :now)"
            ),
            period_rows,
        )
        await conn.execute(
            text(
                "INSERT INTO assignment (id, client_id, responsibility, region, worker_id, valid_from, recorded_at)"
                " VALUES (:id, :client, 'residence', '08', :worker, :start, :now)"
            ),
            assignment_rows,
        )


async def _count_statements(api, auth, app) -> tuple[dict[str, int], list]:
    """Statements issued by the caseload report, the overview and the export, and their responses."""
    statements: list[str] = []

    def count(conn, cursor, statement, *args):  # noqa: ANN001 - SQLAlchemy event signature
        statements.append(statement)

    sync_engine = app.state.engine.sync_engine
    counts, responses = {}, []
    event.listen(sync_engine, "before_cursor_execute", count)
    try:
        for name, path, headers in (
            ("caseload", "/v1/regions/08/caseload?limit=50", coord(auth, "08")),
            ("overview", "/v1/caseload/overview", auth("admin")),
            ("export", "/v1/regions/08/caseload/export", coord(auth, "08")),
        ):
            statements.clear()
            app.state.overview_snapshot.figures = None  # what computing it costs, not the snapshot
            response = await api.get(path, headers=headers)
            assert response.status_code == 200, response.text
            counts[name] = len(statements)
            responses.append(response)
    finally:
        event.remove(sync_engine, "before_cursor_execute", count)
    return counts, responses


async def test_reports_issue_a_fixed_number_of_statements_at_scale(api, auth, app):
    """1,000 workers and 20,000 clients in one region: the reports issue as many statements as for 3 workers."""
    small = await add_worker(api, coord(auth, "08"), "08")
    client = await register(api, auth("system", region="05"))
    await assign(api, coord(auth, "08"), client["id"], "residence", small["id"])
    few, _ = await _count_statements(api, auth, app)
    await _generate(app, workers=1000, clients=20000)
    many, (report, overview, _) = await _count_statements(api, auth, app)
    assert many == few, (few, many)
    assert max(many.values()) <= 12, many
    workers = report.json()["workers"]
    assert len(workers) == 1001 and sum(w["clients"] for w in workers) == 20001
    r08 = next(r for r in overview.json()["regions"] if r["region"] == "08")
    assert sum(r08["workers_by_role"].values()) == 1001


async def test_a_past_date_counts_the_workers_of_that_date(api, auth, region08):
    h = coord(auth, "08")
    off = await api.patch(f"/v1/workers/{region08['busy']['id']}", json={"active": False}, headers=h)
    assert off.status_code == 200
    yesterday = await caseload(api, h, as_of=(today() - DAY).isoformat())
    assert by_worker(yesterday)[region08["busy"]["id"]]["clients"] == 4
    counsellors = {r["role"]: r for r in yesterday["roles"]}["counsellor"]
    # busy was a counsellor yesterday and carried 4 clients; idle was only added today
    assert (counsellors["workers"], counsellors["clients"], Decimal(counsellors["max_load"])) == (1, 4, Decimal("5.5"))
    assert region08["idle"]["id"] not in by_worker(yesterday)
    now = await caseload(api, h)
    assert region08["busy"]["id"] not in by_worker(now)  # deactivated, and its assignments ended today


async def test_the_queue_leaves_out_clients_no_longer_in_aftercare(api, auth, region08):
    waiting = region08["clients"][4]
    end = dt.date.fromisoformat(waiting["aftercare_end"])
    h = coord(auth, "08")
    assert [q["client_id"] for q in (await caseload(api, h, as_of=end.isoformat()))["queue"]] == [waiting["id"]]
    after = await caseload(api, h, as_of=(end + DAY).isoformat())
    assert after["queue"] == [] and after["queue_total"] == 0


async def test_a_date_before_any_recorded_settings_uses_the_earliest(api, auth):
    report = await caseload(api, coord(auth, "08"), as_of="1999-06-01")
    assert report["targets"]["counsellor"] == 25


async def test_suggested_residence_worker_for_a_client_abroad_is_refused_plainly(api, auth):
    client = await register(api, auth("system", region="05"), residence_region=None, residence_outside="abroad")
    refused = await assign(api, auth("system", region="05"), client["id"], "residence", "suggested")
    assert refused.status_code == 422 and refused.json()["code"] == "no_residence_region"


async def test_csv_export_neutralises_formulas(api, auth):
    h = coord(auth, "08")
    await add_worker(api, h, "08", name='=HYPERLINK("http://evil.example","x")')
    text_body = (await api.get("/v1/regions/08/caseload/export", headers=h)).text
    names = [row["name"] for row in csv.DictReader(io.StringIO(text_body))]
    assert names == ['\'=HYPERLINK("http://evil.example","x")']


async def test_the_overview_is_served_from_a_snapshot_until_it_is_older_than_its_max_age(api, auth, app, monkeypatch):
    now = [1000.0]
    monkeypatch.setattr(app.state.overview_snapshot, "clock", lambda: now[0])
    first = (await api.get("/v1/caseload/overview", headers=auth("admin"))).json()
    await add_worker(api, coord(auth, "08"), "08")
    now[0] += app.state.settings.overview_max_age_seconds  # still young enough: the same figures
    again = (await api.get("/v1/caseload/overview", headers=auth("admin"))).json()
    assert again == first
    now[0] += 0.001
    fresh = (await api.get("/v1/caseload/overview", headers=auth("admin"))).json()
    workers = {r["region"]: sum(r["workers_by_role"].values()) for r in fresh["regions"]}
    before = {r["region"]: sum(r["workers_by_role"].values()) for r in first["regions"]}
    assert workers["08"] == before["08"] + 1 and fresh["computed_at"] > first["computed_at"]


async def test_callers_waiting_for_a_stale_overview_share_one_computation(api, auth, app):
    statements: list[str] = []

    def count(conn, cursor, statement, *args):  # noqa: ANN001 - SQLAlchemy event signature
        statements.append(statement)

    sync_engine = app.state.engine.sync_engine
    event.listen(sync_engine, "before_cursor_execute", count)
    try:
        answers = await asyncio.gather(*(api.get("/v1/caseload/overview", headers=auth("admin")) for _ in range(5)))
    finally:
        event.remove(sync_engine, "before_cursor_execute", count)
    assert [a.status_code for a in answers] == [200] * 5
    assert len({a.json()["computed_at"] for a in answers}) == 1
    assert sum("FROM assignment" in s for s in statements) == 1, statements


async def test_the_overview_snapshot_is_of_today_and_the_role_check_comes_before_it(app):
    snapshot = OverviewSnapshot(max_age=60, clock=lambda: 5.0, taken=5.0)
    snapshot.figures = CaseloadOverview(as_of=today(), computed_at=utcnow(), regions=[])
    assert snapshot.current(today()) is snapshot.figures
    assert snapshot.current(today() + DAY) is None  # a new day: computed anew
    system = Caller(subject="s", roles=frozenset({SYSTEM}), region="08")
    async with app.state.sessionmaker() as session:
        with pytest.raises(Forbidden):
            await overview(session, system, snapshot)


async def test_a_failed_computation_leaves_a_stale_overview_stale(app, auth, monkeypatch):
    """The snapshot's age must not restart when computing it failed: the old figures stay stale."""
    import app.services.caseload as caseload_service

    now = [1000.0]
    snapshot = OverviewSnapshot(max_age=60, clock=lambda: now[0])
    admin = Caller(subject="a", roles=frozenset({"admin"}), region=None)
    async with app.state.sessionmaker() as session:
        first = await overview(session, admin, snapshot)
        now[0] += 61

        async def broken(_session):  # noqa: ANN001, ANN202
            raise RuntimeError("database gone")

        with monkeypatch.context() as patch:
            patch.setattr(caseload_service, "_overview", broken)
            with pytest.raises(RuntimeError):
                await overview(session, admin, snapshot)
        assert snapshot.current(today()) is None  # still stale: the next caller computes
        again = await overview(session, admin, snapshot)
    assert again is not first and again.computed_at > first.computed_at


async def test_a_regions_assignments_in_force_are_read_from_the_in_force_index(app, backend, api, auth, region08):
    """The load count's "not ended by the day" must stay the exact expression ``ix_assignment_in_force``
    indexes (a parameter instead of the open end's literal, or another form, and the database scans)."""
    named = _named_on(today(), "08")
    async with app.state.engine.connect() as conn:
        counting = select(func.count()).select_from(named)
        query = counting.compile(conn.sync_connection, compile_kwargs={"literal_binds": True})
        if backend[0] == "postgresql":
            await conn.execute(text("SET LOCAL enable_seqscan = off"))  # a handful of rows: any plan is cheap
            plan = "\n".join(row[0] for row in await conn.execute(text(f"EXPLAIN {query}")))
        else:
            plan = "\n".join(row[-1] for row in await conn.execute(text(f"EXPLAIN QUERY PLAN {query}")))
        counted = (await conn.execute(text(str(query)))).scalar_one()
    assert "ix_assignment_in_force" in plan, plan
    if backend[0] == "postgresql":  # the day bounds the range, not a filter over every assignment of the region
        assert any("Index Cond" in line and "COALESCE(valid_to" in line for line in plan.splitlines()), plan
    assert counted == 4  # the fixture's four clients, named by its busy counsellor

"""The set-based path of an import stores what the services' path stores, in a fixed number of statements."""

from __future__ import annotations

import asyncio
import copy
import datetime as dt
import json
import re
import uuid
from typing import Any

import pytest
from sqlalchemy import event, text

from app.services import assignments, import_bulk
from app.services import imports as import_service
from app.services.clock import today
from app.services.import_index import ImportIndex
from tests.api.helpers import new_hetu
from tests.api.test_imports import assignment, client, coord, count, jsonl, post_import, worker

UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
ROW_TABLES = (
    "worker",
    "client",
    "responsibility_period",
    "client_external_id",
    "assignment",
    "compliance_gap",
    "coordination_request",
)
HEX_UUID = re.compile(r"[0-9a-f]{32}")
TIMESTAMP = re.compile(r"\d{4}-\d\d-\d\d[T ][\d:.]+(Z|[+-]\d\d(:?\d\d)?)?")


def shaped_file(prefix: str, birth: dt.date) -> bytes:
    """Every kind of row an import creates: clients living in the region and in another (a request and a
    residence gap), special support, a protected address, assignments from the first day and later."""
    start = today() - dt.timedelta(days=40)
    later = (start + dt.timedelta(days=10)).isoformat()
    return jsonl(
        worker(f"{prefix}w1"),
        worker(f"{prefix}w2", role="counsellor", email=f"{prefix}w2@example.fi"),
        client(f"{prefix}c1", new_hetu(birth), aftercare_start=start.isoformat(), support_level="special"),
        client(
            f"{prefix}c2",
            new_hetu(birth),
            aftercare_start=start.isoformat(),
            residence_region=None,
            residence_municipality="202",
            address_protection=True,
        ),
        client(f"{prefix}c3", new_hetu(birth), aftercare_start=start.isoformat(), residence_region="08"),
        assignment(f"{prefix}c1", f"{prefix}w1", start_date=start.isoformat()),
        assignment(f"{prefix}c2", f"{prefix}w2", start_date=later),
        assignment(f"{prefix}c3", f"{prefix}w1", start_date=later),
        assignment(f"{prefix}c3", f"{prefix}w2", start_date=later),  # responsibility_taken
    )


def normalised(value: Any, prefix: str, ids: dict[str, str]) -> Any:
    """Ids named by order of appearance, timestamps and the file's prefix left out: what must be equal."""
    if isinstance(value, dict):
        return {key: normalised(item, prefix, ids) for key, item in sorted(value.items())}
    if isinstance(value, list):
        return [normalised(item, prefix, ids) for item in value]
    if isinstance(value, str):
        value = UUID.sub(lambda match: ids.setdefault(match.group(), f"id{len(ids)}"), value)
        return TIMESTAMP.sub("<time>", value).replace(prefix, "<prefix>")
    return value


async def stored_after(app, marker: dict[str, int], prefix: str) -> dict[str, Any]:
    """The change entries and feed events written after ``marker``, normalised."""
    async with app.state.engine.connect() as conn:
        entries = await conn.execute(
            text("SELECT action, entity_type, changes FROM change_event WHERE id > :id ORDER BY id"),
            {"id": marker["change_event"]},
        )
        changes = [[action, kind, _json(data)] for action, kind, data in entries]
        events = await conn.execute(text("SELECT region, seq, type, entity_type, data FROM feed_event"))
        feed = sorted(
            [region, seq, kind, entity, _json(data)]
            for region, seq, kind, entity, data in events
            if seq > marker.get(f"feed {region}", 0)
        )
        rows = await rows_of(conn, prefix)
    ids: dict[str, str] = {}
    return {
        "entries": normalised(changes, prefix, ids),
        "feed": normalised([[region, *rest] for region, _, *rest in feed], prefix, ids),
        "rows": {  # the ids are named by the entries already
            table: sorted(json.dumps(normalised(row, prefix, ids), sort_keys=True) for row in kept)
            for table, kept in rows.items()
        },
    }


async def rows_of(conn: Any, prefix: str) -> dict[str, list[dict[str, Any]]]:
    """The stored rows of the file's workers and clients (their times and identity codes left out)."""
    linked = await conn.execute(
        text("SELECT client_id FROM client_external_id WHERE external_id LIKE :prefix"), {"prefix": f"{prefix}%"}
    )
    clients = {str(client_id) for (client_id,) in linked}
    found = {}
    for table in ROW_TABLES:
        rows = (await conn.execute(text(f"SELECT * FROM {table}"))).mappings().all()  # noqa: S608
        found[table] = [
            {key: _text(value) for key, value in row.items() if not isinstance(value, (dt.datetime, bytes))}
            for row in rows
            if str(row.get("client_id", row["id"])) in clients or str(row.get("external_id")).startswith(prefix)
        ]
        found[table] = [{k: v for k, v in row.items() if k != "personal_id_hash"} for row in found[table]]
    return found


def _text(value: Any) -> str:
    """A column's value as text, a UUID as ``uuid.UUID`` spells it (SQLite stores 32 hex digits)."""
    text_value = str(value)
    return str(uuid.UUID(text_value)) if HEX_UUID.fullmatch(text_value) else text_value


def _json(value: Any) -> Any:
    return value if isinstance(value, (list, dict)) else json.loads(value)


async def high_water(app) -> dict[str, int]:
    async with app.state.engine.connect() as conn:
        marker = {
            "change_event": (await conn.execute(text("SELECT coalesce(max(id), 0) FROM change_event"))).scalar_one()
        }
        positions = await conn.execute(text("SELECT region, last_seq FROM feed_position"))
        return marker | {f"feed {region}": last for region, last in positions}


@pytest.mark.parametrize("flush_lines", [1000, 1])
async def test_both_paths_store_the_same_entries_and_feed_events(api, auth, app, monkeypatch, flush_lines):
    """With ``flush_lines`` 1 the set-based path writes after every line: later lines then change
    gap rows already written (an UPDATE), as an import of more than FLUSH_LINES lines does."""
    monkeypatch.setattr(import_service, "FLUSH_LINES", flush_lines)
    birth = today().replace(year=today().year - 19) - dt.timedelta(days=3)
    seen, headers = {}, coord(auth)
    for path, prefix in (("services", "s-"), ("set-based", "b-")):
        monkeypatch.setattr(import_service, "SET_BASED", path == "set-based")
        marker = await high_water(app)
        response = await post_import(api, headers, shaped_file(prefix, birth), atomic="false")
        report = response.json()
        assert (report["created"], report["failed"]) == (8, 1), report
        assert report["errors"][0]["code"] == "responsibility_taken"
        seen[path] = await stored_after(app, marker, prefix)
    assert len(seen["services"]["entries"]) == 8 and len(seen["services"]["feed"]) > 8
    assert all(seen["services"]["rows"].values())
    assert seen["set-based"]["rows"] == seen["services"]["rows"]
    for kind in ("entries", "feed"):
        for position, (bulk, services) in enumerate(zip(seen["set-based"][kind], seen["services"][kind], strict=True)):
            assert bulk == services, f"{kind} {position}"


def on_day(days: int) -> str:
    return (today() + dt.timedelta(days=days)).isoformat()


def living_elsewhere(prefix: str, birth: dt.date) -> list[dict[str, Any]]:
    """Clients abroad, in Åland (by municipality) and, protected, in another region by municipality."""
    return [
        worker(f"{prefix}w1"),
        client(f"{prefix}c1", new_hetu(birth), residence_region=None, residence_outside="abroad"),
        client(f"{prefix}c2", new_hetu(birth), residence_region=None, residence_municipality="478"),
        client(
            f"{prefix}c3", new_hetu(birth), residence_region=None, residence_municipality="837", address_protection=True
        ),
        assignment(f"{prefix}c1", f"{prefix}w1", responsibility="residence"),  # no_residence_region
        assignment(f"{prefix}c1", f"{prefix}w1", start_date=None),
        assignment(f"{prefix}c2", f"{prefix}w1", start_date=on_day(-400)),  # before aftercare: invalid_dates
        assignment(f"{prefix}c2", f"{prefix}w1", start_date=on_day(-10)),
        assignment(f"{prefix}c3", f"{prefix}w1", start_date=on_day(-10)),
    ]


def registered_by_the_residence_region(prefix: str, birth: dt.date) -> list[dict[str, Any]]:
    """Region 08 imports: a client 05 organises (a request to 05), and one of its own."""
    return [
        worker(f"{prefix}w1", region="08"),
        client(f"{prefix}c1", new_hetu(birth), residence_region="08"),
        assignment(f"{prefix}c1", f"{prefix}w1", responsibility="residence", start_date=on_day(-20)),
        assignment(f"{prefix}c1", f"{prefix}w1"),  # the organising worker is 05's: not_responsible
        client(f"{prefix}c2", new_hetu(birth), organising_region="08", residence_region="08"),
        assignment(f"{prefix}c2", f"{prefix}w1", start_date=None),
    ]


def dates_limits_and_changes(prefix: str, birth: dt.date) -> list[dict[str, Any]]:
    """Aftercare starting later, an age limit near and past, special support, and lines that change
    what earlier lines created (through the services, between set-based lines)."""
    turning_23 = today().replace(year=today().year - 23)
    code = new_hetu(birth)
    return [
        worker(f"{prefix}w1"),
        worker(f"{prefix}w2", role="counsellor"),
        client(f"{prefix}c1", new_hetu(birth), aftercare_start=on_day(10), residence_region="08"),
        assignment(f"{prefix}c1", f"{prefix}w1", start_date=None),  # before aftercare begins
        assignment(f"{prefix}c1", f"{prefix}w1", start_date=on_day(20)),
        client(f"{prefix}c2", code, support_level="special"),
        assignment(f"{prefix}c2", f"{prefix}w2", start_date=None),  # social_worker_required
        client(f"{prefix}c3", new_hetu(turning_23 + dt.timedelta(days=5))),
        assignment(f"{prefix}c3", f"{prefix}w1", start_date=on_day(3)),
        assignment(f"{prefix}c3", f"{prefix}w2", start_date=on_day(4)),  # responsibility_taken
        client(f"{prefix}c4", new_hetu(turning_23 - dt.timedelta(days=5))),  # aftercare_age_exceeded
        worker(f"{prefix}w1", role="counsellor"),  # updated, then named: social_worker_required
        assignment(f"{prefix}c2", f"{prefix}w1"),
        client(f"{prefix}c2x", code, system="Pegasos"),  # duplicate_across_systems
        client(f"{prefix}c2", code, support_level="special", address_protection=True),  # updated
        client(f"{prefix}c5", new_hetu(birth)),
        assignment(f"{prefix}c5", f"{prefix}w2", start_date=on_day(-5)),
        client(f"{prefix}c5", code),  # conflicting_data (a client named in an error: an access entry)
    ]


@pytest.mark.parametrize(
    ("shaped", "region"),
    [(living_elsewhere, "05"), (registered_by_the_residence_region, "08"), (dates_limits_and_changes, "05")],
)
async def test_both_paths_report_and_store_the_same_for_every_kind_of_line(api, auth, app, monkeypatch, shaped, region):
    """Writes every 3 lines and commits every 5, so lines meet clients and workers written already,
    and clients of an earlier transaction."""
    monkeypatch.setattr(import_service, "FLUSH_LINES", 3)
    monkeypatch.setattr(import_service, "BATCH_LINES", 5)
    birth = today().replace(year=today().year - 19) - dt.timedelta(days=3)
    seen, headers = {}, coord(auth, region)
    for path, prefix in (("services", "s-"), ("set-based", "b-")):
        monkeypatch.setattr(import_service, "SET_BASED", path == "set-based")
        marker, logged = await high_water(app), await count(app, "access_log_client")
        lines = shaped(prefix, birth)
        for line in lines:
            if line.get("start_date", "") is None:
                del line["start_date"]  # today
            if line["type"] == "client":
                line.setdefault("aftercare_start", on_day(-40))
        response = await post_import(api, headers, jsonl(*lines), atomic="false")
        seen[path] = await stored_after(app, marker, prefix)
        seen[path]["report"] = json.loads(response.text.replace(prefix, "<prefix>"))
        seen[path]["access"] = await count(app, "access_log_client") - logged
    assert seen["services"]["report"]["failed"] >= 1 and seen["services"]["report"]["created"] > 4
    for kind in ("report", "access", "rows", "entries", "feed"):
        assert seen["set-based"][kind] == seen["services"][kind], kind


@pytest.mark.parametrize("path", ["set-based", "services"])
async def test_the_set_based_path_costs_the_same_statements_for_any_number_of_lines(api, auth, app, monkeypatch, path):
    """What makes 10,000 lines fast: on the set-based path a file of 5 or of 20 clients costs the
    same statements; on the services' path each line costs its own (the contrast proves the test)."""
    monkeypatch.setattr(import_service, "SET_BASED", path == "set-based")
    counted = []

    def count(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        counted.append(statement)

    async def statements(clients: int, prefix: str) -> int:
        lines = [worker(f"{prefix}w")]
        for number in range(clients):
            lines += [
                client(f"{prefix}c{number}", new_hetu(), residence_region="08" if number % 2 else "05"),
                assignment(f"{prefix}c{number}", f"{prefix}w"),
            ]
        counted.clear()
        response = await post_import(api, coord(auth), jsonl(*lines))
        assert response.json()["created"] == 1 + 2 * clients
        return len(counted)

    event.listen(app.state.engine.sync_engine, "before_cursor_execute", count)
    try:
        small, large = await statements(5, "s"), await statements(20, "l")
    finally:
        event.remove(app.state.engine.sync_engine, "before_cursor_execute", count)
    if path == "set-based":
        assert small == large
    else:
        assert large > small + 15 * 10


async def test_a_code_registered_after_the_index_read_it_is_reported_not_stored_twice(api, auth, app, monkeypatch):
    """Another writer registers a code between the index's read and the bulk's insert: the unique index
    refuses the bulk, and the lines run again through the services, which report the line."""
    monkeypatch.setattr(import_service, "SET_BASED", True)

    async def nothing_stored(self, session, lines):  # the index read before the other writer committed
        return None

    monkeypatch.setattr(ImportIndex, "_load_registered", nothing_stored)
    code = new_hetu()
    first = await post_import(api, coord(auth), jsonl(client("x1", code, system="Pegasos")))
    assert first.json()["created"] == 1
    response = await post_import(api, coord(auth), jsonl(client("c1", code), client("c2", new_hetu())), atomic="false")
    report = response.json()
    assert (report["created"], report["failed"]) == (1, 1)
    assert report["errors"][0]["line"] == 1 and report["errors"][0]["code"] == "duplicate_across_systems"
    assert await count(app, "client") == 2


@pytest.mark.postgres_only
async def test_parallel_imports_of_one_code_register_it_once(api, auth, app, monkeypatch):
    monkeypatch.setattr(import_service, "SET_BASED", True)
    code = new_hetu()
    files = [
        jsonl(client(f"{system}-shared", code, system=system), client(f"{system}-own", new_hetu(), system=system))
        for system in ("Lifecare", "Pegasos", "Effica", "Apotti")
    ]
    responses = await asyncio.gather(*(post_import(api, coord(auth), body, atomic="false") for body in files))
    reports = [response.json() for response in responses]
    assert sum(report["created"] for report in reports) == 4 + 1
    assert sorted(error["code"] for report in reports for error in report["errors"]) == 3 * ["duplicate_across_systems"]
    assert await count(app, "client") == 5


@pytest.mark.postgres_only
@pytest.mark.parametrize("path", ["set-based", "services"])
async def test_a_worker_deactivated_during_an_import_has_no_assignment_left(api, auth, monkeypatch, path):
    """The import holds the worker (shared) from its check to its commit, as ``create_assignment`` does, so
    a deactivation waits and then ends the new assignment. A line failing before anything of the
    transaction was written rolled the set-based path's locks back with it."""
    monkeypatch.setattr(import_service, "SET_BASED", path == "set-based")
    headers = coord(auth)
    assert (await post_import(api, headers, jsonl(worker("w1")))).json()["created"] == 1
    (named,) = (await api.get("/v1/workers", params={"region": "05"}, headers=headers)).json()["items"]
    real, deactivations = import_service._apply, []

    async def deactivating(session, caller, number, line, report, ctx):
        applied = await real(session, caller, number, line, report, ctx)
        if number == 3:  # the assignment is checked: another coordinator deactivates its worker now
            patch = api.patch(f"/v1/workers/{named['id']}", json={"active": False}, headers=headers)
            deactivations.append(asyncio.create_task(patch))
            await asyncio.wait(deactivations, timeout=1.0)
        return applied

    monkeypatch.setattr(import_service, "_apply", deactivating)
    too_old = today().replace(year=today().year - 30)
    body = jsonl(client("c0", new_hetu(too_old)), client("c1", new_hetu()), assignment("c1", "w1"))
    report = (await post_import(api, headers, body, atomic="false")).json()
    assert (report["created"], report["failed"]) == (2, 1), report
    assert (await deactivations[0]).status_code == 200
    (c1,) = (
        await api.post("/v1/clients/search", json={"system": "Lifecare", "external_id": "c1"}, headers=headers)
    ).json()["items"]
    running = await api.get(
        f"/v1/clients/{c1['id']}/assignments", params={"as_of": today().isoformat()}, headers=headers
    )
    assert running.json()["items"] == []


async def test_each_transaction_keeps_the_run_state_without_deep_copies(api, auth, monkeypatch):
    """Before each transaction the set-based path keeps the report and index as they were, to run the lines
    again through the services if the database refuses a row. A deep copy of an index as big as a
    100,000-line file's took seconds, once per transaction; copying the containers is enough, because
    lines only add and remove entries. Proven structurally (no timing): no deep copy is made, and the
    kept index shares its entries with the live one but not its containers."""
    monkeypatch.setattr(import_service, "SET_BASED", True)
    monkeypatch.setattr(import_service, "BATCH_LINES", 1)
    deep = []
    real_deepcopy = copy.deepcopy
    monkeypatch.setattr(copy, "deepcopy", lambda *args, **kwargs: deep.append(1) or real_deepcopy(*args, **kwargs))
    kept = []
    real_copy = ImportIndex.copy

    def noted_copy(self):
        copied = real_copy(self)
        kept.append((self, copied))
        return copied

    monkeypatch.setattr(ImportIndex, "copy", noted_copy)
    response = await post_import(
        api, coord(auth), jsonl(*(worker(f"w{number}") for number in range(8))), atomic="false"
    )
    assert response.json()["created"] == 8
    assert deep == [] and len(kept) == 8  # one kept state per transaction, none deep
    live, copied = kept[-1]
    assert (len(copied.workers), len(live.workers)) == (7, 8)  # kept before the last line added its worker
    assert all(getattr(copied, name) is not getattr(live, name) for name in ("workers", "clients", "held"))


async def test_the_set_based_path_holds_only_the_clients_later_lines_name(api, auth, monkeypatch):
    """A held client costs some 20 KiB: an atomic import of 50,000 clients held them all (about 1 GiB)
    to its end. After each write only the clients a later line names are held, and their assignments
    still take the set-based path."""
    monkeypatch.setattr(import_service, "SET_BASED", True)
    monkeypatch.setattr(import_service, "FLUSH_LINES", 10)
    flush, held, by_services = import_bulk.Bulk.flush, [], []

    async def noting(bulk, session):
        held.append(len(bulk.clients))
        await flush(bulk, session)

    real_create = assignments.create_assignment

    async def noted(*args, **kwargs):
        by_services.append(1)
        return await real_create(*args, **kwargs)

    monkeypatch.setattr(import_bulk.Bulk, "flush", noting)
    monkeypatch.setattr(assignments, "create_assignment", noted)
    births = [today().replace(year=today().year - 19) - dt.timedelta(days=day) for day in range(100)]
    lines = [worker("w")]
    for number, birth in enumerate(births):  # clients each followed by its assignment
        lines += [client(f"c{number}", new_hetu(birth)), assignment(f"c{number}", "w")]
    lines += [client(f"late{number}", new_hetu(birth - dt.timedelta(days=200))) for number, birth in enumerate(births)]
    lines += [assignment(f"late{number}", "w") for number in range(0, 100, 10)]  # and some named at the end
    response = await post_import(api, coord(auth), jsonl(*lines))
    assert response.json()["created"] == len(lines), response.json()
    assert max(held) <= 10 + 10 and by_services == []

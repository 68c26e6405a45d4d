"""Verifying the chain from plain rows in batches: the writers' MACs, and one report at every batch size."""

from __future__ import annotations

import dataclasses
import json

import orjson
import pytest
from sqlalchemy import select, text

from app.domain.access import Caller
from app.services import chain, chain_verify
from app.services.audit import MAC_KEY, canonical, canonical_json, plain_value, write_changes
from tests.api.helpers import register

ODD_CHANGES = [  # what a change entry may carry: unicode, nesting, nulls, numbers, escapes, a timestamp
    # (1e-07 and 2**70: where orjson's form is not the writers', so the exact encoder decides)
    {
        "action": "worker.updated",
        "entity_type": "worker",
        "entity_id": "Å-ö-ü-𝄞",
        "client_id": None,
        "before": {"name": "Jääskeläinen", "nested": {"z": [1, 2.5, 1e-07, 10**15, 2**70, None, True], "a": {}}},
        "after": {"note": 'tab\t"quote" \\ newline\n\u0001 \u2028 €', "at": "2024-02-29T23:59:59.000001+00:00"},
    }
]


def sys(auth, region):
    return auth("system", region=region)


async def seal(app) -> None:
    async with app.state.sessionmaker() as session:
        await chain.seal(session, full=True)


async def verify(app, **options) -> chain_verify.Report:
    async with app.state.sessionmaker() as session:
        return await chain_verify.verify(session, **options)


async def rows(app, sql: str, **params) -> list[dict]:
    async with app.state.engine.connect() as conn:
        return [dict(row._mapping) for row in await conn.execute(text(sql), params)]


async def tamper(app, sql: str, **params) -> None:
    """A database administrator's raw SQL, past the append-only triggers (replica role on PostgreSQL)."""
    async with app.state.engine.begin() as conn:
        if app.state.engine.dialect.name == "postgresql":
            await conn.execute(text("SET LOCAL session_replication_role = replica"))
        await conn.execute(text(sql), params)


@pytest.fixture
async def logged(api, auth, app) -> int:
    """All three logs, an odd change entry among them, sealed: how many positions the chain holds."""
    client = await register(api, sys(auth, "05"))
    async with app.state.sessionmaker() as session:
        caller = Caller(subject="ääkkönen", roles=frozenset({"admin"}), region=None, request_id="r-€")
        await session.run_sync(lambda sync: write_changes(sync, caller, [ODD_CHANGES]))
        await session.commit()
    for _ in range(8):  # each: an access entry, its index row and a disclosure (08 is not the organiser)
        assert (await api.get(f"/v1/clients/{client['id']}", headers=sys(auth, "08"))).status_code == 200
    await seal(app)
    (head,) = await rows(app, "SELECT max(position) AS head FROM audit_chain")
    assert head["head"] >= 16 and {r["log"] for r in await rows(app, "SELECT log FROM audit_chain")} == {
        "change",
        "access",
        "disclosure",
    }
    return head["head"]


async def test_plain_rows_give_each_entry_the_canonical_form_its_writer_macced(app, logged):
    """verify MACs Core rows; the writers MAC models: the two must agree byte for byte, on every log."""
    async with app.state.sessionmaker() as session:
        conn = await session.connection()
        for model in chain.LOGS.values():
            table = model.__table__  # type: ignore[attr-defined]
            plain = {row.id: row._mapping for row in await conn.execute(select(table))}
            for entry in (await session.exec(select(model))).scalars():  # type: ignore[call-overload]
                columns = {name: value for name, value in plain[entry.id].items() if name not in ("id", "mac")}
                assert canonical_json(columns) == canonical(entry)
    assert any("𝄞" in change["entity_id"] for change in ODD_CHANGES)
    report = await verify(app)
    assert report.ok and report.checked == logged == report.sealed


async def test_orjson_writes_the_canonical_form_but_where_it_differs_the_writers_encoder_decides(app, logged):
    async with app.state.sessionmaker() as session:
        conn = await session.connection()
        batch = await chain_verify._read(conn, after=0, upto=None, size=chain_verify.BATCH)
    assert batch is not None
    batch.unpack()
    entries = batch.entries
    keyed = chain_verify.Keyed(app.state.sessionmaker.kw["info"][MAC_KEY].mac)
    fast_differs = 0
    for (log_name, _), (columns, raw, mac) in entries.items():
        exact = columns if raw is None else {**columns, chain_verify.JSON_COLUMNS[log_name]: json.loads(raw)}
        fast = orjson.dumps(columns, option=chain_verify.SORTED, default=plain_value).decode()
        fast_differs += fast != canonical_json(exact)
        assert chain_verify._mac_holds(keyed, log_name, columns, raw, mac)
        assert not chain_verify._mac_holds(keyed, log_name, {**columns, "actor": columns["actor"] + "."}, None, mac)
    assert fast_differs == 1  # the odd entry; every other one takes the fast path


async def test_the_odd_change_entry_verifies_and_a_one_character_edit_is_caught(app, logged):
    assert (await verify(app)).ok
    (odd,) = await rows(
        app,
        "SELECT c.position FROM audit_chain c JOIN change_event e ON e.id = c.entry_id"
        " WHERE c.log = 'change' AND e.actor = 'ääkkönen'",
    )
    await tamper(app, "UPDATE change_event SET request_id = 'r-e' WHERE actor = 'ääkkönen'")
    report = await verify(app, batch=3)
    assert (report.ok, report.problem, report.first_broken_position) == (False, "entry_modified", odd["position"])


async def test_every_batch_size_gives_the_same_report(app, logged):
    reports = [dataclasses.asdict(await verify(app, batch=size)) for size in (1, 3, 4, logged, chain_verify.BATCH)]
    assert reports[0]["ok"] and reports[0]["head_position"] == logged
    assert all(report == reports[0] for report in reports)


@pytest.mark.parametrize("upto", [4, 5, 7])
async def test_a_prefix_ends_where_asked_inside_or_at_a_batch_boundary(app, logged, upto):
    report = await verify(app, upto=upto, batch=4)
    (link,) = await rows(app, "SELECT chain_hash FROM audit_chain WHERE position = :p", p=upto)
    assert report.ok and report.checked == report.head_position == upto and report.head_hash == link["chain_hash"]


TABLES = {"change": "change_event", "access": "access_log", "disclosure": "disclosure_log"}
DEPENDENTS = {  # rows that must go with an entry (foreign keys); disclosures come after their access entry
    "change": [("change_event_client", "event_id")],
    "access": [("access_log_client", "entry_id"), ("disclosure_log", "access_id")],
    "disclosure": [],
}


async def _link(app, position: int) -> dict:
    (link,) = await rows(app, "SELECT log, entry_id FROM audit_chain WHERE position = :p", p=position)
    return link


async def _modify_entry(app, position: int) -> None:
    link = await _link(app, position)
    await tamper(app, f"UPDATE {TABLES[link['log']]} SET actor = actor || '.' WHERE id = :id", id=link["entry_id"])


async def _rewrite_link(app, position: int) -> None:
    await tamper(app, "UPDATE audit_chain SET chain_hash = :h WHERE position = :p", h="f" * 64, p=position)


async def _delete_link(app, position: int) -> None:
    await tamper(app, "DELETE FROM audit_chain WHERE position = :p", p=position)


async def _delete_entry(app, position: int) -> None:
    link = await _link(app, position)
    for table, column in DEPENDENTS[link["log"]]:
        await tamper(app, f"DELETE FROM {table} WHERE {column} = :id", id=link["entry_id"])
    await tamper(app, f"DELETE FROM {TABLES[link['log']]} WHERE id = :id", id=link["entry_id"])


ATTACKS = {
    "entry_modified": _modify_entry,
    "chain_modified": _rewrite_link,
    "position_missing": _delete_link,
    "entry_deleted": _delete_entry,
}


@pytest.mark.parametrize("position", [4, 5, 8, 9])  # batches of 4: the last and first of a batch, twice
@pytest.mark.parametrize("problem", sorted(ATTACKS))
async def test_tampering_at_a_batch_boundary_is_reported_at_its_position(app, logged, problem, position):
    await ATTACKS[problem](app, position)
    report = await verify(app, batch=4)
    assert (report.ok, report.problem, report.first_broken_position) == (False, problem, position)
    assert report.checked == position - 1


@pytest.mark.parametrize("side", ["first", "last"])
async def test_a_missing_index_row_at_a_batch_boundary_is_reported_at_its_entrys_position(app, logged, side):
    indexed = await rows(
        app,
        "SELECT c.position, c.entry_id FROM audit_chain c JOIN access_log_client i ON i.entry_id = c.entry_id"
        " WHERE c.log = 'access' ORDER BY c.position",
    )
    chosen = indexed[0 if side == "first" else -1]
    position = chosen["position"]
    batch = position if side == "last" else position - 1  # the entry ends, or starts, the second batch
    await tamper(app, "DELETE FROM access_log_client WHERE entry_id = :id", id=chosen["entry_id"])
    report = await verify(app, batch=batch)
    assert (report.ok, report.problem, report.first_broken_position) == (False, "index_modified", position)


async def verify_in_stretches(app, parts: int) -> chain_verify.Report:
    """What ``silta audit verify --workers`` does in processes, here one stretch after the other."""
    async with app.state.sessionmaker() as session:
        stretches = await chain_verify.stretches(session, parts)
        assert len(stretches) == parts
        walks = [await chain_verify.walk(session, start=s, previous=p, upto=e, batch=3) for s, p, e in stretches]
        return await chain_verify.finish(session, walks, [end for *_, end in stretches])


async def test_stretches_walked_apart_give_the_report_of_one_walk(app, logged):
    whole = dataclasses.asdict(await verify(app))
    apart = [dataclasses.asdict(await verify_in_stretches(app, parts)) for parts in (2, 3)]
    assert whole["ok"] and apart == [whole, whole]


@pytest.mark.parametrize("where", ["last of the first", "first of the second", "inside the second"])
@pytest.mark.parametrize("problem", sorted(ATTACKS))
async def test_tampering_in_either_of_two_stretches_is_reported_at_its_position(app, logged, problem, where):
    async with app.state.sessionmaker() as session:
        (_, _, end), (start, _, _) = await chain_verify.stretches(session, 2)
    position = {"last of the first": end, "first of the second": start, "inside the second": start + 2}[where]
    await ATTACKS[problem](app, position)
    report = await verify_in_stretches(app, 2)
    assert (report.ok, report.problem, report.first_broken_position) == (False, problem, position)

"""What the database holds after a fault: were acknowledged writes kept, is anything half-written?"""

from __future__ import annotations

import json
import uuid
from collections import Counter
from dataclasses import dataclass
from typing import Any

import httpx
from sqlalchemy import create_engine, text

from app.db import sync_url
from tests.faults.servers import Server

# every table the load writes whose rows are named one by one in the change log (a client's
# responsibility periods are part of its registration entry: checked as "both periods or none")
ENTITIES = ("worker", "client", "assignment", "coordination_request", "compliance_gap")


def _id(value: Any) -> str:
    return str(uuid.UUID(str(value)))  # SQLite keeps UUIDs as 32 hex digits


@dataclass
class Stored:
    rows: dict[str, set[str]]
    periods: Counter[tuple[str, str]]
    named: set[tuple[str, str]]  # (entity type, id) of every change in the change log
    change_entries: int


def read_back(database_url: str) -> Stored:
    """Everything the checks need, read with the sync driver while no server writes."""
    engine = create_engine(sync_url(database_url))
    try:
        with engine.connect() as conn:
            rows = {
                table: {_id(v) for v in conn.execute(text(f"SELECT id FROM {table}")).scalars()} for table in ENTITIES
            }
            periods: Counter[tuple[str, str]] = Counter(
                (_id(client), responsibility)
                for client, responsibility in conn.execute(
                    text("SELECT client_id, responsibility FROM responsibility_period WHERE retracted_at IS NULL")
                )
            )
            named: set[tuple[str, str]] = set()
            entries = 0
            for (changes,) in conn.execute(text("SELECT changes FROM change_event")):
                entries += 1
                for change in json.loads(changes) if isinstance(changes, str) else changes:
                    if change["entity_type"] in ENTITIES:
                        named.add((change["entity_type"], _id(change["entity_id"])))
    finally:
        engine.dispose()
    return Stored(rows, periods, named, entries)


def found(acked: dict[str, list[str]], stored: Stored) -> dict[str, int]:
    """How many of the acknowledged ids of each kind are in the database."""
    return {kind: sum(1 for i in ids if i in stored.rows[kind]) for kind, ids in acked.items()}


def half_written(stored: Stored) -> list[str]:
    """Rows without their change entry, change entries without their row, clients without both periods."""
    problems = [
        f"{table} {row} has no change entry"
        for table in ENTITIES
        for row in stored.rows[table]
        if (table, row) not in stored.named
    ]
    problems += [f"change entry names {kind} {row}, which is not stored" for kind, row in stored.named - _all(stored)]
    for client in stored.rows["client"]:
        held = (stored.periods[(client, "organising")], stored.periods[(client, "residence")])
        if held != (1, 1):
            problems.append(f"client {client} has {held[0]} organising and {held[1]} residence periods")
    return problems


def _all(stored: Stored) -> set[tuple[str, str]]:
    return {(table, row) for table in ENTITIES for row in stored.rows[table]}


async def chain_verifies(server: Server) -> dict[str, Any]:
    """Through the running service: seal what is pending (a checkpoint), then verify the whole chain."""
    auditor = server.token("auditor")
    async with httpx.AsyncClient(base_url=server.url, timeout=60) as api:
        sealed = await api.post("/v1/audit/checkpoints", headers=auditor)
        assert sealed.status_code == 201, sealed.text
        verified = await api.get("/v1/audit/verify", headers=auditor)
    report: dict[str, Any] = verified.json()
    assert verified.status_code == 200 and report["ok"], report
    assert report["unsealed"] == 0 and report["checked"] == report["head_position"] > 0, report
    return report

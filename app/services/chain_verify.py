"""Verifying the chain (its design: ``app.services.chain``): every position, link, entry MAC and index row.

At millions of entries the work is reading and re-encoding the entries, so positions are read in
batches of plain rows (Core, no ORM objects), each batch's entries and index rows joined in by its
position range (one statement per log, whatever the batch size). The MACs are recomputed from those
rows with the writers' own canonical form (``audit.mac_message``) and HMACs keyed once. A batch is
checked in a worker thread while the next one is read, so the database and Python work at the same
time, and the service's event loop keeps answering while an auditor verifies.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import ColumnElement, select
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlmodel.ext.asyncio.session import AsyncSession

from app.models.audit import AccessEntryClient, ChainLink, ChangeEventClient
from app.security import read_checkpoint
from app.services.audit import mac_key, mac_message
from app.services.chain import GENESIS, LOGS, link_message, not_sealed

BATCH = 5_000  # chain positions read and checked at a time
CHAIN = ChainLink.__table__  # type: ignore[attr-defined]
INDEXES = {"change": (ChangeEventClient.__table__, "event_id"), "access": (AccessEntryClient.__table__, "entry_id")}  # type: ignore[attr-defined]

Entries = dict[tuple[str, int], tuple[dict[str, Any], str]]  # (log, id) -> (the MACed columns, the stored MAC)
Indexed = dict[tuple[str, int], set[str]]  # (log, id) -> the clients of its index rows


@dataclass
class Report:
    ok: bool
    checked: int = 0
    sealed: int = 0
    unsealed: int = 0
    head_position: int = 0
    head_hash: str = GENESIS
    first_broken_position: int | None = None
    problem: str | None = None
    forged_entries: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class _Batch:
    links: Sequence[Any]  # rows (position, log, entry_id, entry_mac, chain_hash) in position order
    entries: Entries
    indexed: Indexed


class Keyed:
    """HMAC-SHA256 under one key, its pads computed once: each message hashes a copy."""

    def __init__(self, key: bytes) -> None:
        self._keyed = hmac.new(key, digestmod=hashlib.sha256)

    def hexdigest(self, message: bytes) -> str:
        mac = self._keyed.copy()
        mac.update(message)
        return mac.hexdigest()


async def verify(session: AsyncSession, *, upto: int | None = None, batch: int = BATCH) -> Report:
    """Recompute the whole chain (in batches) and check every entry's MAC, sealed or not."""
    keyed = Keyed(mac_key(session))
    conn = await session.connection()
    report = Report(ok=True)
    expected, previous = 1, GENESIS
    current = await _read(conn, after=0, upto=upto, size=batch)
    while current is not None:
        checking = asyncio.ensure_future(asyncio.to_thread(_check_batch, keyed, current, expected, previous))
        following = await _read(conn, after=current.links[-1].position, upto=upto, size=batch)
        expected, previous, problem = await checking
        report.checked = expected - 1
        if problem:
            report.ok, report.first_broken_position, report.problem = False, expected, problem
            return report
        report.head_position, report.head_hash = current.links[-1].position, current.links[-1].chain_hash
        current = following
    report.sealed = report.head_position
    report.unsealed, report.forged_entries = await _check_unsealed(conn, keyed)
    if report.forged_entries:
        report.ok, report.problem = False, "forged_entry"
    return report


def _check_batch(keyed: Keyed, batch: _Batch, expected: int, previous: str) -> tuple[int, str, str | None]:
    """Walk the batch from position ``expected``: (the position reached, the hash before it, its problem)."""
    for link in batch.links:
        problem = _check(keyed, link, expected, previous, batch.entries) or _check_index(link, batch)
        if problem:
            return expected, previous, problem
        previous, expected = link.chain_hash, expected + 1
    return expected, previous, None


def _check(keyed: Keyed, link: Any, expected: int, previous: str, entries: Entries) -> str | None:
    position, log_name, entry_id, linked_mac, chain_hash = link
    if position != expected:
        return "position_missing"
    entry = entries.get((log_name, entry_id))
    if entry is None:
        return "entry_deleted"
    columns, mac = entry
    if keyed.hexdigest(mac_message(log_name, columns)) != mac or mac != linked_mac:
        return "entry_modified"
    if keyed.hexdigest(link_message(previous, log_name, entry_id, linked_mac)) != chain_hash:
        return "chain_modified"
    return None


def _check_index(link: Any, batch: _Batch) -> str | None:
    """The index rows must name exactly the clients the (MACed) entry names."""
    columns, _ = batch.entries[(link.log, link.entry_id)]
    if link.log == "change":
        named = {change["client_id"] for change in columns["changes"] if change.get("client_id")}
    elif link.log == "access":
        named = set(columns["client_ids"])
    else:
        return None
    return None if named == batch.indexed.get((link.log, link.entry_id), set()) else "index_modified"


async def _read(conn: AsyncConnection, *, after: int, upto: int | None, size: int) -> _Batch | None:
    """The next ``size`` positions after ``after``, with their entries and index rows."""
    statement = select(CHAIN.c.position, CHAIN.c.log, CHAIN.c.entry_id, CHAIN.c.entry_mac, CHAIN.c.chain_hash)
    statement = statement.where(CHAIN.c.position > after).order_by(CHAIN.c.position).limit(size)
    if upto is not None:
        statement = statement.where(CHAIN.c.position <= upto)
    links = (await conn.execute(statement)).all()
    if not links:
        return None
    span = CHAIN.c.position.between(links[0].position, links[-1].position)
    return _Batch(links, await _entries(conn, span), await _indexed_clients(conn, span))


async def _entries(conn: AsyncConnection, span: ColumnElement[bool]) -> Entries:
    """The entries the chain names in ``span``, as plain columns (what ``audit.canonical`` MACs)."""
    found: Entries = {}
    for log_name, model in LOGS.items():
        table = model.__table__  # type: ignore[attr-defined]
        named = (CHAIN.c.log == log_name) & (CHAIN.c.entry_id == table.c.id)
        for entry_id, columns, mac in _split(await conn.execute(select(table).join(CHAIN, named).where(span))):
            found[(log_name, entry_id)] = (columns, mac)
    return found


def _split(result: Any) -> list[tuple[int, dict[str, Any], str]]:
    """(id, the other columns but ``mac``, mac) of each row of an entry table."""
    names = list(result.keys())
    rows = []
    for row in result.all():
        columns = dict(zip(names, row, strict=True))
        rows.append((columns.pop("id"), columns, columns.pop("mac")))
    return rows


async def _indexed_clients(conn: AsyncConnection, span: ColumnElement[bool]) -> Indexed:
    """The per-client index rows of the entries in ``span`` (what access reports and filters rely on)."""
    found: Indexed = {}
    for log_name, (table, column) in INDEXES.items():
        named = (CHAIN.c.log == log_name) & (CHAIN.c.entry_id == table.c[column])
        statement = select(table.c[column], table.c.client_id).join(CHAIN, named).where(span)
        for entry_id, client_id in (await conn.execute(statement)).all():
            found.setdefault((log_name, entry_id), set()).add(str(client_id))
    return found


async def _check_unsealed(conn: AsyncConnection, keyed: Keyed) -> tuple[int, list[dict[str, Any]]]:
    """How many entries are not sealed yet, and those among them forged (bad MAC) or replayed (a sealed MAC)."""
    count, forged = 0, []
    for log_name, model in LOGS.items():
        table = model.__table__  # type: ignore[attr-defined]
        statement = select(table).where(not_sealed(model, log_name)).order_by(table.c.id)
        entries = _split(await conn.execute(statement))
        sealed_macs = await _sealed_macs(conn, [mac for _, _, mac in entries])
        count += len(entries)
        forged += await asyncio.to_thread(_forged, keyed, log_name, entries, sealed_macs)
    return count, forged


async def _sealed_macs(conn: AsyncConnection, macs: list[str]) -> set[str]:
    found: set[str] = set()
    for start in range(0, len(macs), BATCH):
        chunk = macs[start : start + BATCH]
        found.update((await conn.execute(select(CHAIN.c.entry_mac).where(CHAIN.c.entry_mac.in_(chunk)))).scalars())
    return found


def _forged(
    keyed: Keyed, log_name: str, entries: list[tuple[int, dict[str, Any], str]], sealed_macs: set[str]
) -> list[dict[str, Any]]:
    forged = []
    for entry_id, columns, mac in entries:
        if keyed.hexdigest(mac_message(log_name, columns)) != mac:
            forged.append({"log": log_name, "id": entry_id, "why": "mac"})
        elif mac in sealed_macs:
            forged.append({"log": log_name, "id": entry_id, "why": "replayed"})
    return forged


async def verify_checkpoint(session: AsyncSession, private_pem: bytes, signature: str) -> dict[str, Any]:
    """Is the signed checkpoint ours, and does the chain still hold its hash at its position?"""
    claims = read_checkpoint(private_pem, signature)
    if claims is None or not isinstance(claims.get("position"), int):
        return {"valid": False, "reason": "the signature does not hold"}
    position = claims["position"]
    report = await verify(session, upto=position)
    if not report.ok:
        return {"valid": False, "reason": report.problem, "first_broken_position": report.first_broken_position}
    if report.head_position != position or report.head_hash != claims.get("chain_hash"):
        return {"valid": False, "reason": "the chain no longer holds this hash at this position"}
    return {"valid": True, "position": position, "chain_hash": report.head_hash, "issued_at": claims.get("issued_at")}

"""Verifying the chain (its design: ``app.services.chain``): every position, link, entry MAC and index row.

At millions of entries the work is reading and re-encoding the entries, so positions are read in
batches of plain rows (Core, no ORM objects), each batch's entries and index rows joined in by its
position range (one statement per log, whatever the batch size). The MACs are recomputed from those
rows with HMACs keyed once, and with orjson: its sorted compact output is byte for byte the writers'
canonical form (``audit.canonical_json``) for what the logs hold, and at a third of the cost. Where
the two might differ (a float's exponent, an integer beyond 64 bits), an entry whose orjson form
misses its MAC is decided by the writers' encoder over the column parsed by ``json`` — so the
verdict is always the writers' canonical form's: a byte-identical match proves the entry unchanged,
and a mismatch is only ever reported by the exact form. A batch is checked in a worker thread while
the next one is read, so the database and Python work at the same time, and the service's event loop
keeps answering while an auditor verifies.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson
from sqlalchemy import ColumnElement, Text, cast, func, select
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlmodel.ext.asyncio.session import AsyncSession

from app.models.audit import AccessEntryClient, ChainLink, ChangeEventClient
from app.security import read_checkpoint
from app.services.audit import mac_key, mac_message, plain_value
from app.services.chain import GENESIS, LOGS, link_message, not_sealed

BATCH = 5_000  # chain positions read and checked at a time
CHAIN = ChainLink.__table__  # type: ignore[attr-defined]
INDEXES = {"change": (ChangeEventClient.__table__, "event_id"), "access": (AccessEntryClient.__table__, "entry_id")}  # type: ignore[attr-defined]

JSON_COLUMNS = {"change": "changes", "access": "client_ids"}  # read as text, parsed here (orjson, json if need be)
SORTED = orjson.OPT_SORT_KEYS | orjson.OPT_PASSTHROUGH_DATETIME  # timestamps go to plain_value, as in the writers'

Entries = dict[tuple[str, int], tuple[dict[str, Any], str | None, str]]  # (log, id) -> (columns, JSON text, MAC)
Indexed = dict[tuple[str, int], set[str]]  # (log, id) -> the clients of its index rows
POSITION, LOG, ENTRY, MAC, HASH = range(5)  # the columns of a link as read


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
    """One batch as read: the links, and their entries' and index rows, unpacked by ``unpack`` (in the thread)."""

    links: Sequence[Any]  # rows (position, log, entry_id, entry_mac, chain_hash) in position order
    entry_rows: dict[str, tuple[list[str], Sequence[Any]]]  # log -> (column names, rows)
    index_rows: dict[str, Sequence[Any]]  # log -> rows (entry id, client id)
    entries: Entries = field(default_factory=dict)
    indexed: Indexed = field(default_factory=dict)

    def unpack(self) -> None:
        for log_name, (names, rows) in self.entry_rows.items():
            for entry_id, *entry in _split(log_name, names, rows):
                self.entries[(log_name, entry_id)] = tuple(entry)  # type: ignore[assignment]
        for log_name, rows in self.index_rows.items():
            for entry_id, client_id in rows:
                self.indexed.setdefault((log_name, entry_id), set()).add(str(client_id))


class Keyed:
    """HMAC-SHA256 under one key, its pads computed once: each message hashes a copy."""

    def __init__(self, key: bytes) -> None:
        self._keyed = hmac.new(key, digestmod=hashlib.sha256)

    def hexdigest(self, message: bytes) -> str:
        mac = self._keyed.copy()
        mac.update(message)
        return mac.hexdigest()


@dataclass
class Walk:
    """How far one stretch of the chain held: the next position due, the hash before it, the problem there."""

    expected: int
    previous: str
    problem: str | None = None
    head_position: int = 0
    head_hash: str = GENESIS


async def verify(session: AsyncSession, *, upto: int | None = None, batch: int = BATCH) -> Report:
    """Recompute the whole chain (in batches) and check every entry's MAC, sealed or not."""
    return await finish(session, [await walk(session, upto=upto, batch=batch)], ends=[upto])


async def walk(
    session: AsyncSession, *, start: int = 1, previous: str = GENESIS, upto: int | None = None, batch: int = BATCH
) -> Walk:
    """Check positions ``start``..``upto`` (or the end), ``previous`` being the stored hash before ``start``."""
    keyed = Keyed(mac_key(session))
    conn = await session.connection()
    done = Walk(start, previous)
    current = await _read(conn, after=start - 1, upto=upto, size=batch)
    while current is not None:
        checking = asyncio.ensure_future(asyncio.to_thread(_check_batch, keyed, current, done.expected, done.previous))
        following = await _read(conn, after=current.links[-1][POSITION], upto=upto, size=batch)
        done.expected, done.previous, done.problem = await checking
        if done.problem:
            return done
        done.head_position, done.head_hash = current.links[-1][POSITION], current.links[-1][HASH]
        current = following
    return done


async def finish(session: AsyncSession, walks: Sequence[Walk], ends: Sequence[int | None]) -> Report:
    """The report of consecutive walks (each but the last must reach its end), then the unsealed entries."""
    report = Report(ok=True)
    for index, (done, end) in enumerate(zip(walks, ends, strict=True)):
        report.checked = done.expected - 1
        short = index < len(walks) - 1 and end is not None and done.expected <= end  # its last positions are gone
        problem = done.problem or ("position_missing" if short else None)
        if problem:
            report.ok, report.first_broken_position, report.problem = False, done.expected, problem
            return report
        if done.head_position:
            report.head_position, report.head_hash = done.head_position, done.head_hash
    report.sealed = report.head_position
    report.unsealed, report.forged_entries = await _check_unsealed(await session.connection(), Keyed(mac_key(session)))
    if report.forged_entries:
        report.ok, report.problem = False, "forged_entry"
    return report


async def stretches(session: AsyncSession, parts: int) -> list[tuple[int, str, int | None]]:
    """The chain cut into ``parts`` consecutive stretches for ``walk`` in parallel: (start, stored hash before, end).

    Each link depends only on the hash stored before it, and the stretch before checks that very hash;
    ``finish`` reports a stretch that stops short of its end (its last positions gone). The last stretch
    runs on to the end of the chain as it is then.
    """
    conn = await session.connection()
    head = (await conn.execute(select(func.max(CHAIN.c.position)))).scalar() or 0
    starts = list(dict.fromkeys(1 + head * part // parts for part in range(parts)))
    before = select(CHAIN.c.position, CHAIN.c.chain_hash).where(CHAIN.c.position.in_([s - 1 for s in starts]))
    stored = {position: chain_hash for position, chain_hash in (await conn.execute(before)).all()}
    ends: list[int | None] = [start - 1 for start in starts[1:]] + [None]
    return [(start, stored.get(start - 1, GENESIS), end) for start, end in zip(starts, ends, strict=True)]


def _check_batch(keyed: Keyed, batch: _Batch, expected: int, previous: str) -> tuple[int, str, str | None]:
    """Walk the batch from position ``expected``: (the position reached, the hash before it, its problem)."""
    batch.unpack()
    for link in batch.links:
        problem = _check(keyed, link, expected, previous, batch.entries) or _check_index(link, batch)
        if problem:
            return expected, previous, problem
        previous, expected = link[HASH], expected + 1
    return expected, previous, None


def _check(keyed: Keyed, link: Any, expected: int, previous: str, entries: Entries) -> str | None:
    position, log_name, entry_id, linked_mac, chain_hash = link
    if position != expected:
        return "position_missing"
    entry = entries.get((log_name, entry_id))
    if entry is None:
        return "entry_deleted"
    columns, text, mac = entry
    if mac != linked_mac or not _mac_holds(keyed, log_name, columns, text, mac):
        return "entry_modified"
    if keyed.hexdigest(link_message(previous, log_name, entry_id, linked_mac)) != chain_hash:
        return "chain_modified"
    return None


def _check_index(link: Any, batch: _Batch) -> str | None:
    """The index rows must name exactly the clients the (MACed) entry names (strings, read by orjson as by json)."""
    key = (link[LOG], link[ENTRY])
    columns, _, _ = batch.entries[key]
    if key[0] == "change":
        named = {change["client_id"] for change in columns["changes"] if change.get("client_id")}
    elif key[0] == "access":
        named = set(columns["client_ids"])
    else:
        return None
    return None if named == batch.indexed.get(key, set()) else "index_modified"


async def _fetch(conn: AsyncConnection, statement: Any) -> tuple[list[str], Sequence[Any]]:
    """The statement's column names and rows (indexable tuples). On PostgreSQL straight from asyncpg,
    which decodes rows in C: SQLAlchemy's per-value result processing was a third of the reading (issue 9).
    Its values are what the writers hashed either way: timestamps aware in UTC, UUIDs that print alike."""
    names = [column.name for column in statement.selected_columns]
    if conn.dialect.name != "postgresql":
        return names, (await conn.execute(statement)).all()
    compiled = statement.compile(dialect=conn.dialect)
    values = compiled.construct_params()
    driver = (await conn.get_raw_connection()).driver_connection
    assert driver is not None
    return names, await driver.fetch(compiled.string, *(values[name] for name in compiled.positiontup or ()))


async def _read(conn: AsyncConnection, *, after: int, upto: int | None, size: int) -> _Batch | None:
    """The next ``size`` positions after ``after``, with their entries and index rows."""
    statement = select(CHAIN.c.position, CHAIN.c.log, CHAIN.c.entry_id, CHAIN.c.entry_mac, CHAIN.c.chain_hash)
    statement = statement.where(CHAIN.c.position > after).order_by(CHAIN.c.position).limit(size)
    if upto is not None:
        statement = statement.where(CHAIN.c.position <= upto)
    _, links = await _fetch(conn, statement)
    if not links:
        return None
    span = CHAIN.c.position.between(links[0][POSITION], links[-1][POSITION])
    return _Batch(links, await _entry_rows(conn, span), await _index_rows(conn, span))


async def _entry_rows(conn: AsyncConnection, span: ColumnElement[bool]) -> dict[str, tuple[list[str], Sequence[Any]]]:
    """The rows of the entries the chain names in ``span``, per log, with their column names."""
    found = {}
    for log_name in LOGS:
        table = LOGS[log_name].__table__  # type: ignore[attr-defined]
        named = (CHAIN.c.log == log_name) & (CHAIN.c.entry_id == table.c.id)
        found[log_name] = await _fetch(conn, _columns(log_name).join(CHAIN, named).where(span))
    return found


def _columns(log_name: str) -> Any:
    """Every column of the log's table, its JSON column as the text the database holds."""
    table = LOGS[log_name].__table__  # type: ignore[attr-defined]
    text = JSON_COLUMNS.get(log_name)
    return select(*(cast(c, Text).label(c.name) if c.name == text else c for c in table.columns))


def _split(log_name: str, names: list[str], rows: Sequence[Any]) -> list[tuple[int, dict[str, Any], str | None, str]]:
    """(id, the other columns but ``mac``, the JSON column's text, mac) of each row of an entry table."""
    json_column, split = JSON_COLUMNS.get(log_name), []
    for row in rows:
        columns = dict(zip(names, row, strict=True))
        text = columns[json_column] if json_column else None
        if json_column:
            columns[json_column] = _parse(text)
        split.append((columns.pop("id"), columns, text, columns.pop("mac")))
    return split


def _parse(text: str | None) -> Any:
    try:
        return None if text is None else orjson.loads(text)
    except orjson.JSONDecodeError:  # e.g. 1E400, which json reads as inf
        return json.loads(text)  # type: ignore[arg-type]


def _mac_holds(keyed: Keyed, log_name: str, columns: dict[str, Any], text: str | None, mac: str) -> bool:
    """Do the entry's columns still hash to its MAC? (orjson first, the writers' encoder decides: see above)"""
    try:
        fast = orjson.dumps(columns, option=SORTED, default=plain_value)
    except orjson.JSONEncodeError:
        fast = None
    if fast is not None and keyed.hexdigest(log_name.encode() + b"\n" + fast) == mac:
        return True
    exact = columns if text is None else {**columns, JSON_COLUMNS[log_name]: json.loads(text)}
    return keyed.hexdigest(mac_message(log_name, exact)) == mac


async def _index_rows(conn: AsyncConnection, span: ColumnElement[bool]) -> dict[str, Sequence[Any]]:
    """The per-client index rows of the entries in ``span`` (what access reports and filters rely on)."""
    found = {}
    for log_name, (table, column) in INDEXES.items():
        named = (CHAIN.c.log == log_name) & (CHAIN.c.entry_id == table.c[column])
        statement = select(table.c[column], table.c.client_id).join(CHAIN, named).where(span)
        found[log_name] = (await _fetch(conn, statement))[1]
    return found


async def _check_unsealed(conn: AsyncConnection, keyed: Keyed) -> tuple[int, list[dict[str, Any]]]:
    """How many entries are not sealed yet, and those among them forged (bad MAC) or replayed (a sealed MAC)."""
    count, forged = 0, []
    for log_name, model in LOGS.items():
        table = model.__table__  # type: ignore[attr-defined]
        result = await conn.execute(_columns(log_name).where(not_sealed(model, log_name)).order_by(table.c.id))
        entries = _split(log_name, list(result.keys()), result.all())
        sealed_macs = await _sealed_macs(conn, [mac for *_, mac in entries])
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
    keyed: Keyed, log_name: str, entries: list[tuple[int, dict[str, Any], str | None, str]], sealed_macs: set[str]
) -> list[dict[str, Any]]:
    forged = []
    for entry_id, columns, text, mac in entries:
        if not _mac_holds(keyed, log_name, columns, text, mac):
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

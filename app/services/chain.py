"""The tamper-evident chain over the audit logs: sealing, verifying, signed checkpoints.

Design. Writing a log entry never waits for the chain: requests insert their entries (each with
a MAC, see ``app.services.audit``) concurrently, and a *sealer* appends them to ``audit_chain``
shortly afterwards, in batches. Position ``n`` of the chain names one entry (log and id), repeats
its MAC, and stores ``hash_n = SHA-256(hash_{n-1} | log | entry id | MAC)``. Only the sealer
writes the chain, one at a time: PostgreSQL's transaction-scoped advisory lock (SQLite already
serialises writers), so several processes may each run a sealer.

No entry is lost to a late commit. Entry ids are handed out at insert, and a transaction may
commit after one with a higher id has been sealed. The sealer therefore does not keep a
high-water mark: it looks for entries *not in the chain* (an anti-join on the chain's unique
(log, entry_id) index) among the most recent ids of each log — a window of ``LOOKBACK`` ids
below the highest id already sealed, which a transaction would have to fall behind by thousands
of entries to escape; ``verify`` checks the whole of every log and reports anything unsealed,
and ``seal(session, full=True)`` sweeps the whole log.

What ``verify`` detects: an entry modified after sealing (its MAC no longer matches its
content), an entry deleted (its position names a missing entry), a chain row deleted or inserted
(positions stop being contiguous, or the running hash breaks), and an entry inserted with raw
SQL (no valid MAC without the key: reported as forged, sealed or not). It reports the first
broken position and how many entries are not sealed yet. A *checkpoint* is the head (position,
hash, time) signed with the audit key (ES256); an auditor stores it elsewhere, and later
``verify_checkpoint`` proves the chain still holds that hash at that position.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import exists, func, insert
from sqlmodel import SQLModel, col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from app.models.audit import AccessEntry, AccessEntryClient, ChainLink, ChangeEvent, ChangeEventClient, Disclosure
from app.models.common import utcnow
from app.security import read_checkpoint, sign_checkpoint
from app.services.audit import entry_mac, mac_key

log = logging.getLogger("silta.audit")

LOGS: dict[str, type[SQLModel]] = {"change": ChangeEvent, "access": AccessEntry, "disclosure": Disclosure}
GENESIS = "0" * 64
LOOKBACK = 10_000
BATCH = 5_000
ROUNDS = 20  # batches per call of the background sealer
SEAL_LOCK = 0x5117A  # the advisory lock key of the sealer


def link_hash(key: bytes, previous: str, log_name: str, entry_id: int, mac: str) -> str:
    """Keyed (HMAC-SHA256), so the chain cannot be recomputed after an edit without the audit key."""
    return hmac.new(key, f"{previous}|{log_name}|{entry_id}|{mac}".encode(), hashlib.sha256).hexdigest()


async def _head(session: AsyncSession) -> tuple[int, str]:
    row = (await session.exec(select(ChainLink).order_by(col(ChainLink.position).desc()).limit(1))).first()
    return (row.position, row.chain_hash) if row else (0, GENESIS)


def _unsealed(model: Any, log_name: str) -> Any:
    return ~exists(select(ChainLink.position).where(ChainLink.log == log_name, ChainLink.entry_id == model.id))


async def seal(session: AsyncSession, *, full: bool = False) -> int:
    """Append the unsealed entries to the chain (oldest first), one committed batch at a time.

    Each batch is its own short transaction (taking the sealer lock anew), so under sustained
    load the chain advances batch by batch instead of holding one transaction and the lock for as
    long as entries keep arriving; one call seals at most ``ROUNDS`` batches unless ``full``.
    """
    total = 0
    for _ in range(ROUNDS if not full else 1_000_000):
        sealed, more = await _seal_batch(session, full=full)
        await session.commit()
        total += sealed
        if not more:
            break
    return total


async def _seal_batch(session: AsyncSession, *, full: bool) -> tuple[int, bool]:
    """Seal one batch; returns (how many were sealed, whether a full batch was found)."""
    if session.bind is not None and session.bind.dialect.name == "postgresql":
        await session.exec(select(func.pg_advisory_xact_lock(SEAL_LOCK)))
    key = mac_key(session)
    position, previous = await _head(session)
    pending: list[tuple[dt.datetime, str, int, str]] = []
    for log_name, model in LOGS.items():
        statement = select(model.id, model.occurred_at, model.mac).where(_unsealed(model, log_name))  # type: ignore[attr-defined]
        if not full:
            highest = (await session.exec(select(func.max(ChainLink.entry_id)).where(ChainLink.log == log_name))).one()
            if highest is not None:
                statement = statement.where(model.id > highest - LOOKBACK)  # type: ignore[attr-defined]
        rows = await session.exec(statement.order_by(model.id).limit(BATCH))  # type: ignore[attr-defined]
        pending += [(occurred, log_name, entry_id, mac) for entry_id, occurred, mac in rows]
    batch = sorted(pending)[:BATCH]
    replayed = set(
        await session.exec(select(ChainLink.entry_mac).where(col(ChainLink.entry_mac).in_([b[3] for b in batch])))
    )
    links = []
    now = utcnow()
    for _, log_name, entry_id, mac in batch:
        if mac in replayed:  # a copy of an entry already sealed: left out, and reported by verify
            continue
        replayed.add(mac)
        position += 1
        previous = link_hash(key, previous, log_name, entry_id, mac)
        links.append(
            {
                "position": position,
                "log": log_name,
                "entry_id": entry_id,
                "entry_mac": mac,
                "chain_hash": previous,
                "sealed_at": now,
            }
        )
    if links:
        await session.exec(insert(ChainLink).values(links))
    return len(links), len(links) == BATCH


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


async def verify(session: AsyncSession, *, upto: int | None = None) -> Report:
    """Recompute the whole chain (in batches) and check every entry's MAC, sealed or not."""
    key = mac_key(session)
    report = Report(ok=True)
    expected, previous = 1, GENESIS
    while True:
        statement = select(ChainLink).where(col(ChainLink.position) >= expected).order_by(col(ChainLink.position))
        if upto is not None:
            statement = statement.where(col(ChainLink.position) <= upto)
        links = (await session.exec(statement.limit(BATCH))).all()
        if not links:
            break
        entries = await _entries(session, links)
        indexed = await _indexed_clients(session, links)
        for link in links:
            problem = _check(link, expected, previous, entries, key) or _check_index(link, entries, indexed)
            if problem:
                report.ok, report.first_broken_position, report.problem = False, expected, problem
                return report
            previous, expected, report.checked = link.chain_hash, expected + 1, expected
        report.head_position, report.head_hash = links[-1].position, links[-1].chain_hash
    report.sealed = report.head_position
    for log_name, model in LOGS.items():
        unsealed = (await session.exec(select(model).where(_unsealed(model, log_name)).order_by(model.id))).all()  # type: ignore[attr-defined]
        report.unsealed += len(unsealed)
        macs = [entry.mac for entry in unsealed]  # type: ignore[attr-defined]
        sealed_macs = set(await session.exec(select(ChainLink.entry_mac).where(col(ChainLink.entry_mac).in_(macs))))
        for entry in unsealed:
            if entry_mac(key, log_name, entry) != entry.mac:  # type: ignore[attr-defined]
                report.forged_entries.append({"log": log_name, "id": entry.id, "why": "mac"})  # type: ignore[attr-defined]
            elif entry.mac in sealed_macs:  # type: ignore[attr-defined]
                report.forged_entries.append({"log": log_name, "id": entry.id, "why": "replayed"})  # type: ignore[attr-defined]
    if report.forged_entries:
        report.ok, report.problem = False, "forged_entry"
    return report


async def _indexed_clients(session: AsyncSession, links: Sequence[ChainLink]) -> dict[tuple[str, int], set[str]]:
    """The per-client index rows of the entries in ``links`` (what access reports and filters rely on)."""
    found: dict[tuple[str, int], set[str]] = {}
    for log_name, table, column in (
        ("change", ChangeEventClient, ChangeEventClient.event_id),
        ("access", AccessEntryClient, AccessEntryClient.entry_id),
    ):
        ids = [link.entry_id for link in links if link.log == log_name]
        if ids:
            for entry_id, client_id in await session.exec(
                select(col(column), col(table.client_id)).where(col(column).in_(ids))
            ):
                found.setdefault((log_name, entry_id), set()).add(str(client_id))
    return found


def _check_index(
    link: ChainLink, entries: dict[tuple[str, int], Any], indexed: dict[tuple[str, int], set[str]]
) -> str | None:
    """The index rows must name exactly the clients the (MACed) entry names."""
    entry = entries[(link.log, link.entry_id)]
    if link.log == "change":
        named = {change["client_id"] for change in entry.changes if change.get("client_id")}
    elif link.log == "access":
        named = set(entry.client_ids)
    else:
        return None
    return None if named == indexed.get((link.log, link.entry_id), set()) else "index_modified"


async def _entries(session: AsyncSession, links: Sequence[ChainLink]) -> dict[tuple[str, int], Any]:
    found: dict[tuple[str, int], Any] = {}
    for log_name, model in LOGS.items():
        ids = [link.entry_id for link in links if link.log == log_name]
        if ids:
            for entry in await session.exec(select(model).where(col(model.id).in_(ids))):  # type: ignore[attr-defined]
                found[(log_name, entry.id)] = entry  # type: ignore[attr-defined]
    return found


def _check(
    link: ChainLink, expected: int, previous: str, entries: dict[tuple[str, int], Any], key: bytes
) -> str | None:
    if link.position != expected:
        return "position_missing"
    entry = entries.get((link.log, link.entry_id))
    if entry is None:
        return "entry_deleted"
    if entry_mac(key, link.log, entry) != entry.mac or entry.mac != link.entry_mac:
        return "entry_modified"
    if link_hash(key, previous, link.log, link.entry_id, link.entry_mac) != link.chain_hash:
        return "chain_modified"
    return None


async def checkpoint(session: AsyncSession, private_pem: bytes) -> dict[str, Any]:
    """Seal what is pending, then sign the head of the chain."""
    await seal(session)
    position, head = await _head(session)
    claims = {"position": position, "chain_hash": head, "issued_at": utcnow().isoformat(), "iss": "silta-audit"}
    return {**claims, "signature": sign_checkpoint(private_pem, claims)}


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

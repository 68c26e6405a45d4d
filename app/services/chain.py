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

What ``verify`` (in ``app.services.chain_verify``) detects: an entry modified after sealing (its
MAC no longer matches its content), an entry deleted (its position names a missing entry), a chain
row deleted or inserted (positions stop being contiguous, or the running hash breaks), and an entry
inserted with raw SQL (no valid MAC without the key: reported as forged, sealed or not). It reports
the first broken position and how many entries are not sealed yet. A *checkpoint* is the head (position,
hash, time) signed with the audit key (ES256); an auditor stores it elsewhere, and later
``verify_checkpoint`` proves the chain still holds that hash at that position.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import logging
from typing import Any

from sqlalchemy import exists, func, insert
from sqlmodel import SQLModel, col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from app.models.audit import AccessEntry, ChainLink, ChangeEvent, Disclosure
from app.models.common import utcnow
from app.security import sign_checkpoint
from app.services.audit import mac_key

log = logging.getLogger("silta.audit")

LOGS: dict[str, type[SQLModel]] = {"change": ChangeEvent, "access": AccessEntry, "disclosure": Disclosure}
GENESIS = "0" * 64
LOOKBACK = 10_000
BATCH = 5_000
ROUNDS = 20  # batches per call of the background sealer
SEAL_LOCK = 0x5117A  # the advisory lock key of the sealer


def link_hash(key: bytes, previous: str, log_name: str, entry_id: int, mac: str) -> str:
    """Keyed (HMAC-SHA256), so the chain cannot be recomputed after an edit without the audit key."""
    return hmac.new(key, link_message(previous, log_name, entry_id, mac), hashlib.sha256).hexdigest()


def link_message(previous: str, log_name: str, entry_id: int, mac: str) -> bytes:
    """What a link's hash covers: the hash before it and its entry (log, id, MAC)."""
    return f"{previous}|{log_name}|{entry_id}|{mac}".encode()


async def _head(session: AsyncSession) -> tuple[int, str]:
    row = (await session.exec(select(ChainLink).order_by(col(ChainLink.position).desc()).limit(1))).first()
    return (row.position, row.chain_hash) if row else (0, GENESIS)


def not_sealed(model: Any, log_name: str) -> Any:
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
        statement = select(model.id, model.occurred_at, model.mac).where(not_sealed(model, log_name))  # type: ignore[attr-defined]
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
    if links:  # executemany of one cached statement: a multi-row VALUES would be compiled anew every batch,
        # thousands of bind parameters long — a stall of the event loop the requests wait behind
        await (await session.connection()).execute(insert(ChainLink), links)
    return len(links), len(links) == BATCH


async def checkpoint(session: AsyncSession, private_pem: bytes) -> dict[str, Any]:
    """Seal what is pending, then sign the head of the chain."""
    await seal(session)
    position, head = await _head(session)
    claims = {"position": position, "chain_hash": head, "issued_at": utcnow().isoformat(), "iss": "silta-audit"}
    return {**claims, "signature": sign_checkpoint(private_pem, claims)}

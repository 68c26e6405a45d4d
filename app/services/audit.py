"""Writing the audit logs: one change entry per write, access and disclosure entries per read.

Changes: services call ``record_change`` for every entity they touch; the changes wait in the
session and, when the transaction commits, become ONE change entry (with the list of changes
and every client touched) written in that same transaction — so a write and its log entry
commit together or not at all, and a rolled-back write leaves no entry.

Accesses: routes that answer with a client's personal data call ``AccessLog.record`` with the
clients in the answer; that writes one access entry, one index row per client and a disclosure
entry for each client whose organising region is not the caller's — a fixed number of
statements whatever the number of clients.

Every entry carries a MAC (HMAC-SHA256 over its canonical JSON, keyed from the audit key) so
that an entry forged without the key is detectable before it is sealed into the chain.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
import uuid
from collections.abc import Iterable
from functools import cache, cached_property
from pathlib import Path
from typing import Any

from pydantic import BaseModel
from sqlalchemy import Select, Uuid, bindparam, event, func
from sqlalchemy.dialects import postgresql
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlmodel import Session, SQLModel, col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from app.db import in_autocommit
from app.domain.access import Caller
from app.models.audit import AccessEntry, AccessEntryClient, ChangeEvent, ChangeEventClient, Disclosure
from app.models.client import ResponsibilityPeriod
from app.models.common import utcnow
from app.security import ensure_ec_key
from app.services import feed
from app.services.clock import today

NEVER_LOGGED = frozenset({"personal_id", "personal_id_hash", "personal_id_cipher", "personal_id_key", "secret"})
PENDING, CALLER, MAC_KEY = "silta.changes", "silta.caller", "silta.mac_key"
ORGANISING_TODAY = "silta.organising_today"  # session cache: client id -> organising region (note_organisers)
NO_CHANGE_LOG = "silta.no_change_log"  # set only by benchmarks measuring what the change log costs


class AuditKey:
    """The audit key (EC P-256 PEM), read — or, without a configured file, created — on first use.

    It signs checkpoints, and the entries' MAC key is derived from it so one secret protects both.
    """

    def __init__(self, path: Path, *, create: bool) -> None:
        self.path, self.create = path, create

    @cached_property
    def pem(self) -> bytes:
        return (ensure_ec_key(self.path) if self.create else self.path).read_bytes()

    @cached_property
    def mac(self) -> bytes:
        return hashlib.sha256(b"silta-audit-mac\0" + self.pem).digest()


def snapshot(row: SQLModel | BaseModel | None) -> dict[str, Any] | None:
    """A JSON-safe copy of a row for before/after, without identity codes."""
    if row is None:
        return None
    return row.model_dump(mode="json", exclude=set(NEVER_LOGGED), warnings=False)


def canonical(row: SQLModel) -> str:
    """The entry as it is MACed: every column but ``id`` and ``mac``, keys sorted, UTC timestamps."""
    return canonical_json(_macced_columns(row))


def _macced_columns(row: SQLModel) -> dict[str, Any]:
    return row.model_dump(mode="python", exclude={"id", "mac"})


def plain_value(value: Any) -> str:
    """How the canonical form writes what JSON has no type for: timestamps in UTC, anything else as str."""
    if isinstance(value, dt.datetime):
        return value.astimezone(dt.UTC).isoformat()
    return str(value)


# json.dumps(data, **these) builds this very encoder for every call; built once, it encodes the same bytes
_CANONICAL = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=plain_value)


def canonical_json(columns: dict[str, Any]) -> str:
    """The canonical form of an entry's columns (without ``id`` and ``mac``), from a model or a plain row."""
    return _CANONICAL.encode(columns)


def mac_message(log: str, columns: dict[str, Any]) -> bytes:
    """What an entry's MAC covers: its log's name and its canonical form."""
    return f"{log}\n{canonical_json(columns)}".encode()


def entry_mac(key: bytes, log: str, row: SQLModel) -> str:
    return columns_mac(key, log, _macced_columns(row))


def columns_mac(key: bytes, log: str, columns: dict[str, Any]) -> str:
    """``entry_mac`` of an entry given as its columns (all of them but ``id`` and ``mac``)."""
    return hmac.new(key, mac_message(log, columns), hashlib.sha256).hexdigest()


def mac_key(session: AsyncSession | Session) -> bytes:
    key = session.info.get(MAC_KEY)
    if not isinstance(key, AuditKey):
        raise RuntimeError("the session has no audit key (sessions come from the app's sessionmaker)")
    return key.mac


# --- changes ------------------------------------------------------------------------------------


def record_change(
    session: AsyncSession,
    caller: Caller,
    *,
    action: str,
    entity: SQLModel,
    client_id: uuid.UUID | None,
    before: dict[str, Any] | None = None,
    after: dict[str, Any] | None = None,
) -> None:
    """Note one changed entity; the transaction's commit writes them as one change entry."""
    session.info.setdefault(PENDING, []).append(change_record(action, entity, client_id, before=before, after=after))
    session.info.setdefault(CALLER, caller)


def change_record(
    action: str,
    entity: SQLModel,
    client_id: uuid.UUID | None,
    *,
    before: dict[str, Any] | None = None,
    after: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """One changed entity as a change entry lists it (``after`` defaults to the entity now)."""
    entity_id = getattr(entity, "id", None) or getattr(entity, "code", None)
    return {
        "action": action,
        "entity_type": type(entity).__tablename__,
        "entity_id": str(entity_id),
        "client_id": str(client_id) if client_id else None,
        "before": before,
        "after": after if after is not None else snapshot(entity),
    }


class AuditedSession(Session):
    """The ORM session of every request: its commit writes the pending change entry."""


@event.listens_for(AuditedSession, "before_commit")
def _write_change_entry(session: Session) -> None:
    changes: list[dict[str, Any]] = session.info.pop(PENDING, [])
    caller: Caller | None = session.info.pop(CALLER, None)
    if changes and caller is not None:
        write_changes(session, caller, [changes])


def write_changes(session: Session, caller: Caller, writes: list[list[dict[str, Any]]]) -> None:
    """Write one change entry for each write's changes, then their feed events, in a few statements.

    The commit hook writes one write's; a bulk import many lines' at once (``app.services.import_bulk``).
    """
    ids = [None] * len(writes) if session.info.get(NO_CHANGE_LOG) else _change_entries(session, caller, writes)
    feed.publish(session, list(zip(writes, ids, strict=True)))  # last: it takes the feed's per-region locks


def _change_entries(session: Session, caller: Caller, writes: list[list[dict[str, Any]]]) -> list[int | None]:
    key, actor = mac_key(session), actor_columns(caller)
    entries, touched = [], []
    for changes in writes:
        first = changes[0]
        clients = [uuid.UUID(client) for client in dict.fromkeys(c["client_id"] for c in changes if c["client_id"])]
        entry: dict[str, Any] = {  # ChangeEvent's columns, inserted as they are MACed (no ORM instance)
            **actor,
            "occurred_at": utcnow(),
            "action": first["action"],
            "entity_type": first["entity_type"],
            "entity_id": first["entity_id"],
            "client_id": clients[0] if clients else None,
            "changes": changes,
        }
        entry["mac"] = columns_mac(key, "change", entry)
        entries.append(entry)
        touched.append(clients)
    if len(entries) == 1 and session.get_bind().dialect.name == "postgresql":  # a request's write
        return [session.execute(_with_clients("change"), {**entries[0], "client_id_list": touched[0]}).scalar_one()]
    # RETURNING in any order, matched by the MACs (unique: each covers rows and a time of its own), so
    # that SQLite, too, inserts them in one executemany rather than one statement per entry
    inserted = dict(session.execute(INSERT_CHANGE, entries).all())
    if len(inserted) != len(entries):
        raise RuntimeError("two change entries with the same MAC")  # each entry names its own new rows
    ids: list[int | None] = [inserted[entry["mac"]] for entry in entries]
    links = [
        {"event_id": entry_id, "client_id": client}
        for entry_id, clients in zip(ids, touched, strict=True)
        for client in clients
    ]
    if links:
        session.execute(INSERT_CHANGE_CLIENTS, links)
    return ids


_CHANGE = ChangeEvent.__table__  # type: ignore[attr-defined]
INSERT_CHANGE = _CHANGE.insert().returning(_CHANGE.c.mac, _CHANGE.c.id)
INSERT_CHANGE_CLIENTS = ChangeEventClient.__table__.insert()  # type: ignore[attr-defined]


@event.listens_for(AuditedSession, "after_rollback")
def _forget_changes(session: Session) -> None:
    session.info.pop(PENDING, None)
    session.info.pop(CALLER, None)


# --- accesses and disclosures ---------------------------------------------------------------------


_ACCESS = AccessEntry.__table__  # type: ignore[attr-defined]
_ACCESS_CLIENTS = AccessEntryClient.__table__  # type: ignore[attr-defined]
INSERT_ACCESS = _ACCESS.insert().returning(_ACCESS.c.id)
INSERT_ACCESS_CLIENTS = _ACCESS_CLIENTS.insert()
# one row's insert, sent once per disclosure: a multi-row VALUES statement was built and compiled
# anew for every request that disclosed (issue 9)
INSERT_DISCLOSURE = Disclosure.__table__.insert()  # type: ignore[attr-defined]


@cache
def _with_clients(log: str) -> Select[tuple[int]]:
    """PostgreSQL: a change or access entry and its client rows in one statement (one round trip); selects
    the entry's id (the client rows' insert is a CTE of its own, so an entry without clients works too)."""
    table, clients_table, link = {
        "change": (_CHANGE, ChangeEventClient.__table__, "event_id"),  # type: ignore[attr-defined]
        "access": (_ACCESS, _ACCESS_CLIENTS, "entry_id"),
    }[log]
    columns = [column for column in table.c if column.name != "id"]
    entry = (
        table.insert()
        .values({column.name: bindparam(column.name, type_=column.type) for column in columns})
        .returning(table.c.id)
        .cte("entry")
    )
    clients = func.unnest(bindparam("client_id_list", type_=postgresql.ARRAY(Uuid())))
    links = clients_table.insert().from_select([link, "client_id"], select(entry.c.id, clients)).cte("links")
    return select(entry.c.id).add_cte(links)


async def record_access(
    session: AsyncSession,
    caller: Caller,
    *,
    method: str,
    endpoint: str,
    client_ids: Iterable[uuid.UUID],
    enabled: bool = True,
) -> None:
    """Log that ``caller`` was shown these clients' data, and the disclosures among them; commit.

    Always ends the read's transaction, so a streamed answer can read in a session of its own.
    """
    ids = list(dict.fromkeys(client_ids))
    if not ids or not enabled:
        await session.commit()  # nothing to log: end the read's transaction all the same
        return
    organisers = await _organisers(session, ids) if caller.region is not None else []  # before the flush
    key = mac_key(session)
    entry: dict[str, Any] = {  # AccessEntry's columns, inserted as they are MACed (no ORM instance)
        **actor_columns(caller),
        "occurred_at": utcnow(),
        "method": method,
        "endpoint": endpoint,
        "purpose": caller.purpose,
        "client_ids": [str(client_id) for client_id in ids],
    }
    entry["mac"] = columns_mac(key, "access", entry)
    disclosed = [
        (client_id, organiser)
        for client_id, organiser in organisers
        if caller.region is not None and organiser and organiser != caller.region
    ]
    connection = await session.connection()
    if disclosed and in_autocommit(connection):  # a read's session: the entry and its disclosures at once
        driver = (await connection.get_raw_connection()).driver_connection
        assert driver is not None
        async with driver.transaction():
            await _write_access(connection, key, caller, entry, ids, disclosed)
    else:  # one statement, or in the request's own transaction
        await _write_access(connection, key, caller, entry, ids, disclosed)
    await session.commit()


async def _write_access(
    connection: AsyncConnection,
    key: bytes,
    caller: Caller,
    entry: dict[str, Any],
    ids: list[uuid.UUID],
    disclosed: list[tuple[uuid.UUID, str]],
) -> None:
    """Insert the access entry, its client rows and a disclosure per (client, organiser) in ``disclosed``."""
    if connection.dialect.name == "postgresql":
        entry_id = (await connection.execute(_with_clients("access"), {**entry, "client_id_list": ids})).scalar_one()
    else:
        entry_id = (await connection.execute(INSERT_ACCESS, entry)).scalar_one()
        rows = [{"entry_id": entry_id, "client_id": client_id} for client_id in ids]
        await connection.execute(INSERT_ACCESS_CLIENTS, rows[0] if len(rows) == 1 else rows)
    disclosures = []
    for client_id, organiser in disclosed:
        disclosure: dict[str, Any] = {  # Disclosure's columns, as the access entry's (no ORM instance)
            "occurred_at": entry["occurred_at"],
            "access_id": entry_id,
            "client_id": client_id,
            "from_region": organiser,
            "to_region": caller.region,
            "basis": _basis(caller),
            "purpose": caller.purpose,
            "actor": caller.subject,
            "request_id": caller.request_id,
        }
        disclosure["mac"] = columns_mac(key, "disclosure", disclosure)
        disclosures.append(disclosure)
    if disclosures:
        await connection.execute(INSERT_DISCLOSURE, disclosures[0] if len(disclosures) == 1 else disclosures)


def note_organisers(session: AsyncSession, organisers: dict[uuid.UUID, str | None]) -> None:
    """What a view already read: each client's organising region today (in force, or the first to come)."""
    session.info.setdefault(ORGANISING_TODAY, {}).update(organisers)


@event.listens_for(AuditedSession, "after_flush")
def _forget_organisers(session: Session, _context: object) -> None:
    session.info.pop(ORGANISING_TODAY, None)  # a write may have moved a client


async def _organisers(session: AsyncSession, ids: list[uuid.UUID]) -> list[tuple[uuid.UUID, str | None]]:
    """Each client's organising region today (noted by the answer's view, or one statement)."""
    noted: dict[uuid.UUID, str | None] = session.info.get(ORGANISING_TODAY, {})
    if all(client_id in noted for client_id in ids):
        return [(client_id, noted[client_id]) for client_id in ids]
    on = today()
    rows = await session.exec(
        select(
            col(ResponsibilityPeriod.client_id), col(ResponsibilityPeriod.region), col(ResponsibilityPeriod.valid_from)
        )
        .where(
            col(ResponsibilityPeriod.client_id).in_(ids),
            ResponsibilityPeriod.responsibility == "organising",
            col(ResponsibilityPeriod.retracted_at).is_(None),
            (col(ResponsibilityPeriod.valid_to).is_(None)) | (col(ResponsibilityPeriod.valid_to) > on),
        )
        .order_by(col(ResponsibilityPeriod.valid_from))
    )
    first: dict[uuid.UUID, str | None] = {}
    for client_id, region, _ in rows:
        first.setdefault(client_id, region)  # the period in force today, or the first one to come
    return list(first.items())


def actor_columns(caller: Caller) -> dict[str, Any]:
    """Who wrote an entry (``ActorColumns``): the token's subject, roles, region and calling system."""
    return {
        "actor": caller.subject,
        "roles": ",".join(sorted(caller.roles)),
        "actor_region": caller.region,
        "client_system": caller.client_system,
        "request_id": caller.request_id,
    }


def _basis(caller: Caller) -> str:
    """Why the region may see the data: its role in the client's care, and the stated purpose."""
    return f"{'/'.join(sorted(caller.roles))} of region {caller.region}: {caller.purpose}"

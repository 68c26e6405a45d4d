"""The logs of the simulated history: change and access entries, disclosures, the audit chain, the feed.

Each is written as the app writes it, with the app's own functions where the app has them:

- one change entry per write (``Tx``), its MAC from ``app.services.audit.entry_mac`` under the data
  folder's audit key, and one ``change_event_client`` row per client it touched;
- one access entry per read, one ``access_log_client`` row per client, and a disclosure where the
  reader is not the client's organising region that day (basis: ``audit._basis``);
- the chain over all three logs, fully sealed in the sealer's order (time, log, id) with
  ``app.services.chain.link_hash``: on a live system all but the last seconds are sealed, so a
  fresh server has nothing to catch up on and ``silta audit verify`` checks everything;
- the change feed: each region's sequence counted over the whole history (``feed_position``) and
  the events of the retention window kept, as housekeeping leaves them (``purged_through`` below
  them, gapless above). Who gets an event is ``feed._named_regions`` plus the regions holding the
  client at commit; what a client event shows, ``feed._as_seen``.

The worker processes *pack* their chunk's writes and reads (``pack_changes``, ``pack_reads``:
everything but the ids, MACs included, as ``canonical`` excludes the id); the parent numbers them
in commit order across all chunks (``LogWriter``), which is what the database's identity columns
and the feed's per-region counters would have done.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
from collections.abc import Iterable, Sequence
from typing import Any

from dataset_world import SHAPES, Read, Tx

from app.services import audit, feed
from app.services.chain import GENESIS, link_hash

SEAL_DELAY = dt.timedelta(seconds=1.5)  # the sealer runs every SILTA_AUDIT_SEAL_SECONDS (2)
# (occurred_at, order, change_event values without id, clients, feed: [(region, events, kept events)])
ChangeRecord = tuple[dt.datetime, tuple[int, int], list[Any], list[str], list[tuple[str, int, list[Any] | None]]]
# (occurred_at, order, access_log values without id, clients, [(client, organiser)], disclosure fields)
ReadRecord = tuple[dt.datetime, tuple[int, int], list[Any], list[str], list[tuple[str, str]], dict[str, Any]]


class _Entry:
    """What ``audit.canonical`` reads of a log row: its values, as the ORM would hold them."""

    __slots__ = ("values",)

    def __init__(self, values: dict[str, Any]) -> None:
        self.values = values

    def model_dump(self, mode: str, exclude: set[str]) -> dict[str, Any]:
        return {name: value for name, value in self.values.items() if name not in exclude}


def mac(key: bytes, log: str, row: dict[str, Any]) -> str:
    return audit.entry_mac(key, log, _Entry(row))  # type: ignore[arg-type,unused-ignore]  # duck-typed


_ENCODER = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))


def as_json(value: Any) -> str:
    return _ENCODER.encode(value)


def _change_mac(key: bytes, row: dict[str, Any], check: bool) -> tuple[str, str]:
    """(MAC, ``changes`` JSON) of a change entry from one ``audit.canonical`` of it.

    The changes are the longest part of the log, so they are encoded once: the MAC is
    ``entry_mac``'s HMAC over that canonical text, and the stored JSON is cut out of it —
    ``canonical`` sorts the keys, so ``changes`` is followed by ``client_id``, whose last occurrence
    is the top-level one (nested ones come earlier; the values after it are escaped strings).
    ``check`` (a sample of the entries) recomputes both the app's way, so any change there fails loudly.
    """
    text = audit.canonical(_Entry(row))  # type: ignore[arg-type,unused-ignore]
    digest = hmac.new(key, f"change\n{text}".encode(), hashlib.sha256).hexdigest()
    start = text.index('"changes":') + len('"changes":')
    cut = text[start : text.rindex(',"client_id":')]
    if check and (digest != mac(key, "change", row) or json.loads(cut) != row["changes"]):
        raise ValueError("audit.entry_mac or canonical no longer work as the generator expects")
    return digest, cut


# --------------------------------------------------------------------------- in the worker processes


def pack_change(tx: Tx, key: bytes, feed_from: dt.datetime) -> ChangeRecord:
    """``audit._change_entry`` of one write (id left to the parent), and its feed events per region."""
    shape = SHAPES["change_event"]
    first = tx.changes[0]
    clients = list(dict.fromkeys(change["client_id"] for change in tx.changes if change["client_id"]))
    row = shape.row(
        id=0,
        occurred_at=tx.at,
        action=first["action"],
        entity_type=first["entity_type"],
        entity_id=first["entity_id"],
        client_id=clients[0] if clients else None,
        changes=tx.changes,
        mac="",
        **audit.actor_columns(tx.caller),
    )
    row["mac"], row["changes"] = _change_mac(key, row, check=tx.order[1] % 500 == 0)
    return tx.at, tx.order, [row[column] for column in shape.columns], clients, _feed(tx, tx.at >= feed_from)


def _feed(tx: Tx, kept: bool) -> list[tuple[str, int, list[Any] | None]]:
    """``feed.publish``: the regions concerned, in region order, with their events (kept: inside the window)."""
    pending: dict[str, list[dict[str, Any]]] = {}
    for change in tx.changes:
        if change["entity_type"] in feed.NOT_IN_FEED:
            continue
        view = tx.views.get(change["client_id"]) if change["client_id"] else None
        for region in feed._named_regions(change) | (view[0] if view else frozenset()):
            pending.setdefault(region, []).append(change)
    return [
        (region, len(changes), [_event(tx, region, change) for change in changes] if kept else None)
        for region, changes in sorted(pending.items())
    ]


def _event(tx: Tx, region: str, change: dict[str, Any]) -> tuple[str, str | None, str, str, str]:
    """(type, client_id, entity_type, entity_id, data): what the region's feed shows of a change."""
    client_id = change["client_id"]
    _, shown, protected = tx.views[client_id] if client_id else (None, None, False)
    data = change["after"] if change["after"] is not None else change["before"] or {}
    if protected and data.get("region") != region and change["entity_type"] == "responsibility_period":
        data = {**data, "municipality": None}
    if change["entity_type"] == "client" and shown:
        data = {**data, "responsibility": feed._as_seen(shown, region, protected)}
    return change["action"], client_id, change["entity_type"], change["entity_id"], as_json(data)


def pack_read(read: Read, key: bytes) -> ReadRecord:
    """``audit.record_access`` of one read (id left to the parent), and who else's data it disclosed."""
    shape, caller = SHAPES["access_log"], read.caller
    row = shape.row(
        id=0,
        occurred_at=read.at,
        method=read.method,
        endpoint=read.endpoint,
        purpose=caller.purpose,
        client_ids=read.client_ids,
        mac="",
        **audit.actor_columns(caller),
    )
    row["mac"] = mac(key, "access", row)
    row["client_ids"] = as_json(read.client_ids)
    disclosed = []
    if caller.region is not None:
        disclosed = [
            (client, organiser)
            for client, organiser in zip(read.client_ids, read.organisers, strict=True)
            if organiser and organiser != caller.region
        ]
    about = {
        "to_region": caller.region,
        "basis": audit._basis(caller),
        "purpose": caller.purpose,
        "actor": caller.subject,
        "request_id": caller.request_id,
    }
    return read.at, read.order, [row[column] for column in shape.columns], read.client_ids, disclosed, about


# --------------------------------------------------------------------------- in the parent


class LogWriter:
    """Numbers every packed entry in commit order and lays out the log tables' rows (column order)."""

    def __init__(self, key: bytes, regions: Iterable[str]) -> None:
        for index in ("change_event_client", "access_log_client"):  # laid out below as (entry id, client id)
            if SHAPES[index].columns[1:] != ("client_id",) or len(SHAPES[index].columns) != 2:
                raise KeyError(f"{index}: the generator does not match the model {SHAPES[index].columns}")
        self.key = key
        self.rows: dict[str, list[Sequence[Any]]] = {}
        self.last_seq: dict[str, int] = dict.fromkeys(regions, 0)
        self.purged_through: dict[str, int] = dict.fromkeys(self.last_seq, 0)

    def number(self, changes: list[ChangeRecord], reads: list[ReadRecord]) -> None:
        sealed: list[tuple[dt.datetime, str, int, str]] = []
        self._changes(changes, sealed)
        self._reads(reads, sealed)
        self._chain(sealed)

    def _changes(self, records: list[ChangeRecord], sealed: list[tuple[dt.datetime, str, int, str]]) -> None:
        columns = SHAPES["change_event"].columns
        at_id, at_mac = columns.index("id"), columns.index("mac")
        entries: list[Sequence[Any]] = []
        indexed: list[Sequence[Any]] = []
        events: list[Sequence[Any]] = []
        for entry_id, (at, _, values, clients, regions) in enumerate(sorted(records, key=_when), start=1):
            values[at_id] = entry_id
            entries.append(values)
            indexed.extend((entry_id, client) for client in clients)
            sealed.append((at, "change", entry_id, values[at_mac]))
            for region, count, kept in regions:
                first = self.last_seq[region] + 1
                self.last_seq[region] += count
                if kept is None:
                    self.purged_through[region] = self.last_seq[region]
                    continue
                for seq, (kind, client, entity_type, entity_id, data) in enumerate(kept, start=first):
                    event = SHAPES["feed_event"].row(
                        region=region,
                        seq=seq,
                        type=kind,
                        occurred_at=at,
                        client_id=client,
                        entity_type=entity_type,
                        entity_id=entity_id,
                        change_event_id=entry_id,
                        data=data,
                    )
                    events.append(tuple(event[column] for column in SHAPES["feed_event"].columns))
        self.rows.update(change_event=entries, change_event_client=indexed, feed_event=events)

    def _reads(self, records: list[ReadRecord], sealed: list[tuple[dt.datetime, str, int, str]]) -> None:
        columns, shape = SHAPES["access_log"].columns, SHAPES["disclosure_log"]
        at_id, at_mac = columns.index("id"), columns.index("mac")
        entries: list[Sequence[Any]] = []
        indexed: list[Sequence[Any]] = []
        disclosures: list[Sequence[Any]] = []
        for entry_id, (at, _, values, clients, disclosed, about) in enumerate(sorted(records, key=_when), start=1):
            values[at_id] = entry_id
            entries.append(values)
            indexed.extend((entry_id, client) for client in clients)
            sealed.append((at, "access", entry_id, values[at_mac]))
            for client, organiser in disclosed:
                row = shape.row(
                    id=len(disclosures) + 1,
                    occurred_at=at + dt.timedelta(milliseconds=3),
                    access_id=entry_id,
                    client_id=client,
                    from_region=organiser,
                    mac="",
                    **about,
                )
                row["mac"] = mac(self.key, "disclosure", row)
                disclosures.append(tuple(row[column] for column in shape.columns))
                sealed.append((row["occurred_at"], "disclosure", row["id"], row["mac"]))
        self.rows.update(access_log=entries, access_log_client=indexed, disclosure_log=disclosures)

    def _chain(self, sealed: list[tuple[dt.datetime, str, int, str]]) -> None:
        """Every entry sealed, oldest first, each link hashed onto the one before (``chain._seal_batch``)."""
        layout = ("position", "log", "entry_id", "entry_mac", "chain_hash", "sealed_at")
        if SHAPES["audit_chain"].columns != layout:  # two million rows: laid out directly, checked once
            raise KeyError(f"audit_chain: the generator does not match the model {SHAPES['audit_chain'].columns}")
        previous = GENESIS
        links: list[Sequence[Any]] = []
        sealed.sort()
        for position, (occurred_at, log, entry_id, entry_mac) in enumerate(sealed, start=1):
            previous = link_hash(self.key, previous, log, entry_id, entry_mac)
            links.append((position, log, entry_id, entry_mac, previous, occurred_at + SEAL_DELAY))
        self.rows["audit_chain"] = links


def _when(record: tuple[Any, ...]) -> tuple[dt.datetime, tuple[int, int]]:
    return record[0], record[1]

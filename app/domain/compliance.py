"""Compliance gaps (PRODUCT.md rule 4): what is missing, since when, due when."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from app.domain.responsibility import ORGANISING, RESIDENCE, Holders


def gap_due(since: dt.date, noticed: dt.date, grace_days: int) -> dt.date:
    """Due ``grace_days`` after the gap began, or after it became known if that was later.

    A gap recorded late (e.g. an import of an old client) still gets the full grace period.
    """
    return max(since, noticed) + dt.timedelta(days=grace_days)


def is_overdue(due: dt.date, on: dt.date) -> bool:
    return on > due


@dataclass(frozen=True)
class Span:
    """A responsibility period: ``region`` held it from ``start`` until ``end`` (exclusive, None = open)."""

    responsibility: str
    region: str | None
    start: dt.date
    end: dt.date | None


@dataclass(frozen=True)
class Cover:
    """An assignment: a named worker of ``region`` for ``responsibility`` from ``start`` until ``end``."""

    id: uuid.UUID
    responsibility: str
    region: str
    start: dt.date
    end: dt.date | None


@dataclass(frozen=True)
class GapSpan:
    """A stretch of days on which ``region`` owed a named worker for ``responsibility`` and had none."""

    responsibility: str
    region: str
    since: dt.date
    until: dt.date | None
    closed_by: uuid.UUID | None = None


def _in_force(start: dt.date, end: dt.date | None, day: dt.date) -> bool:
    return start <= day and (end is None or day < end)


def gap_spans(
    *, periods: Sequence[Span], assignments: Sequence[Cover], start: dt.date, end: dt.date | None
) -> list[GapSpan]:
    """Every stretch of aftercare (``start`` to ``end``, exclusive) where the two-region rule lacked a worker.

    Rule 4 over time: on each day the holders of the periods then in force must each have
    an assignment of their own region in force; future-dated moves and assignments count
    from their own dates, so the result is the whole known timeline, past and announced.
    """
    edges = [(p.start, p.end) for p in periods] + [(a.start, a.end) for a in assignments]
    days = {start} | {day for edge in edges for day in edge if day is not None}
    bounds = sorted(d for d in days if d >= start and (end is None or d < end))
    spans: list[GapSpan] = []
    open_spans: dict[str, GapSpan] = {}
    for index, day in enumerate(bounds):
        held = {span.responsibility: span.region for span in periods if _in_force(span.start, span.end, day)}
        missing: dict[str, str] = {}
        if held.get(ORGANISING):
            organising = held[ORGANISING]
            assert organising is not None
            required = Holders(organising=organising, residence=held.get(RESIDENCE)).required()
            covered = {(c.responsibility, c.region) for c in assignments if _in_force(c.start, c.end, day)}
            missing = {resp: region for resp, region in required.items() if (resp, region) not in covered}
        for resp in (ORGANISING, RESIDENCE):
            current = open_spans.get(resp)
            if current is not None and missing.get(resp) != current.region:
                closer = next(
                    (c.id for c in assignments if (c.responsibility, c.region, c.start) == (resp, current.region, day)),
                    None,
                )
                spans.append(GapSpan(resp, current.region, current.since, day, closer))
                del open_spans[resp]
            if resp in missing and resp not in open_spans:
                open_spans[resp] = GapSpan(resp, missing[resp], day, None)
        if index == len(bounds) - 1:
            spans.extend(GapSpan(s.responsibility, s.region, s.since, end) for s in open_spans.values())
    return sorted(spans, key=lambda span: (span.since, span.responsibility))


def compliance_status(*, active: bool, missing: int) -> Literal["ok", "gap", "ended"]:
    if not active:
        return "ended"
    return "gap" if missing else "ok"

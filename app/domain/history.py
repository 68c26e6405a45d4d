"""Bitemporal reading of periods and assignments (rule 10).

Each row has a validity ``[valid_from, valid_to)`` and recording times: when it became known
(``recorded_at``), when its end became known (``valid_to_recorded_at``) and when it was
withdrawn as a mistake (``retracted_at``). Reading "as known at T" ignores what came later.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Protocol, TypeVar


class Temporal(Protocol):
    valid_from: dt.date
    valid_to: dt.date | None
    recorded_at: dt.datetime
    valid_to_recorded_at: dt.datetime | None
    retracted_at: dt.datetime | None


T = TypeVar("T", bound=Temporal)


def known_end(row: Temporal, known_at: dt.datetime | None) -> dt.date | None:
    """The end of validity as it was known at ``known_at`` (None: still open then)."""
    if known_at is None or row.valid_to_recorded_at is None or row.valid_to_recorded_at <= known_at:
        return row.valid_to
    return None


def known(row: Temporal, known_at: dt.datetime | None) -> bool:
    if known_at is None:
        return row.retracted_at is None
    return row.recorded_at <= known_at and (row.retracted_at is None or row.retracted_at > known_at)


def in_force(rows: Sequence[T], on: dt.date, known_at: dt.datetime | None = None) -> list[T]:
    """The rows valid on ``on``, as the records stood at ``known_at`` (default: now)."""
    result = []
    for row in rows:
        end = known_end(row, known_at)
        if known(row, known_at) and row.valid_from <= on and (end is None or end > on):
            result.append(row)
    return result

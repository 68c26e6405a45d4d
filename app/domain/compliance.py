"""Compliance gaps (PRODUCT.md rule 4): what is missing, since when, due when."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass


def gap_due(since: dt.date, noticed: dt.date, grace_days: int) -> dt.date:
    """Due ``grace_days`` after the gap began, or after it became known if that was later.

    A gap recorded late (e.g. an import of an old client) still gets the full grace period.
    """
    return max(since, noticed) + dt.timedelta(days=grace_days)


def is_overdue(due: dt.date, on: dt.date) -> bool:
    return on > due


@dataclass(frozen=True)
class OpenGap:
    responsibility: str
    region: str


@dataclass(frozen=True)
class GapPlan:
    """What to change: gaps to close (by responsibility) and gaps to open (responsibility → region)."""

    close: frozenset[str]
    open: dict[str, str]


def plan_gaps(*, required: dict[str, str], covered: set[str], open_gaps: list[OpenGap]) -> GapPlan:
    """Reconcile the open gaps with what is required and what is covered by an open assignment."""
    missing = {resp: region for resp, region in required.items() if resp not in covered}
    current = {gap.responsibility: gap.region for gap in open_gaps}
    close = frozenset(resp for resp, region in current.items() if missing.get(resp) != region)
    to_open = {resp: region for resp, region in missing.items() if resp not in current or resp in close}
    return GapPlan(close=close, open=to_open)


def compliance_status(*, active: bool, missing: int) -> str:
    if not active:
        return "ended"
    return "gap" if missing else "ok"

"""Caseload arithmetic: weighted load against a per-role target, traffic lights, spread, suggestion.

Loads are Decimals computed from the weights' decimal text, so the thresholds hold exactly at
their boundaries (a load of 45 against a target of 50 is 90 % — amber, never 89.999…).
"""

from __future__ import annotations

import statistics
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal

GREEN_BELOW, RED_ABOVE = Decimal("0.9"), Decimal("1.1")


def weighted_load(clients_by_level: Mapping[str, int], weights: Mapping[str, float]) -> Decimal:
    """Sum of the clients' weights (a level without a configured weight counts as 1)."""
    return sum(
        (Decimal(str(weights.get(level, 1.0))) * count for level, count in clients_by_level.items()),
        Decimal(0),
    )


def utilisation(load: Decimal, target: int | None) -> Decimal | None:
    """Load as a share of the target; None for a role without a target."""
    if not target:
        return None
    return load / Decimal(target)


def status(share: Decimal | None) -> str | None:
    """green below 90 %, amber from 90 % to 110 % inclusive, red above 110 %."""
    if share is None:
        return None
    if share < GREEN_BELOW:
        return "green"
    return "red" if share > RED_ABOVE else "amber"


@dataclass(frozen=True)
class Stats:
    workers: int
    mean: Decimal | None
    median: Decimal | None
    min: Decimal | None
    max: Decimal | None
    spread: Decimal | None  # max / min: how many times the heaviest load is the lightest


def stats(loads: Sequence[Decimal]) -> Stats:
    if not loads:
        return Stats(0, None, None, None, None, None)
    low, high = min(loads), max(loads)
    mean = sum(loads, Decimal(0)) / len(loads)
    return Stats(
        workers=len(loads),
        mean=mean,
        median=Decimal(statistics.median(loads)),
        min=low,
        max=high,
        spread=high / low if low > 0 else None,
    )


@dataclass(frozen=True)
class Candidate:
    worker_id: uuid.UUID
    load: Decimal
    clients: int
    target: int | None


def most_room(candidates: Iterable[Candidate]) -> Candidate | None:
    """Lowest utilisation (roles without a target rank by load after those with one); ties: fewer
    clients, then the smaller worker id — the same answer every time."""

    def key(candidate: Candidate) -> tuple[int, Decimal, int, str]:
        share = utilisation(candidate.load, candidate.target)
        return (
            (0, share, candidate.clients, str(candidate.worker_id))
            if share is not None
            else (
                1,
                candidate.load,
                candidate.clients,
                str(candidate.worker_id),
            )
        )

    return min(candidates, key=key, default=None)

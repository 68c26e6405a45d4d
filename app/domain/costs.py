"""Cost decisions (rule 9): who answers, what counts as an overlap, and the derived status."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

from app.models.common import DecisionStatus


def overlaps(a_from: dt.date, a_to: dt.date | None, b_from: dt.date, b_to: dt.date | None) -> bool:
    """Half-open periods ``[from, to)``; ``None`` runs on for ever. Adjacent periods do not overlap."""
    return (b_to is None or a_from < b_to) and (a_to is None or b_from < a_to)


def covers(valid_from: dt.date, valid_to: dt.date | None, on: dt.date) -> bool:
    return valid_from <= on and (valid_to is None or on < valid_to)


def status_of(answer: str | None, superseded: bool) -> DecisionStatus:
    """Superseded once an agreed decision replaces it; otherwise its answer, or still proposed."""
    if superseded:
        return DecisionStatus.superseded
    return DecisionStatus(answer) if answer else DecisionStatus.proposed


def counterparty(*, proposer: str, payer: str, organising: str, residence: str | None) -> str | None:
    """Who agrees or disputes: the payer, unless the proposer pays itself — then the client's other
    region (the holder of the other responsibility), or nobody when one region holds both."""
    if payer != proposer:
        return payer
    if proposer == organising:
        return residence if residence not in (None, organising) else None
    return organising


def to_cents(euros: Decimal | None) -> int | None:
    return None if euros is None else int(euros * 100)


def euros(cents: int) -> Decimal:
    return (Decimal(cents) / 100).quantize(Decimal("0.01"))


def to_euros(cents: int | None) -> Decimal | None:
    return None if cents is None else euros(cents)

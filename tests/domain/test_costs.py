"""Rule 9: overlaps of half-open periods, the derived status, and who answers a proposal."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest

from app.domain.costs import counterparty, covers, overlaps, status_of, to_cents, to_euros

D = dt.date
JAN, MAR, JUN, DEC = D(2026, 1, 1), D(2026, 3, 1), D(2026, 6, 1), D(2026, 12, 1)


@pytest.mark.parametrize(
    ("a", "b", "expected"),
    [
        ((JAN, MAR), (MAR, JUN), False),  # adjacent: one ends the day the other begins
        ((MAR, JUN), (JAN, MAR), False),
        ((JAN, MAR), (D(2026, 2, 28), JUN), True),  # one shared day
        ((JAN, JUN), (MAR, DEC), True),
        ((JAN, DEC), (MAR, JUN), True),  # contains
        ((JAN, None), (DEC, None), True),  # two open-ended
        ((JAN, None), (D(2025, 1, 1), JAN), False),  # open-ended after an adjacent one
        ((JAN, None), (D(2025, 1, 1), D(2026, 1, 2)), True),
        ((MAR, JUN), (JAN, None), True),  # inside an open-ended one
        ((JAN, MAR), (JUN, DEC), False),  # apart
    ],
)
def test_overlaps(a: tuple, b: tuple, expected: bool) -> None:
    assert overlaps(*a, *b) is expected
    assert overlaps(*b, *a) is expected  # symmetric


@pytest.mark.parametrize(
    ("on", "expected"),
    [(D(2025, 12, 31), False), (JAN, True), (D(2026, 2, 28), True), (MAR, False)],
)
def test_covers_is_half_open(on: dt.date, expected: bool) -> None:
    assert covers(JAN, MAR, on) is expected
    assert covers(JAN, None, D(2099, 1, 1)) is True


@pytest.mark.parametrize(
    ("answer", "superseded", "expected"),
    [
        (None, False, "proposed"),
        ("agreed", False, "agreed"),
        ("disputed", False, "disputed"),
        ("agreed", True, "superseded"),
        ("disputed", True, "superseded"),
    ],
)
def test_status_is_derived(answer: str | None, superseded: bool, expected: str) -> None:
    assert status_of(answer, superseded) == expected


@pytest.mark.parametrize(
    ("proposer", "payer", "organising", "residence", "expected"),
    [
        ("05", "08", "05", "08", "08"),  # another region pays: it answers
        ("05", "19", "05", "08", "19"),  # even a region not (yet) involved
        ("05", "05", "05", "08", "08"),  # the organiser pays itself: the residence region answers
        ("08", "08", "05", "08", "05"),  # the residence region pays itself: the organiser answers
        ("05", "05", "05", "05", None),  # one region holds both: nobody else to agree
        ("05", "05", "05", None, None),  # living abroad: nobody else to agree
        ("19", "19", "05", "08", "05"),  # a region taking over later pays itself: the organiser answers
    ],
)
def test_counterparty(proposer: str, payer: str, organising: str, residence: str | None, expected: str | None) -> None:
    assert counterparty(proposer=proposer, payer=payer, organising=organising, residence=residence) == expected


@pytest.mark.parametrize("euros", ["0.00", "0.01", "1250.50", "9999999999.99"])
def test_euros_survive_the_round_trip_exactly(euros: str) -> None:
    assert to_euros(to_cents(Decimal(euros))) == Decimal(euros)

"""Rule 10: bitemporal reading — half-open validity, as recorded at a given moment."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import pytest

from app.domain.history import in_force

D = dt.date


def at(day: int, month: int = 1, year: int = 2024) -> dt.datetime:
    return dt.datetime(year, month, day, 12, tzinfo=dt.UTC)


@dataclass(frozen=True)
class Row:
    valid_from: dt.date
    valid_to: dt.date | None = None
    recorded_at: dt.datetime = at(1)
    valid_to_recorded_at: dt.datetime | None = None
    retracted_at: dt.datetime | None = None


PERIOD = Row(valid_from=D(2024, 3, 1), valid_to=D(2024, 6, 1), valid_to_recorded_at=at(1))


@pytest.mark.parametrize(
    ("on", "visible"),
    [
        (D(2024, 2, 29), False),  # before valid_from
        (D(2024, 3, 1), True),  # valid on valid_from
        (D(2024, 5, 31), True),  # the last valid day
        (D(2024, 6, 1), False),  # not on valid_to
        (D(2025, 1, 1), False),
    ],
)
def test_validity_is_half_open(on: dt.date, visible: bool) -> None:
    assert (in_force([PERIOD], on) == [PERIOD]) is visible


@pytest.mark.parametrize("on", [D(2024, 3, 1), D(2030, 1, 1)])
def test_open_ended_row_is_in_force_from_its_start(on: dt.date) -> None:
    row = Row(valid_from=D(2024, 3, 1))
    assert in_force([row], on) == [row]
    assert in_force([row], D(2024, 2, 29)) == []


def test_end_without_recording_time_counts_as_known_with_the_row() -> None:
    row = Row(valid_from=D(2024, 3, 1), valid_to=D(2024, 6, 1), recorded_at=at(1, 2))
    assert in_force([row], D(2024, 6, 1), known_at=at(1, 2)) == []
    assert in_force([row], D(2024, 5, 31), known_at=at(1, 2)) == [row]


@pytest.mark.parametrize(
    ("known_at", "visible"),
    [
        (at(9, 1), False),  # before the row was recorded
        (at(10, 1), True),  # the moment it was recorded
        (at(11, 1), True),
        (None, True),  # now
    ],
)
def test_row_recorded_after_known_at_is_invisible(known_at: dt.datetime | None, visible: bool) -> None:
    row = Row(valid_from=D(2023, 1, 1), recorded_at=at(10, 1))  # valid long before it was recorded
    assert (in_force([row], D(2023, 6, 1), known_at=known_at) == [row]) is visible


@pytest.mark.parametrize(
    ("known_at", "visible_after_end"),
    [
        (at(10, 6), True),  # the end was not yet known: still open
        (at(14, 6) - dt.timedelta(seconds=1), True),
        (at(14, 6), False),  # the moment the end was recorded
        (at(1, 7), False),
        (None, False),
    ],
)
def test_end_recorded_after_known_at_is_treated_as_open(known_at: dt.datetime | None, visible_after_end: bool) -> None:
    row = Row(valid_from=D(2024, 3, 1), valid_to=D(2024, 6, 1), recorded_at=at(1, 3), valid_to_recorded_at=at(14, 6))
    assert in_force([row], D(2024, 5, 31), known_at=known_at) == [row]
    assert (in_force([row], D(2024, 6, 5), known_at=known_at) == [row]) is visible_after_end


@pytest.mark.parametrize(
    ("known_at", "visible"),
    [
        (None, False),  # retracted: invisible now
        (at(1, 5), False),
        (at(20, 4), False),  # the moment of retraction
        (at(20, 4) - dt.timedelta(seconds=1), True),  # as known just before the retraction
        (at(10, 3), True),
        (at(1, 3), True),  # the moment it was recorded
        (at(1, 2), False),  # before it was recorded
    ],
)
def test_retracted_row_is_visible_only_as_known_before_its_retraction(
    known_at: dt.datetime | None, visible: bool
) -> None:
    row = Row(valid_from=D(2024, 3, 1), recorded_at=at(1, 3), retracted_at=at(20, 4))
    assert (in_force([row], D(2024, 3, 15), known_at=known_at) == [row]) is visible


def test_correction_replaces_a_retracted_row_only_from_the_correction_on() -> None:
    wrong = Row(valid_from=D(2024, 3, 1), recorded_at=at(1, 3), retracted_at=at(20, 4))
    right = Row(valid_from=D(2024, 2, 1), recorded_at=at(20, 4))
    rows = [wrong, right]
    assert in_force(rows, D(2024, 3, 15)) == [right]
    assert in_force(rows, D(2024, 3, 15), known_at=at(10, 4)) == [wrong]
    assert in_force(rows, D(2024, 2, 15), known_at=at(10, 4)) == []
    assert in_force(rows, D(2024, 2, 15)) == [right]


def test_in_force_keeps_the_order_and_filters_each_row() -> None:
    first = Row(valid_from=D(2024, 1, 1), valid_to=D(2024, 3, 1))
    second = Row(valid_from=D(2024, 3, 1))
    third = Row(valid_from=D(2024, 1, 1))
    rows = [first, second, third]
    assert in_force(rows, D(2024, 2, 1)) == [first, third]
    assert in_force(rows, D(2024, 3, 1)) == [second, third]
    assert in_force([], D(2024, 3, 1)) == []

"""Rule 8: aftercare ends the day before the region's end-age birthday; registration and status."""

from __future__ import annotations

import datetime as dt

import pytest

from app.domain.aftercare import aftercare_end, birthday, check_registrable, status
from app.errors import Unprocessable

D = dt.date


@pytest.mark.parametrize(
    ("birth", "end_age", "end"),
    [
        (D(2002, 6, 15), 23, D(2025, 6, 14)),
        (D(2002, 6, 15), 24, D(2026, 6, 14)),
        (D(2002, 6, 15), 25, D(2027, 6, 14)),
        (D(2002, 1, 1), 23, D(2024, 12, 31)),  # the day before crosses a year boundary
        (D(2002, 3, 1), 23, D(2025, 2, 28)),
        (D(2001, 3, 1), 23, D(2024, 2, 29)),  # the day before a birthday in a leap year
    ],
)
def test_aftercare_ends_the_day_before_the_end_age_birthday(birth: dt.date, end_age: int, end: dt.date) -> None:
    assert aftercare_end(birth, end_age) == end


@pytest.mark.parametrize(
    ("birth", "end_age", "birthday_on", "end"),
    [
        (D(2000, 2, 29), 23, D(2023, 3, 1), D(2023, 2, 28)),  # 2023 is not a leap year
        (D(2000, 2, 29), 24, D(2024, 2, 29), D(2024, 2, 28)),  # 2024 is
        (D(2000, 2, 29), 25, D(2025, 3, 1), D(2025, 2, 28)),
        (D(2004, 2, 29), 23, D(2027, 3, 1), D(2027, 2, 28)),
    ],
)
def test_29_february_birthday_falls_on_1_march_in_non_leap_years(
    birth: dt.date, end_age: int, birthday_on: dt.date, end: dt.date
) -> None:
    assert birthday(birth, end_age) == birthday_on
    assert aftercare_end(birth, end_age) == end


@pytest.mark.parametrize(
    ("early_end", "end"),
    [
        (D(2024, 1, 31), D(2024, 1, 31)),  # earlier than the limit: it wins
        (D(2025, 6, 13), D(2025, 6, 13)),  # one day before the limit
        (D(2025, 6, 14), D(2025, 6, 14)),  # on the limit
        (D(2025, 6, 15), D(2025, 6, 14)),  # later than the limit: the limit wins
        (D(2030, 1, 1), D(2025, 6, 14)),
        (None, D(2025, 6, 14)),
    ],
)
def test_early_end_wins_only_when_earlier_than_the_limit(early_end: dt.date | None, end: dt.date) -> None:
    assert aftercare_end(D(2002, 6, 15), 23, early_end) == end


BIRTH = D(2002, 6, 15)  # end age 23 → last day 2025-06-14


@pytest.mark.parametrize(
    ("end_age", "aftercare_start", "today"),
    [
        (23, D(2020, 6, 15), D(2024, 1, 1)),
        (23, D(2020, 6, 15), D(2025, 6, 14)),  # registering on the last day
        (23, D(2025, 6, 14), D(2025, 6, 14)),  # starting on the last day
        (23, D(2025, 6, 14), D(2024, 1, 1)),  # registered ahead of a future start
        (25, D(2020, 6, 15), D(2027, 6, 14)),  # a region keeping aftercare until 25
        (23, BIRTH + dt.timedelta(days=1), D(2024, 1, 1)),  # the earliest possible start
    ],
)
def test_registration_before_the_end_is_accepted(end_age: int, aftercare_start: dt.date, today: dt.date) -> None:
    assert check_registrable(BIRTH, end_age, aftercare_start, today) is None


@pytest.mark.parametrize(
    ("end_age", "today"),
    [
        (23, D(2025, 6, 15)),  # the 23rd birthday
        (23, D(2030, 1, 1)),
        (24, D(2026, 6, 15)),
        (25, D(2027, 6, 15)),
    ],
)
def test_client_past_the_age_limit_is_refused(end_age: int, today: dt.date) -> None:
    with pytest.raises(Unprocessable) as exc_info:
        check_registrable(BIRTH, end_age, D(2020, 6, 15), today)
    assert exc_info.value.code == "aftercare_age_exceeded"


def test_region_with_higher_end_age_still_accepts_a_23_year_old() -> None:
    assert check_registrable(BIRTH, 25, D(2020, 6, 15), D(2025, 6, 15)) is None


@pytest.mark.parametrize(
    "aftercare_start",
    [
        D(2025, 6, 15),  # the day after the last day
        D(2026, 1, 1),
        BIRTH,  # on the birth date
        D(2000, 1, 1),  # before birth
    ],
)
def test_aftercare_start_outside_the_life_of_the_aftercare_is_refused(aftercare_start: dt.date) -> None:
    with pytest.raises(Unprocessable) as exc_info:
        check_registrable(BIRTH, 23, aftercare_start, D(2024, 1, 1))
    assert exc_info.value.code == "invalid_dates"


START, LAST_DAY = D(2024, 3, 1), D(2025, 6, 14)


@pytest.mark.parametrize(
    ("on", "expected"),
    [
        (D(2024, 1, 1), "upcoming"),
        (START - dt.timedelta(days=1), "upcoming"),
        (START, "active"),
        (D(2024, 12, 31), "active"),
        (LAST_DAY, "active"),
        (LAST_DAY + dt.timedelta(days=1), "ended"),
        (D(2030, 1, 1), "ended"),
    ],
)
def test_status_at_the_boundaries(on: dt.date, expected: str) -> None:
    assert status(START, LAST_DAY, on) == expected


def test_single_day_aftercare_is_active_on_that_day_only() -> None:
    day = D(2025, 6, 14)
    assert [status(day, day, day + dt.timedelta(days=k)) for k in (-1, 0, 1)] == ["upcoming", "active", "ended"]

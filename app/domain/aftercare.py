"""Aftercare periods: the age limit (Child Welfare Act § 75) and client status."""

from __future__ import annotations

import datetime as dt

from app.errors import Unprocessable

STATUTORY_END_AGE = 23
MAX_END_AGE = 25


def birthday(birth_date: dt.date, age: int) -> dt.date:
    """The day a person reaches ``age``; someone born on 29 February has it on 1 March."""
    try:
        return birth_date.replace(year=birth_date.year + age)
    except ValueError:
        return dt.date(birth_date.year + age, 3, 1)


def aftercare_end(birth_date: dt.date, end_age: int, early_end: dt.date | None = None) -> dt.date:
    """The last day of aftercare: the day before the end-age birthday, or an earlier end."""
    latest = birthday(birth_date, end_age) - dt.timedelta(days=1)
    return min(latest, early_end) if early_end else latest


def check_registrable(birth_date: dt.date, end_age: int, aftercare_start: dt.date, today: dt.date) -> None:
    """Refuse a registration that could never be active aftercare."""
    end = aftercare_end(birth_date, end_age)
    if today > end:
        raise Unprocessable(
            f"the client is past the region's aftercare age limit ({end_age}) since {end + dt.timedelta(days=1)}",
            code="aftercare_age_exceeded",
        )
    if aftercare_start <= birth_date:
        raise Unprocessable("aftercare_start must be after the birth date", code="invalid_dates")
    if aftercare_start > end:
        raise Unprocessable("aftercare_start is after the end of aftercare", code="invalid_dates")


def status(aftercare_start: dt.date, last_day: dt.date, on: dt.date) -> str:
    """``active``, ``ended``, or ``upcoming`` (registered before the start date)."""
    if on > last_day:
        return "ended"
    return "upcoming" if on < aftercare_start else "active"

"""Today's date where the service operates (Finnish time)."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

FINLAND = ZoneInfo("Europe/Helsinki")


def today() -> dt.date:
    return dt.datetime.now(FINLAND).date()


def local_date(moment: dt.datetime) -> dt.date:
    """The date in Finland at a recorded moment."""
    return moment.astimezone(FINLAND).date()

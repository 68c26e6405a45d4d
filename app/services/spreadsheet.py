"""Export lines: CSV for spreadsheets (formulas neutralised) and JSON Lines (one record a line, always)."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable
from typing import Any

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def cell(value: Any) -> Any:
    """Empty for None; text that a spreadsheet would run as a formula is prefixed with an apostrophe."""
    if value is None:
        return ""
    if isinstance(value, str) and value.startswith(FORMULA_STARTS):
        return "'" + value
    return value


def csv_line(values: Iterable[Any]) -> str:
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\n").writerow([cell(value) for value in values])
    return buffer.getvalue()


# Line breaks to str.splitlines() and many JSON Lines readers that json.dumps leaves raw inside strings
# (it escapes only C0 controls): a note holding one would split its record into unreadable fragments.
_LINE_BREAKS = str.maketrans({"\x85": "\\u0085", "\u2028": "\\u2028", "\u2029": "\\u2029"})


def json_line(record: dict[str, Any], **options: Any) -> str:
    """One record as one JSON line, whatever line breaks its text holds."""
    return json.dumps(record, ensure_ascii=False, **options).translate(_LINE_BREAKS) + "\n"

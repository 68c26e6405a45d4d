"""The Finnish personal identity code (henkilötunnus), validated with python-stdnum.

The century sign is kept as given (since 2023, ``-``/``Y``/``X``… and ``A``/``B``… are
different codes for different people); only surrounding whitespace and case are normalised.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass

from stdnum.exceptions import ValidationError
from stdnum.fi import hetu

from app.errors import Unprocessable

CENTURY = {"+": 1800, **dict.fromkeys("-YXWVU", 1900), **dict.fromkeys("ABCDEF", 2000)}
TEMPORARY = range(900, 1000)
# Anything shaped like a code, valid or not: DDMMYY, a century sign (+, - or U-Y for the 1900s, A-F),
# the individual number and a check character; standing alone, so that no group of a UUID
# (8-4-4-4-12 hex digits) is taken for one. What the logs mask and free text may not hold.
IDENTITY_CODE = re.compile(r"(?<![0-9A-Z])\d{6}[-+A-FU-Y]\d{3}[0-9A-FHJ-NPR-Y](?![0-9A-Z])", re.IGNORECASE)


def holds_identity_code(text: str) -> bool:
    """True if ``text`` holds a valid identity code (temporary ones too) standing alone."""
    return any(hetu.is_valid(found.group(), allow_temporary=True) for found in IDENTITY_CODE.finditer(text))


@dataclass(frozen=True)
class PersonalId:
    code: str
    birth_date: dt.date
    temporary: bool


def parse_personal_id(raw: str, *, accept_temporary: bool) -> PersonalId:
    """The validated code with its birth date; 422 for anything not a valid (permanent) code."""
    code = raw.strip().upper()
    try:
        hetu.validate(code, allow_temporary=True)
    except ValidationError as exc:
        raise Unprocessable("personal_id is not a valid Finnish identity code", code="invalid_personal_id") from exc
    # stdnum's pattern takes any Unicode digit ("٢" == "2" to int()): such a code would be a
    # different string for the same person and slip past the uniqueness constraint.
    if not code.isascii() or code != hetu.compact(raw):
        raise Unprocessable("personal_id is not a valid Finnish identity code", code="invalid_personal_id")
    temporary = int(code[7:10]) in TEMPORARY
    if temporary and not accept_temporary:
        raise Unprocessable(
            "temporary and test identity codes (individual number 900-999) are not accepted",
            code="temporary_personal_id",
        )
    birth = dt.date(CENTURY[code[6]] + int(code[4:6]), int(code[2:4]), int(code[0:2]))
    return PersonalId(code=code, birth_date=birth, temporary=temporary)

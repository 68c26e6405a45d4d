"""The Finnish personal identity code: century signs, checksum, dates, temporary numbers, input hygiene."""

from __future__ import annotations

import datetime as dt

import pytest

from app.domain.personal_id import parse_personal_id
from app.errors import Unprocessable

CHECK = "0123456789ABCDEFHJKLMNPRSTUVWXY"


def hetu(ddmmyy: str, sign: str, individual: str) -> str:
    """A code with a correct control character (the checksum does not depend on the century sign)."""
    return f"{ddmmyy}{sign}{individual}{CHECK[int(ddmmyy + individual) % 31]}"


def wrong_control(code: str) -> str:
    """The same code with any other control character."""
    return code[:-1] + next(c for c in CHECK if c != code[-1])


def refused_code(raw: str, *, accept_temporary: bool = False) -> str:
    with pytest.raises(Unprocessable) as exc_info:
        parse_personal_id(raw, accept_temporary=accept_temporary)
    return exc_info.value.code


@pytest.mark.parametrize(
    ("sign", "ddmmyy", "birth_date"),
    [
        ("+", "150380", dt.date(1880, 3, 15)),
        ("-", "131052", dt.date(1952, 10, 13)),
        ("Y", "131052", dt.date(1952, 10, 13)),
        ("X", "010199", dt.date(1999, 1, 1)),
        ("W", "311299", dt.date(1999, 12, 31)),
        ("V", "290296", dt.date(1996, 2, 29)),
        ("U", "010100", dt.date(1900, 1, 1)),
        ("A", "010100", dt.date(2000, 1, 1)),
        ("B", "290204", dt.date(2004, 2, 29)),
        ("C", "311205", dt.date(2005, 12, 31)),
        ("D", "150607", dt.date(2007, 6, 15)),
        ("E", "010808", dt.date(2008, 8, 1)),
        ("F", "300409", dt.date(2009, 4, 30)),
    ],
)
def test_century_sign_gives_birth_date(sign: str, ddmmyy: str, birth_date: dt.date) -> None:
    code = hetu(ddmmyy, sign, "308")
    parsed = parse_personal_id(code, accept_temporary=False)
    assert parsed.birth_date == birth_date
    assert parsed.code == code
    assert parsed.temporary is False


def test_known_example_code_is_valid() -> None:
    parsed = parse_personal_id("131052-308T", accept_temporary=False)
    assert parsed.birth_date == dt.date(1952, 10, 13)
    assert parsed.code == "131052-308T"


@pytest.mark.parametrize("other_sign", ["Y", "X", "W", "V", "U"])
def test_century_sign_is_preserved_not_normalised_to_hyphen(other_sign: str) -> None:
    hyphen = parse_personal_id(hetu("131052", "-", "308"), accept_temporary=False)
    other = parse_personal_id(hetu("131052", other_sign, "308"), accept_temporary=False)
    assert other.code[6] == other_sign
    assert other.code != hyphen.code
    assert other.birth_date == hyphen.birth_date


@pytest.mark.parametrize("other_sign", ["B", "C", "D", "E", "F"])
def test_2000s_century_sign_is_preserved_not_normalised_to_a(other_sign: str) -> None:
    a_code = parse_personal_id(hetu("010203", "A", "123"), accept_temporary=False)
    other = parse_personal_id(hetu("010203", other_sign, "123"), accept_temporary=False)
    assert other.code[6] == other_sign
    assert other.code != a_code.code
    assert other.birth_date == a_code.birth_date == dt.date(2003, 2, 1)


@pytest.mark.parametrize(
    "code",
    [
        wrong_control(hetu("131052", "-", "308")),
        wrong_control(hetu("010203", "A", "123")),
        wrong_control(hetu("010203", "Y", "123")),
        "131052-308U",
    ],
)
def test_bad_checksum_is_invalid(code: str) -> None:
    assert refused_code(code) == "invalid_personal_id"


@pytest.mark.parametrize(
    "code",
    [
        hetu("310299", "-", "123"),  # 31 February
        hetu("290201", "A", "123"),  # 2001 is not a leap year
        hetu("290200", "+", "123"),  # 1800 is not a leap year
        hetu("290200", "-", "123"),  # 1900 is not a leap year
        hetu("310452", "-", "308"),  # 31 April
        hetu("001052", "-", "308"),  # day 0
        hetu("131352", "-", "308"),  # month 13
        hetu("130052", "-", "308"),  # month 0
    ],
)
def test_impossible_date_is_invalid(code: str) -> None:
    assert refused_code(code) == "invalid_personal_id"


def test_29_february_of_a_leap_year_is_valid() -> None:
    assert parse_personal_id(hetu("290200", "A", "123"), accept_temporary=False).birth_date == dt.date(2000, 2, 29)


@pytest.mark.parametrize("individual", ["000", "001"])
@pytest.mark.parametrize("accept_temporary", [False, True])
def test_individual_numbers_000_and_001_are_invalid(individual: str, accept_temporary: bool) -> None:
    code = hetu("131052", "-", individual)
    assert refused_code(code, accept_temporary=accept_temporary) == "invalid_personal_id"


@pytest.mark.parametrize("individual", ["002", "123", "899"])
def test_lowest_and_highest_permanent_individual_numbers_are_valid(individual: str) -> None:
    parsed = parse_personal_id(hetu("131052", "-", individual), accept_temporary=False)
    assert parsed.temporary is False


@pytest.mark.parametrize("individual", ["900", "950", "999"])
def test_temporary_number_is_refused_by_default(individual: str) -> None:
    assert refused_code(hetu("131052", "-", individual)) == "temporary_personal_id"


@pytest.mark.parametrize("individual", ["900", "950", "999"])
def test_temporary_number_is_accepted_when_asked_and_flagged(individual: str) -> None:
    code = hetu("010203", "A", individual)
    parsed = parse_personal_id(code, accept_temporary=True)
    assert parsed.temporary is True
    assert parsed.code == code
    assert parsed.birth_date == dt.date(2003, 2, 1)


def test_temporary_number_with_bad_checksum_is_invalid_not_temporary() -> None:
    code = wrong_control(hetu("131052", "-", "950"))
    assert refused_code(code) == "invalid_personal_id"
    assert refused_code(code, accept_temporary=True) == "invalid_personal_id"


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("  131052-308T  ", "131052-308T"),
        ("\t131052-308T\n", "131052-308T"),
        ("131052-308t", "131052-308T"),
        (" 010203a123" + CHECK[int("010203123") % 31].lower() + " ", hetu("010203", "A", "123")),
        (hetu("010203", "Y", "123").lower(), hetu("010203", "Y", "123")),
    ],
)
def test_surrounding_whitespace_and_lower_case_are_normalised(raw: str, expected: str) -> None:
    assert parse_personal_id(raw, accept_temporary=False).code == expected


@pytest.mark.parametrize(
    "raw",
    [
        "131052 -308T",
        "131052- 308T",
        "131052-308 T",
        "13 1052-308T",
        "131052 308T",
    ],
)
def test_inner_spaces_are_refused(raw: str) -> None:
    assert refused_code(raw) == "invalid_personal_id"


@pytest.mark.parametrize(
    "raw",
    [
        "",
        "   ",
        "131052-308",  # no control character
        "131052-308TT",  # one too many
        "31052-308T",  # one digit short
        "1310523308T",  # digit in place of the century sign
        "131052G308T",  # not a century sign
        "131052-3O8T",  # letter O for zero
        "131052-308G",  # not a control character
        "19521013-308T",  # four-digit year
        "not a code",
        "131052_308T",
    ],
)
def test_wrong_length_or_garbage_is_refused(raw: str) -> None:
    assert refused_code(raw) == "invalid_personal_id"


@pytest.mark.parametrize("raw", ["13105\u0662-308T", "13105\u0968-308T", "\uff11\uff13\uff11\uff10\uff15\uff12-308T"])
def test_non_latin_digits_are_refused_so_one_person_has_one_code(raw: str) -> None:
    assert refused_code(raw) == "invalid_personal_id"

"""Rule 4: compliance gaps — due dates, overdue, and the gaps of a whole timeline."""

from __future__ import annotations

import datetime as dt
import uuid

import pytest

from app.domain.compliance import Cover, GapSpan, Span, compliance_status, gap_due, gap_spans, is_overdue

D = dt.date
ORG, RES, NEW_RES = "05", "06", "07"


@pytest.mark.parametrize(
    ("since", "noticed", "grace", "due"),
    [
        (D(2024, 3, 1), D(2024, 3, 1), 14, D(2024, 3, 15)),
        (D(2024, 3, 1), D(2024, 3, 10), 14, D(2024, 3, 24)),  # noticed late: full grace from noticing
        (D(2020, 1, 1), D(2024, 3, 10), 14, D(2024, 3, 24)),  # an import of an old client
        (D(2024, 3, 10), D(2024, 3, 1), 14, D(2024, 3, 24)),  # a gap beginning in the future
        (D(2024, 2, 20), D(2024, 2, 20), 14, D(2024, 3, 5)),  # across 29 February 2024
        (D(2024, 12, 25), D(2024, 12, 25), 30, D(2025, 1, 24)),
        (D(2024, 3, 1), D(2024, 3, 1), 0, D(2024, 3, 1)),
    ],
)
def test_gap_is_due_grace_days_after_the_later_of_start_and_noticing(
    since: dt.date, noticed: dt.date, grace: int, due: dt.date
) -> None:
    assert gap_due(since, noticed, grace) == due


@pytest.mark.parametrize(
    ("on", "overdue"),
    [
        (D(2024, 3, 1), False),
        (D(2024, 3, 14), False),
        (D(2024, 3, 15), False),  # the due date itself
        (D(2024, 3, 16), True),  # the day after
        (D(2025, 1, 1), True),
    ],
)
def test_gap_is_overdue_only_after_the_due_date(on: dt.date, overdue: bool) -> None:
    assert is_overdue(D(2024, 3, 15), on) is overdue


START = D(2025, 1, 1)
A1, A2 = uuid.UUID(int=1), uuid.UUID(int=2)


def org(region: str = ORG, start: dt.date = START, end: dt.date | None = None) -> Span:
    return Span("organising", region, start, end)


def res(region: str | None = RES, start: dt.date = START, end: dt.date | None = None) -> Span:
    return Span("residence", region, start, end)


def cover(resp: str, region: str, start: dt.date = START, end: dt.date | None = None, id: uuid.UUID = A1) -> Cover:
    return Cover(id, resp, region, start, end)


def gap(resp: str, region: str, since: dt.date, until: dt.date | None = None, by: uuid.UUID | None = None) -> GapSpan:
    return GapSpan(resp, region, since, until, by)


@pytest.mark.parametrize(
    ("periods", "assignments", "end", "expected"),
    [
        pytest.param(
            [org(), res()], [], None, [gap("organising", ORG, START), gap("residence", RES, START)], id="new_client"
        ),
        pytest.param([org(), res(ORG)], [], None, [gap("organising", ORG, START)], id="same_region_needs_one"),
        pytest.param([org(), res(None)], [], None, [gap("organising", ORG, START)], id="lives_abroad_needs_one"),
        pytest.param(
            [org(), res()],
            [cover("organising", ORG), cover("residence", RES, id=A2)],
            None,
            [],
            id="both_named_from_the_start",
        ),
        pytest.param(
            [org(), res()],
            [cover("organising", ORG), cover("residence", RES, D(2025, 2, 1), id=A2)],
            None,
            [gap("residence", RES, START, D(2025, 2, 1), A2)],
            id="residence_named_later_closes_the_gap_on_its_start",
        ),
        pytest.param(
            [org(), res()],
            [cover("organising", ORG), cover("residence", RES, D(2030, 1, 1), id=A2)],
            None,
            [gap("residence", RES, START, D(2030, 1, 1), A2)],
            id="future_assignment_closes_the_gap_only_on_its_start",
        ),
        pytest.param(
            [org(), res()],
            [cover("organising", ORG, end=D(2025, 3, 1)), cover("residence", RES, id=A2)],
            None,
            [gap("organising", ORG, D(2025, 3, 1))],
            id="ended_assignment_opens_a_gap_on_its_end",
        ),
        pytest.param(
            [org(), res()],
            [cover("organising", ORG, end=D(2025, 3, 1)), cover("organising", ORG, D(2025, 3, 1), id=A2)],
            None,
            [gap("residence", RES, START)],
            id="handover_on_the_same_day_leaves_no_gap",
        ),
        pytest.param(
            [org(), res(end=D(2025, 6, 1)), res(NEW_RES, D(2025, 6, 1))],
            [cover("organising", ORG), cover("residence", RES, end=D(2025, 6, 1), id=A2)],
            None,
            [gap("residence", NEW_RES, D(2025, 6, 1))],
            id="future_move_opens_the_new_regions_gap_on_the_move_date",
        ),
        pytest.param(
            [org(), res(end=D(2025, 6, 1)), res(NEW_RES, D(2025, 6, 1))],
            [cover("organising", ORG)],
            None,
            [gap("residence", RES, START, D(2025, 6, 1)), gap("residence", NEW_RES, D(2025, 6, 1))],
            id="move_ends_the_old_regions_gap_on_the_move_date",
        ),
        pytest.param(
            [org(), res(end=D(2025, 6, 1)), res(ORG, D(2025, 6, 1))],
            [cover("organising", ORG)],
            None,
            [gap("residence", RES, START, D(2025, 6, 1))],
            id="moving_into_the_organising_region_ends_the_residence_need",
        ),
        pytest.param(
            [org(), res(end=D(2025, 6, 1)), res(None, D(2025, 6, 1))],
            [cover("residence", RES, end=D(2025, 6, 1), id=A2)],
            None,
            [gap("organising", ORG, START)],
            id="moving_abroad_ends_the_residence_need",
        ),
        pytest.param(
            [org(), res()],
            [cover("residence", NEW_RES, id=A2)],
            None,
            [gap("organising", ORG, START), gap("residence", RES, START)],
            id="an_assignment_of_another_region_covers_nothing",
        ),
        pytest.param(
            [org(), res()],
            [],
            D(2025, 4, 1),
            [gap("organising", ORG, START, D(2025, 4, 1)), gap("residence", RES, START, D(2025, 4, 1))],
            id="early_end_closes_every_gap",
        ),
        pytest.param(
            [org(), res()],
            [cover("organising", ORG), cover("residence", RES, id=A2)],
            D(2025, 4, 1),
            [],
            id="ended_and_covered",
        ),
        pytest.param(
            [org(start=D(2024, 6, 1)), res(start=D(2024, 6, 1))],
            [cover("organising", ORG, D(2024, 6, 1)), cover("residence", RES, D(2024, 6, 1), D(2024, 12, 1), A2)],
            None,
            [gap("residence", RES, START)],
            id="nothing_before_aftercare_begins_counts",
        ),
    ],
)
def test_gap_spans(periods: list[Span], assignments: list[Cover], end: dt.date | None, expected: list[GapSpan]) -> None:
    assert gap_spans(periods=periods, assignments=assignments, start=START, end=end) == expected


@pytest.mark.parametrize(
    ("active", "missing", "expected"),
    [
        (True, 0, "ok"),
        (True, 1, "gap"),
        (True, 2, "gap"),
        (False, 0, "ended"),
        (False, 2, "ended"),  # an ended client needs no workers
    ],
)
def test_compliance_status(active: bool, missing: int, expected: str) -> None:
    assert compliance_status(active=active, missing=missing) == expected

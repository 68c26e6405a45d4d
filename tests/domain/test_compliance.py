"""Rule 4: compliance gaps — due dates, overdue, and reconciling open gaps with what is required."""

from __future__ import annotations

import datetime as dt

import pytest

from app.domain.compliance import GapPlan, OpenGap, compliance_status, gap_due, is_overdue, plan_gaps

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


BOTH = {"organising": ORG, "residence": RES}


@pytest.mark.parametrize(
    ("required", "covered", "open_gaps", "close", "to_open"),
    [
        pytest.param({}, set(), [], set(), {}, id="nothing_required_nothing_open"),
        pytest.param(
            {},
            set(),
            [OpenGap("organising", ORG), OpenGap("residence", RES)],
            {"organising", "residence"},
            {},
            id="nothing_required_closes_all",  # e.g. aftercare ended
        ),
        pytest.param(BOTH, set(), [], set(), BOTH, id="new_client_opens_both"),
        pytest.param(BOTH, {"organising"}, [], set(), {"residence": RES}, id="missing_residence_opens"),
        pytest.param({"organising": ORG}, set(), [], set(), {"organising": ORG}, id="same_region_opens_organising"),
        pytest.param(BOTH, {"organising", "residence"}, [], set(), {}, id="all_covered_nothing_to_do"),
        pytest.param(
            BOTH,
            {"residence"},
            [OpenGap("residence", RES)],
            {"residence"},
            {"organising": ORG},
            id="covered_closes_and_missing_opens",
        ),
        pytest.param(
            BOTH,
            {"organising", "residence"},
            [OpenGap("organising", ORG), OpenGap("residence", RES)],
            {"organising", "residence"},
            {},
            id="covered_closes_all",
        ),
        pytest.param(
            BOTH,
            set(),
            [OpenGap("organising", ORG), OpenGap("residence", RES)],
            set(),
            {},
            id="already_open_and_still_missing_no_change",
        ),
        pytest.param(
            {"organising": ORG, "residence": NEW_RES},
            {"organising"},
            [OpenGap("residence", RES)],
            {"residence"},
            {"residence": NEW_RES},
            id="moved_closes_old_region_and_reopens_in_new",
        ),
        pytest.param(
            {"organising": NEW_RES, "residence": RES},
            set(),
            [OpenGap("organising", ORG), OpenGap("residence", RES)],
            {"organising"},
            {"organising": NEW_RES},
            id="organising_transferred_reopens_organising_only",
        ),
        pytest.param(
            {"organising": ORG},
            {"organising"},
            [OpenGap("residence", RES)],
            {"residence"},
            {},
            id="moved_into_organising_region_closes_residence",
        ),
        pytest.param(
            {"organising": ORG},
            set(),
            [OpenGap("residence", RES)],
            {"residence"},
            {"organising": ORG},
            id="moved_abroad_closes_residence_and_opens_organising",
        ),
    ],
)
def test_plan_gaps(
    required: dict[str, str],
    covered: set[str],
    open_gaps: list[OpenGap],
    close: set[str],
    to_open: dict[str, str],
) -> None:
    plan = plan_gaps(required=required, covered=covered, open_gaps=open_gaps)
    assert plan == GapPlan(close=frozenset(close), open=to_open)


def test_plan_gaps_ignores_covered_responsibility_that_is_not_required() -> None:
    plan = plan_gaps(required={"organising": ORG}, covered={"organising", "residence"}, open_gaps=[])
    assert plan == GapPlan(close=frozenset(), open={})


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

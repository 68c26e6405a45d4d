"""Caseload arithmetic: weights, the traffic-light boundaries, spread, and ties in the suggestion."""

from __future__ import annotations

import uuid
from decimal import Decimal

import pytest

from app.domain.caseload import Candidate, most_room, stats, status, utilisation, weighted_load

WEIGHTS = {"standard": 1.0, "enhanced": 1.5, "special": 2.0}


@pytest.mark.parametrize(
    ("clients", "expected"),
    [
        ({}, "0"),
        ({"standard": 10}, "10"),
        ({"enhanced": 3}, "4.5"),
        ({"special": 2, "standard": 1}, "5"),
        ({"standard": 20, "enhanced": 10, "special": 5}, "45"),
        ({"unknown_level": 2}, "2"),  # a level without a weight counts as 1
    ],
)
def test_weighted_load(clients: dict[str, int], expected: str) -> None:
    assert weighted_load(clients, WEIGHTS) == Decimal(expected)


def test_weights_are_exact_decimals_not_floats() -> None:
    assert weighted_load({"standard": 3}, {"standard": 0.1}) == Decimal("0.3")


@pytest.mark.parametrize(
    ("load", "target", "expected"),
    [
        ("0", 50, "green"),
        ("44.5", 50, "green"),  # 89 %
        ("44.99", 50, "green"),  # 89.98 %
        ("45", 50, "amber"),  # exactly 90 %
        ("50", 50, "amber"),
        ("55", 50, "amber"),  # exactly 110 %
        ("55.01", 50, "red"),  # 110.02 %
        ("22.5", 25, "amber"),  # 90 % of a counsellor's 25
        ("27.5", 25, "amber"),  # 110 %
        ("27.6", 25, "red"),
        ("80", 50, "red"),
    ],
)
def test_status_boundaries(load: str, target: int, expected: str) -> None:
    assert status(utilisation(Decimal(load), target)) == expected


def test_a_role_without_a_target_has_no_status() -> None:
    assert utilisation(Decimal(30), None) is None and status(None) is None
    assert utilisation(Decimal(30), 0) is None


def test_stats_and_the_spread_managers_care_about() -> None:
    result = stats([Decimal(80), Decimal(40), Decimal(60)])
    assert (result.workers, result.mean, result.median, result.min, result.max) == (3, 60, 60, 40, 80)
    assert result.spread == 2
    assert stats([Decimal(0), Decimal(10)]).spread is None  # an idle worker: no finite ratio
    assert stats([]).workers == 0 and stats([]).mean is None
    assert stats([Decimal(1), Decimal(2), Decimal(3), Decimal(10)]).median == Decimal("2.5")


A, B, C = (uuid.UUID(int=n) for n in (1, 2, 3))


@pytest.mark.parametrize(
    ("candidates", "expected"),
    [
        ([Candidate(A, Decimal(40), 40, 50), Candidate(B, Decimal(20), 20, 25)], B),  # both 80 %: fewer clients
        ([Candidate(A, Decimal(45), 45, 50), Candidate(B, Decimal(10), 10, 25)], B),  # 90 % vs 40 %
        ([Candidate(B, Decimal(10), 10, 50), Candidate(A, Decimal(10), 10, 50)], A),  # full tie: smaller id
        ([Candidate(C, Decimal(10), 8, 50), Candidate(A, Decimal(10), 10, 50)], C),  # same load, fewer clients
        ([Candidate(A, Decimal(0), 0, None), Candidate(B, Decimal(49), 49, 50)], B),  # a target beats none
        ([Candidate(A, Decimal(5), 5, None), Candidate(B, Decimal(2), 2, None)], B),  # no targets: by load
        ([], None),
    ],
)
def test_most_room(candidates: list[Candidate], expected: uuid.UUID | None) -> None:
    best = most_room(candidates)
    assert (best.worker_id if best else None) == expected

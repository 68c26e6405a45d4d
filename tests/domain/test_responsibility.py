"""Rules 1, 3 and 7: who must be named, which region names them, who qualifies; residence resolution."""

from __future__ import annotations

import pytest

from app.domain.responsibility import (
    ORGANISING,
    RESIDENCE,
    Candidate,
    Holders,
    check_assignment,
    resolve_residence,
)
from app.errors import NotResponsible, Unprocessable

ORG, RES, OTHER = "05", "06", "07"
ALAND = "91"
ORGANISERS = {f"{n:02d}" for n in range(1, 23)}  # 22 organisers; Åland (91) is not one of them


@pytest.mark.parametrize(
    ("holders", "required"),
    [
        (Holders(ORG, RES), {ORGANISING: ORG, RESIDENCE: RES}),
        (Holders(RES, ORG), {ORGANISING: RES, RESIDENCE: ORG}),
        (Holders(ORG, ORG), {ORGANISING: ORG}),  # same region: the organising worker covers both
        (Holders(ORG, None), {ORGANISING: ORG}),  # living outside the regions
    ],
)
def test_required_responsibilities(holders: Holders, required: dict[str, str]) -> None:
    assert holders.required() == required


def assign(
    *,
    responsibility: str,
    caller_region: str | None,
    holders: Holders = Holders(ORG, RES),
    worker_region: str | None = None,
    active: bool = True,
    role: str = "counsellor",
    support_level: str = "standard",
) -> str:
    worker = Candidate(region=worker_region or caller_region or ORG, active=active, role=role)
    return check_assignment(
        responsibility=responsibility,
        caller_region=caller_region,
        holders=holders,
        worker=worker,
        support_level=support_level,
    )


@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [
        (dict(responsibility=ORGANISING, caller_region=ORG), ORG),
        (dict(responsibility=RESIDENCE, caller_region=RES), RES),
        (dict(responsibility=ORGANISING, caller_region=ORG, holders=Holders(ORG, ORG)), ORG),
        (dict(responsibility=ORGANISING, caller_region=ORG, holders=Holders(ORG, None)), ORG),
        (dict(responsibility=ORGANISING, caller_region=ORG, role="social_worker", support_level="special"), ORG),
        (dict(responsibility=ORGANISING, caller_region=ORG, role="counsellor", support_level="enhanced"), ORG),
        # special support restricts the organising worker only, not the residence worker
        (dict(responsibility=RESIDENCE, caller_region=RES, role="counsellor", support_level="special"), RES),
        (dict(responsibility=RESIDENCE, caller_region=RES, role="other", support_level="special"), RES),
    ],
)
def test_responsible_region_assigns_a_qualifying_worker(kwargs: dict, expected: str) -> None:
    assert assign(**kwargs) == expected


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(responsibility=RESIDENCE, caller_region=ORG, worker_region=ORG),  # rule 3
        dict(responsibility=RESIDENCE, caller_region=ORG, worker_region=RES),
        dict(responsibility=ORGANISING, caller_region=RES, worker_region=RES),
        dict(responsibility=ORGANISING, caller_region=OTHER),
        dict(responsibility=RESIDENCE, caller_region=OTHER),
        dict(responsibility=ORGANISING, caller_region=None, worker_region=ORG),
    ],
)
def test_region_not_holding_the_responsibility_cannot_assign(kwargs: dict) -> None:
    with pytest.raises(NotResponsible) as exc_info:
        assign(**kwargs)
    assert exc_info.value.code == "not_responsible"
    assert exc_info.value.status == 403


def test_organising_region_cannot_assign_residence_worker() -> None:
    with pytest.raises(NotResponsible):
        assign(responsibility=RESIDENCE, caller_region=ORG, holders=Holders(ORG, RES))


@pytest.mark.parametrize(
    ("kwargs", "code"),
    [
        (dict(responsibility=RESIDENCE, caller_region=ORG, holders=Holders(ORG, ORG)), "residence_same_as_organising"),
        (dict(responsibility=RESIDENCE, caller_region=ORG, holders=Holders(ORG, None)), "no_residence_region"),
        (dict(responsibility=RESIDENCE, caller_region=RES, holders=Holders(ORG, None)), "no_residence_region"),
        (dict(responsibility=ORGANISING, caller_region=ORG, worker_region=RES), "worker_not_in_region"),
        (dict(responsibility=RESIDENCE, caller_region=RES, worker_region=ORG), "worker_not_in_region"),
        (dict(responsibility=RESIDENCE, caller_region=RES, worker_region=OTHER), "worker_not_in_region"),
        (dict(responsibility=ORGANISING, caller_region=ORG, active=False), "worker_inactive"),
        (dict(responsibility=RESIDENCE, caller_region=RES, active=False), "worker_inactive"),
        (
            dict(responsibility=ORGANISING, caller_region=ORG, role="counsellor", support_level="special"),
            "social_worker_required",
        ),
        (
            dict(responsibility=ORGANISING, caller_region=ORG, role="special_counsellor", support_level="special"),
            "social_worker_required",
        ),
        (
            dict(responsibility=ORGANISING, caller_region=ORG, role="other", support_level="special"),
            "social_worker_required",
        ),
    ],
)
def test_assignment_breaking_a_rule_is_refused(kwargs: dict, code: str) -> None:
    with pytest.raises(Unprocessable) as exc_info:
        assign(**kwargs)
    assert exc_info.value.code == code
    assert exc_info.value.status == 422


def resolve(
    *,
    region: str | None = None,
    municipality: str | None = None,
    outside: str | None = None,
    municipality_region: str | None = None,
) -> tuple[str | None, str | None, str | None]:
    return resolve_residence(
        region=region,
        municipality=municipality,
        outside=outside,
        municipality_region=municipality_region,
        organiser_regions=ORGANISERS,
    )


@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [
        (dict(municipality="091", municipality_region="01"), ("01", "091", None)),
        (dict(municipality="091", municipality_region="01", region="01"), ("01", "091", None)),
        (dict(municipality="478", municipality_region=ALAND), (None, "478", "aland")),
        (dict(municipality="478", municipality_region=ALAND, outside="aland"), (None, "478", "aland")),
        (dict(region=RES), (RES, None, None)),
        (dict(outside="abroad"), (None, None, "abroad")),
        (dict(outside="aland"), (None, None, "aland")),
    ],
)
def test_residence_is_resolved(kwargs: dict, expected: tuple[str | None, str | None, str | None]) -> None:
    assert resolve(**kwargs) == expected


@pytest.mark.parametrize(
    ("kwargs", "code"),
    [
        (dict(municipality="091", municipality_region="01", region="02"), "municipality_region_mismatch"),
        (dict(municipality="091", municipality_region="01", outside="abroad"), "municipality_region_mismatch"),
        (dict(municipality="478", municipality_region=ALAND, region="01"), "municipality_region_mismatch"),
        (dict(municipality="478", municipality_region=ALAND, outside="abroad"), "municipality_region_mismatch"),
        (dict(municipality="999", municipality_region=None), "unknown_municipality"),
        (dict(municipality="999", municipality_region=None, region="01"), "unknown_municipality"),
        (dict(region=RES, outside="abroad"), "validation_error"),
        (dict(), "residence_required"),
        (dict(region="99"), "unknown_region"),
        (dict(region=ALAND), "unknown_region"),
    ],
)
def test_inconsistent_residence_is_refused(kwargs: dict, code: str) -> None:
    with pytest.raises(Unprocessable) as exc_info:
        resolve(**kwargs)
    assert exc_info.value.code == code

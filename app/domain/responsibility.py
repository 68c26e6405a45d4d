"""The two-region rule (PRODUCT.md rules 1, 3 and 7): who must be named, by whom, and who qualifies."""

from __future__ import annotations

from dataclasses import dataclass

from app.errors import NotResponsible, Unprocessable

ORGANISING = "organising"
RESIDENCE = "residence"


@dataclass(frozen=True)
class Holders:
    """The regions holding a client's responsibilities; ``residence`` is None outside the regions."""

    organising: str
    residence: str | None

    def required(self) -> dict[str, str]:
        """responsibility → region that must name a worker for it."""
        needed = {ORGANISING: self.organising}
        if self.residence is not None and self.residence != self.organising:
            needed[RESIDENCE] = self.residence
        return needed


@dataclass(frozen=True)
class Candidate:
    region: str
    active: bool
    role: str


def check_assignment(
    *, responsibility: str, caller_region: str | None, holders: Holders, worker: Candidate, support_level: str
) -> str:
    """The region that will hold the assignment, or the rule it breaks."""
    if responsibility == RESIDENCE:
        if holders.residence is None:
            raise Unprocessable("the client lives outside the regions: no residence worker", code="no_residence_region")
        if holders.residence == holders.organising:
            raise Unprocessable(
                "residence and organising region are the same: the organising worker covers both",
                code="residence_same_as_organising",
            )
    region = holders.organising if responsibility == ORGANISING else holders.residence
    if caller_region != region:
        raise NotResponsible(f"only region {region} may name the {responsibility} worker")
    if worker.region != region:
        raise Unprocessable(f"the worker must be a worker of region {region}", code="worker_not_in_region")
    if not worker.active:
        raise Unprocessable("the worker is not active", code="worker_inactive")
    if responsibility == ORGANISING and support_level == "special" and worker.role != "social_worker":
        raise Unprocessable(
            "a client with special support needs must have a social worker as the organising worker",
            code="social_worker_required",
        )
    return region


def resolve_residence(
    *,
    region: str | None,
    municipality: str | None,
    outside: str | None,
    municipality_region: str | None,
    organiser_regions: set[str],
) -> tuple[str | None, str | None, str | None]:
    """(residence region, municipality, outside) from what the caller gave; 422 when inconsistent.

    ``municipality_region`` is the region the given municipality belongs to (None if unknown).
    """
    if municipality is not None:
        if municipality_region is None:
            raise Unprocessable(f"unknown municipality {municipality}", code="unknown_municipality")
        if municipality_region not in organiser_regions:  # Åland's municipalities
            derived, derived_outside = None, "aland"
        else:
            derived, derived_outside = municipality_region, None
        if (region is not None and region != derived) or (outside is not None and outside != derived_outside):
            raise Unprocessable(
                f"municipality {municipality} belongs to region {municipality_region}",
                code="municipality_region_mismatch",
            )
        return derived, municipality, derived_outside
    if region is not None and outside is not None:
        raise Unprocessable("give residence_region or residence_outside, not both", code="validation_error")
    if region is None and outside is None:
        raise Unprocessable(
            "residence_region, residence_municipality or residence_outside is required",
            code="residence_required",
        )
    if region is not None and region not in organiser_regions:
        raise Unprocessable(f"unknown region {region}", code="unknown_region")
    return region, None, outside

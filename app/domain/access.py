"""Who may do what (PRODUCT.md "Who uses it"): role checks on a verified caller."""

from __future__ import annotations

from dataclasses import dataclass

from app.errors import Forbidden

SYSTEM, COORDINATOR, AUDITOR, ADMIN = "system", "coordinator", "auditor", "admin"
PURPOSES = frozenset({"care", "coordination", "audit", "client_request", "statistics"})


def default_purpose(roles: frozenset[str]) -> str:
    """The purpose of use when the caller states none (API.md: ``X-Purpose-Of-Use``)."""
    return "coordination" if roles & {SYSTEM, COORDINATOR} else "audit"


CLIENT_WRITERS = frozenset({SYSTEM, COORDINATOR})
CLIENT_READERS = frozenset({SYSTEM, COORDINATOR, AUDITOR})


@dataclass(frozen=True)
class Caller:
    """The verified caller of one request, as recorded in every log row."""

    subject: str
    roles: frozenset[str]
    region: str | None
    client_system: str | None = None
    request_id: str | None = None
    purpose: str = "coordination"

    def has(self, *roles: str) -> bool:
        return bool(self.roles & set(roles))

    @property
    def national(self) -> bool:
        """An auditor without a region reads everything."""
        return self.has(AUDITOR) and not self.has(SYSTEM, COORDINATOR) and self.region is None

    def require(self, *roles: str) -> None:
        if not self.has(*roles):
            raise Forbidden(f"this needs one of the roles: {', '.join(roles)}")

    def writer_region(self) -> str:
        """The region a client write acts for; auditors and admins never write client data."""
        self.require(SYSTEM, COORDINATOR)
        assert self.region is not None  # guaranteed by TokenClaims for these roles
        return self.region

    def require_region_manager(self, region: str) -> None:
        """Coordinator of ``region``, or admin."""
        if self.has(ADMIN) or (self.has(COORDINATOR) and self.region == region):
            return
        raise Forbidden(f"only a coordinator of region {region} or an admin may do this")

    def require_coordinator_of(self, region: str) -> None:
        """Coordinator of ``region`` (workers are the region's own business, not the operator's)."""
        if not (self.has(COORDINATOR) and self.region == region):
            raise Forbidden(f"only a coordinator of region {region} may do this")

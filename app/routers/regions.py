"""Regions, their settings, and municipalities."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path

from app.deps import CurrentCaller, SessionDep
from app.models.common import PageOut
from app.models.region import MunicipalityPublic, RegionPublic, RegionSettingsUpdate
from app.services import regions as service

router = APIRouter(tags=["regions"])
RegionCode = Annotated[str, Path(pattern=r"^\d{2}$")]


@router.get("/regions")
async def list_regions(session: SessionDep, caller: CurrentCaller) -> PageOut[RegionPublic]:
    """The 22 regions with their settings, in one page (the list envelope of every list)."""
    return PageOut(items=await service.list_regions(session), next_cursor=None)


@router.get("/regions/{code}")
async def get_region(code: RegionCode, session: SessionDep, caller: CurrentCaller) -> RegionPublic:
    """One region with its settings."""
    return await service.get_region(session, code)


@router.patch("/regions/{code}/settings")
async def update_region_settings(
    code: RegionCode, data: RegionSettingsUpdate, session: SessionDep, caller: CurrentCaller
) -> RegionPublic:
    """Change grace days, aftercare end age, caseload targets or weights (coordinator or admin)."""
    return await service.update_settings(session, caller, code, data)


@router.get("/municipalities/{code}")
async def get_municipality(
    code: Annotated[str, Path(pattern=r"^\d{3}$")], session: SessionDep, caller: CurrentCaller
) -> MunicipalityPublic:
    """A municipality and the region it belongs to."""
    return await service.get_municipality(session, code)

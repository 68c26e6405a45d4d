"""Bulk import of workers, clients and assignments from a client-information system."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query

from app.deps import CurrentCaller, JsonLinesBody, SessionFactoryDep, SettingsDep
from app.models.imports import ImportReport
from app.services import imports as service

router = APIRouter(tags=["imports"])

EXAMPLE = "\n".join(
    [
        '{"type": "worker", "source_system": "Lifecare", "external_id": "w-17", "name": "Anna Virtanen",'
        ' "role": "social_worker"}',
        '{"type": "client", "source_system": "Lifecare", "external_id": "c-2041", "personal_id": "150306A901P",'
        ' "first_name": "Aino", "last_name": "Mäkinen", "organising_region": "05", "residence_region": "05",'
        ' "aftercare_start": "2025-01-01"}',
        '{"type": "assignment", "source_system": "Lifecare", "client_external_id": "c-2041",'
        ' "worker_external_id": "w-17", "responsibility": "organising", "start_date": "2025-01-01"}',
    ]
)
BODY: dict[str, Any] = {
    "schema": {"type": "string", "description": "one JSON object per line (the example's code is a test code)"},
    "example": EXAMPLE,
}
REFUSED = {
    "allOf": [
        {"$ref": "#/components/schemas/ImportReport"},
        {
            "type": "object",
            "properties": {
                "type": {"type": "string"},
                "title": {"type": "string"},
                "status": {"type": "integer", "const": 422},
                "detail": {"type": "string"},
                "code": {"type": "string", "const": "import_refused"},
            },
            "required": ["type", "title", "status", "detail", "code"],
        },
    ]
}
RESPONSES: dict[int | str, dict[str, Any]] = {
    413: {"description": "body over 64 MiB (`payload_too_large`) or over 100,000 lines (`too_many_lines`)"},
    415: {"description": "not `application/x-ndjson` or `application/jsonl` (`unsupported_media_type`)"},
    422: {
        "description": "an atomic import with failing lines (`import_refused`): nothing was stored;"
        " the problem details carry the whole report",
        "content": {"application/problem+json": {"schema": REFUSED}},
    },
}


@router.post(
    "/imports",
    responses=RESPONSES,
    openapi_extra={
        "requestBody": {"required": True, "content": {"application/x-ndjson": BODY, "application/jsonl": BODY}}
    },
)
async def create_import(
    body: JsonLinesBody,
    caller: CurrentCaller,
    factory: SessionFactoryDep,
    settings: SettingsDep,
    dry_run: bool = False,
    atomic: bool = True,
    source_system: Annotated[
        str | None, Query(min_length=1, max_length=100, description="for lines naming none (default: the token's)")
    ] = None,
) -> ImportReport:
    """Import a JSON Lines file of workers, clients and assignments into the caller's region.

    Each line is applied by the service of the matching API call, with its rules and change entry;
    re-running a file changes nothing (see `app/services/imports.py` for keys and conflicts).
    200: a dry run (`dry_run=true`: every line checked against the database, nothing stored), an
    atomic import that stored every line, or a non-atomic import (`atomic=false`) that stored the
    valid lines and lists the others in `errors` with their line numbers. 422 `import_refused`:
    an atomic import with failing lines, nothing stored, the report in the problem. 403: callers
    that are not `system` or `coordinator` of a region.
    """
    return await service.import_file(
        factory,
        caller,
        body,
        settings=settings,
        dry_run=dry_run,
        atomic=atomic,
        source_system=source_system or caller.client_system,
    )

"""Bulk import of workers, clients and assignments from a client-information system."""

from __future__ import annotations

import json
from typing import Annotated, Any

from fastapi import APIRouter, Query

from app.deps import CurrentCaller, IdempotentConnection, JsonLinesBody, SessionFactoryDep, SettingsDep
from app.errors import ImportRefused, PayloadTooLarge, SiltaError, UnsupportedMediaType, ValidationFailed
from app.models import examples as ex
from app.models.imports import ImportReport
from app.services import imports as service
from app.services.idempotency import KeyReused

router = APIRouter(tags=["imports"])

PROBLEM = {"$ref": "#/components/schemas/Problem"}
BODY: dict[str, Any] = {
    "schema": {"type": "string", "description": "one JSON object per line"},
    "example": "\n".join(
        json.dumps(line, ensure_ascii=False)
        for line in (ex.IMPORT_WORKER_LINE, ex.IMPORT_CLIENT_LINE, ex.IMPORT_ASSIGNMENT_LINE)
    ),
}


def _example(error: type[SiltaError], code: str, detail: str, **extra: Any) -> dict[str, Any]:
    value = {"type": f"urn:silta:problem:{code}", "title": error.title, "status": error.status, "detail": detail}
    return {code: {"summary": code, "value": {**value, "code": code, **extra}}}


def _answer(description: str, examples: dict[str, Any], schema: dict[str, str] = PROBLEM) -> dict[str, Any]:
    return {
        "description": description,
        "content": {"application/problem+json": {"schema": schema, "examples": examples}},
    }


RESPONSES: dict[int | str, dict[str, Any]] = {
    413: _answer(
        "The body is over 64 MiB, or the file over 100,000 lines.",
        _example(PayloadTooLarge, "payload_too_large", PayloadTooLarge.title)
        | _example(PayloadTooLarge, "too_many_lines", "an import holds at most 100000 lines"),
    ),
    415: _answer(
        "The body is not sent as `application/x-ndjson` or `application/jsonl`.",
        _example(
            UnsupportedMediaType, "unsupported_media_type", "send the file as application/jsonl or application/x-ndjson"
        ),
    ),
    422: _answer(
        "An atomic import with failing lines (`import_refused`): nothing was stored, and the problem carries"
        " the whole report; or a query parameter is not valid (`validation_error`), or the Idempotency-Key"
        " was used with another file.",
        _example(ImportRefused, "import_refused", "1 of 3 lines failed; nothing was stored", report=ex.IMPORT_REFUSED)
        | _example(
            ValidationFailed,
            "validation_error",
            "see errors",
            errors=[{"loc": ["query", "dry_run"], "msg": "Input should be a valid boolean, unable to interpret input"}],
        )
        | _example(KeyReused, KeyReused.code, KeyReused.title),
        {"$ref": "#/components/schemas/ValidationProblem"},
    ),
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
    connection: IdempotentConnection,
    dry_run: bool = False,
    atomic: bool = True,
    source_system: Annotated[
        str | None, Query(min_length=1, max_length=100, description="for lines naming none (default: the token's)")
    ] = None,
) -> ImportReport:
    """Import a JSON Lines file of workers, clients and assignments into the caller's region.

    Each line is held to the rules of the matching API call and leaves its change entry (new rows
    are written in bulk);
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
        within=connection,
    )

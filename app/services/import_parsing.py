"""Reading an import file: JSON Lines, each line validated with its input model (no database)."""

from __future__ import annotations

import json
from typing import Any

from pydantic import ValidationError

from app.errors import PayloadTooLarge
from app.models.imports import LINE_MODELS, ImportLine, LineError, WorkerLine

MAX_LINES = 100_000
Parsed = list[tuple[int, ImportLine | LineError]]


def parse(body: bytes, source_system: str | None) -> Parsed:
    """Every non-blank line, numbered from 1, as a validated line or its error (413 over ``MAX_LINES``)."""
    raw_lines = body.removeprefix(b"\xef\xbb\xbf").split(b"\n")
    numbered = [(number, raw) for number, raw in enumerate(raw_lines, start=1) if raw.strip()]
    if len(numbered) > MAX_LINES:
        raise PayloadTooLarge(f"an import holds at most {MAX_LINES} lines", code="too_many_lines")
    return [(number, _parse_line(number, raw, source_system)) for number, raw in numbered]


def _parse_line(number: int, raw: bytes, source_system: str | None) -> ImportLine | LineError:
    try:
        value: Any = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        return LineError(line=number, code="invalid_json", detail="the line is not UTF-8")
    except json.JSONDecodeError as exc:
        return LineError(line=number, code="invalid_json", detail=f"not JSON: {exc.msg} at column {exc.colno}")
    if not isinstance(value, dict):
        return LineError(line=number, code="invalid_json", detail="each line must be a JSON object")
    kind = value.get("type")
    model = LINE_MODELS.get(kind) if isinstance(kind, str) else None
    if model is None:
        return LineError(line=number, code="validation_error", detail="type: must be worker, client or assignment")
    try:
        line = model.model_validate(value)
    except ValidationError as exc:
        messages = (
            f"{'.'.join(str(part) for part in error['loc']) or 'line'}: {error['msg']}" for error in exc.errors()
        )
        return LineError(line=number, code="validation_error", detail="; ".join(messages))
    line.source_system = line.source_system or source_system
    if line.source_system is None and not isinstance(line, WorkerLine):
        detail = "source_system: required (on the line, or as the import's source_system)"
        return LineError(line=number, code="validation_error", detail=detail)
    return line

"""Bulk import: the lines of a JSON Lines file, and the report that answers it."""

from __future__ import annotations

import datetime as dt
from typing import Literal

from pydantic import model_validator
from sqlmodel import Field, SQLModel

from app.models import examples as ex
from app.models.client import ClientCreate
from app.models.common import InputModel, RegionCode, Responsibility
from app.models.worker import WorkerBase

SYSTEM_DESCRIPTION = "the source system the external ids belong to (default: ?source_system=, or the token's)"


class WorkerLine(WorkerBase, InputModel):
    """A worker of the caller's region, keyed by its ``external_id`` (unique in the region)."""

    model_config = ex.config(ex.IMPORT_WORKER_LINE)

    type: Literal["worker"]
    source_system: str | None = Field(default=None, min_length=1, max_length=100, description=SYSTEM_DESCRIPTION)
    external_id: str = Field(min_length=1, max_length=100)
    region: RegionCode | None = Field(default=None, description="default: the caller's region")


class ClientLine(ClientCreate):
    """A client keyed by (``source_system``, ``external_id``); the other fields as in ``POST /v1/clients``."""

    model_config = ex.config(ex.IMPORT_CLIENT_LINE)

    type: Literal["client"]
    source_system: str | None = Field(default=None, min_length=1, max_length=100, description=SYSTEM_DESCRIPTION)
    external_id: str = Field(min_length=1, max_length=100)

    @model_validator(mode="after")
    def _one_key(self) -> ClientLine:
        if self.external_ids:
            raise ValueError("external_ids: give the source system's id as external_id (one system per line)")
        return self


class AssignmentLine(InputModel):
    """A named worker for a client, both given by the source system's external ids."""

    model_config = ex.config(ex.IMPORT_ASSIGNMENT_LINE)

    type: Literal["assignment"]
    source_system: str | None = Field(default=None, min_length=1, max_length=100, description=SYSTEM_DESCRIPTION)
    client_external_id: str = Field(min_length=1, max_length=100)
    worker_external_id: str = Field(min_length=1, max_length=100, description="a worker of the caller's region")
    responsibility: Responsibility
    start_date: dt.date | None = None


ImportLine = WorkerLine | ClientLine | AssignmentLine
LINE_MODELS: dict[str, type[WorkerLine] | type[ClientLine] | type[AssignmentLine]] = {
    "worker": WorkerLine,
    "client": ClientLine,
    "assignment": AssignmentLine,
}


class LineError(SQLModel):
    line: int = Field(description="1-based line number in the file")
    code: str = Field(description="the problem code the same call would answer over the API, or an import code")
    detail: str


class ImportReport(SQLModel):
    """What an import did (or, for a dry run or a refused atomic import, would have done)."""

    model_config = ex.config(ex.IMPORT_REPORT)

    dry_run: bool
    atomic: bool
    applied: bool = Field(description="true when the created and updated lines are stored")
    lines: int = Field(description="non-blank lines in the file")
    created: int = 0
    unchanged: int = 0
    updated: int = 0
    failed: int = 0
    errors: list[LineError] = Field(default_factory=list)

    def fail(self, line: int, code: str, detail: str) -> None:
        self.failed += 1
        self.errors.append(LineError(line=line, code=code, detail=detail))

"""Bulk import of a JSON Lines file of workers, clients and assignments (API.md "Integration").

Each line is ``{"type": "worker" | "client" | "assignment", "source_system": ..., ...}`` and is
applied, in file order, by the rules and builders the matching API call uses (``import_lines``;
new rows in bulk, ``import_bulk``), so every rule, permission and change entry is the API's: an
applied line leaves one change entry.

- **Keys.** Clients are found by (source system, ``external_id``) in ``client_external_id``;
  workers by (region, ``external_id``), the key the worker table has; assignments by client,
  worker, responsibility and start date. Assignments name their client and worker by those
  external ids, so they may refer to lines earlier in the same file.
- **Re-running a file changes nothing.** A line whose entity exists with the same data is
  ``unchanged``: no write, no change entry. Fields a line leaves out are not compared.
- **Same key, different data.** What the API lets a region change in place is updated through
  the API's update services (workers: name, role, service, email; clients: names, support level,
  address protection) and counted ``updated``. Anything else (identity code, organising or
  residence region, municipality, aftercare start) is the per-line error ``conflicting_data``:
  those change through moves and organising transfers, never by overwriting. An assignment
  line for a responsibility another worker holds is ``responsibility_taken``, as over the API.
- **Never merged across systems.** An identity code already registered under another source
  system, in the database or on an earlier line of the file, is ``duplicate_across_systems``
  naming that system and its external id (for the database, only to a region that holds the
  client); the same code under another external id of the same system, or registered without
  this link, is ``duplicate_client``. Identity codes never appear in the report.
- **Transactions.** A dry run, and an atomic import, run the whole file in one
  ``OuterTransaction``, then one rollback (dry run, or any error with ``atomic``) or commit. They
  first run without savepoints (two statements a line saved); if a line through the services
  fails, that run is rolled back and the file runs again with each line in its own savepoint: a
  failing line is rolled back to it and reported and the next lines still run, so every error is
  found. A non-atomic import always uses savepoints and commits every ``BATCH_LINES`` lines or
  ``BATCH_SECONDS``, whichever comes first, so other writers wait for one batch, not the whole
  file. An atomic import holds its locks to the end: on SQLite that is the database's one write
  lock (other writers get 503 after 10 s), on PostgreSQL the rows of the clients and workers it
  touched and its regions' feed rows; run big atomic imports off-peak.
- **Cost.** What every line would look up (keys, stored identity codes, the caller's view of the
  clients, their assignments) is read for the whole file in a few statements (``import_index``).
  Lines that create take the set-based path (``import_bulk``): checked in memory by the services'
  rules and written a few statements per table, so a file costs about the same statements for 10
  lines or 10,000 (``benchmarks/imports.py``). If the database still refuses such a row (another
  writer registered the same code meanwhile), the transaction's lines run again through the
  services, which report the line as the API would.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass

from sqlalchemy.exc import DataError, IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, async_sessionmaker
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from app.config import Settings
from app.db import OuterTransaction
from app.domain.access import Caller
from app.domain.personal_id import parse_personal_id
from app.errors import ImportRefused, SiltaError
from app.models.client import Client
from app.models.imports import AssignmentLine, ClientLine, ImportLine, ImportReport, LineError, WorkerLine
from app.services.audit import record_access
from app.services.import_bulk import Bulk, BulkConflict
from app.services.import_index import ImportIndex, reference_rows
from app.services.import_lines import FirstSeen, ImportContext, import_assignment, import_client, import_worker
from app.services.import_parsing import Parsed, parse
from app.services.vault import vault_of

SET_BASED = True  # new rows in bulk (app.services.import_bulk); the tests run every file both ways
BATCH_LINES = 1000  # a non-atomic import commits after this many lines,
BATCH_SECONDS = 2.0  # or sooner, after this long: SQLite's other writers wait 10 s before they give up
FLUSH_LINES = 1000  # the set-based path writes at least this often (bounded memory and IN lists)


async def import_file(
    factory: async_sessionmaker[AsyncSession],
    caller: Caller,
    body: bytes,
    *,
    settings: Settings,
    dry_run: bool,
    atomic: bool,
    source_system: str | None,
    within: AsyncConnection | None = None,
) -> ImportReport:
    """Validate and apply the file; raise ``ImportRefused`` (with the report) when an atomic import fails.

    ``within``: the connection of an idempotent request's transaction; the import then runs in
    savepoints of it, so that nothing is durable before the stored answer is (``OuterTransaction``).
    """
    caller.writer_region()
    parsed = parse(body, source_system)
    run = Run(factory, caller, settings, dry_run=dry_run, atomic=atomic, within=within)
    outcome = None
    if (dry_run or atomic) and not any(isinstance(line, LineError) for _, line in parsed):
        outcome = await run.lines(parsed, savepoints=False)
    if outcome is None:  # a line failed: run again, each line in a savepoint, to report every line
        outcome = await run.lines(parsed, savepoints=True)
    assert outcome is not None  # with savepoints every line is reported
    report, ctx = outcome
    report.applied = not dry_run and not (atomic and report.failed)
    report.errors.sort(key=lambda error: error.line)
    await run.log_shown(ctx)
    if atomic and not dry_run and report.failed:
        raise ImportRefused(
            f"{report.failed} of {report.lines} lines failed; nothing was stored", report=report.model_dump(mode="json")
        )
    return report


@dataclass
class Run:
    """How the lines of one import meet the database."""

    factory: async_sessionmaker[AsyncSession]
    caller: Caller
    settings: Settings
    dry_run: bool
    atomic: bool
    within: AsyncConnection | None

    async def lines(self, parsed: Parsed, *, savepoints: bool) -> tuple[ImportReport, ImportContext] | None:
        """Apply the lines in transactions (one for a dry run or an atomic import); None when a line failed
        without ``savepoints`` (nothing is kept then: the caller runs again with them)."""
        report = ImportReport(dry_run=self.dry_run, atomic=self.atomic, applied=False, lines=len(parsed))
        ctx = ImportContext(settings=self.settings)
        for number, line in parsed:
            if isinstance(line, ClientLine):
                _note_code(ctx, number, line)
            elif isinstance(line, AssignmentLine):
                assert line.source_system is not None
                ctx.named_until[(line.source_system, line.client_external_id)] = number
        start, bulk = 0, SET_BASED
        while start < len(parsed):
            kept = _kept(report, ctx) if bulk else None
            outer = OuterTransaction(self.factory, savepoints=savepoints, within=self.within)
            session = await outer.begin()
            try:
                if start == 0:
                    lines = [line for _, line in parsed if not isinstance(line, LineError)]
                    ctx.index = await ImportIndex.load(session, self.caller, lines)
                ctx.reference = await reference_rows(session)
                ctx.bulk = await self._bulk(session, parsed[start:], ctx) if bulk else None
                end, complete = await self._transaction(session, parsed, start, report, ctx, savepoints=savepoints)
                if complete and ctx.bulk is not None:  # else the transaction is rolled back already
                    await ctx.bulk.flush(session)
                keep = complete and not self.dry_run and not (self.atomic and report.failed)
            except BulkConflict:
                await outer.rollback()
                assert kept is not None
                report, ctx.index, ctx.shown = kept
                bulk = False  # another writer got there first: these lines again, through the services
                continue
            except BaseException:
                await outer.rollback()
                raise
            await (outer.commit() if keep else outer.rollback())
            if not complete:
                return None
            start, bulk = end, SET_BASED
        return report, ctx

    async def _bulk(self, session: AsyncSession, ahead: Parsed, ctx: ImportContext) -> Bulk:
        """The set-based path for a transaction, with the stored workers its assignment lines name."""
        region = self.caller.writer_region()
        named = {
            ctx.index.workers.get((region, line.worker_external_id))
            for _, line in ahead[: self._limit(len(ahead))]
            if isinstance(line, AssignmentLine)
        }
        workers = {worker_id for worker_id in named if worker_id is not None}
        bulk = await Bulk.begin(session, self.caller, vault_of(session), ctx.reference, workers)
        # the locks were taken in the session's first savepoint: release it, or a line failing before
        # anything is written rolls back to it and frees the workers while their assignments are pending
        await session.commit()
        return bulk

    def _limit(self, remaining: int) -> int:
        """How many of the remaining lines one transaction may take."""
        return remaining if self.dry_run or self.atomic else min(remaining, BATCH_LINES)

    async def _transaction(
        self,
        session: AsyncSession,
        parsed: Parsed,
        start: int,
        report: ImportReport,
        ctx: ImportContext,
        *,
        savepoints: bool,
    ) -> tuple[int, bool]:
        """The lines of one transaction, from ``start``: where the next begins, and False when a line
        failed in a session without savepoints."""
        began = time.monotonic()
        end = start + self._limit(len(parsed) - start)
        for position in range(start, end):
            number, line = parsed[position]
            if not await _apply(session, self.caller, number, line, report, ctx) and not savepoints:
                return position + 1, False
            if ctx.bulk is not None and len(ctx.bulk.writes) >= FLUSH_LINES:
                await ctx.bulk.flush(session)
                ctx.bulk.release(ctx.named_until, after=number)
            if not (self.dry_run or self.atomic) and time.monotonic() - began > BATCH_SECONDS:
                return position + 1, True
        return end, True

    async def log_shown(self, ctx: ImportContext) -> None:
        """The report named these clients (their other systems' ids, or how they differ): an access entry."""
        if not ctx.shown:
            return
        outer = OuterTransaction(self.factory, within=self.within)
        session = await outer.begin()
        try:
            stored = (await session.exec(select(Client.id).where(col(Client.id).in_(ctx.shown)))).all()
            await record_access(
                session,
                self.caller,
                method="POST",
                endpoint="/v1/imports",
                client_ids=sorted(stored),
                enabled=self.settings.audit_access_log,
            )
        except BaseException:
            await outer.rollback()
            raise
        await outer.commit()


def _kept(report: ImportReport, ctx: ImportContext) -> tuple[ImportReport, ImportIndex, set[uuid.UUID]]:
    """What a transaction's lines change in the run's state, to restore if they run again through the services.

    Copies, not deep copies: lines only add errors and entries, never change one, and a deep copy of an index
    of 100,000 lines took seconds, once for each of its transactions."""
    return report.model_copy(update={"errors": list(report.errors)}), ctx.index.copy(), set(ctx.shown)


def _named_clients(exc: SiltaError) -> set[uuid.UUID]:
    existing = exc.extra.get("existing_id")
    return {uuid.UUID(existing)} if existing else set()


def _note_code(ctx: ImportContext, number: int, line: ClientLine) -> None:
    """Remember the first line of each identity code, so a later line under another key is reported."""
    assert line.source_system is not None
    try:
        code = parse_personal_id(line.personal_id, accept_temporary=True).code
    except SiltaError:
        return  # reported when the line runs
    ctx.codes.setdefault(code, FirstSeen(line=number, system=line.source_system, external_id=line.external_id))


async def _apply(
    session: AsyncSession,
    caller: Caller,
    number: int,
    line: ImportLine | LineError,
    report: ImportReport,
    ctx: ImportContext,
) -> bool:
    """One line; a failure rolls back its savepoint (with its change entry), leaving nothing of it behind."""
    if isinstance(line, LineError):
        report.fail(line.line, line.code, line.detail)
        return False
    try:
        if isinstance(line, WorkerLine):
            outcome = await import_worker(session, caller, line, number, ctx)
        elif isinstance(line, ClientLine):
            outcome = await import_client(session, caller, line, number, ctx)
        else:
            outcome = await import_assignment(session, caller, line, number, ctx)
    except (SiltaError, IntegrityError, DataError) as exc:
        await session.rollback()
        code, detail = _problem(exc)
        report.fail(number, code, detail)
        if isinstance(exc, SiltaError):
            ctx.shown.update(_named_clients(exc))
        return False
    setattr(report, outcome, getattr(report, outcome) + 1)
    return True


def _problem(exc: Exception) -> tuple[str, str]:
    if isinstance(exc, SiltaError):
        return exc.code, exc.detail
    if isinstance(exc, IntegrityError):
        return "conflict", "the line conflicts with the stored data"
    return "invalid_value", "a value is out of range or not storable"

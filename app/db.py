"""Engines and sessions; every SQLite/PostgreSQL difference lives here.

The API is async (asyncpg / aiosqlite); Alembic and the CLI use the sync drivers
(psycopg / sqlite3) on the same database.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Sequence
from typing import Any, Literal

from sqlalchemy import event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import (
    AsyncConnection,
    AsyncEngine,
    AsyncTransaction,
    async_sessionmaker,
    create_async_engine,
)
from sqlmodel import Session
from sqlmodel.ext.asyncio.session import AsyncSession
from starlette.types import ASGIApp, Receive, Scope, Send

from app.config import Settings

log = logging.getLogger("silta")
SQLITE_BUSY_TIMEOUT_MS = 10_000
PG_CONNECT_TIMEOUT_SECONDS = 5  # a request waits at most this long for an unreachable database


def is_sqlite(url: str) -> bool:
    return make_url(url).get_backend_name() == "sqlite"


def async_url(url: str) -> str:
    """The URL with the async driver of its backend."""
    parsed = make_url(url)
    driver = "aiosqlite" if parsed.get_backend_name() == "sqlite" else "asyncpg"
    return parsed.set(drivername=f"{parsed.get_backend_name()}+{driver}").render_as_string(hide_password=False)


def sync_url(url: str) -> str:
    """The URL with the sync driver of its backend (for Alembic and scripts)."""
    parsed = make_url(url)
    driver = "pysqlite" if parsed.get_backend_name() == "sqlite" else "psycopg"
    return parsed.set(drivername=f"{parsed.get_backend_name()}+{driver}").render_as_string(hide_password=False)


def sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    """WAL and a busy timeout: two writer processes otherwise collapse (see shared/bench)."""
    # Let SQLAlchemy, not the driver, decide when a transaction starts (see _begin_immediate).
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def _begin_immediate(conn: Any) -> None:
    # A deferred transaction that reads and then writes fails with "database is locked"
    # when another writer got in between; taking the write lock up front makes it wait.
    conn.exec_driver_sql("BEGIN IMMEDIATE")


def _connect_or_unavailable(dialect: Any, _record: Any, cargs: list[Any], cparams: dict[str, Any]) -> Any:
    """Report a database that cannot be reached as the driver's OperationalError.

    asyncpg raises plain ``OSError``s (refused, timed out) when it cannot connect, and SQLAlchemy
    passes those through unwrapped (sqlalchemy#11956), so they would surface as a 500 and slip
    past ``/readyz``. As an OperationalError they become SQLAlchemy's, like any other database
    failure: 503 ``unavailable`` (app.problems), and the pool simply tries again next time.
    """
    try:
        return dialect.connect(*cargs, **cparams)
    except OSError as exc:  # TimeoutError and socket.gaierror included
        raise dialect.loaded_dbapi.OperationalError(f"database unreachable: {exc!r}", exc) from exc


def make_engine(settings: Settings) -> AsyncEngine:
    """The async engine for the configured database."""
    url = settings.sqlalchemy_url
    if is_sqlite(url):
        in_memory = make_url(url).database in (None, "", ":memory:")
        if not in_memory:
            settings.data_dir.mkdir(parents=True, exist_ok=True)
        # One connection: every transaction writes and SQLite admits one writer at a time, so requests
        # queue for it in order instead of sleeping in SQLite's busy handler (p99 885 ms -> 29 ms at c=4)
        engine = create_async_engine(async_url(url), **({} if in_memory else {"pool_size": 1, "max_overflow": 0}))
        event.listen(engine.sync_engine, "connect", sqlite_pragmas)
        event.listen(engine.sync_engine, "begin", _begin_immediate)
        return engine
    engine = create_async_engine(
        async_url(url),
        pool_size=settings.db_pool_size,
        max_overflow=settings.db_max_overflow,
        pool_timeout=settings.db_pool_timeout,
        pool_pre_ping=settings.db_pre_ping,  # off: a dead connection fails one request, and the pool is renewed
        connect_args={"timeout": PG_CONNECT_TIMEOUT_SECONDS},
    )
    event.listen(engine.sync_engine, "do_connect", _connect_or_unavailable)
    return engine


def make_sessionmaker(
    engine: AsyncEngine, *, sync_session_class: type[Session] = Session, info: dict[str, Any] | None = None
) -> async_sessionmaker[AsyncSession]:
    """Sessions of one application: ``info`` travels with every session (e.g. the audit MAC key)."""
    return async_sessionmaker(
        engine,
        class_=AsyncSession,
        expire_on_commit=False,
        autoflush=False,
        sync_session_class=sync_session_class,
        info=info or {},
    )


def read_engine(engine: AsyncEngine) -> AsyncEngine:
    """The engine a read request's session uses: on PostgreSQL the same pool in autocommit.

    A read sends its SELECTs and its access-log entry; in a transaction that was a BEGIN and a
    COMMIT besides, two of a client read's four round trips (interleaved A/B: 1.7 % of its server
    CPU, 2.7 % of its throughput; issue 9). Under READ COMMITTED every statement sees its own
    snapshot anyway, so the SELECTs see what they saw before; the access entry with its clients is
    one statement, and an entry with disclosures is written in a transaction of its own
    (``app.services.audit.record_access``). SQLite keeps its transactions.
    """
    if engine.dialect.name != "postgresql":
        return engine
    return engine.execution_options(isolation_level="AUTOCOMMIT")


def in_autocommit(connection: AsyncConnection) -> bool:
    """Whether statements on ``connection`` commit one by one (a read request's, see ``read_engine``)."""
    return connection.sync_connection is not None and (
        connection.sync_connection.get_execution_options().get("isolation_level") == "AUTOCOMMIT"
    )


async def plain_rows(session: AsyncSession, statement: Any, params: dict[str, Any] | None = None) -> Sequence[Any]:
    """A SELECT's rows as plain column rows, an entity's columns by name: for reads that change nothing.

    No ORM instances, identity map or per-row loading: for the thousands of rows a report reads,
    and for a read request's few, where that loading cost more than the statement (issue 9).
    """
    return (await (await session.connection()).execute(statement, params)).all()


async def session_scope(factory: async_sessionmaker[AsyncSession]) -> AsyncIterator[AsyncSession]:
    """One session per request; services commit, this only closes (rolling back leftovers).

    Closing runs after the answer was sent. If the database connection broke meanwhile (the
    database restarted), rolling back fails; the connection is then discarded — the database
    rolls back on its own — instead of the error cutting off the HTTP connection as well.
    """
    session = factory()
    try:
        yield session
    finally:
        await close_session(session)


async def close_session(session: AsyncSession) -> None:
    """End a request's session (see ``session_scope``); a broken connection is discarded, not raised."""
    try:
        await session.close()
    except SQLAlchemyError:
        log.warning("database connection lost while ending a request's session: discarded")
        await session.invalidate()


class SessionMiddleware:
    """Closes the session a request opened (``app.deps.get_session``) once its answer has been sent.

    ``get_session`` is a plain ``async def`` rather than a ``yield`` dependency: FastAPI wraps each
    of those in an exit stack and a cancel scope, a cost on every request (issue 9).
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await self.app(scope, receive, send)
        finally:
            session = scope.get("state", {}).pop(REQUEST_SESSION, None)
            if session is not None:
                await close_session(session)


REQUEST_SESSION = "silta.session"  # scope["state"]: the request's own session, for SessionMiddleware to close


class OuterTransaction:
    """One database transaction around work whose services commit as they go.

    The session is joined to a transaction begun here, so each ``session.commit()`` of a
    service only releases a savepoint (its change entry is still written by that commit) and
    nothing is durable until ``commit()`` here. Idempotent requests use it to store their
    response with their effect; imports use it to apply a whole file or nothing.

    ``savepoints=False`` saves the two statements per commit for work that is all or nothing
    anyway: a service's commit then only flushes (and writes its change entry), and any
    ``session.rollback()`` rolls back the whole transaction.

    ``within``: a connection already in a transaction (an idempotent request's). The work then
    runs in a savepoint of it: ``commit()`` releases the savepoint, ``rollback()`` rolls back to
    it, and the connection's own transaction decides what becomes durable.
    """

    def __init__(
        self,
        factory: async_sessionmaker[AsyncSession],
        *,
        savepoints: bool = True,
        within: AsyncConnection | None = None,
    ) -> None:
        self.factory = factory
        self.join_mode: Literal["create_savepoint", "rollback_only"] = (
            "create_savepoint" if savepoints else "rollback_only"
        )
        self.borrowed = within
        self.connection: AsyncConnection | None = None
        self.transaction: AsyncTransaction | None = None
        self.session: AsyncSession | None = None

    async def begin(self) -> AsyncSession:
        if self.borrowed is not None:
            self.connection = self.borrowed
            self.transaction = await self.connection.begin_nested()
        else:
            self.connection = await self.factory.kw["bind"].connect()
            self.transaction = await self.connection.begin()
        self.session = self.factory(bind=self.connection, join_transaction_mode=self.join_mode)
        return self.session

    @property
    def active(self) -> bool:
        return self.transaction is not None and self.transaction.is_active

    async def close_session(self) -> None:
        """End the session (rolling back an unfinished savepoint) but keep the transaction open."""
        if self.session is not None:
            await self.session.close()
            self.session = None

    async def commit(self) -> None:
        await self._end(commit=True)

    async def rollback(self) -> None:
        await self._end(commit=False)

    async def _end(self, *, commit: bool) -> None:
        try:
            await self.close_session()
            if self.transaction is not None and self.transaction.is_active:
                await (self.transaction.commit() if commit else self.transaction.rollback())
        except SQLAlchemyError:
            # the connection broke (the database restarted): nothing was kept, so drop it unused
            if self.connection is not None:
                await self.connection.invalidate()
            if commit:
                raise
            log.warning("database connection lost while rolling back: discarded")
        finally:
            if self.connection is not None and self.borrowed is None:
                await self.connection.close()
            self.session = self.transaction = self.connection = None

"""The ASGI application: ``app.main:app``."""

from __future__ import annotations

import gc
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
from fastapi import Depends, FastAPI
from fastapi.routing import APIRoute

from app import logs, openapi, problems
from app.config import Settings, get_settings
from app.db import SessionMiddleware, make_engine, make_sessionmaker, read_engine
from app.deps import route_guard
from app.metrics import Metrics
from app.middleware import BodyLimitMiddleware, ObserveMiddleware, RequestIdMiddleware, RouteTable
from app.routers import (
    assignments,
    audit,
    caseload,
    clients,
    compliance,
    coordination,
    costs,
    events,
    health,
    imports,
    pairs,
    regions,
    webhooks,
    workers,
)
from app.security import KeyStore
from app.services import background
from app.services.audit import MAC_KEY, NO_CHANGE_LOG, AuditedSession, AuditKey
from app.services.caseload import OverviewSnapshot
from app.services.idempotency import IdempotencyMiddleware
from app.services.vault import VAULT, Vault

API_VERSION = "1.0.0"
ROUTERS = (
    regions,
    workers,
    clients,
    assignments,
    compliance,
    coordination,
    pairs,
    costs,
    caseload,
    audit,
    events,
    webhooks,
    imports,
)


def operation_id(route: APIRoute) -> str:
    """Stable operation ids ``<tag>-<handler>`` for generated clients."""
    return f"{route.tags[0]}-{route.name}" if route.tags else route.name


def create_app(settings: Settings | None = None, *, jwks_transport: httpx.AsyncBaseTransport | None = None) -> FastAPI:
    """Build the app for ``settings``; every ``/v1`` route requires a verified token."""
    settings = settings or get_settings()
    engine = make_engine(settings)

    audit_key = AuditKey(settings.audit_key_path, create=settings.audit_key_file is None)
    vault = Vault(settings.identity_key_path, create=settings.identity_key_file is None)
    info = {MAC_KEY: audit_key, VAULT: vault, NO_CHANGE_LOG: not settings.audit_change_log}
    factory = make_sessionmaker(engine, sync_session_class=AuditedSession, info=info)
    reads = make_sessionmaker(read_engine(engine), sync_session_class=AuditedSession, info=info)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        async with background.running(factory, settings):
            # What start-up built (modules, routes, schemas, table metadata: most of the process's
            # objects) lives as long as the process: the collector's full passes need not walk it.
            # Walking it stalled every request in flight for about 100 ms a few times a minute.
            gc.collect()
            gc.freeze()
            yield
        await engine.dispose()

    app = FastAPI(
        title="Silta API",
        version=API_VERSION,
        summary="Coordinating child-welfare aftercare responsibility across Finnish wellbeing services counties",
        lifespan=lifespan,
        generate_unique_id_function=operation_id,
    )
    app.state.settings = settings
    app.state.engine = engine
    app.state.sessionmaker = factory
    app.state.read_sessionmaker = reads  # GET requests' sessions (see app.db.read_engine)
    app.state.audit_key = audit_key
    app.state.keys = KeyStore(settings, transport=jwks_transport)
    app.state.rate_limit_clock = time.time  # tests replace it to let a window pass without sleeping
    app.state.metrics = Metrics(gap_seconds=settings.metrics_gap_seconds)
    app.state.overview_snapshot = OverviewSnapshot(max_age=settings.overview_max_age_seconds)
    routes = RouteTable()
    problems.install(app)
    openapi.install(app)
    app.include_router(health.router)
    routes.add(health.router.routes)
    protected = [Depends(route_guard)]  # it verifies the caller first (its own first dependency)
    for module in ROUTERS:
        app.include_router(module.router, prefix="/v1", dependencies=protected)
        routes.add(module.router.routes, prefix="/v1")
    routes.add(app.routes)  # FastAPI's own: /openapi.json, /docs
    app.add_middleware(SessionMiddleware)
    app.add_middleware(IdempotencyMiddleware, on_error=problems.of)
    app.add_middleware(BodyLimitMiddleware, on_too_large=problems.too_large)
    app.add_middleware(ObserveMiddleware, routes=routes, metrics=app.state.metrics)
    app.add_middleware(RequestIdMiddleware)
    return app


def __getattr__(name: str) -> FastAPI:
    """``app.main:app`` is built on first access, so importing this module has no side effects."""
    if name == "app":
        logs.configure(get_settings().log_level)
        globals()["app"] = create_app()
        return globals()["app"]
    raise AttributeError(name)

"""Shared fixtures: a migrated database per backend, test signing keys, an HTTP client.

API tests run once on SQLite and once on PostgreSQL. PostgreSQL missing: a failure in CI
(``CI=true``), a skip with a clear message elsewhere. No identity code may be logged meanwhile
(``tests/log_guard.py``).
"""

from __future__ import annotations

import datetime as dt
import json
import os
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from sqlalchemy import event, text

from app.config import Settings
from app.main import create_app
from app.migrate import upgrade
from app.models.region import DEFAULT_CASELOAD_TARGETS, DEFAULT_CASELOAD_WEIGHTS
from app.security import mint_token

ISSUER, AUDIENCE, KID = "https://idp.test", "silta-test", "test-rsa-1"
PG_ADMIN_URL = os.environ.get("SILTA_TEST_PG_ADMIN_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
PG_TEST_DB = os.environ.get("SILTA_TEST_PG_DB", "silta_test")
MUTABLE_TABLES = [
    "rate_limit_bucket",
    "webhook_attempt",
    "webhook_delivery",
    "webhook_subscription",
    "idempotency_key",
    "feed_event",
    "audit_chain",
    "disclosure_log",
    "access_log_client",
    "access_log",
    "change_event_client",
    "change_event",
    "compliance_gap",
    "coordination_request",
    "cost_decision_event",
    "cost_decision",
    "work_pair",
    "assignment",
    "responsibility_period",
    "client_external_id",
    "client",
    "worker",
]
CHECK = "0123456789ABCDEFHJKLMNPRSTUVWXY"
pytest_plugins = ["pytester", "tests.log_guard"]


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Tests marked ``postgres_only`` (real concurrency) run only with the PostgreSQL backend."""
    keep, drop = [], []
    for item in items:
        sqlite_variant = getattr(item, "callspec", None) and item.callspec.params.get("backend") == "sqlite"
        (drop if item.get_closest_marker("postgres_only") and sqlite_variant else keep).append(item)
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = keep


def hetu(birth: dt.date, individual: int = 123, sign: str | None = None) -> str:
    """A valid identity code for ``birth`` (default century sign for its century)."""
    sign = sign or {1800: "+", 1900: "-", 2000: "A"}[birth.year // 100 * 100]
    digits = f"{birth:%d%m}{birth.year % 100:02d}"
    return f"{digits}{sign}{individual:03d}{CHECK[int(f'{digits}{individual:03d}') % 31]}"


@pytest.fixture(scope="session")
def signing_key(tmp_path_factory: pytest.TempPathFactory) -> tuple[bytes, Path]:
    from jose import jwk  # the test key's JWKS; the app itself imports jose only in security.py

    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = private.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    public_pem = private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    jwks = {"keys": [{**jwk.construct(public_pem, "RS256").to_dict(), "kid": KID, "use": "sig"}]}
    path = tmp_path_factory.mktemp("keys") / "jwks.json"
    path.write_text(json.dumps(jwks))
    return pem, path


def _postgres_url() -> str:
    try:
        with psycopg.connect(PG_ADMIN_URL, autocommit=True, connect_timeout=3) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{PG_TEST_DB}" WITH (FORCE)')
            conn.execute(f'CREATE DATABASE "{PG_TEST_DB}"')
    except psycopg.OperationalError as exc:
        message = f"PostgreSQL not reachable at {PG_ADMIN_URL} ({exc.__class__.__name__})"
        if os.environ.get("CI"):
            pytest.fail(message + ": the PostgreSQL tests must run in CI")
        pytest.skip(message + ": skipping the PostgreSQL half of the API tests")
    return PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{PG_TEST_DB}"


@pytest.fixture(scope="session", params=["sqlite", "postgresql"])
def backend(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str]:
    url = f"sqlite:///{tmp_path_factory.mktemp('db') / 'silta.db'}" if request.param == "sqlite" else _postgres_url()
    upgrade(url)
    return request.param, url


@pytest.fixture(scope="session")
def settings(
    backend: tuple[str, str], signing_key: tuple[bytes, Path], tmp_path_factory: pytest.TempPathFactory
) -> Settings:
    return Settings(
        database_url=backend[1],
        jwks_file=signing_key[1],
        jwt_issuer=ISSUER,
        jwt_audience=AUDIENCE,
        data_dir=tmp_path_factory.mktemp("data"),
    )


ACCESS_TABLES = ("access_log", "access_log_client", "disclosure_log")


def refuse_writes_in_reads(statement: str) -> None:
    """A GET's statements commit one by one on PostgreSQL (app.db.read_engine): nothing but its access
    entry may be written there, or a failure half-way would leave half a change behind."""
    words = statement.lstrip().split(None, 3)
    if words and words[0].upper() in ("INSERT", "UPDATE", "DELETE", "WITH"):
        written = [table for table in ACCESS_TABLES if f" {table} " in f" {statement} "]
        changes = any(verb in statement.upper() for verb in ("INSERT ", "UPDATE ", "DELETE "))
        if changes and not written:
            raise AssertionError(f"a read request wrote outside the access log: {statement[:200]}")


@pytest.fixture(scope="session")
async def app(settings: Settings) -> AsyncIterator[Any]:
    application = create_app(settings)
    reads = application.state.read_sessionmaker.kw["bind"]
    if reads is not application.state.engine:  # PostgreSQL: every API test checks what its reads write
        event.listen(reads.sync_engine, "before_cursor_execute", lambda *args: refuse_writes_in_reads(args[2]))
    yield application
    await application.state.engine.dispose()


async def _reset(app: Any, backend: str) -> None:
    app.state.overview_snapshot.figures = None  # the figures of the previous test's data
    async with app.state.engine.begin() as conn:
        if backend == "postgresql":
            # the append-only tables refuse TRUNCATE; a replica-role session (superuser only) skips triggers
            await conn.execute(text("SET LOCAL session_replication_role = replica"))
            await conn.execute(text(f"TRUNCATE {', '.join(MUTABLE_TABLES)} RESTART IDENTITY CASCADE"))
        else:
            for table in MUTABLE_TABLES:
                await conn.execute(text(f"DELETE FROM {table}"))
        await conn.execute(text("DELETE FROM region_settings_version WHERE recorded_by <> 'migration 0005'"))
        await conn.execute(text("UPDATE feed_position SET last_seq = 0, purged_through = 0"))
        defaults = {"targets": json.dumps(DEFAULT_CASELOAD_TARGETS), "weights": json.dumps(DEFAULT_CASELOAD_WEIGHTS)}
        cast = "CAST(:{} AS JSONB)" if backend == "postgresql" else ":{}"
        await conn.execute(
            text(
                "UPDATE region SET grace_days = 14, aftercare_end_age = 23,"
                f" caseload_targets = {cast.format('targets')}, caseload_weights = {cast.format('weights')}"
            ),
            defaults,
        )


@pytest.fixture
async def api(app: Any, backend: tuple[str, str]) -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client on a database holding only the reference data."""
    await _reset(app, backend[0])
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://silta.test") as client:
        yield client


@pytest.fixture
def db_backend(backend: tuple[str, str]) -> str:
    return backend[0]


@pytest.fixture(scope="session")
def auth(signing_key: tuple[bytes, Path]) -> Callable[..., dict[str, str]]:
    """Headers with a freshly signed token: ``auth("coordinator", "05")``."""

    def make(*roles: str, region: str | None = None, sub: str | None = None, **claims: Any) -> dict[str, str]:
        token = mint_token(
            signing_key[0],
            kid=KID,
            algorithm="RS256",
            issuer=ISSUER,
            audience=AUDIENCE,
            subject=sub or f"user-{uuid.uuid4().hex[:8]}",
            roles=list(roles),
            region=region,
            client_system=claims.pop("client_system", None),
            extra=claims,
        )
        return {"Authorization": f"Bearer {token}"}

    return make

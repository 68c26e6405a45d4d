"""Migrations build exactly the schema the models describe, and they reverse cleanly."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import create_engine
from sqlmodel import SQLModel

import app.models  # noqa: F401
from app.db import sync_url
from app.migrate import downgrade, upgrade


def _diff(url: str) -> list:
    engine = create_engine(sync_url(url))
    with engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True})
        diff = compare_metadata(context, SQLModel.metadata)
    engine.dispose()
    return diff


def test_the_migrated_schema_matches_the_models(backend):
    assert _diff(backend[1]) == []


def test_migrations_downgrade_and_upgrade_again(tmp_path):
    url = f"sqlite:///{tmp_path / 'cycle.db'}"
    upgrade(url)
    downgrade(url, "base")
    upgrade(url)
    assert _diff(url) == []

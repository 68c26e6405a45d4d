"""Alembic environment: migrates the database named by the settings (or by the caller)."""

from logging.config import fileConfig

from alembic import context
from sqlalchemy import create_engine, event, pool
from sqlmodel import SQLModel

import app.models  # noqa: F401  (registers every table on SQLModel.metadata)
from app.config import get_settings
from app.db import is_sqlite, sqlite_pragmas, sync_url

config = context.config
if config.config_file_name is not None and config.attributes.get("configure_logger", True):
    fileConfig(config.config_file_name, disable_existing_loggers=False)


def database_url() -> str:
    return config.attributes.get("database_url") or get_settings().sqlalchemy_url


def run_migrations_online() -> None:
    url = database_url()
    if is_sqlite(url):
        get_settings().data_dir.mkdir(parents=True, exist_ok=True)
    engine = create_engine(sync_url(url), poolclass=pool.NullPool)
    if is_sqlite(url):
        event.listen(engine, "connect", sqlite_pragmas)
    with engine.connect() as connection:
        context.configure(
            connection=connection,
            target_metadata=SQLModel.metadata,
            render_as_batch=is_sqlite(url),
            compare_type=True,
        )
        with context.begin_transaction():
            context.run_migrations()
    engine.dispose()


if context.is_offline_mode():
    raise SystemExit("offline migrations are not supported; run against a database")
run_migrations_online()

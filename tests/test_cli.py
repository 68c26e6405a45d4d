"""The ``silta`` command: development tokens verify against the embedded default's key."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from app.cli import cli
from app.config import Settings, get_settings
from app.security import KeyStore, verify_token


@pytest.fixture
def dev_env(tmp_path, monkeypatch):
    monkeypatch.setenv("SILTA_DATA_DIR", str(tmp_path))
    for name in ("SILTA_JWKS_FILE", "SILTA_JWKS_URL", "SILTA_JWT_ISSUER", "SILTA_JWT_AUDIENCE", "SILTA_ENV"):
        monkeypatch.delenv(name, raising=False)
    get_settings.cache_clear()
    yield tmp_path
    get_settings.cache_clear()


async def test_dev_tokens_verify_with_the_dev_key(dev_env):
    result = CliRunner().invoke(cli, ["token", "--role", "coordinator", "--region", "05", "--client-system", "X"])
    assert result.exit_code == 0, result.output
    settings = Settings(data_dir=dev_env)
    claims = await verify_token(result.output.strip(), KeyStore(settings), settings)
    assert claims.roles == ["coordinator"] and claims.region == "05" and claims.client_system == "X"


def test_token_refuses_unknown_roles(dev_env):
    assert CliRunner().invoke(cli, ["token", "--role", "boss"]).exit_code != 0


def test_migrate_builds_the_embedded_database(dev_env):
    result = CliRunner().invoke(cli, ["migrate"])
    assert result.exit_code == 0 and (dev_env / "silta.db").exists()


def test_deliver_once_sends_what_is_due_and_exits(dev_env):
    assert CliRunner().invoke(cli, ["migrate"]).exit_code == 0
    result = CliRunner().invoke(cli, ["deliver", "--once", "--worker", "cli-test"])
    assert result.exit_code == 0, result.output
    assert "tried 0 deliveries" in result.output

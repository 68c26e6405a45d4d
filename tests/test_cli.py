"""The ``silta`` command: development tokens verify against the embedded default's key."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from app.cli import cli
from app.config import Settings, get_settings
from app.security import KeyStore, verify_token
from tests.api.helpers import born


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


def test_import_applies_a_file_and_a_rerun_changes_nothing(dev_env, tmp_path):
    import getpass
    import json
    import sqlite3

    from tests.api.test_imports import assignment, client, jsonl, worker
    from tests.conftest import hetu

    runner = CliRunner()
    assert runner.invoke(cli, ["migrate"]).exit_code == 0
    code = hetu(born(), 321)
    unsourced = {key: value for key, value in client("c1", code).items() if key != "source_system"}
    path = tmp_path / "caseload.jsonl"
    path.write_bytes(jsonl(worker("w1"), unsourced, assignment("c1", "w1")))
    args = ["import", str(path), "--region", "05", "--source-system", "Lifecare"]

    first = runner.invoke(cli, args)
    assert first.exit_code == 0, first.output
    assert json.loads(first.stdout) | {"errors": []} == {
        "dry_run": False,
        "atomic": True,
        "applied": True,
        "lines": 3,
        "created": 3,
        "unchanged": 0,
        "updated": 0,
        "failed": 0,
        "errors": [],
    }
    again = runner.invoke(cli, args)
    assert again.exit_code == 0 and json.loads(again.stdout)["unchanged"] == 3
    with sqlite3.connect(dev_env / "silta.db") as db:
        actors = db.execute("SELECT DISTINCT actor, actor_region FROM change_event").fetchall()
        systems = db.execute("SELECT system, external_id FROM client_external_id").fetchall()
    assert actors == [(f"cli:{getpass.getuser()}", "05")] and systems == [("Lifecare", "c1")]
    assert code not in first.output


def test_import_exits_non_zero_on_a_failing_line_and_stores_nothing_when_atomic(dev_env, tmp_path):
    import json
    import sqlite3

    from tests.api.test_imports import jsonl, worker

    runner = CliRunner()
    assert runner.invoke(cli, ["migrate"]).exit_code == 0
    path = tmp_path / "broken.jsonl"
    path.write_bytes(jsonl(worker("w1"), "{broken", worker("w2")))

    dry = runner.invoke(cli, ["import", str(path), "--region", "05", "--dry-run"])
    assert dry.exit_code == 1 and [e["line"] for e in json.loads(dry.stdout)["errors"]] == [2]
    refused = runner.invoke(cli, ["import", str(path), "--region", "05"])
    assert refused.exit_code == 1 and json.loads(refused.stdout)["code"] == "import_refused"
    with sqlite3.connect(dev_env / "silta.db") as db:
        assert db.execute("SELECT count(*) FROM worker").fetchone() == (0,)
    partial = runner.invoke(cli, ["import", str(path), "--region", "05", "--no-atomic"])
    assert partial.exit_code == 1 and json.loads(partial.stdout)["created"] == 2
    assert runner.invoke(cli, ["import", str(path), "--region", "5"]).exit_code == 2

"""The national benchmark data set (``benchmarks/dataset.py``) still keeps the rules: a small one, built and checked.

The generator writes rows in the models' shapes and mirrors what the services write; a model,
migration or service change it no longer matches fails here rather than the next time someone
builds the ten-times-national set. Needs PostgreSQL, like the PostgreSQL half of the API tests.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from tests.conftest import PG_ADMIN_URL

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
DATABASE = "silta_bench_national_test"


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Any, str, Path]]:
    """300 clients and their five years (one process), the database dropped afterwards."""
    with pytest.MonkeyPatch.context() as patch:
        patch.syspath_prepend(str(BENCHMARKS))
        import dataset
        import dataset_check

        try:
            psycopg.connect(PG_ADMIN_URL, connect_timeout=3).close()
        except psycopg.OperationalError as exc:
            if os.environ.get("CI"):
                pytest.fail(f"PostgreSQL not reachable at {PG_ADMIN_URL}: the data set test must run in CI")
            pytest.skip(f"PostgreSQL not reachable at {PG_ADMIN_URL} ({exc.__class__.__name__})")
        url = PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{DATABASE}"
        data_dir = tmp_path_factory.mktemp("dataset-keys")
        summary = dataset.build(url, scale=0.002, seed=3, data_dir=data_dir, jobs=1, quiet=True)
        try:
            yield dataset_check, url, data_dir, summary
        finally:
            with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{DATABASE}" WITH (FORCE)')


def test_the_data_set_has_every_part_of_five_years(built):
    _, _, _, summary = built
    rows = summary["rows"]
    assert rows["client"] == 300
    for table in ("assignment", "compliance_gap", "coordination_request", "work_pair", "change_event", "access_log"):
        assert rows[table] > 0, table
    assert summary["log_entries"] == rows["audit_chain"]
    assert 0 < summary["active_clients_today"] < rows["client"]


def test_the_data_set_keeps_the_rules_as_the_app_states_them(built):
    dataset_check, url, data_dir, _ = built
    results = dataset_check.run(url, data_dir, http=False)
    assert [result for result in results if not result["ok"]] == []


@pytest.mark.slow
def test_a_server_on_the_data_set_answers_as_the_database_says(built):
    dataset_check, url, data_dir, _ = built
    bad, detail = dataset_check._http(url, data_dir)
    assert bad == 0, detail

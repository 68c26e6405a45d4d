"""The committed OpenAPI document is the running app's."""

from __future__ import annotations

import json
from pathlib import Path

from app.config import Settings
from app.main import create_app

COMMITTED = Path(__file__).resolve().parent.parent / "openapi" / "openapi.json"


def test_committed_openapi_matches_the_app():
    live = create_app(Settings(database_url="sqlite://")).openapi()
    assert json.loads(COMMITTED.read_text()) == live, "run `make openapi` and commit openapi/openapi.json"


def test_operation_ids_are_stable_and_unique():
    spec = json.loads(COMMITTED.read_text())
    ids = [op["operationId"] for item in spec["paths"].values() for op in item.values()]
    assert len(ids) == len(set(ids)) and all("-" in op_id for op_id in ids)

"""Architecture rules that matter, checked on the source."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

APP = Path(__file__).resolve().parent.parent / "app"


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module.split(".")[0])
    return names


@pytest.mark.parametrize("path", sorted((APP / "domain").glob("*.py")), ids=lambda p: p.name)
def test_domain_rules_are_pure(path):
    assert not _imports(path) & {"fastapi", "sqlmodel", "sqlalchemy", "httpx", "jose", "starlette"}


@pytest.mark.parametrize("path", sorted(APP.rglob("*.py")), ids=lambda p: str(p.relative_to(APP)))
def test_only_security_imports_jose(path):
    if path.name != "security.py":
        assert "jose" not in _imports(path)


@pytest.mark.parametrize("path", sorted((APP / "routers").glob("*.py")), ids=lambda p: p.name)
def test_routers_stay_thin(path):
    source = path.read_text()
    for forbidden in ("select(", ".commit(", "HTTPException", "session.add"):
        assert forbidden not in source, f"{path.name} uses {forbidden}"

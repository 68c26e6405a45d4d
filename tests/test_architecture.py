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


def _dependency_calls(dependant):
    for sub in dependant.dependencies:
        yield sub.call
        yield from _dependency_calls(sub)


def _effective_routes(routes):
    """Every route as the app serves it, with the dependencies its routers add (FastAPI keeps
    included routers nested and resolves each route's effective dependant on demand)."""
    for route in routes:
        if hasattr(route, "effective_candidates"):
            yield from _effective_routes(route.effective_candidates())
        elif getattr(route, "dependant", None) is not None:
            yield route


def test_no_route_waits_for_a_worker_thread(tmp_path):
    """FastAPI runs a plain ``def`` endpoint or dependency (or a class used as one) in a worker
    thread: a hop per request that the read path's profile showed (issue 9). Every one is async."""
    import inspect

    from app.config import Settings
    from app.main import create_app

    app = create_app(Settings(database_url=f"sqlite:///{tmp_path / 'arch.db'}", data_dir=tmp_path / "data"))
    routes = list(_effective_routes(app.routes))
    threaded = set()
    for route in routes:
        for call in [route.dependant.call, *_dependency_calls(route.dependant)]:
            # an instance with an async __call__ (HTTPBearer) is awaited in the event loop too
            awaited = call if inspect.isfunction(call) else type(call).__call__
            if not (inspect.iscoroutinefunction(awaited) or inspect.isasyncgenfunction(awaited)):
                threaded.add(f"{route.path}: {getattr(call, '__qualname__', call)}")
    assert len(routes) > 50
    assert not threaded, sorted(threaded)

"""The fault tests' figures: kept in ``faults-figures.json`` (pytest's temporary folder) and printed."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

FIGURES: list[dict[str, Any]] = []
WRITTEN_TO: list[Path] = []
Record = Callable[..., None]


@pytest.fixture(scope="session")
def figures(tmp_path_factory: pytest.TempPathFactory) -> Record:
    """``figures("name", key=value, ...)``: one line of the report at the end of the run."""
    path = tmp_path_factory.getbasetemp() / "faults-figures.json"
    WRITTEN_TO.append(path)

    def record(test: str, **values: Any) -> None:
        FIGURES.append({"test": test, **values})
        path.write_text(json.dumps(FIGURES, indent=2) + "\n")

    return record


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if FIGURES:
        terminalreporter.section("fault figures")
        for line in FIGURES:
            terminalreporter.write_line(json.dumps(line))
        terminalreporter.write_line(f"(also in {WRITTEN_TO[0]})")

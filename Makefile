# Silta — the two commands the README starts with, and a few more.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test lint typecheck openapi migrate lock clean

$(STAMP): requirements-dev.lock pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet -r requirements-dev.lock
	$(BIN)/pip install --quiet --no-deps -e .
	touch $(STAMP)

run: $(STAMP)  ## serve on the embedded SQLite default at http://127.0.0.1:8000
	$(BIN)/silta serve

test: $(STAMP)  ## the whole suite: lint, types, tests on SQLite and PostgreSQL
	$(BIN)/ruff check app tests migrations benchmarks
	$(BIN)/ruff format --check app tests benchmarks
	$(BIN)/mypy app
	@# two processes, one per core: the SQLite variants beside everything else (which uses PostgreSQL)
	@($(BIN)/python -m pytest -q -p no:cacheprovider -k sqlite > .pytest-sqlite.log 2>&1; echo $$? > .pytest-sqlite.rc) & \
	$(BIN)/python -m pytest -q -p no:cacheprovider -k "not sqlite"; rest=$$?; wait; sqlite=$$(cat .pytest-sqlite.rc); \
	echo "--- the SQLite variants (run beside the above):"; \
	if [ "$$sqlite" -eq 0 ]; then tail -n 3 .pytest-sqlite.log; else cat .pytest-sqlite.log; fi; \
	rm -f .pytest-sqlite.log .pytest-sqlite.rc; [ "$$rest" -eq 0 ] && [ "$$sqlite" -eq 0 ]

lint: $(STAMP)
	$(BIN)/ruff check --fix app tests migrations benchmarks
	$(BIN)/ruff format app tests benchmarks

typecheck: $(STAMP)
	$(BIN)/mypy app

openapi: $(STAMP)  ## regenerate openapi/openapi.json from the app
	$(BIN)/silta openapi

migrate: $(STAMP)
	$(BIN)/silta migrate

lock:  ## refresh both locks from pyproject.toml
	$(BIN)/pip install --quiet uv
	$(BIN)/uv pip compile pyproject.toml -o requirements.lock --python-version 3.11
	$(BIN)/uv pip compile pyproject.toml --extra dev -o requirements-dev.lock --python-version 3.11

clean:
	rm -rf $(VENV) data .pytest_cache .mypy_cache .ruff_cache

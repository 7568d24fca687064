# Wijkbrug. `make run` starts the embedded stack; `make test` runs every check.
# Both set up what they need themselves (a virtualenv in .venv, npm packages for the
# independent Matrix client used by the tests).

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
DATA_DIR ?= data
PORT ?= 8080
SYNAPSE_PORT ?= 8008
PYTEST_ARGS ?=
BENCH_ARGS ?=

STAMP := $(VENV)/.installed-stamp
JS_STAMP := tests/js/node_modules/.installed-stamp

.PHONY: install run test lint format unit bench bench-smoke clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

$(JS_STAMP): tests/js/package.json tests/js/package-lock.json
	npm ci --prefix tests/js --no-audit --no-fund --loglevel=error
	touch $@

install: $(STAMP)

run: $(STAMP)
	$(BIN)/wijkbrug dev --data-dir $(DATA_DIR) --port $(PORT) --synapse-port $(SYNAPSE_PORT)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

format: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

unit: $(STAMP)
	$(BIN)/pytest tests/unit $(PYTEST_ARGS)

test: $(STAMP) $(JS_STAMP) lint bench-smoke
	$(BIN)/pytest $(PYTEST_ARGS)

# Every benchmark against a real Synapse and PostgreSQL, each figure next to a baseline
# measured in the same run: a table, and benchmarks/results/latest.json (see README).
bench: $(STAMP) $(JS_STAMP)
	$(BIN)/python -m benchmarks.run $(BENCH_ARGS)

# The same code paths with tiny numbers: fails if a figure is missing from
# benchmarks/results/smoke.json, never because of speed.
bench-smoke: $(STAMP) $(JS_STAMP)
	$(BIN)/python -m benchmarks.run --smoke

clean:
	rm -rf $(VENV) tests/js/node_modules .pytest_cache .mypy_cache .ruff_cache

# Every target sets up what it needs: a fresh clone needs only Python 3.11.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-dev
RUN_STAMP := $(VENV)/.installed

.PHONY: run test lint chaos fuzz bench schema install clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

# `make run` needs only the service; `make test` and the other targets add the dev tools.
$(RUN_STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e .
	touch $(RUN_STAMP)

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP) $(RUN_STAMP)

install: $(STAMP)

## Start the API and the dispatcher on http://127.0.0.1:8080 (embedded PostgreSQL unless CALLBACKHUB_DATABASE_URL is set)
run: $(RUN_STAMP)
	@echo "callbackhub: delivering to a receiver on this machine? The URL guard blocks loopback and"
	@echo "  private addresses; allow them with CALLBACKHUB_ALLOWED_NETWORKS=127.0.0.0/8,::1/128 make run"
	@echo "callbackhub: the partner portal: print a link with"
	@echo "  $(BIN)/callbackhub portal-link --operator   (or --partner UUID [--read-only])"
	$(BIN)/callbackhub serve

## Run the whole test suite (embedded PostgreSQL; CALLBACKHUB_TEST_DATABASE_URL to use a server)
test: $(STAMP)
	$(BIN)/pytest -q -m "not chaos" $(PYTEST_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check service dispatcher sql tests bench docs
	$(BIN)/ruff format --check service dispatcher sql tests bench docs
	$(BIN)/mypy
	$(BIN)/lint-imports

chaos: $(STAMP)
	CALLBACKHUB_CHAOS_FULL=1 $(BIN)/pytest -q -s -m chaos tests/e2e

## Schemathesis with more examples and a fresh seed (FUZZ_EXAMPLES; CALLBACKHUB_FUZZ_SEED replays)
FUZZ_EXAMPLES ?= 1000
fuzz: $(STAMP)
	CALLBACKHUB_FUZZ_EXAMPLES=$(FUZZ_EXAMPLES) $(BIN)/pytest -q --timeout=0 tests/api/test_schemathesis.py

## Measure against this machine's own limits, one run (~11 min; BENCH_QUICK=1 for ~3 min)
bench: $(STAMP)
	$(BIN)/python -m bench.run

## Write sql/schema.sql: the schema the migrations build (after adding a migration)
schema: $(STAMP)
	$(BIN)/python -m tests.support.schema

clean:
	rm -rf $(VENV) .callbackhub .pytest_cache .mypy_cache .ruff_cache

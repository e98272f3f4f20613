# idc-sync: every target does its own set-up (virtualenv + pinned requirements) on a fresh machine.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
SANDBOX_PORT ?= 8765
export PYTHONPATH := $(CURDIR)/include:$(CURDIR)/plugins

.PHONY: help venv test lint format typecheck unit sandbox demo demo-up bench soak chromium clean

help:
	@echo "make demo      run one sync end to end on the embedded sandbox (Airflow standalone)"
	@echo "make demo-up   same, then keep Airflow + sandbox running for the UI"
	@echo "make test      lint, type-check and the whole test suite"
	@echo "make sandbox   run the sandbox alone on 127.0.0.1:$(SANDBOX_PORT)"
	@echo "make soak      100 runs of the DAG under faults and record churn, then 20 on the Celery stack with a worker killed (~30 min); figures in benchmarks/soak-report.json and soak-celery-report.json"
	@echo "make bench     benchmark the DAG on the sandbox at real limits, sizes M then L (long; JSON in benchmarks/)"

$(BIN)/.installed: requirements.txt requirements-sandbox.txt requirements-dev.txt pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -r requirements-dev.txt
	$(BIN)/python -m pip install -q --no-deps -e .
	touch $@

venv: $(BIN)/.installed

lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: venv
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

typecheck: venv
	$(BIN)/mypy

unit: venv
	$(BIN)/pytest -q -m "not integration and not slow"

# The browser test drives Debian's chromium (no browser download from the internet); installed when missing.
chromium:
	@command -v chromium >/dev/null || { \
		SUDO=$$([ "$$(id -u)" = 0 ] || echo sudo); \
		$$SUDO apt-get update -q && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -q --no-install-recommends chromium; }

# Integration tests are I/O bound (the sandbox paces like AWS): 3 workers on 2 cores halve the wall time;
# worksteal spreads the long integration tests of one file over idle workers.
test: lint typecheck chromium
	$(BIN)/pytest -q -m "not slow" -n 3 --dist worksteal --timeout=600 --durations=15

sandbox: venv
	$(BIN)/python -m idc_sandbox --port $(SANDBOX_PORT) --seed demo

demo: venv
	$(BIN)/python scripts/demo.py

demo-up: venv
	$(BIN)/python scripts/demo.py --keep-running

# Not part of `make test`: long (L alone ~1 h on 2 cores), timings depend on the machine. Results: benchmarks/.
# BENCH_SIZES=S for a quick smoke run; BENCH_O15=0 skips the L cold sync with 15 outstanding operations.
BENCH_SIZES ?= M L
BENCH_O15 ?= 1
# Each size: the steady-state scenarios and a 3-run cold sync (not to completion: 50,000 operations take hours
# by construction). Drift at L is bounded by the sweep arithmetic (tests/component/test_observe.py shows it).
BENCH_ARGS ?= --no-cold-to-completion
bench: venv
	set -e; for size in $(BENCH_SIZES); do \
		if [ $$size = L ]; then scen=naive,cold,nochange,churn,policy,parse,plan; else scen=naive,cold,nochange,churn,policy,drift,parse,plan; fi; \
		$(BIN)/python scripts/bench.py --size $$size --scenarios $$scen $(BENCH_ARGS); done
	if [ "$(BENCH_O15)" = 1 ] && [[ " $(BENCH_SIZES) " == *" L "* ]]; then \
		$(BIN)/python scripts/bench.py --size L --outstanding 15 --scenarios cold; fi

# The long soaks (make test runs the same tests with 6 and 4 runs): 100 runs through dag.test with a task
# process killed, then 20 runs on the Celery stack (scheduler + two workers) with a worker killed.
# SOAK_RUNS / CELERY_SOAK_RUNS / SOAK_SEED to vary them.
SOAK_RUNS ?= 100
CELERY_SOAK_RUNS ?= 20
SOAK_SEED ?= 20261204
soak: venv
	IDC_SYNC_SOAK_RUNS=$(SOAK_RUNS) IDC_SYNC_SOAK_SEED=$(SOAK_SEED) IDC_SYNC_SOAK_REPORT=$(CURDIR)/benchmarks/soak-report.json \
		$(BIN)/pytest -q -s --timeout=0 tests/integration/test_soak.py > benchmarks/soak.log 2>&1 \
		|| { tail -60 benchmarks/soak.log; exit 1; }
	cat benchmarks/soak-report.json
	IDC_SYNC_CELERY_SOAK_RUNS=$(CELERY_SOAK_RUNS) IDC_SYNC_SOAK_SEED=$(SOAK_SEED) \
		IDC_SYNC_CELERY_SOAK_REPORT=$(CURDIR)/benchmarks/soak-celery-report.json \
		$(BIN)/pytest -q -s --timeout=0 tests/integration/test_soak_celery.py > benchmarks/soak-celery.log 2>&1 \
		|| { tail -60 benchmarks/soak-celery.log; exit 1; }
	cat benchmarks/soak-celery-report.json

clean:
	rm -rf $(VENV) .demo .pytest_cache .mypy_cache .ruff_cache

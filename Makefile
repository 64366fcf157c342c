# Two commands do everything on a fresh machine: `make demo` and `make test`.
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3.12 || command -v python3.13 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml | cksum | cut -d' ' -f1)
COVERAGE_FLOOR := 90

# Offline by default; Prefect's local files (its local API's database) stay in the project.
export PREFECT_SERVER_ANALYTICS_ENABLED := false
export PREFECT_HOME ?= $(CURDIR)/var/prefect
export PREFECT_LOGGING_LEVEL ?= WARNING

.PHONY: demo run test lint typecheck unit browser bench clean install

install: $(STAMP)

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "Relance needs Python 3.11+, found " + sys.version' 
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@rm -f $(VENV)/.installed-*
	@touch $@

demo: $(STAMP)
	@mkdir -p $(PREFECT_HOME)
	$(BIN)/relance demo

# The production stack in the foreground (Prefect server, deployments, worker, web service).
run: $(STAMP)
	$(BIN)/relance up

lint: $(STAMP)
	$(BIN)/ruff format --check .
	$(BIN)/ruff check .

typecheck: $(STAMP)
	$(BIN)/mypy

unit: $(STAMP)
	@mkdir -p $(PREFECT_HOME)
	$(BIN)/pytest --cov --cov-report=term-missing:skip-covered --cov-fail-under=$(COVERAGE_FLOOR)

# The browser tests (tests/*browser*.py) drive Debian's chromium, installed here when missing.
browser:
	@if command -v chromium >/dev/null 2>&1; then :; \
	elif [ "$$(id -u)" = 0 ]; then \
		echo "Installing Debian's chromium for the browser tests"; \
		apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends chromium; \
	else \
		echo "chromium is missing: the browser tests are skipped (they fail under CI=true)." >&2; \
		echo "Install it once with: sudo apt-get install --no-install-recommends chromium" >&2; \
	fi

test: lint typecheck browser unit

bench: $(STAMP)
	$(BIN)/python bench/plan.py

clean:
	rm -rf $(VENV) var .pytest_cache .mypy_cache .ruff_cache .coverage

# Two commands for a fresh machine:   make serve   |   make test
# Both create .venv and install the project into it on first use.

PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
ARGS   ?=
PYTEST_ARGS ?=

SUDO   := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: install system-deps serve test lint bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

## Services the integration tests run for real: redis-server (Debian package)
system-deps:
	@command -v redis-server >/dev/null || { \
	  echo "installing redis-server from Debian"; \
	  $(SUDO) apt-get update -qq && \
	  $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null; }

## Run one node on the embedded default (SQLite in ./rendezvous-data): make serve ARGS="--help"
serve: $(STAMP)
	$(BIN)/rendezvous serve $(ARGS)

## The whole test suite (real Redis included), lint first
test: $(STAMP) system-deps
	$(BIN)/ruff check .
	$(BIN)/python -m pytest $(PYTEST_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/mypy

## Figures, not pass/fail: store write throughput and latency
bench: $(STAMP)
	$(BIN)/python benchmarks/store_bench.py --backend sqlite

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis

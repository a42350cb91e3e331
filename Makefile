# Two commands for a fresh machine:   make serve   |   make test
# Both create .venv and install the project into it on first use.

PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
ARGS   ?=
PYTEST_ARGS ?=

SUDO   := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: install system-deps js-sdk browser-deps demo-bundle screenshot cassandra cassandra-stop serve test lint bench side-by-side clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

## Services the integration tests run for real: redis-server, and Cassandra (Java 17 + Maven,
## jars from Maven Central cached in ~/.cache/rendezvous); promtool (Debian's prometheus) checks
## and evaluates the alert rules (tests/ops/test_alerts_on_a_node.py); Debian's chromium is the
## headless browser of tests/browser/ (playwright-core drives it: no browser download)
system-deps:
	@missing=""; \
	command -v redis-server >/dev/null || missing="$$missing redis-server"; \
	command -v java >/dev/null || missing="$$missing openjdk-17-jdk-headless"; \
	command -v mvn >/dev/null || missing="$$missing maven"; \
	command -v docker-compose >/dev/null || missing="$$missing docker-compose"; \
	command -v promtool >/dev/null || missing="$$missing prometheus"; \
	[ -x /usr/bin/chromium ] || missing="$$missing chromium"; \
	if [ -n "$$missing" ]; then echo "installing$$missing from Debian"; \
	  $(SUDO) apt-get update -qq && \
	  $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; fi
	@$(PYTHON) scripts/cassandra fetch

## The TypeScript SDK in clients/js: the npm packages pinned in package-lock.json (npm ci),
## then the tsc build. Needs Node.js 20+ and npm, which CI installs; tests/client/test_js_sdk.py
## fails (never skips) without them.
JS_DIR   := clients/js
JS_STAMP := $(JS_DIR)/node_modules/.installed-stamp

$(JS_STAMP): $(JS_DIR)/package.json $(JS_DIR)/package-lock.json
	@command -v node >/dev/null && command -v npm >/dev/null || \
	  { echo "the JS SDK ($(JS_DIR)) needs Node.js 20+ and npm on PATH"; exit 1; }
	cd $(JS_DIR) && npm ci --no-audit --no-fund
	touch $@

js-sdk: $(JS_STAMP)
	cd $(JS_DIR) && npm run build

## The SDK bundled for browsers (esbuild) into the demo's assets, server/edge/demo_static/:
## committed, so `make serve` needs no Node; tests/browser checks it is up to date
demo-bundle: $(JS_STAMP)
	cd $(JS_DIR) && npm run bundle

## The browser tests' npm packages (tests/browser: playwright-core, pinned in its lockfile)
BROWSER_DIR   := tests/browser
BROWSER_STAMP := $(BROWSER_DIR)/node_modules/.installed-stamp

$(BROWSER_STAMP): $(BROWSER_DIR)/package.json $(BROWSER_DIR)/package-lock.json
	@command -v npm >/dev/null || { echo "the browser tests need Node.js 20+ and npm"; exit 1; }
	cd $(BROWSER_DIR) && npm ci --no-audit --no-fund
	touch $@

browser-deps: $(BROWSER_STAMP)

## A screenshot of the demo mid-conversation for the README: docs/demo.png
screenshot: $(STAMP) browser-deps
	$(BIN)/python tools/demo_screenshot.py docs/demo.png

## A local Cassandra on 127.0.0.1:9042 for cluster mode (data in rendezvous-data/cassandra)
cassandra:
	$(PYTHON) scripts/cassandra start --dir rendezvous-data/cassandra --port 9042
cassandra-stop:
	$(PYTHON) scripts/cassandra stop --dir rendezvous-data/cassandra

## Run one node on the embedded default (SQLite in ./rendezvous-data): make serve ARGS="--help"
serve: $(STAMP)
	$(BIN)/rendezvous serve $(ARGS)

## The whole test suite (real Redis included, the JS SDK's Node tests and the headless browser
## tests too), lint first
test: $(STAMP) system-deps js-sdk browser-deps
	$(BIN)/ruff check .
	$(BIN)/python -m pytest $(PYTEST_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/mypy

## Figures, not pass/fail: store write throughput and latency
bench: $(STAMP)
	$(BIN)/python benchmarks/store_bench.py --backend sqlite
	$(BIN)/python benchmarks/deck_bench.py

## Figures: a bare relay, python-socketio and Rendezvous under the same load, with ratios
## (docs/benchmarks.md): make side-by-side [ARGS="--seconds 5 --rounds 1 --cassandra"]
side-by-side: $(STAMP)
	$(BIN)/python benchmarks/side_by_side.py $(ARGS)

## Load test a running node (make serve): make load [SCENARIO=smoke] [ARGS="--workers 2"];
## writes loadtest-results/<scenario>-<time>/report.html (docs/loadtest.md)
SCENARIO ?= smoke
.PHONY: load
load: $(STAMP)
	$(BIN)/rendezvous-load loadtest/scenarios/$(SCENARIO).yaml $(ARGS)

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis
	rm -rf $(JS_DIR)/node_modules $(JS_DIR)/dist $(JS_DIR)/build-test $(BROWSER_DIR)/node_modules

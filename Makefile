# The index of chores. Every target sets up what it needs first.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PYTEST_WORKERS ?= auto

.PHONY: run test test-fast lint bench env clean chromium

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev,ignite,export,ui]'
	touch $(STAMP)

env: $(STAMP)  ## create .venv with perper and its dev tools

run: $(STAMP)  ## run examples/basic.py on the embedded SQLite store
	$(BIN)/perper run examples/basic.py

# The suite's own Ignite node: ports and work dir apart from a developer's default node.
# Override IGNITE_TEST_PORT etc. to run two suites side by side on one machine.
IGNITE_TEST_PORT ?= 10810
IGNITE_DISCOVERY_PORT ?= 47520
IGNITE_COMMUNICATION_PORT ?= 47120
IGNITE_NODE := --port $(IGNITE_TEST_PORT) --work-dir fabric/work/test-$(IGNITE_TEST_PORT)
IGNITE_PORTS := --discovery-port $(IGNITE_DISCOVERY_PORT) --communication-port $(IGNITE_COMMUNICATION_PORT)

# tests/ui drive a headless Chromium through Playwright; browser downloads are not
# possible, so it is Debian's package (CI runs as root on Debian).
CHROMIUM := /usr/bin/chromium

chromium:  ## Debian's chromium for tests/ui, unless it is there already
	test -x $(CHROMIUM) || (apt-get update && apt-get install -y chromium)

test: lint chromium  ## lint, then the whole suite, in parallel, with a local Ignite node started and stopped
	-@$(BIN)/perper fabric stop $(IGNITE_NODE) >/dev/null 2>&1
	$(BIN)/perper fabric start $(IGNITE_NODE) $(IGNITE_PORTS) --no-persistence
	PERPER_TEST_IGNITE=ignite://127.0.0.1:$(IGNITE_TEST_PORT) $(BIN)/python -m pytest -n $(PYTEST_WORKERS); \
	status=$$?; $(BIN)/perper fabric stop $(IGNITE_NODE); exit $$status

test-fast: $(STAMP) chromium  ## the suite without Java
	$(BIN)/python -m pytest -n $(PYTEST_WORKERS) -m "not ignite"

lint: $(STAMP)  ## ruff check, ruff format --check, mypy strict (perper, simulator, examples), the import contracts
	$(BIN)/ruff check perper simulator tests bench examples fixtures
	$(BIN)/ruff format --check perper simulator tests bench examples fixtures
	$(BIN)/mypy
	$(BIN)/mypy --strict examples
	$(BIN)/lint-imports

bench: $(STAMP)  ## every benchmark, each beside its baseline
	-$(BIN)/python -m pip install --quiet bytewax  # the peer in bench/pipeline.py, if it installs
	$(BIN)/python bench/append.py
	$(BIN)/python bench/pipeline.py
	$(BIN)/python bench/recovery.py
	$(BIN)/python bench/replay.py
	$(BIN)/python bench/retention.py
	$(BIN)/python bench/ignite.py
	$(BIN)/python bench/scale.py
	$(BIN)/python bench/ingest.py
	$(BIN)/python bench/simulator.py
	$(BIN)/python bench/calls.py
	$(BIN)/python bench/query.py

clean:
	rm -rf $(VENV) .perper .pytest_cache .mypy_cache .ruff_cache

# `make demo` and `make test` set up .venv themselves from a clean checkout.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
export LANCE_LOG ?= error

TS_DIR := tests/ts
A11Y_DIR := tests/a11y

.PHONY: demo test fuzz lint bench bench-quick clean chromium wrk

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip

# What the README's demo and SDK examples need: the service, the sample images and pandas (PyTorch and
# the sentence-transformers models are larger; the README names their extras where it uses them).
$(VENV)/.demo: pyproject.toml | $(PY)
	$(PY) -m pip install -q -e '.[server,samples,pandas]'
	touch $@

$(VENV)/.dev: pyproject.toml | $(PY)
	$(PY) -m pip install -q -e '.[dev]'
	touch $@ $(VENV)/.demo

demo: $(VENV)/.demo
	@echo "Building the demo tables that are missing (found ones are kept); then the gallery is at http://127.0.0.1:8000/"
	$(VENV)/bin/lightbox demo

# The pinned official LanceDB TypeScript client for tests/test_lancedb_ts.py (skipped without node/npm).
# `npm install` with the committed lock, not `npm ci`: the registry lacks some other platforms' binaries
# for this version, so the lock cannot list them and `npm ci` refuses it.
$(TS_DIR)/node_modules: $(TS_DIR)/package.json $(TS_DIR)/package-lock.json
	@if command -v npm >/dev/null 2>&1; then \
		cd $(TS_DIR) && npm install --no-audit --no-fund --ignore-scripts --loglevel=error && touch node_modules; \
	else \
		echo "npm not found: the LanceDB TypeScript client tests will be skipped"; \
	fi

# axe-core for the gallery's accessibility check (tests/browser.py injects it into the pages, offline).
$(A11Y_DIR)/node_modules: $(A11Y_DIR)/package.json $(A11Y_DIR)/package-lock.json
	@if command -v npm >/dev/null 2>&1; then \
		cd $(A11Y_DIR) && npm install --no-audit --no-fund --ignore-scripts --loglevel=error && touch node_modules; \
	else \
		echo "npm not found: the gallery's accessibility test will fail (it needs axe-core)"; \
	fi

# The gallery's browser tests (tests/test_gallery.py) drive Debian's chromium through Playwright
# (Playwright's own browser download needs the internet); CI runs as root on a fresh Debian machine.
chromium:
	@test -x /usr/bin/chromium || (apt-get update && apt-get install -y chromium) || \
		echo "could not install chromium (not root?): the gallery's browser tests will be skipped"

# pytest in TEST_WORKERS processes (pytest-xdist: many tests wait on servers, children and the object
# store, so three workers keep two cores busy) with a coverage report (pyproject.toml's [tool.coverage]),
# then the total of each package.
TEST_WORKERS ?= 3
test: $(VENV)/.dev $(TS_DIR)/node_modules $(A11Y_DIR)/node_modules chromium
	$(VENV)/bin/ruff check .
	$(PY) -m pytest -q -n $(TEST_WORKERS) --dist worksteal --cov --cov-report=term
	@for pkg in app ingest lightbox embeddings; do \
		printf '%-10s %s%% of lines\n' "$$pkg" "$$($(PY) -m coverage report --include="$$pkg/*" --format=total)"; \
	done

# A longer fuzz of every API operation than the one in `make test`; prints status codes per operation.
FUZZ_MINUTES ?= 10
fuzz: $(VENV)/.dev
	$(PY) -m tests.fuzzing --minutes $(FUZZ_MINUTES)

lint: $(VENV)/.dev
	$(VENV)/bin/ruff check .

BENCHES := ingest fetch http timetravel service_memory soak search bulk_load near_duplicates gallery

# The HTTP benches load the servers with wrk (a closed loop of keep-alive connections).
wrk:
	@command -v wrk >/dev/null 2>&1 || (apt-get update && apt-get install -y wrk) || \
		echo "could not install wrk (not root?): bench.http will say so"

bench: $(VENV)/.dev chromium wrk
	for b in $(BENCHES); do $(PY) -m bench.$$b || exit 1; done

bench-quick: $(VENV)/.dev chromium wrk
	for b in $(BENCHES); do $(PY) -m bench.$$b --quick || exit 1; done

clean:
	rm -rf $(VENV) lightbox-data .pytest_cache .ruff_cache $(TS_DIR)/node_modules tests/artifacts .coverage .coverage.*

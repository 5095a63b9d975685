# `make demo` and `make test` set up .venv themselves from a clean checkout.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
export LANCE_LOG ?= error

.PHONY: demo test lint bench bench-quick clean

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip

$(VENV)/.samples: pyproject.toml | $(PY)
	$(PY) -m pip install -q -e '.[samples]'
	touch $@

$(VENV)/.dev: pyproject.toml | $(PY)
	$(PY) -m pip install -q -e '.[dev]'
	touch $@ $(VENV)/.samples

demo: $(VENV)/.samples
	$(VENV)/bin/lightbox demo

test: $(VENV)/.dev
	$(VENV)/bin/ruff check .
	$(PY) -m pytest -q

lint: $(VENV)/.dev
	$(VENV)/bin/ruff check .

BENCHES := ingest fetch http timetravel service_memory search near_duplicates

bench: $(VENV)/.dev
	for b in $(BENCHES); do $(PY) -m bench.$$b || exit 1; done

bench-quick: $(VENV)/.dev
	for b in $(BENCHES); do $(PY) -m bench.$$b --quick || exit 1; done

clean:
	rm -rf $(VENV) lightbox-data .pytest_cache .ruff_cache

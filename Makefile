# Two commands on a fresh machine with python3, pip and make: `make demo` and `make test`.
# Each creates (or reuses) .venv, installs what it needs, and runs.
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test test-min lint bench clean

$(STAMP): pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[all]' --group dev
	touch $(STAMP)

demo: $(STAMP)
	$(PY) -m kube_balance demo

test: $(STAMP)
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(PY) -m mypy
	$(PY) -m pytest

# The suite on the lowest release of every runtime dependency and extra that pyproject.toml
# allows (tools/lowest_pins.py reads the bounds; test tools stay latest), so no bound is a guess.
# Its own venv, rebuilt when pyproject.toml changes; the lowest supported Python.
MIN_VENV ?= .venv-min
MIN_PYTHON ?= python3.11
MIN_STAMP := $(MIN_VENV)/.installed

$(MIN_STAMP): pyproject.toml tools/lowest_pins.py
	rm -rf $(MIN_VENV)
	$(MIN_PYTHON) -m venv $(MIN_VENV)
	$(MIN_VENV)/bin/python -m pip install -q --upgrade pip packaging
	$(MIN_VENV)/bin/python tools/lowest_pins.py > $(MIN_VENV)/lowest-pins.txt
	$(MIN_VENV)/bin/python -m pip install -q -c $(MIN_VENV)/lowest-pins.txt -e '.[all]' --group test
	$(MIN_VENV)/bin/python -m pip check
	touch $(MIN_STAMP)

test-min: $(MIN_STAMP)
	cat $(MIN_VENV)/lowest-pins.txt
	$(MIN_VENV)/bin/python -m pytest

bench: $(STAMP)
	$(PY) benchmarks/run_all.py

clean:
	rm -rf $(VENV) $(MIN_VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis

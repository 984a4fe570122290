# Two commands on a fresh machine with python3, pip and make: `make demo` and `make test`.
# Each creates (or reuses) .venv, installs what it needs (.[demo], which includes .[all], and the
# dev group, which includes the demo's packages too), and runs.
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test test-pythons test-min lint bench clean

$(STAMP): pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[demo]' --group dev
	touch $(STAMP)

demo: $(STAMP)
	$(PY) -m kube_balance demo

test: $(STAMP)
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(PY) -m mypy
	$(MAKE) --no-print-directory test-pythons

# pytest on every supported CPython found on this machine (scripts/find_python.sh looks on PATH,
# through pyenv and in common locations), each in its own .venv-X.Y; versions not found are
# skipped and named; fails if any run fails or none was found. PYTEST_ARGS passes options.
SUPPORTED_PYTHONS ?= 3.11 3.12 3.13
PYTEST_ARGS ?=

test-pythons:
	@ran=; skipped=; failed=; \
	for v in $(SUPPORTED_PYTHONS); do \
	  py=$$(sh scripts/find_python.sh $$v) || { skipped="$$skipped $$v"; echo "== Python $$v: not found, skipped"; continue; }; \
	  venv=.venv-$$v; \
	  if [ ! -f $$venv/.installed ] || [ pyproject.toml -nt $$venv/.installed ]; then \
	    echo "== Python $$v: installing into $$venv"; \
	    "$$py" -m venv $$venv && $$venv/bin/python -m pip install -q --upgrade pip \
	      && $$venv/bin/python -m pip install -q -e '.[all]' --group dev && touch $$venv/.installed \
	      || { failed="$$failed $$v(install)"; continue; }; \
	  fi; \
	  echo "== Python $$v ($$py): pytest"; \
	  if $$venv/bin/python -m pytest $(PYTEST_ARGS); then ran="$$ran $$v"; else failed="$$failed $$v"; fi; \
	done; \
	echo "== pytest passed on:$${ran:- none}; not found:$${skipped:- none}; failed:$${failed:- none}"; \
	[ -z "$$failed" ] && [ -n "$$ran" ]

# The suite on the lowest release of every runtime dependency and extra that pyproject.toml
# allows (tools/lowest_pins.py reads the bounds; test tools stay latest), so no bound is a guess.
# Its own venv, rebuilt when pyproject.toml changes; the lowest supported Python.
MIN_VENV ?= .venv-min
MIN_PYTHON ?= $$(sh scripts/find_python.sh 3.11)
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
	rm -rf $(VENV) $(MIN_VENV) .venv-3.* .pytest_cache .mypy_cache .ruff_cache .hypothesis

# Mutation testing (slow, so not part of `make test`): each module's mutants against its own tests
# (tools/mutate.py maps modules to test files). make mutation MODULES="src/kube_balance/_retry.py"
MODULES ?= src/kube_balance/_policy.py src/kube_balance/_retry.py src/kube_balance/_service.py \
	src/kube_balance/_pools.py src/kube_balance/algorithms/_least_request.py \
	src/kube_balance/algorithms/_bounded.py src/kube_balance/discovery/kubernetes/_merge.py \
	src/kube_balance/_outcome.py src/kube_balance/_outlier.py src/kube_balance/_balancer.py \
	src/kube_balance/_dispatch.py src/kube_balance/integrations/aiohttp.py \
	src/kube_balance/algorithms/_peak_ewma.py \
	src/kube_balance/_subset.py src/kube_balance/_hedge.py src/kube_balance/_cluster_options.py
JOBS ?= $(shell nproc 2>/dev/null || echo 2)

.PHONY: mutation
mutation: $(STAMP)
	nice -n 10 $(PY) tools/mutate.py --jobs $(JOBS) $(MODULES)

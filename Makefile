# Two commands on a fresh machine with python3, pip and make: `make demo` and `make test`.
# Each creates (or reuses) .venv, installs what it needs, and runs.
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test lint bench clean

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

bench: $(STAMP)
	$(PY) benchmarks/run_all.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis

# Mutation testing (slow, so not part of `make test`): each module's mutants against its own tests
# (tools/mutate.py maps modules to test files). make mutation MODULES="src/kube_balance/_retry.py"
MODULES ?= src/kube_balance/_policy.py src/kube_balance/_retry.py src/kube_balance/_service.py \
	src/kube_balance/_pools.py src/kube_balance/algorithms/_least_request.py \
	src/kube_balance/algorithms/_bounded.py src/kube_balance/discovery/kubernetes/_merge.py
JOBS ?= $(shell nproc 2>/dev/null || echo 2)

.PHONY: mutation
mutation: $(STAMP)
	nice -n 10 $(PY) tools/mutate.py --jobs $(JOBS) $(MODULES)

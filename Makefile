# Two commands on a fresh machine with python3, pip and make: `make demo` and `make test`.
# Each creates (or reuses) .venv, installs what it needs, and runs.
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test test-pythons lint bench clean

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

bench: $(STAMP)
	$(PY) benchmarks/run_all.py

clean:
	rm -rf $(VENV) .venv-3.* .pytest_cache .mypy_cache .ruff_cache .hypothesis

# persona developer tasks. `make test` is what CI runs (.ci/run).
PYTHON ?= python3.11
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.persona-installed

.PHONY: install up down test demo lint

install: $(STAMP)

# Re-installs only when pyproject.toml changes (or the venv is missing).
$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q -e '.[dev]'
	@touch $@

up: install
	$(VENV)/bin/persona up

down:
	$(VENV)/bin/persona down

# ruff F/I first: undefined names and import order fail in a second, before 6 minutes of tests
test: install up
	$(VENV)/bin/ruff check --select F,I .
	$(PY) -m pytest -q tests

demo: install up
	$(VENV)/bin/persona demo

lint: install
	$(VENV)/bin/ruff check .

# persona developer tasks. `make test` is what CI runs (.ci/run).
PYTHON ?= python3.11
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.persona-installed

.PHONY: install up down test demo lint constraints

install: $(STAMP)

# Re-installs only when pyproject.toml or constraints.txt change (or the venv is missing).
# constraints.txt pins every dependency to the versions the tests last passed with, so a fresh
# machine installs what was tested (refresh: `make constraints` after a deliberate upgrade).
$(STAMP): pyproject.toml constraints.txt
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q -c constraints.txt -e '.[dev]'
	@touch $@

up: install
	$(VENV)/bin/persona up

down:
	$(VENV)/bin/persona down

# ruff first: undefined names, import order and the style rules of pyproject fail in a second
test: install up
	$(VENV)/bin/ruff check .
	$(PY) -m pytest -q tests

demo: install up
	$(VENV)/bin/persona demo

lint: install
	$(VENV)/bin/ruff check .

constraints: install
	$(PY) -m pip install -q --upgrade -e '.[dev]'
	$(PY) -m pip freeze --exclude-editable | grep -v '^persona' > constraints.txt

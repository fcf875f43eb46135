# Gantry's entry points. `make test` and `make sandbox` work from a fresh clone on Debian/Ubuntu
# with Python 3.11, git and make: everything else is installed here.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: venv lint test sandbox
.DEFAULT_GOAL := help

help:
	@echo "make sandbox   bring up the embedded sandbox (no Docker, no Kubernetes needed)"
	@echo "make test      install everything into .venv and run lint + all tests"

$(STAMP): pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	touch $@

venv: $(STAMP)

lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

# pytest exits 5 when it collected no tests; that is not a failure of the code under test.
test: lint
	$(BIN)/pytest || [ $$? -eq 5 ]

sandbox: venv
	$(BIN)/gantry sandbox up

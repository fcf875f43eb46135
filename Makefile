# Gantry's entry points. `make test` and `make sandbox` work from a fresh clone on Debian/Ubuntu
# with Python 3.11 (or 3.12), git and make: everything else is installed here.
# `make help` lists the targets. Owners add theirs with a `## description` comment.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
STACK ?= sandbox
# CPU-only torch wheels (PyPI's default Linux torch pulls several GB of CUDA libraries); used
# when reachable. Empty it (`make TORCH_INDEX= venv`) to skip it, e.g. behind a PyPI mirror.
TORCH_INDEX ?= https://download.pytorch.org/whl/cpu
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
PYVER = $(shell $(PY) -c 'import sys; print("%d.%d" % sys.version_info[:2])')

.PHONY: help venv os-deps lint format test render bench bench-services sandbox prometheus checkov-venv crd-schemas charts
.DEFAULT_GOAL := help

help: ## list the targets
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | \
	  awk -F':.*## ' '{ printf "make %-10s %s\n", $$1, $$2 }'

# The venv is (re)installed when pyproject.toml changes; the stamp records the last install.
$(STAMP): pyproject.toml
	@$(PY) -c 'import sys; sys.exit(not (3, 11) <= sys.version_info[:2] < (3, 13))' || { \
	  echo "Gantry needs Python 3.11 or 3.12, $(PY) is $(PYVER). Try: make PY=python3.11 $(MAKECMDGOALS)"; \
	  exit 2; }
	@$(PY) -c 'import ensurepip' 2>/dev/null || $(MAKE) --no-print-directory os-deps
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	@if [ -n "$(TORCH_INDEX)" ] && $(PY) -c 'import sys, urllib.request as u; u.urlopen(sys.argv[1], timeout=10)' \
	  "$(TORCH_INDEX)/" >/dev/null 2>&1; then idx="--extra-index-url $(TORCH_INDEX)"; \
	else idx=""; echo "note: torch index '$(TORCH_INDEX)' unreachable, using the default index only"; fi; \
	echo "$(BIN)/python -m pip install -q $$idx -e '.[dev]'"; \
	$(BIN)/python -m pip install -q $$idx -e '.[dev]'
	touch $@

venv: $(STAMP) ## create .venv and install Gantry with its dev tools

os-deps: ## install the OS packages make needs (Debian/Ubuntu: python3.X-venv)
	$(SUDO) apt-get update -q
	$(SUDO) apt-get install -y -q python$(PYVER)-venv

lint: venv ## ruff check + ruff format --check + mypy (infra, services, loadtests)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

format: venv ## apply ruff's fixes and formatting
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

# checkov gets its own venv: beside the main dependencies it downgrades `packaging`.
CHECKOV_STAMP := .venv-checkov/.installed-stamp
CHECKOV_VERSION := 3.3.30
$(CHECKOV_STAMP):
	test -x .venv-checkov/bin/python || $(PY) -m venv .venv-checkov
	.venv-checkov/bin/python -m pip install -q 'checkov==$(CHECKOV_VERSION)'
	touch $@

checkov-venv: $(CHECKOV_STAMP) ## install checkov into its own .venv-checkov

# JSON schemas of the CRDs Gantry renders, from the public datreeio CRDs-catalog (MIT), into
# $(CRD_SCHEMAS) (the tests read GANTRY_CRD_SCHEMAS, default ../shared/crd-schemas).
CRD_SCHEMAS ?= $(or $(GANTRY_CRD_SCHEMAS),../shared/crd-schemas)
CRD_GROUPS := flagger.app monitoring.coreos.com networking.istio.io security.istio.io telemetry.istio.io
crd-schemas: ## fetch CRD JSON schemas (datreeio/CRDs-catalog) into CRD_SCHEMAS
	rm -rf .gantry/crds-catalog
	git clone -q --depth 1 --filter=blob:none --sparse https://github.com/datreeio/CRDs-catalog .gantry/crds-catalog
	git -C .gantry/crds-catalog sparse-checkout set $(CRD_GROUPS)
	mkdir -p $(CRD_SCHEMAS)
	cp -r $(addprefix .gantry/crds-catalog/,$(CRD_GROUPS)) .gantry/crds-catalog/LICENSE $(CRD_SCHEMAS)/

# The pinned Helm charts, for `gantry render` and the offline checks where ../shared/charts is
# absent (a fork): pulled from the official repositories and verified (infra/helm/pull.py).
charts: venv ## pull the pinned Helm charts into .gantry/charts (GANTRY_CHARTS overrides where they are read)
	$(BIN)/python -m infra.helm.pull

# pytest exits 5 when it collected no tests; that is not a failure of the code under test.
test: lint checkov-venv prometheus ## lint, then every test (what CI runs)
	$(BIN)/pytest || [ $$? -eq 5 ]

render: venv ## write what stack STACK (default sandbox) defines to .gantry/render/STACK
	$(BIN)/gantry render --stack $(STACK) --out .gantry/render/$(STACK)

bench: venv ## time the program under mocks (<= 3 s) and gantry render with every chart (<= 5 s), per stack
	$(BIN)/python tests/benchmarks/bench_program.py
	$(BIN)/python tests/benchmarks/bench_render.py

bench-services: venv ## embedder: bare vs Ray Serve vs naive uvicorn (wrk; docs/performance.md)
	@command -v wrk >/dev/null 2>&1 || { $(SUDO) apt-get update -q && $(SUDO) apt-get install -y -q wrk; }
	$(BIN)/python tests/benchmarks/bench_services.py $(BENCH_ARGS)

# The sandbox's Prometheus server: Debian/Ubuntu's package where apt exists, else one on PATH.
prometheus: ## install the Prometheus server the sandbox runs (apt), unless one is on PATH
	@command -v prometheus >/dev/null 2>&1 || { \
	  command -v apt-get >/dev/null 2>&1 || { \
	    echo "error: no prometheus on PATH and no apt-get here; install Prometheus 2.x" \
	      "(https://prometheus.io/download/) and put its binary on PATH" >&2; exit 2; }; \
	  $(SUDO) apt-get update -q && $(SUDO) apt-get install -y -q prometheus; }

# Leaves the sandbox running (URLs printed); stop it with `.venv/bin/gantry sandbox down`.
sandbox: venv prometheus ## bring up the embedded sandbox and leave it running (no Docker/Kubernetes)
	$(BIN)/gantry sandbox up

.PHONY: loadtest
# `-m loadtest` overrides pyproject's `-m 'not loadtest'` (the last -m wins).
loadtest: venv ## the long load-test scenarios (scale out+in, rollout, faulty canary) on a sandbox
	$(BIN)/pytest -m loadtest tests/loadtests

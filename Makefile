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
# Every package the venv gets, pinned with its sha256 (`make lock` writes it; header: why torch
# is the +cpu build and where it comes from).
LOCK := requirements/dev.lock
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
PYVER = $(shell $(PY) -c 'import sys; print("%d.%d" % sys.version_info[:2])')

.PHONY: help venv lock os-deps lint format test render bench bench-services bench-jobs sandbox prometheus checkov-venv crd-schemas charts
.DEFAULT_GOAL := help

help: ## list the targets
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | \
	  awk -F':.*## ' '{ printf "make %-10s %s\n", $$1, $$2 }'

# The venv is (re)installed when the lock changes; the stamp records the last install. pip checks
# every file against the lock's sha256 (--require-hashes); then Gantry itself, editable, no deps.
$(STAMP): pyproject.toml $(LOCK)
	@$(PY) -c 'import sys; sys.exit(not (3, 11) <= sys.version_info[:2] < (3, 13))' || { \
	  echo "Gantry needs Python 3.11 or 3.12, $(PY) is $(PYVER). Try: make PY=python3.11 $(MAKECMDGOALS)"; \
	  exit 2; }
	@$(PY) -c 'import ensurepip' 2>/dev/null || $(MAKE) --no-print-directory os-deps
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	@if [ -n "$(TORCH_INDEX)" ] && $(PY) -c 'import sys, urllib.request as u; u.urlopen(sys.argv[1], timeout=10)' \
	  "$(TORCH_INDEX)/" >/dev/null 2>&1; then idx="--extra-index-url $(TORCH_INDEX)"; \
	else idx=""; echo "note: torch index '$(TORCH_INDEX)' unreachable, using the default index only"; fi; \
	echo "$(BIN)/python -m pip install -q $$idx --require-hashes -r $(LOCK)"; \
	$(BIN)/python -m pip install -q $$idx --require-hashes -r $(LOCK)
	$(BIN)/python -m pip install -q --no-deps -e .
	touch $@

venv: $(STAMP) ## create .venv and install Gantry with its dev tools (from requirements/dev.lock)

# The locks, from pyproject.toml's pins, with uv (a dev dependency): requirements/dev.lock (all
# extras: make venv, CI), requirements/gantry.lock (the base install: `gantry up`/`render`), and
# each image's requirements*.txt from its requirements*.in at dev.lock's versions (the CUDA image
# gets torch from PyTorch's CUDA index, so its file leaves torch out: embedder/no-torch.txt).
# Resolved for Linux x86_64 (LOCK_PLATFORM); every platform's hashes are listed. uv reads no pip
# config, so it gets pip's find-links (where this machine keeps torch's CPU wheel) and, when it
# answers, PyTorch's CPU index page for torch alone. `make lock LOCK_FLAGS=--upgrade` upgrades
# what pyproject.toml leaves unpinned; tests/test_dependencies.py fails when a file drifts.
LOCK_PLATFORM ?= x86_64-manylinux_2_28
FIND_LINKS ?= $(shell $(PY) -m pip config get global.find-links 2>/dev/null)
UV_COMPILE = $(BIN)/uv pip compile --quiet --generate-hashes --python-platform $(LOCK_PLATFORM) \
  --custom-compile-command 'make lock' $(addprefix --find-links ,$(FIND_LINKS)) $(LOCK_FLAGS)
lock: venv ## pin every dependency with its hash: requirements/*.lock, services/*/requirements*.txt
	@set -e; \
	if [ -n "$(TORCH_INDEX)" ] && $(PY) -c 'import sys, urllib.request as u; u.urlopen(sys.argv[1], timeout=10)' \
	  "$(TORCH_INDEX)/torch/" >/dev/null 2>&1; then torch="--find-links $(TORCH_INDEX)/torch/"; \
	else torch=""; echo "note: torch index '$(TORCH_INDEX)' unreachable, torch from find-links only"; fi; \
	py311() { $(UV_COMPILE) $$torch --python-version 3.11 "$$@"; }; \
	py311 --no-header --extra dev pyproject.toml -o $(LOCK); \
	py311 --no-header -c $(LOCK) pyproject.toml -o requirements/gantry.lock; \
	for f in requirements/gantry.lock $(LOCK); do \
	  cat requirements/HEADER $$f > $$f.new; mv $$f.new $$f; done; \
	for svc in embedder classifier; do \
	  py311 -c $(LOCK) services/$$svc/requirements.in -o services/$$svc/requirements.txt; done; \
	py311 -c $(LOCK) jobs/requirements.in -o jobs/requirements.txt; \
	$(UV_COMPILE) --python-version 3.12 -c $(LOCK) --overrides services/embedder/no-torch.txt \
	  services/embedder/requirements-cuda.in -o services/embedder/requirements-cuda.txt

os-deps: ## install the OS packages make needs (Debian/Ubuntu: python3.X-venv)
	$(SUDO) apt-get update -q
	$(SUDO) apt-get install -y -q python$(PYVER)-venv

# deptry twice: the packages (config: pyproject.toml's [tool.deptry]), then tests/, which is dev
# code: there only missing (DEP001) and transitive (DEP003) imports count. DEP002 is ignored as
# tests need not import every runtime package, DEP004 as dev packages are what tests may import;
# the extra first-party names are tests' helper modules, imported from their own folders.
TEST_MODULES := gantry infra sandbox services loadtests tests sandbox_helpers e2e_sandbox loadtest_timelines fake_target
lint: venv ## ruff check + ruff format --check + mypy + deptry (imports == declared dependencies)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/deptry .
	$(BIN)/deptry tests --exclude '\.venv' --ignore DEP002,DEP004 $(addprefix -kf ,$(TEST_MODULES))

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

bench-jobs: venv prometheus ## digits on a sandbox: first checkpoint, a killed worker, the queue's decisions
	$(BIN)/python tests/benchmarks/bench_jobs.py $(BENCH_ARGS)

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
loadtest: venv ## the long load-test scenarios (scale out+in, rollouts, chaos: faults under load) on a sandbox
	$(BIN)/pytest -m loadtest tests/loadtests

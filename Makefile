# Three commands: `make run` (the pipeline on the embedded default: the class-conditional, super-resolution and
# inpainting branches with their evaluations; `dvc repro` runs every branch), `make test` and `make bench` (every
# benchmark against its peer: BENCHMARKS.md). Each sets up what is missing first and reinstalls nothing on a second call.
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

# Everything a library would otherwise write under $HOME stays in the checkout.
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)
export DVC_NO_ANALYTICS := 1
export DVC_SITE_CACHE_DIR := $(CURDIR)/.cache/dvc-site
export PREFECT_HOME := $(CURDIR)/.cache/prefect
export PREFECT_SERVER_ANALYTICS_ENABLED := false
export PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS := 120
export TORCH_HOME := $(CURDIR)/.cache/torch
export HF_HOME := $(CURDIR)/.cache/huggingface
export HF_HUB_OFFLINE := 1
export PIP_DISABLE_PIP_VERSION_CHECK := 1

RUN_TARGETS := evaluate evaluate_inpaint

.PHONY: run test bench setup init check clean-outputs

run: setup init
	dvc repro $(RUN_TARGETS)

# The suite in TEST_WORKERS processes (pytest-xdist), a whole test file to each at a time, so that a module's
# fixtures (the reproduced pipeline) are built once; files go out in collection order (tests/conftest.py puts the
# longest first), not xdist's default of most tests first; TEST_WORKERS=0 runs it in one process.
TEST_WORKERS ?= 2

test: setup init
	$(PY) -m pytest -n $(TEST_WORKERS) --dist loadfile --no-loadscope-reorder

# The benchmarks against their peers (bench/suite.py): the LDM branch first (the quality rows sample its model, the
# pipeline rows time a no-op repro of it), then the suite, then BENCHMARKS.md and bench/charts.png.
BENCH_STAMP := $(VENV)/.bench-installed
PEERS := bench/.peers

bench: setup init $(BENCH_STAMP)
	dvc repro train_ldm
	$(PY) -m bench.suite
	$(PY) -m bench.report

# The peers that cannot share .venv (requirements/bench.txt says why) go under bench/.peers.
$(BENCH_STAMP): $(STAMP) requirements/bench.txt
	$(PY) -m pip install -q --no-deps --upgrade --target $(PEERS) -r requirements/bench.txt
	touch $(BENCH_STAMP)

setup: $(STAMP)

# torch and torchvision go first, as a pair (see requirements/torch.txt), then the
# rest of the locked set, then the project itself without touching its dependencies.
$(STAMP): pyproject.toml requirements/torch.txt requirements/lock.txt
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q -r requirements/torch.txt
	$(PY) -m pip install -q -r requirements/lock.txt
	$(PY) -m pip install -q --no-deps --no-build-isolation -e .
	$(PY) -m pip check
	touch $(STAMP)

# A checkout without git or DVC metadata (an exported tarball) still runs.
init:
	@test -d .git || git init -q
	@test -d .dvc || dvc init -q
	@mkdir -p .cache

check: setup
	ldm params check

clean-outputs:
	rm -rf data/images data/pairs data/latents models metrics reports

# Two commands do everything on a fresh machine with python3:
#   make run    set up the environment and data, run the default study, build results/report.html
#   make test   set up the environment, data and test tools, run the whole test suite
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
SITE_PACKAGES = $$($(BIN)/python -c 'import sysconfig; print(sysconfig.get_path("purelib"))')
CORES ?= all
SNAKEMAKE_ARGS ?=
# One pytest-xdist worker more than cores: the SLURM test's worker mostly waits on the scheduler.
TEST_WORKERS ?= $(shell echo $$(( $$(nproc) + 1 )))

.PHONY: run test env test-env data bytecode lint report clean

run: env data bytecode
	$(BIN)/snakemake --cores $(CORES) $(SNAKEMAKE_ARGS)
	$(BIN)/snakemake --cores $(CORES) --report results/report.html $(SNAKEMAKE_ARGS)
	@echo "Results in results/, report in results/report.html"

# Tests that share a workflow run stay on one pytest-xdist worker (tests/conftest.py).
test: test-env data bytecode
	$(BIN)/python -m pytest -ra -n $(TEST_WORKERS) --dist loadgroup

env: $(VENV)/.runtime-installed

# Every job imports the package: with PYTHONDONTWRITEBYTECODE set (as on our CI machines) Python
# would compile its modules again in each job, about 0.5 s. Stale files are skipped and recompiled.
bytecode: env
	$(BIN)/python -m compileall -q src/unit_ablation

test-env: $(VENV)/.test-installed

# pip takes torch/torchvision from the local wheels when they are there (no multi-GB download).
# pip would byte-compile the 12,000 modules one at a time; compileall does it on every core
# (45 s less on 2 cores), leaving out the packages' own test suites (a quarter of the files, never
# imported). Like pip, it skips the few files written for newer Pythons (exit code 1).
COMPILE_SITE_PACKAGES = $(BIN)/python -m compileall -q -j 0 -x '/tests/' $(SITE_PACKAGES) > /dev/null || true
$(VENV)/.runtime-installed: requirements.txt pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade "pip>=23" "setuptools>=61" wheel
	$(BIN)/python -m pip install --quiet --no-compile -r requirements.txt
	$(BIN)/python -m pip install --quiet --no-deps --no-build-isolation -e .
	$(COMPILE_SITE_PACKAGES)
	touch $@

$(VENV)/.test-installed: $(VENV)/.runtime-installed requirements-test.txt
	$(BIN)/python -m pip install --quiet --no-compile -r requirements-test.txt
	$(COMPILE_SITE_PACKAGES)
	touch $@

# Debian's dataset-fashion-mnist when apt works, else torchvision's download into data/.
data: env
	$(BIN)/python -m unit_ablation.fetch_data

lint: test-env
	$(BIN)/snakemake --lint
	$(BIN)/snakefmt --check Snakefile rules
	$(BIN)/ruff check .

clean:
	rm -rf results .snakemake

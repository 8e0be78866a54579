# ml-integrity developer interface. Every target creates what it needs.
#   make demo   sign, verify, tamper and refuse a bundled example (a small venv of its own)
#   make test   lint (ruff, mypy --strict, import layers, file size) and the whole test suite
#   make fuzz   the scanner's differential tests with many hypothesis examples
#   make bench  the benchmarks in bench/ (ratios against baselines in the same run)

SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
export PIP_DISABLE_PIP_VERSION_CHECK := 1

.PHONY: all dev venv lint reformat test test-deps pytest fuzz demo bench clean

all: test

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $@

venv dev: $(VENV)/.installed

PYDIRS := $(wildcard src tests bench)

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check $(PYDIRS)
	$(VENV)/bin/ruff format --check $(PYDIRS)
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports
	@long=$$(find src -name '*.py' -exec awk 'END { if (NR > 600) print FILENAME ": " NR " lines" }' {} \;); \
	if [ -n "$$long" ]; then echo "files over 600 lines (split them by responsibility):"; echo "$$long"; exit 1; fi

reformat: $(VENV)/.installed
	$(VENV)/bin/ruff check --fix $(PYDIRS)
	$(VENV)/bin/ruff format $(PYDIRS)

# git-lfs, the LFS test server, the Sigstore test double: see tests/tools/install.sh
test-deps: $(VENV)/.installed
	bash tests/tools/install.sh

pytest: $(VENV)/.installed
	$(VENV)/bin/pytest $(T)

test: lint test-deps
	$(VENV)/bin/pytest $(T)

# the scanner's differential tests (tests/scan/test_differential.py) with many more examples
fuzz: $(VENV)/.installed
	FUZZ_EXAMPLES=$${FUZZ_EXAMPLES:-5000} $(VENV)/bin/pytest tests/scan/test_differential.py -q

# The demo signs with keys: it needs only the runtime dependencies that key signing and
# verification import (sigstore, requests and the test tools stay out): seconds, not minutes.
DEMO_VENV := .venv-demo
DEMO_DEPS := "cryptography>=42" "pyyaml>=6" "rich>=13"

$(DEMO_VENV)/.installed: pyproject.toml
	@echo "==> a small environment for the demo ($(DEMO_VENV): ml-integrity, cryptography, pyyaml, rich)"
	$(PYTHON) -m venv $(DEMO_VENV)
	$(DEMO_VENV)/bin/pip install --quiet --progress-bar off $(DEMO_DEPS)
	$(DEMO_VENV)/bin/pip install --quiet --no-deps -e .
	touch $@

demo: $(DEMO_VENV)/.installed
	PATH="$(CURDIR)/$(DEMO_VENV)/bin:$$PATH" bash examples/demo.sh

# each benchmark prints its machine line and a markdown table (see docs/benchmarks.md)
BENCHES := bench/hashing.py bench/scanning.py bench/lfs.py bench/hooks.py bench/loader.py bench/scale.py bench/crypto.py

bench: $(VENV)/.installed test-deps
	@set -e; for b in $(BENCHES); do echo "== $$b"; $(PY) $$b; done

clean:
	rm -rf $(VENV) $(DEMO_VENV) .mypy_cache .ruff_cache .pytest_cache build dist .cache

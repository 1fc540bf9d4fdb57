# Every developer command. `make demo` and `make test` work on a fresh Debian / Raspberry Pi OS.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PCSC_STAMP := $(VENV)/.installed-pcsc
# Debian packages the test suite needs (installed with apt-get when run as root).
SYSTEM_PACKAGES ?= pcscd vsmartcard-vpcd swig libpcsclite-dev chromium fonts-wqy-microhei shellcheck curl postgresql

.PHONY: help demo test bench lint format system-deps clean

help:
	@echo "make demo   - run the terminal on the embedded demo county"
	@echo "make test   - install what is needed and run the whole test suite"
	@echo "make bench  - run the benchmarks, report in benchmarks/report.json"
	@echo "make lint   - ruff check and format check"

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

# pyscard (the `pcsc` extra) builds against libpcsclite (swig) where no wheel fits, so it
# comes after system-deps, and only for the tests: `make demo` needs neither.
$(PCSC_STAMP): pyproject.toml $(STAMP) | system-deps
	$(BIN)/python -m pip install --quiet -e '.[pcsc]'
	touch $(PCSC_STAMP)

system-deps:
	@missing=""; for p in $(SYSTEM_PACKAGES); do \
	  dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ]; then \
	    apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends $$missing; \
	  else echo "Missing Debian packages:$$missing (run 'sudo make system-deps')" >&2; exit 1; fi; \
	fi

demo: $(STAMP)
	$(BIN)/clinic demo

test: system-deps $(STAMP) $(PCSC_STAMP)
	$(BIN)/python -m pytest

bench: $(STAMP)
	$(BIN)/python -m benchmarks --out benchmarks/report.json

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .ruff_cache .hypothesis

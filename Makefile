# Every developer command. `make demo` and `make test` work on a fresh Debian / Raspberry Pi OS.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
LOCKED := $(VENV)/.installed-lock
STAMP := $(VENV)/.installed
PCSC_STAMP := $(VENV)/.installed-pcsc
# Every Python package comes from this hashed lock (README, "Dependencies"): runtime.txt
# plus the dev extra. `make lock` is the only thing that changes it.
LOCK := requirements/dev.txt
# Debian packages the test suite needs (installed with apt-get when run as root).
SYSTEM_PACKAGES ?= pcscd vsmartcard-vpcd swig libpcsclite-dev chromium fonts-wqy-microhei shellcheck curl postgresql \
  cage xwayland
# make lock: the pip-tools that compiles the locks, in a throwaway venv; UPGRADE=1 moves
# every package to the newest version pyproject.toml allows.
PIP_TOOLS := pip==26.3 pip-tools==7.6.2
UPGRADE ?=

.PHONY: help demo test test-pi test-dates bench lint format system-deps lock clean pi-bundle

help:
	@echo "make demo   - run the terminal on the embedded demo county"
	@echo "make test   - install what is needed and run the whole test suite"
	@echo "make test-pi - boot a Raspberry Pi OS-like root, install offline, check (root)"
	@echo "make test-dates - the date-sensitive tests and the demo at other dates and zones"
	@echo "make bench  - run the benchmarks, report in benchmarks/report.json"
	@echo "make lint   - ruff, the import contracts (layers, no cycles) and mypy"
	@echo "make lock   - recompile requirements/*.txt from pyproject.toml (UPGRADE=1: newest)"
	@echo "make pi-bundle ARCH=arm64 - the offline install bundle in dist/pi-bundle-ARCH"

# A new venv whenever the lock changes, so that it holds exactly the locked packages and
# nothing an older lock left behind. --require-hashes: every file is checked against the
# lock; --no-deps: nothing that the lock does not name. pyscard (the `pcsc` extra) has no
# Linux wheel and builds against libpcsclite with swig, so it waits for system-deps and
# comes in $(PCSC_STAMP), for the tests only: `make demo` needs neither.
$(LOCKED): $(LOCK)
	rm -rf $(VENV)
	$(PYTHON) -m venv $(VENV)
	awk '/^[^[:space:]#]/ { skip = ($$1 ~ /^pyscard==/) } !skip' $(LOCK) >$(VENV)/lock-without-pyscard.txt
	$(BIN)/python -m pip install --quiet --require-hashes --no-deps -r $(VENV)/lock-without-pyscard.txt
	touch $(LOCKED)

# The project itself, editable, built by the locked setuptools (no isolated build env,
# which would download an unhashed one).
$(STAMP): $(LOCKED) pyproject.toml
	$(BIN)/python -m pip install --quiet --no-deps --no-build-isolation -e .
	@$(PIP_CHECK)
	touch $(STAMP)

$(PCSC_STAMP): $(STAMP) | system-deps
	$(BIN)/python -m pip install --quiet --require-hashes --no-deps --no-build-isolation -r $(LOCK)
	@$(PIP_CHECK)
	touch $(PCSC_STAMP)

# A dependency added to pyproject.toml but not yet to the lock shows here.
PIP_CHECK = $(BIN)/python -m pip check >/dev/null || { $(BIN)/python -m pip check; \
  echo "the venv does not satisfy pyproject.toml: update the lock with 'make lock'" >&2; exit 1; }

# $(call apt_ensure,PACKAGES,TARGET): install the missing ones with apt-get (as root).
apt_ensure = missing=""; for p in $(1); do \
	  dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ]; then \
	    apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends $$missing; \
	  else echo "Missing Debian packages:$$missing (run 'sudo make $(2)')" >&2; exit 1; fi; \
	fi

system-deps:
	@$(call apt_ensure,$(SYSTEM_PACKAGES),system-deps)

demo: $(STAMP)
	$(BIN)/clinic demo

test: system-deps $(STAMP) $(PCSC_STAMP)
	$(BIN)/python -m pytest

# Every Python process's wall clock moved to year ends, a leap day and years ahead, under
# three machine zones (README, "Dates, the clock and time zones").
test-dates: system-deps $(STAMP) $(PCSC_STAMP)
	$(BIN)/python tests/time_travel/run.py

# Proof by booting (deploy/raspberry-pi/README.md, "Proof by booting"): a bookworm root
# (debootstrap, cached in /var/cache/clinic-pi), the offline bundle installed with no
# network, booted with systemd-nspawn, the checks in tests/pi. As root; `make test` never
# collects tests/pi. PI_BUNDLE=DIR: use that bundle instead of building dist/pi-bundle-ARCH.
PI_SYSTEM_PACKAGES ?= systemd-container debootstrap dpkg-dev e2fsprogs util-linux curl
PI_ARCH ?= $(shell dpkg --print-architecture)
PI_BUNDLE ?=

test-pi: $(STAMP)
	@[ "$$(id -u)" = 0 ] || { echo "make test-pi: run as root (debootstrap, mount, systemd-nspawn)" >&2; exit 1; }
	@$(call apt_ensure,$(PI_SYSTEM_PACKAGES),test-pi)
	$(if $(PI_BUNDLE),,$(MAKE) pi-bundle ARCH=$(PI_ARCH))
	CLINIC_PI_BUNDLE=$(abspath $(or $(PI_BUNDLE),dist/pi-bundle-$(PI_ARCH))) \
	  $(BIN)/python -m pytest -p no:cacheprovider -o timeout=3600 -s tests/pi

bench: $(STAMP)
	$(BIN)/python -m benchmarks --out benchmarks/report.json

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports
	$(BIN)/mypy

format: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

# The locks are resolved for CPython 3.11 on Linux, what the terminal and the hub run.
# runtime.txt first (what a Pi installs), then dev.txt constrained by it, so the packages
# they share have the same versions. Without UPGRADE, pins already in the locks are kept.
lock:
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))' || { \
	  echo "make lock: the locks are for CPython 3.11; run it with PYTHON=python3.11" >&2; exit 1; }
	tmp=$$(mktemp -d) && trap 'rm -rf "$$tmp"' EXIT && \
	$(PYTHON) -m venv "$$tmp" && \
	"$$tmp/bin/python" -m pip install --quiet $(PIP_TOOLS) && \
	compile() { CUSTOM_COMPILE_COMMAND="make lock" "$$tmp/bin/pip-compile" --quiet \
	  --generate-hashes --allow-unsafe --strip-extras --no-emit-options \
	  $(if $(UPGRADE),--upgrade) "$$@"; } && \
	compile --extra pcsc -o requirements/runtime.txt \
	  pyproject.toml requirements/tools.in && \
	compile --extra pcsc --extra dev -c requirements/runtime.txt \
	  -o requirements/dev.txt pyproject.toml requirements/tools.in

# The offline install bundle for a terminal (deploy/raspberry-pi/README.md): Debian
# bookworm packages for ARCH (resolved by this machine's apt, no emulation; downloads kept
# in /var/cache/clinic-pi) and the release's wheels, in dist/pi-bundle-$(ARCH).
ARCH ?= $(shell dpkg --print-architecture)
pi-bundle: $(STAMP)
	@command -v dpkg-scanpackages >/dev/null || { [ "$$(id -u)" = 0 ] && \
	  apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends dpkg-dev; } || { \
	  echo "make pi-bundle needs dpkg-scanpackages (sudo apt-get install dpkg-dev)" >&2; exit 1; }
	deploy/raspberry-pi/build-bundle.sh --arch $(ARCH) --out dist/pi-bundle-$(ARCH) --clinic $(BIN)/clinic

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .ruff_cache .hypothesis .mypy_cache .import_linter_cache .grimp_cache

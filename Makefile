# Typogram Arena: set-up, tests, lint and the local cluster.
# `make test` is what CI runs (.ci/run) and what the README lists.

SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := test

PYTHON ?= python3.11
VENV := .venv
STAMP := $(VENV)/.installed
# checkov (static security check of the Kubernetes manifests) lives in a venv of its own: its pins
# (packaging 23, boto3, ...) would otherwise hold back the project's.
CHECKOV_VENV := .venv-checkov
CHECKOV_LOCK := requirements/checkov-lock.txt
PG_BIN := /usr/lib/postgresql/15/bin
# Root needs no sudo (CI runs as root); anyone else gets it for apt-get only.
SUDO := $(if $(filter 0,$(shell id -u)),,sudo)
# Reinstall into the venv whenever the lock or the project's packaging files change.
PROJECT_FILES := $(wildcard setup.cfg setup.py pyproject.toml)
LOCK := requirements/lock.txt
# Where the lock is resolved for: the Python and platform that set-up installs on (Debian 12, x86_64).
# The hashes cover every file of each pinned version, so other platforms install from it as well.
LOCK_TARGET := --python-version 3.11 --python-platform x86_64-unknown-linux-gnu

.PHONY: setup system-packages lock-check lock test lint run clean distclean

setup: system-packages lock-check $(STAMP) $(CHECKOV_VENV)/.installed node_modules/.package-lock.json

# Set-up installs only from the lock; a lock older than setup.cfg's ranges stops it here, loudly.
lock-check:
	@$(PYTHON) ops/lockfile.py check

# Resolve setup.cfg (runtime and every extra) and requirements/tools.in into exact, hash-checked pins.
# Pins already in the lock are kept where they still fit; `make lock UPGRADE=1` takes the newest.
lock: | $(VENV)/bin/python
	@[ -x $(VENV)/bin/uv ] || $(VENV)/bin/python -m pip install --quiet --require-hashes --no-deps -r $(LOCK)
	$(VENV)/bin/uv pip compile setup.cfg requirements/tools.in --extra dev --generate-hashes \
		$(LOCK_TARGET) $(if $(UPGRADE),--upgrade,) --custom-compile-command 'make lock' --quiet -o $(LOCK)
	$(VENV)/bin/uv pip compile requirements/checkov.in --generate-hashes \
		$(LOCK_TARGET) $(if $(UPGRADE),--upgrade,) --custom-compile-command 'make lock' --quiet -o $(CHECKOV_LOCK)
	$(PYTHON) ops/lockfile.py stamp

# Debian packages: Python 3.11 with venv, the real Redis and PostgreSQL used by tests and `make run`,
# nginx (config check), Chromium and its driver (browser tests), Node's npm (page libraries),
# wrk (the lobby's load generator in benchmarks/lobby_throughput.py).
# apt-get update only when something is missing, so a ready machine stays offline.
# policy-rc.d keeps the packages' system services (postgres, redis, nginx on :80) from starting:
# the project starts its own servers on free loopback ports.
system-packages:
	@missing=""; \
	command -v redis-server >/dev/null || missing="$$missing redis-server"; \
	[ -x $(PG_BIN)/postgres ] || missing="$$missing postgresql-15"; \
	[ -x /usr/sbin/nginx ] || missing="$$missing nginx-light"; \
	[ -x /usr/bin/chromium ] && [ -x /usr/bin/chromedriver ] || missing="$$missing chromium chromium-driver"; \
	command -v npm >/dev/null || missing="$$missing nodejs npm"; \
	command -v wrk >/dev/null || missing="$$missing wrk"; \
	command -v $(PYTHON) >/dev/null || missing="$$missing python3.11"; \
	$(PYTHON) -c 'import ensurepip, venv' 2>/dev/null || missing="$$missing python3.11-venv"; \
	if [ -n "$$missing" ]; then \
		echo "apt-get install:$$missing"; \
		$(SUDO) apt-get update; \
		guard=""; \
		if [ ! -e /usr/sbin/policy-rc.d ]; then \
			guard=1; printf '#!/bin/sh\nexit 101\n' | $(SUDO) tee /usr/sbin/policy-rc.d >/dev/null; \
			$(SUDO) chmod +x /usr/sbin/policy-rc.d; \
		fi; \
		$(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends $$missing; \
		[ -z "$$guard" ] || $(SUDO) rm -f /usr/sbin/policy-rc.d; \
	fi

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)

# Exactly the lock's distributions (hashes checked, nothing resolved), then the project itself with the
# lock's setuptools (no build isolation, so no unpinned build backend is fetched); pip check proves the
# set is consistent.
$(STAMP): $(LOCK) $(PROJECT_FILES) | $(VENV)/bin/python
	$(VENV)/bin/python -m pip install --quiet --require-hashes --no-deps -r $(LOCK)
	$(VENV)/bin/python -m pip install --quiet --no-deps --no-build-isolation -e .
	$(VENV)/bin/python -m pip check
	touch $@

$(CHECKOV_VENV)/.installed: $(CHECKOV_LOCK)
	[ -x $(CHECKOV_VENV)/bin/python ] || $(PYTHON) -m venv $(CHECKOV_VENV)
	$(CHECKOV_VENV)/bin/python -m pip install --quiet --require-hashes --no-deps -r $(CHECKOV_LOCK)
	$(CHECKOV_VENV)/bin/python -m pip check
	touch $@

# The browser client's libraries (the msgpack codec), from the npm registry, at set-up only.
node_modules/.package-lock.json: package.json package-lock.json
	npm ci --no-audit --no-fund

test: setup
	$(VENV)/bin/python -m pytest -q
	$(MAKE) --no-print-directory lint

lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy

run: setup
	$(VENV)/bin/python -m ops.cluster

clean:
	rm -rf .pytest_cache .mypy_cache .ruff_cache build dist *.egg-info
	find . -path ./$(VENV) -prune -o -name __pycache__ -type d -exec rm -rf {} +

distclean: clean
	rm -rf $(VENV) $(CHECKOV_VENV)

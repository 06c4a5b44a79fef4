# Typogram Arena: set-up, tests, lint and the local cluster.
# `make test` is what CI runs (.ci/run) and what the README lists.

SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := test

PYTHON ?= python3.11
VENV := .venv
STAMP := $(VENV)/.installed
PG_BIN := /usr/lib/postgresql/15/bin
# Root needs no sudo (CI runs as root); anyone else gets it for apt-get only.
SUDO := $(if $(filter 0,$(shell id -u)),,sudo)
# Reinstall into the venv whenever the project's packaging files change.
PROJECT_FILES := $(wildcard setup.cfg setup.py pyproject.toml)

.PHONY: setup system-packages test lint run clean distclean

setup: system-packages $(STAMP) node_modules/.package-lock.json

# Debian packages: Python 3.11 with venv, the real Redis and PostgreSQL used by tests and `make run`,
# nginx (config check), Chromium and its driver (browser tests), Node's npm (page libraries).
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

$(STAMP): $(PROJECT_FILES) | $(VENV)/bin/python
	@if [ -f setup.cfg ]; then \
		$(VENV)/bin/pip install -e '.[dev]' && touch $@; \
	else \
		echo "no setup.cfg yet: skipping pip install"; \
	fi

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
	rm -rf $(VENV)

# Two commands for a fresh machine (Debian/Ubuntu, Python >= 3.10):
#
#   make book   builds the book (default profile) into _build/html/index.html
#   make test   runs the test suite, which builds the smoke book and checks it in headless Chromium
#
# Both create the environment in .venv first (python3 -m venv + pip), and reinstall only when
# requirements.txt or pyproject.toml changed. `make test` also installs Debian's chromium and
# chromium-driver when they are missing (apt-get; root or sudo).
#
# Options: make book PROFILE=smoke|default|full|paper    make test PYTEST_ARGS="-k runner -x"

SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := book

PYTHON ?= python3
VENV ?= .venv
PROFILE ?= default
PYTEST_ARGS ?=
VENV_PYTHON := $(VENV)/bin/python
ENV_STAMP := $(VENV)/.requirements.sha256

.PHONY: book test env chromium

book: env
	$(VENV_PYTHON) -m eraserbook build --profile $(PROFILE)

# ERASER_REQUIRE_CHROMIUM: a missing browser fails the browser tests instead of skipping them.
test: env chromium
	ERASER_REQUIRE_CHROMIUM=1 $(VENV_PYTHON) -m pytest $(PYTEST_ARGS)

# pip, not uv or poetry: pip sees this machine's local CPU torch wheel (the others fetch CUDA builds).
env:
	@want=$$(cat requirements.txt pyproject.toml | sha256sum | cut -d' ' -f1); \
	if [ ! -x "$(VENV_PYTHON)" ]; then \
	  echo "creating $(VENV)"; $(PYTHON) -m venv "$(VENV)"; \
	fi; \
	if [ "$$(cat "$(ENV_STAMP)" 2>/dev/null)" != "$$want" ]; then \
	  echo "installing requirements.txt and eraserlib into $(VENV)"; \
	  "$(VENV_PYTHON)" -m pip install --quiet -r requirements.txt -e . ; \
	  echo "$$want" > "$(ENV_STAMP)"; \
	else \
	  echo "$(VENV) is up to date"; \
	fi

chromium:
	@if command -v chromium >/dev/null && command -v chromedriver >/dev/null; then \
	  echo "chromium: $$(command -v chromium)"; \
	else \
	  sudo=""; if [ "$$(id -u)" -ne 0 ]; then sudo=sudo; fi; \
	  echo "installing chromium and chromium-driver (Debian packages)"; \
	  $$sudo apt-get update -q; \
	  $$sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium chromium-driver; \
	fi

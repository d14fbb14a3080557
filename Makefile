# `make demo` and `make test` each set everything up on a fresh machine (Python 3.11) first.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: setup demo test browser

$(STAMP): setup.cfg pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e ".[train,runtime,devcerts,test]"
	touch $(STAMP)

setup: $(STAMP)

demo: setup
	$(BIN)/python -m pmc2.demo $(ARGS)

# The page's browser test drives Debian's Chromium; installed here when missing and apt can (root).
browser:
	@command -v chromium >/dev/null 2>&1 || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 && \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; } || \
		echo "chromium is not installed and could not be: the browser test will say so"

test: setup browser
	$(BIN)/python -m pytest

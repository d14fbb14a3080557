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

# The page's browser test drives Debian's Chromium through Playwright. Chromium is installed here when missing
# and apt can (root); when it cannot be, `make test` stops, naming what to install, rather than skip the test.
browser: setup
	@command -v chromium >/dev/null 2>&1 || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 && \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; }; \
	command -v chromium >/dev/null 2>&1 || { echo "make browser: Chromium is missing and could not be installed;" \
		"install it as root (Debian: apt-get install -y chromium) and run make test again" >&2; exit 1; }
	@$(BIN)/python -c "import playwright.sync_api" 2>/dev/null || { echo "make browser: Playwright is missing from" \
		"$(VENV); install it with: $(BIN)/pip install -e '.[test]'" >&2; exit 1; }

test: setup browser
	$(BIN)/python -m pytest

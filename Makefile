# `make demo` and `make test` each set everything up on a fresh machine (Python 3.11) first.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: setup demo test

$(STAMP): setup.cfg pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e ".[train,runtime,devcerts,test]"
	touch $(STAMP)

setup: $(STAMP)

demo: setup
	$(BIN)/python -m pmc2.demo

test: setup
	$(BIN)/python -m pytest

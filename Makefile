# Two commands on a fresh machine: `make run` serves sample-config-repo/ on 127.0.0.1:8888,
# `make test` runs the whole suite. Each creates .venv and installs what it needs.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
HOST ?= 127.0.0.1
PORT ?= 8888

.PHONY: run test lint clean system-deps

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.installed: $(BIN)/python setup.cfg pyproject.toml
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

# git (with git daemon) is the only system tool the suite needs; install it when missing.
system-deps:
	@if ! command -v git >/dev/null || [ ! -x "$$(git --exec-path)/git-daemon" ]; then \
	  apt-get update -qq && apt-get install -y -qq git >/dev/null; fi

run: $(VENV)/.installed system-deps
	$(BIN)/config-server serve --host $(HOST) --port $(PORT) --data-dir .data

test: $(VENV)/.installed system-deps
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -q

lint: $(VENV)/.installed
	$(BIN)/ruff check . && $(BIN)/ruff format --check .

clean:
	rm -rf $(VENV) .data

# Two commands on a fresh machine: `make run` serves sample-config-repo/ on 127.0.0.1:8888,
# `make test` runs the whole suite. Each creates .venv and installs what it needs, from the lock.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
HOST ?= 127.0.0.1
PORT ?= 8888

.PHONY: run test test-latest bench lint lock clean system-deps bench-deps test-deps

# Lock files (hash-pinned, generated from setup.cfg by `make lock`): requirements-dev.txt is the
# `[dev]` extra = the `[server]` extra + pydantic + the test frameworks (FastAPI, uvicorn, Django...)
# + ruff + mypy and type stubs: what run, test and bench need. requirements-server.txt is the
# `[server]` extra alone, for production installs (README, "Installing"). requirements-uv.txt pins
# uv, the installer (uv pip sync: faster than pip, and exact; docs/maintenance.md), installed by pip.
UV_VERSION := 0.13.9
UV := $(BIN)/uv
LOCK_FLAGS ?= --upgrade

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(UV): $(BIN)/python requirements-uv.txt
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --require-hashes -r requirements-uv.txt
	touch $@

# The venv holds exactly the locked set (sync removes what the lock no longer lists), then this
# project, editable, without dependencies. A change of a lock file or of setup.cfg reinstalls.
$(VENV)/.installed: $(UV) requirements-dev.txt setup.cfg pyproject.toml
	$(UV) pip sync --quiet --python $(BIN)/python --require-hashes requirements-dev.txt
	$(UV) pip install --quiet --python $(BIN)/python --no-deps -e .
	touch $@

# Regenerate the lock files from setup.cfg with the newest releases it allows, for Python 3.11+
# on any platform (--universal); `make lock LOCK_FLAGS=` keeps the current pins where setup.cfg
# still allows them. The server's lock is constrained by the dev lock: production runs only
# versions that `make test` ran. Commit the lock files after `make test` passed on them
# (docs/maintenance.md).
LOCK_COMPILE = $(UV) pip compile --quiet --python $(BIN)/python --universal --python-version 3.11 \
	--generate-hashes --custom-compile-command 'make lock' $(LOCK_FLAGS)
lock: $(UV)
	$(LOCK_COMPILE) setup.cfg --extra dev -o requirements-dev.txt
	$(LOCK_COMPILE) setup.cfg --extra server -c requirements-dev.txt -o requirements-server.txt
	echo 'uv==$(UV_VERSION)' | $(LOCK_COMPILE) - -o requirements-uv.txt

# System tools, installed with apt-get only when missing: git for serving (and git daemon for the
# suite); wrk, nginx, etcd and redis-server for the benchmarks, which the suite also runs at a tiny
# size (redis-server also for the cluster tests); Debian's chromium for the console's browser test
# (driven by Playwright, never `playwright install`); openssh-server's sshd for the SSH-remote test
# (tests/integration/test_ssh_remote.py runs its own sshd on 127.0.0.1, never the system's).
RUN_TOOLS := git:git
BENCH_TOOLS := $(RUN_TOOLS) wrk:wrk nginx:nginx etcd:etcd-server redis-server:redis-server
TEST_TOOLS := $(BENCH_TOOLS) chromium:chromium sshd:openssh-server
define apt_install
	@missing=""; for pair in $(1); do tool=$${pair%%:*}; pkg=$${pair##*:}; \
	  command -v $$tool >/dev/null || [ -x /usr/sbin/$$tool ] || missing="$$missing $$pkg"; done; \
	if command -v git >/dev/null && [ ! -x "$$(git --exec-path)/git-daemon" ]; then missing="$$missing git"; fi; \
	if [ -n "$$missing" ]; then echo "installing$$missing"; apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; fi
endef

system-deps:
	$(call apt_install,$(RUN_TOOLS))

bench-deps:
	$(call apt_install,$(BENCH_TOOLS))

test-deps:
	$(call apt_install,$(TEST_TOOLS))

run: $(VENV)/.installed system-deps
	$(BIN)/config-server serve --host $(HOST) --port $(PORT) --data-dir .data

test: $(VENV)/.installed test-deps
	$(BIN)/ruff check .
	$(BIN)/mypy
	$(BIN)/lint-imports
	$(BIN)/python -m pytest -q

# The next breakage first: the suite on the newest releases setup.cfg allows (no lock), in its own
# venv (.venv stays as it is). A maintainer's weekly job: docs/maintenance.md.
LATEST := .venv-latest
test-latest: test-deps
	rm -rf $(LATEST)
	$(PYTHON) -m venv $(LATEST)
	$(LATEST)/bin/python -m pip install --quiet --upgrade pip
	$(LATEST)/bin/python -m pip install --quiet --upgrade -e '.[dev]'
	@echo "test-latest: installed in $(LATEST):"; $(LATEST)/bin/python -m pip list --format=freeze
	$(LATEST)/bin/ruff check .
	$(LATEST)/bin/mypy
	$(LATEST)/bin/python -m pytest -q

# Every benchmark at full size (several minutes); tables on stdout, JSON in bench/results/.
bench: $(VENV)/.installed bench-deps
	$(BIN)/python -m bench.run_all

lint: $(VENV)/.installed
	$(BIN)/ruff check . && $(BIN)/ruff format --check . && $(BIN)/mypy

clean:
	rm -rf $(VENV) $(LATEST) .data

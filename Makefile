# Two commands on a fresh machine: `make run` serves sample-config-repo/ on 127.0.0.1:8888,
# `make test` runs the whole suite. Each creates .venv and installs what it needs.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
HOST ?= 127.0.0.1
PORT ?= 8888

.PHONY: run test bench lint clean system-deps bench-deps test-deps

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

# A plain install is the client only; `[dev]` = the `[server]` extra + pydantic + the test
# frameworks (FastAPI, uvicorn, Django...) + ruff + mypy and type stubs: what run, test and bench need.
$(VENV)/.installed: $(BIN)/python setup.cfg pyproject.toml
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

# System tools, installed with apt-get only when missing: git for serving (and git daemon for the
# suite); wrk, nginx, etcd and redis-server for the benchmarks, which the suite also runs at a tiny
# size (redis-server also for the cluster tests); Debian's chromium for the console's browser test
# (driven by Playwright, never `playwright install`).
RUN_TOOLS := git:git
BENCH_TOOLS := $(RUN_TOOLS) wrk:wrk nginx:nginx etcd:etcd-server redis-server:redis-server
TEST_TOOLS := $(BENCH_TOOLS) chromium:chromium
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
	$(BIN)/python -m pytest -q

# Every benchmark at full size (several minutes); tables on stdout, JSON in bench/results/.
bench: $(VENV)/.installed bench-deps
	$(BIN)/python -m bench.run_all

lint: $(VENV)/.installed
	$(BIN)/ruff check . && $(BIN)/ruff format --check . && $(BIN)/mypy

clean:
	rm -rf $(VENV) .data

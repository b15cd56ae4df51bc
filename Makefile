# Two commands on a fresh machine: `make run` serves sample-config-repo/ on 127.0.0.1:8888,
# `make test` runs the whole suite. Each creates .venv and installs what it needs, from the lock.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
HOST ?= 127.0.0.1
PORT ?= 8888

.PHONY: run test test-latest bench lint lock clean system-deps bench-deps test-deps image image-deps image-base image-wheels image-test

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
# (driven by Playwright, never `playwright install`); systemd-analyze to verify deploy/systemd/'s unit;
# openssh-server's sshd for the SSH-remote test (tests/integration/test_ssh_remote.py runs its own sshd
# on 127.0.0.1, never the system's).
RUN_TOOLS := git:git
BENCH_TOOLS := $(RUN_TOOLS) wrk:wrk nginx:nginx etcd:etcd-server redis-server:redis-server
TEST_TOOLS := $(BENCH_TOOLS) chromium:chromium systemd-analyze:systemd sshd:openssh-server
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
	$(LATEST)/bin/lint-imports
	$(LATEST)/bin/python -m pytest -q

# Every benchmark at full size (several minutes); tables on stdout, JSON in bench/results/.
bench: $(VENV)/.installed bench-deps
	$(BIN)/python -m bench.run_all

# The container image (Containerfile; docs/deployment.md, "The image"). The base is Debian bookworm
# (minbase), made here from Debian's mirror when no such image exists (no registry needed: ~30 s);
# the server is installed in it from the lock, offline, from wheels downloaded here (pip inside a
# build does not trust this machine's TLS interception). podman reads this project's
# containers.conf (runc, and the open-file limits this sandbox allows).
VERSION := $(shell sed -n 's/^__version__ = "\(.*\)"/\1/p' config_server/version.py)
IMAGE ?= localhost/config-server:$(VERSION)
BASE_IMAGE ?= localhost/config-server-base:bookworm
DEBIAN_MIRROR ?= http://deb.debian.org/debian
PODMAN := CONTAINERS_CONF=$(CURDIR)/containers.conf podman
IMAGE_TOOLS := podman:podman buildah:buildah debootstrap:debootstrap runc:runc

image-deps:
	$(call apt_install,$(IMAGE_TOOLS))

image-base: image-deps
	@$(PODMAN) image exists $(BASE_IMAGE) || { \
	  echo "making $(BASE_IMAGE) with debootstrap"; rm -rf build/rootfs && mkdir -p build && \
	  { debootstrap --variant=minbase bookworm build/rootfs $(DEBIAN_MIRROR) >build/debootstrap.log 2>&1 \
	    || { tail -20 build/debootstrap.log; exit 1; }; } && \
	  tar -C build/rootfs -c . | $(PODMAN) import --quiet - $(BASE_IMAGE) && rm -rf build/rootfs; }

# Every package of the lock whatever its marker (the image's Python, Debian's 3.11.2, needs some
# this host's does not, such as async-timeout below 3.11.3): the image's pip applies the markers.
image-wheels: $(VENV)/.installed
	rm -rf build/image-wheels && mkdir -p build
	sed -E 's/ ; [^\\]*\\$$/ \\/' requirements-server.txt >build/image-requirements.txt
	$(BIN)/python -m pip download --quiet --disable-pip-version-check --only-binary=:all: \
	  --require-hashes -r build/image-requirements.txt -d build/image-wheels
	$(BIN)/python -m pip wheel --quiet --disable-pip-version-check --no-deps -w build/image-wheels .

image: image-base image-wheels
	$(PODMAN) build --quiet --format docker --build-arg BASE=$(BASE_IMAGE) --build-arg VERSION=$(VERSION) \
	  -t $(IMAGE) -f Containerfile .
	@$(PODMAN) image inspect --format '$(IMAGE): {{.Size}} bytes' $(IMAGE)

# Builds the image and runs it as an operator would (tests/integration/test_image.py): a step of
# .ci/run, too slow for `make test`.
image-test: image test-deps
	CONFIG_SERVER_IMAGE=$(IMAGE) $(BIN)/python -m pytest -q tests/integration/test_image.py

lint: $(VENV)/.installed
	$(BIN)/ruff check . && $(BIN)/ruff format --check . && $(BIN)/mypy

clean:
	rm -rf $(VENV) $(LATEST) .data

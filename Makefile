# Two commands matter: `make run` and `make test`. Both set everything up from scratch
# (a private uv in .tools/, the locked dependencies in .venv/) with only python3 and make.

PYTHON ?= python3
UV_VERSION := 0.13.9
TOOLS := .tools
UV := $(TOOLS)/bin/uv
VENV := .venv
BIN := $(VENV)/bin

export UV_PYTHON_DOWNLOADS := never
export UV_PROJECT_ENVIRONMENT := $(VENV)

.PHONY: setup run test browser postgresql pebble sshd lint format bench soak binary clean \
	arm64-tools binary-arm64 test-arm64 release test-release

$(UV):
	$(PYTHON) -m venv $(TOOLS)
	$(TOOLS)/bin/pip install --quiet --disable-pip-version-check uv==$(UV_VERSION)

# Everything: runtime, tests, lint, types (the dev group).
$(VENV)/.synced: $(UV) pyproject.toml uv.lock
	$(UV) sync --locked --python $(PYTHON)
	@touch $@ $(VENV)/.synced-run

# What running needs and nothing more (no test or development tools); --inexact keeps a
# venv that `make test` already filled as it is.
$(VENV)/.synced-run: $(UV) pyproject.toml uv.lock
	$(UV) sync --locked --no-dev --inexact --python $(PYTHON)
	@touch $@

setup: $(VENV)/.synced

# The relay on the example config, with a demo receiver (`relay sink`) on 127.0.0.1:9000.
# (RUN_CONFIG and SINK_LISTEN change them, as tests/test_install.py does for free ports.)
RUN_CONFIG ?= config.example.toml
SINK_LISTEN ?= 127.0.0.1:9000
run: $(VENV)/.synced-run
	@url=$$($(BIN)/relay check-config $(RUN_CONFIG) | $(BIN)/python -c 'import json, sys; \
	  c = json.load(sys.stdin); s = c["server"]; \
	  print(("https" if s.get("tls") else "http") + "://" + s["listen"] + "/in/" + c["sources"][0]["name"])') \
	  && echo "relay: POST to $$url (see README); Ctrl-C stops both."
	@$(BIN)/relay sink --listen $(SINK_LISTEN) & sink=$$!; \
	  trap 'kill $$sink 2>/dev/null' EXIT INT TERM; \
	  $(BIN)/relay serve --config $(RUN_CONFIG)

# Some tests fill or freeze a real file system (a tiny tmpfs, a read-only bind mount). Root
# mounts them directly; any other user gets the suite run in a private user and mount
# namespace (unshare), where mounts touch nothing outside the tests. RELAY_TEST_UID keeps
# the real uid for the one test that cares (the browser, which only root can install).
# PostgreSQL (the backend for several relays) is started by the suite itself, with initdb
# in a temporary folder; as any other user it is started here, before the namespace, where
# initdb would refuse to run as "root".
test: setup browser postgresql pebble sshd dist/relay
	@if [ "$$(id -u)" = 0 ]; then $(BIN)/pytest -m "not release"; \
	else pg=$$(mktemp -d) && $(BIN)/python -m tests.postgres start $$pg > /dev/null && \
	  trap "$(BIN)/python -m tests.postgres stop $$pg" EXIT && \
	  RELAY_TEST_PG=$$pg/run RELAY_TEST_UID=$$(id -u) \
	  unshare --user --map-root-user --mount $(BIN)/pytest -m "not release"; fi

# Debian's pebble (Let's Encrypt's ACME test server) for the HTTPS tests; installed when
# root; without it make test stops and says so.
pebble:
	@command -v pebble > /dev/null || { [ "$$(id -u)" = 0 ] && \
	  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq pebble; }; } \
	  || { echo "make test needs Debian's pebble (the HTTPS tests): apt-get install pebble"; exit 1; }

# Debian's OpenSSH server, for the Litestream drill's SFTP replica (started by the test on
# a loopback port, key auth, as the user running the tests); installed when root.
sshd:
	@test -x /usr/sbin/sshd || { [ "$$(id -u)" = 0 ] && \
	  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
	    --no-install-recommends openssh-server; }; } \
	  || { echo "make test needs Debian's openssh-server (the SFTP replica test): apt-get install openssh-server"; exit 1; }

# Debian's PostgreSQL server for the tests of the PostgreSQL backend; installed when root.
postgresql:
	@ls /usr/lib/postgresql/*/bin/initdb > /dev/null 2>&1 || { [ "$$(id -u)" = 0 ] && \
	  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql; }; } \
	  || { echo "make test needs PostgreSQL 15 or newer: apt-get install postgresql"; exit 1; }

# The console's browser tests drive Debian's chromium with Playwright; install it when root.
# Without it make test stops and says so.
browser:
	@command -v chromium > /dev/null || { [ "$$(id -u)" = 0 ] && \
	  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; }; } \
	  || { echo "make test needs Debian's chromium (the console's tests): apt-get install chromium"; exit 1; }

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy --strict relay

format: setup
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

# The benchmark suite (about 10 minutes on 2 cores): every scenario and baseline, written
# to docs/benchmarks-suite.md and docs/bench-ingest.png. Needs wrk and Debian's webhook
# (adnanh/webhook), installed here when root; matplotlib comes with the bench group.
bench: setup
	@{ command -v wrk > /dev/null && command -v webhook > /dev/null; } || { [ "$$(id -u)" = 0 ] && \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk webhook; } \
	  || { echo "bench: install wrk and webhook (apt-get install wrk webhook)"; exit 1; }
	$(UV) sync --locked --group bench --python $(PYTHON)
	$(BIN)/python bench/suite.py

# Soak: 10 minutes at a steady 200 req/s with a receiver failing 10% (docs/benchmarks.md).
soak: setup
	$(BIN)/python bench/soak.py --minutes 10 --rate 200

# The single executable: dist/relay (PyInstaller onefile, packaging/relay.spec). Built in
# its own venv with the runtime and build dependencies only, so nothing a developer's venv
# holds (pytest, mypy, hypothesis) can slip into the file.
BUILD_VENV := .venv-build
# The suite runs the executable too (tests/test_binary.py, the restart tests): make test
# builds it when relay's code, its packaging or the lock changed since it was last built.
dist/relay: $(shell find relay packaging -type f -not -path '*/__pycache__/*' -not -name '_commit.txt') pyproject.toml uv.lock
	$(MAKE) binary

binary: $(UV)
	UV_PROJECT_ENVIRONMENT=$(BUILD_VENV) $(UV) sync --locked --no-dev --group build \
	  --python $(PYTHON)
	git rev-parse --short HEAD > relay/_commit.txt 2>/dev/null || echo unknown > relay/_commit.txt
	cd packaging && ../$(BUILD_VENV)/bin/pyinstaller --noconfirm --clean --log-level WARN \
	  --distpath ../dist --workpath ../build relay.spec
	@ls -l dist/relay

# The arm64 executable, built on this x86_64 machine by emulation: a cached Debian arm64
# tree (debootstrap), qemu through binfmt_misc, the locked aarch64 wheels, PyInstaller
# (packaging/arm64.sh). Needs root. test-arm64 then runs the smoke test under qemu.
arm64-tools:
	@{ command -v qemu-aarch64-static && command -v debootstrap && \
	   command -v update-binfmts; } > /dev/null || { [ "$$(id -u)" = 0 ] && \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
	  qemu-user-static debootstrap binfmt-support; } || \
	  { echo "binary-arm64 needs root and qemu-user-static, debootstrap, binfmt-support"; exit 1; }

binary-arm64: $(UV) arm64-tools
	UV=$(UV) sh packaging/arm64.sh build

test-arm64: setup binary-arm64
	$(BIN)/pytest -p no:cacheprovider tests/test_binary_arm64.py

# Every release file in dist/release/<version>/ (packaging/release.sh): executables,
# archives and Debian packages for x86_64 and arm64 (the arm64 parts by emulation: root),
# wheel, sdist, SBOMs, SHA256SUMS. Then test-release installs them (a Debian root each).
release: $(UV) arm64-tools
	@command -v dpkg-deb > /dev/null || { echo "release: needs dpkg-deb (Debian's dpkg)"; exit 1; }
	UV=$(UV) sh packaging/release.sh

test-release: setup release
	$(BIN)/pytest -p no:cacheprovider tests/test_release.py tests/test_binary_arm64.py

clean:
	rm -rf $(VENV) $(BUILD_VENV) $(TOOLS) .pytest_cache .mypy_cache .ruff_cache build dist *.egg-info

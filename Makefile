# Everything installs itself: each target creates .venv and installs natsmesh with its
# dev extras on first use (and again when pyproject.toml changes).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: demo demo-secure test test-tools fuzz lint bench install clean

install: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/mesh up

# The same demo locked down: NATS TLS and a user per process, a mesh CA, mTLS strict.
demo-secure: $(STAMP)
	$(BIN)/mesh up --secure

# The tests start about 150 mesh processes: compiled once here, none of them compiles
# the packages again (with PYTHONDONTWRITEBYTECODE set, each would). Two workers, each
# taking whole test files (loadfile): a module's shared servers and meshes start once,
# on one worker, and two files' tests run side by side, one per core.
test: $(STAMP) test-tools
	$(BIN)/python -m compileall -q mesh agents gateway policies
	$(BIN)/python -m pytest -n 2 --dist loadfile

# Debian's packages that tests drive for real: a Prometheus server and promtool, a
# headless Chromium for the dashboard, HAProxy for the gateway's native data plane, and
# iproute2's `ip` for the hosts in network
# namespaces. Installed once, when missing (a fresh machine is root with apt); the tests
# that need them fail, not skip, when they are absent, except the namespace tests, which
# skip where namespaces cannot be made (not root, a container without the privilege).
TEST_TOOLS := prometheus:prometheus promtool:prometheus chromium:chromium ip:iproute2 haproxy:haproxy
test-tools:
	@missing=$$(for pair in $(TEST_TOOLS); do command -v $${pair%%:*} >/dev/null || echo $${pair#*:}; done | sort -u); \
	if [ -n "$$missing" ]; then \
		echo "installing Debian packages for the tests: $$missing"; \
		apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q $$missing >/dev/null; \
	fi

# The fuzz tests run briefly in `make test`; here with the long Hypothesis profile (see
# tests/conftest.py), 10,000 inputs per target, then atheris (the `fuzz` extra) guides
# bytes into the engine by coverage for FUZZ_SECONDS: about ten minutes in all.
FUZZ_SECONDS ?= 120
fuzz: $(STAMP)
	$(BIN)/python -m pip install --quiet -e '.[dev,fuzz]'
	$(BIN)/python -m pytest -m fuzz --hypothesis-profile=fuzz --hypothesis-show-statistics \
		--timeout=900 -p no:cacheprovider
	$(BIN)/python tests/integration/engine/atheris_engine.py -max_total_time=$(FUZZ_SECONDS)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

bench: $(STAMP)
	$(BIN)/python -m bench.proxy

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache

# Everything a newcomer needs: `make demo` runs the product, `make test` runs the tests.
# Both set up what they need on a fresh machine (Python venv, Keycloak, the listener jar).

PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: setup system keycloak provider wheelhouse dist helm container-base lint test test-unit demo screenshots clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

setup: system $(STAMP) keycloak provider wheelhouse helm container-base

system:
	bash deploy/system-packages.sh

keycloak: $(STAMP)
	$(PY) deploy/keycloak/keycloak.py fetch --all

provider: system
	bash deploy/keycloak-provider/build.sh >/dev/null

# The package's dependencies as wheels, so that tests/test_package.py installs the built wheel
# into a fresh venv without PyPI.
WHEELHOUSE := $(HOME)/.cache/jit-bridge/wheels
wheelhouse: $(WHEELHOUSE)/.pyproject.toml
$(WHEELHOUSE)/.pyproject.toml: pyproject.toml | $(STAMP)
	$(PY) -m pip download --quiet --only-binary=:all: --dest $(WHEELHOUSE) .
	cp pyproject.toml $@

# The Python package: dist/jit_bridge-<version>-py3-none-any.whl and dist/jit_bridge-<version>.tar.gz,
# both carrying the listener jar, the migrations, the mapping schema and the example mapping.
dist: $(STAMP) provider
	rm -rf build dist/jit_bridge-*
	$(PY) -m build --no-isolation --outdir dist .

# helm for the chart's tests, built once from the Go module proxy (deploy/helm/install-helm.sh
# says which version and why).
helm:
	bash deploy/helm/install-helm.sh >/dev/null

# The Debian 12 base image tests/test_container_image.py builds deploy/container/Containerfile
# on (debootstrap; buildah's storage in ~/.cache/jit-bridge/containers).
container-base: system
	bash deploy/container/base-image.sh >/dev/null

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

# pytest's exit code 5 (no test ran) is a failure here.
test: setup lint
	$(VENV)/bin/pytest -q; rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "pytest ran no tests" >&2; exit 1; fi; exit $$rc

# The fast layer: every test that needs no Keycloak, PostgreSQL, SCIM server or bridge
# process (tests/conftest.py marks those) and builds no package (tests/test_package.py); under a
# minute, on a machine without them.
UNIT_TESTS := not keycloak and not postgres and not scim and not bridge_process and not package
test-unit: $(STAMP)
	JIT_BRIDGE_TEST_NO_SERVICES=1 $(VENV)/bin/pytest -q -m "$(UNIT_TESTS)"

demo: setup
	$(PY) deploy/demo/demo.py

# The console's screenshots in docs/console/, taken by its browser tests.
screenshots: setup
	JIT_BRIDGE_CONSOLE_SCREENSHOTS=docs/console $(VENV)/bin/pytest -q -p no:randomly tests/test_console_browser.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache

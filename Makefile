# Everything installs from nothing into .venv; every target is safe to re-run.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
UV     := $(VENV)/bin/uv
STAMP  := $(VENV)/.installed

.PHONY: install lint test test-fast test-matrix system-test demo bench simulator docs clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade uv
	$(UV) pip install --quiet --python $(PY) -e ".[dev]"
	touch $(STAMP)

install: $(STAMP)

lint: install
	$(VENV)/bin/ruff check airflow_provider_revox tests example_dags bench demo system_tests docs/conf.py scripts/check-import-cycles scripts/bench-table
	$(VENV)/bin/ruff format --check airflow_provider_revox tests example_dags bench demo system_tests docs/conf.py scripts/check-import-cycles scripts/bench-table
	$(VENV)/bin/mypy airflow_provider_revox
	# The import arrows: layers and forbidden imports ([tool.importlinter] in pyproject.toml), no cycle.
	$(VENV)/bin/lint-imports --no-cache --no-logo
	$(PY) scripts/check-import-cycles

# Two workers: the suite is mostly waiting on loopback I/O and Airflow start-up, and each
# worker gets its own AIRFLOW_HOME and SQLite database (tests/conftest.py).
test: lint
	$(VENV)/bin/pytest -q -n 2

# The edit loop: unit tests only, no real Airflow run.
test-fast: install
	$(VENV)/bin/pytest -q -n 2 -m "not airflow"

# The suites on the oldest supported Airflow and the newest, on Python 3.10 and 3.13.
test-matrix: install
	scripts/test-matrix

# A real deployment: PostgreSQL, the simulator, scheduler, dag-processor, two triggerers and
# api-server as separate processes; checks through the REST API. Then a CeleryExecutor cell in the
# same PostgreSQL cluster: Redis, two Celery workers and two triggerers (the celery provider comes
# with the dev deps). The whole run must end within 10 minutes. SYSTEM_TEST_DB=sqlite runs the
# first cell on SQLite only; SYSTEM_TEST_CELERY=0 leaves the Celery cell out. Debian's postgresql
# and redis-server are installed first when missing, so the run's clock does not count them.
SYSTEM_PACKAGES := $(if $(wildcard /usr/lib/postgresql/*/bin/initdb),,postgresql) \
	$(if $(shell command -v redis-server),,redis-server)

system-test: install
	$(if $(strip $(SYSTEM_PACKAGES)),DEBIAN_FRONTEND=noninteractive apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(strip $(SYSTEM_PACKAGES)))
	$(PY) -m system_tests

demo: install
	$(PY) demo/run_demo.py

bench: install
	$(PY) bench/run_all.py

# The documentation site, built strictly: a warning (an unresolved reference, a broken link
# between pages, a docstring autodoc cannot read) fails the build. Built from scratch each time:
# an incremental build would not repeat the warnings of pages it does not reread. Autodoc imports
# Airflow: give it an AIRFLOW_HOME of its own, not the user's.
docs: install
	rm -rf docs/_build
	AIRFLOW_HOME=$(CURDIR)/docs/_build/airflow-home $(VENV)/bin/sphinx-build -W --keep-going -n -b html docs docs/_build/html

simulator: install
	$(PY) -m airflow_provider_revox.testing --port 8089 --speed 600 --calls 20

clean:
	rm -rf $(VENV) .matrix .pytest_cache .mypy_cache .ruff_cache docs/_build

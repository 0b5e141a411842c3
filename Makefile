# Everything installs from nothing into .venv; every target is safe to re-run.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
UV     := $(VENV)/bin/uv
STAMP  := $(VENV)/.installed

.PHONY: install lint test test-fast test-matrix system-test demo bench simulator clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade uv
	$(UV) pip install --quiet --python $(PY) -e ".[dev]"
	touch $(STAMP)

install: $(STAMP)

lint: install
	$(VENV)/bin/ruff check airflow_provider_revox tests example_dags bench demo system_tests
	$(VENV)/bin/ruff format --check airflow_provider_revox tests example_dags bench demo system_tests
	$(VENV)/bin/mypy airflow_provider_revox

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
# api-server as separate processes; checks through the REST API. SYSTEM_TEST_DB=sqlite for SQLite.
system-test: install
	$(PY) -m system_tests

demo: install
	$(PY) demo/run_demo.py

bench: install
	$(PY) bench/run_all.py

simulator: install
	$(PY) -m airflow_provider_revox.testing --port 8089 --speed 600 --calls 20

clean:
	rm -rf $(VENV) .matrix .pytest_cache .mypy_cache .ruff_cache

# Nurture: every setup step lives here, so a fresh machine needs only Python 3.11 and make.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
NURTURE := $(BIN)/nurture
INSTALLED := $(VENV)/.installed
MANIFEST := dbt_project/target/manifest.json
# Debian's Chromium: the browser tests/e2e/test_airflow_ui.py drives (never `playwright install`).
CHROMIUM := /usr/bin/chromium
# Debian's Redis: the Celery broker of `make airflow-celery` and tests/e2e/test_celery.py.
REDIS := /usr/bin/redis-server
SUDO := $(if $(filter 0,$(shell id -u)),,sudo)

export GX_ANALYTICS_ENABLED := false
export AIRFLOW__COSMOS__ENABLE_TELEMETRY := False
export DBT_SEND_ANONYMOUS_USAGE_STATS := false
export SCARF_ANALYTICS := false
export DO_NOT_TRACK := true

.PHONY: run test airflow install lint manifest dbt-build dbt-docs chromium clean bench

## run: seed the demo warehouse, build dbt, run the onboarding DAG against the emulator
run: $(INSTALLED) $(MANIFEST)
	$(NURTURE) seed
	$(NURTURE) dbt build --quiet
	$(NURTURE) run onboarding --emulator

## test: the whole suite (CI runs exactly this)
test: $(INSTALLED) $(MANIFEST) $(CHROMIUM) $(REDIS)
	$(BIN)/ruff check .
	$(BIN)/python -m pytest

## bench: `nurture bench` (1,000,000 contacts unless BENCH_ARGS says, e.g. "--contacts 100000 --json")
bench: $(INSTALLED) $(MANIFEST)
	$(NURTURE) bench $(BENCH_ARGS)

## airflow: airflow standalone on dags/ and plugins/ with airflow_settings.yaml loaded
airflow: $(INSTALLED) $(MANIFEST)
	$(NURTURE) airflow

.PHONY: airflow-celery redis
## airflow-celery: the same under CeleryExecutor: Redis broker, PostgreSQL metadata, 2 workers
airflow-celery: $(INSTALLED) $(MANIFEST) $(REDIS)
	$(NURTURE) airflow --executor celery --workers 2

install: $(INSTALLED)

chromium: $(CHROMIUM)
$(CHROMIUM):
	$(SUDO) apt-get install -y --no-install-recommends chromium \
		|| ($(SUDO) apt-get update && $(SUDO) apt-get install -y --no-install-recommends chromium)

redis: $(REDIS)
$(REDIS):
	$(SUDO) apt-get install -y --no-install-recommends redis-server \
		|| ($(SUDO) apt-get update && $(SUDO) apt-get install -y --no-install-recommends redis-server)

$(INSTALLED): requirements.txt pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info[:2] in ((3, 11), (3, 12)) else \
		"Nurture needs Python 3.11 or 3.12 (pgserver ships no wheel for newer): set PYTHON=python3.11")'
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -r requirements.txt
	$(BIN)/pip install --quiet --disable-pip-version-check --no-deps --no-build-isolation -e .
	touch $@

# The manifest lets Cosmos render dbt tasks without running dbt at DAG parse time.
manifest: $(MANIFEST)
$(MANIFEST): $(INSTALLED) $(shell find dbt_project/models dbt_project/macros -type f) dbt_project/dbt_project.yml
	cd dbt_project && ../$(BIN)/dbt parse --quiet --profiles-dir .

dbt-build: $(INSTALLED)
	$(NURTURE) dbt build

dbt-docs: $(INSTALLED)
	$(NURTURE) dbt docs generate

lint: $(INSTALLED)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check plugins dags tests

clean:
	-$(NURTURE) warehouse stop
	rm -rf .nurture dbt_project/target dbt_project/logs

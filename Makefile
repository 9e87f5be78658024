# Everything the project needs is installed from here: `make demo` and `make test` work on a
# fresh machine with Python 3.10+ and Java 17 (see .ci/run for the system packages).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export DAGSTER_HOME ?= $(CURDIR)/data/dagster_home

.PHONY: install demo test pipeline-checks ui live lint bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e ".[dev]"
	touch $(STAMP)

install: $(STAMP)

$(DAGSTER_HOME)/dagster.yaml: deploy/dagster.yaml
	mkdir -p $(DAGSTER_HOME)
	cp deploy/dagster.yaml $@

## Simulate a trading day into ./data/lake, materialize all partitions, print planted vs computed beta.
demo: $(STAMP) $(DAGSTER_HOME)/dagster.yaml
	$(BIN)/tickbeta demo

## The test suite (one local Spark session, small generated data). DAGSTER_HOME must exist:
## `dagster definitions validate` in the tests refuses a missing one.
test: $(STAMP) $(DAGSTER_HOME)/dagster.yaml
	$(BIN)/python -m pytest

## The sample pipeline through the Dagster CLI on a fresh lake; fails if any check fails.
pipeline-checks: $(STAMP)
	.ci/pipeline_checks

## The Dagster UI on http://localhost:3000 over ./data/lake.
ui: $(STAMP) $(DAGSTER_HOME)/dagster.yaml
	$(BIN)/dagster dev -w workspace.yaml

## The UI with the sensor running while the simulated feed appends a batch every 5 s. Runs use
## a long-lived Spark Connect server, so they skip the JVM start (about 10 s each).
LIVE_CONNECT_PORT ?= 15002
live: $(STAMP) $(DAGSTER_HOME)/dagster.yaml
	mkdir -p data
	$(BIN)/tickbeta spark-connect --port $(LIVE_CONNECT_PORT) > data/spark-connect.log 2>&1 & \
	connect=$$!; \
	$(BIN)/tickbeta simulate --live --every 5 --symbols 20 --interval 1 & \
	feed=$$!; trap "kill $$feed $$connect" EXIT INT TERM; \
	TICKBETA_SPARK_REMOTE=sc://127.0.0.1:$(LIVE_CONNECT_PORT) TICKBETA_SENSOR_INTERVAL=5 \
	$(BIN)/dagster dev -w workspace.yaml

## The benchmark tables (tickbeta vs the notebook's plan, and vs the same gold in Polars,
## checked equal; 20-30 minutes).
bench: $(STAMP)
	$(BIN)/python -m bench.run_bench --peer polars

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

clean:
	rm -rf data .pytest_cache

# Everything the project needs is installed from here: `make demo` and `make test` work on a
# fresh machine with Python 3.10+ and Java 17 (see .ci/run for the system packages).
PYTHON ?= python3
# bash: `make ui` and `make live` wait for their Spark Connect server's port with /dev/tcp.
SHELL := /bin/bash
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export DAGSTER_HOME ?= $(CURDIR)/data/dagster_home

.PHONY: install demo test pipeline-checks ui live lint bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e ".[dev]"
	# The driver JVM's class archive: every later Spark start maps its classes from it (a few
	# seconds sooner). Setup goes on without it, as Spark does.
	$(BIN)/tickbeta jvm-archive || echo "tickbeta: no driver class archive written" >&2
	touch $(STAMP)

install: $(STAMP)

$(DAGSTER_HOME)/dagster.yaml: deploy/dagster.yaml
	mkdir -p $(DAGSTER_HOME)
	cp deploy/dagster.yaml $@

## Simulate a trading day into ./data/lake, materialize all partitions, print planted vs computed beta.
demo: $(STAMP) $(DAGSTER_HOME)/dagster.yaml
	$(BIN)/tickbeta demo

## The test suite (small generated data), its files shared among TEST_WORKERS processes, each
## with one local Spark session; TEST_WORKERS=0 runs them in this one. DAGSTER_HOME must exist:
## `dagster definitions validate` in the tests refuses a missing one.
TEST_WORKERS ?= 2
test: $(STAMP) $(DAGSTER_HOME)/dagster.yaml
	$(BIN)/python -m pytest -n $(TEST_WORKERS) --dist loadfile --no-loadscope-reorder

## The sample pipeline through the Dagster CLI on a fresh lake; fails if any check fails.
pipeline-checks: $(STAMP)
	.ci/pipeline_checks

## The Dagster UI on http://localhost:3000 over ./data/lake. Runs use a warm Spark: a local
## Spark Connect server started here and kept for the UI's lifetime, so no run pays a JVM start
## (about 10-15 s). With TICKBETA_SPARK_REMOTE or TICKBETA_SPARK_MASTER set, that Spark instead.
CONNECT_PORT ?= 15002
WARM_SPARK = connect=; $(if $(TICKBETA_SPARK_REMOTE)$(TICKBETA_SPARK_MASTER),,\
	$(BIN)/tickbeta spark-connect --port $(CONNECT_PORT) > data/spark-connect.log 2>&1 & \
	connect=$$!; export TICKBETA_SPARK_REMOTE=sc://127.0.0.1:$(CONNECT_PORT); \
	for second in $$(seq 120); do (: < /dev/tcp/127.0.0.1/$(CONNECT_PORT)) 2>/dev/null && break; \
	kill -0 $$connect || { cat data/spark-connect.log; exit 1; }; sleep 1; done;)
ui: $(STAMP) $(DAGSTER_HOME)/dagster.yaml
	mkdir -p data
	$(WARM_SPARK) trap 'kill $$connect 2>/dev/null' EXIT INT TERM; \
	$(BIN)/dg dev -w workspace.yaml

## The UI with the sensor running (every 5 s) while the simulated feed appends a batch every
## 5 s, on the same warm Spark.
live: $(STAMP) $(DAGSTER_HOME)/dagster.yaml
	mkdir -p data
	$(WARM_SPARK) $(BIN)/tickbeta simulate --live --every 5 --symbols 20 --interval 1 & \
	feed=$$!; trap 'kill $$feed $$connect 2>/dev/null' EXIT INT TERM; \
	TICKBETA_SENSOR_INTERVAL=5 $(BIN)/dg dev -w workspace.yaml

## The benchmark tables: tickbeta vs the notebook's plan and vs the same gold in Polars, checked
## equal (20-30 minutes), then the 500-symbol day in every Spark mode (about 10 minutes).
bench: $(STAMP)
	$(BIN)/python -m bench.run_bench --peer polars
	$(BIN)/python -m bench.scale_out

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

clean:
	rm -rf data .pytest_cache

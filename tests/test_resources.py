"""The public configuration contract: what each environment variable turns into."""

import json
import os
import subprocess
import sys

import pytest

from beta_assets.resources import lake_from_environment, spark_from_environment, start_spark_early
from resources import spark as spark_module


def test_defaults_are_a_local_lake_and_local_spark():
    lake = lake_from_environment({})
    spark = spark_from_environment({})
    assert lake.root == "./data/lake" and lake.is_local
    assert lake.uri("gold_beta_metrics") == os.path.abspath("./data/lake/gold_beta_metrics")
    assert (spark.master, spark.remote, spark.ui_enabled) == ("local[*]", None, True)


def test_a_connect_url_and_a_master_come_from_the_environment():
    spark = spark_from_environment(
        {
            "TICKBETA_SPARK_MASTER": "spark://h:7077",
            "TICKBETA_SPARK_REMOTE": "sc://h:15002",
            "TICKBETA_SPARK_UI": "false",
        }
    )
    assert (spark.master, spark.remote, spark.ui_enabled) == (
        "spark://h:7077",
        "sc://h:15002",
        False,
    )


def test_s3_credentials_are_environment_variables_resolved_at_start(monkeypatch):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "key-id")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "canary-secret")
    monkeypatch.setenv("AWS_SESSION_TOKEN", "canary-token")
    lake = lake_from_environment(
        {"TICKBETA_LAKE": "s3://bucket/prefix", "AWS_REGION": "eu-west-1", **os.environ}
    )
    assert "canary" not in repr(lake)  # the definition names the variables only
    options = lake.process_config_and_initialize().storage_options()
    assert options["secret_access_key"] == "canary-secret"
    assert options["token"] == "canary-token"
    assert options["region"] == "eu-west-1"
    assert lake.uri("silver_ticks") == "s3://bucket/prefix/silver_ticks"


def test_without_a_session_token_none_is_asked_for(monkeypatch):
    monkeypatch.delenv("AWS_SESSION_TOKEN", raising=False)
    lake = lake_from_environment({"TICKBETA_LAKE": "s3://bucket/prefix"})
    assert lake.storage.token is None


@pytest.fixture
def early_starts(monkeypatch) -> list:
    """The resources whose session would start early; no JVM starts."""
    started = []
    monkeypatch.setattr(spark_module, "EarlySession", started.append)
    monkeypatch.setattr(spark_module, "_early_session", None)
    return started


@pytest.mark.parametrize(
    "argv",
    [
        ["dagster", "asset", "materialize", "-m", "beta_assets.definitions"],
        ["/venv/bin/dagster", "job", "execute", "-j", "beta_pipeline"],
        ["/venv/lib/dagster/__main__.py", "api", "execute_run", "{}"],
    ],
)
def test_a_process_that_executes_a_run_starts_spark_as_the_code_location_loads(early_starts, argv):
    spark = spark_from_environment({})
    assert start_spark_early(spark, {}, argv)
    assert early_starts == [spark]


@pytest.mark.parametrize(
    "argv",
    [
        ["dagster", "api", "grpc", "-m", "beta_assets.definitions"],  # a code server
        ["dagster", "definitions", "validate"],
        ["dg", "dev"],
        ["pytest"],
    ],
)
def test_other_processes_and_connect_sessions_and_the_switch_start_nothing(early_starts, argv):
    run = ["dagster", "asset", "materialize"]
    assert not start_spark_early(spark_from_environment({}), {}, argv)
    connect = spark_from_environment({"TICKBETA_SPARK_REMOTE": "sc://127.0.0.1:15002"})
    assert not start_spark_early(connect, {}, run)
    switched_off = {"TICKBETA_SPARK_EARLY_START": "false"}
    assert not start_spark_early(spark_from_environment({}), switched_off, run)
    assert early_starts == []


def test_a_run_takes_the_early_session_and_other_settings_get_a_jvm_of_their_own():
    """In a process of its own: it stops the early JVM (tests/early_start_process.py)."""
    result = subprocess.run(
        [sys.executable, "-m", "tests.early_start_process"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout.splitlines()[-1])
    # Other settings: the early JVM (768m) exited, the session was built again with 1536m.
    assert report["other_settings_logged"] == []
    assert report["early_jvm_exit_code"] == 0
    assert report["rebuilt_heap_gib"] == pytest.approx(1.5, abs=0.1)
    # The same settings: the resource takes the early session and says so.
    [line] = report["same_settings_logged"]
    assert line.startswith("Spark session started while Dagster prepared the run; waited ")
    assert report["same_session"]

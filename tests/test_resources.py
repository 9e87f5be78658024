"""The public configuration contract: what each environment variable turns into."""

import os

from beta_assets.resources import lake_from_environment, spark_from_environment
from beta_assets.settings import SILVER_TABLE
from resources.lake import DeltaLake
from tests import datasets
from tests.pipeline import write_silver


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


def test_a_pinned_table_stays_at_the_version_a_run_first_saw(tmp_path):
    lake = DeltaLake(root=str(tmp_path))
    first = datasets.ticks([("T001", 50.0, 0.1, datasets.at(10))])
    write_silver(lake, first)
    seen = lake.pinned(SILVER_TABLE)
    write_silver(lake, datasets.ticks([("T001", 51.0, 0.2, datasets.at(10, 1))]))
    again = lake.pinned(SILVER_TABLE)
    assert again.version() == seen.version() == lake.require(SILVER_TABLE).version() - 1
    assert again.to_pyarrow_table().num_rows == first.num_rows

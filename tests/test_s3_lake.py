"""The lake on S3-compatible storage (moto in server mode), configured only by the environment.

Everything goes through delta-rs with storage options from `lake_from_environment`: the feed's
writes, the pipeline's reads and writes, time travel, and the sensor's reading of the log.
"""

import os
import subprocess
import sys
import threading
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pytest
from deltalake import DeltaTable

from beta_assets.assets.silver import SENSOR_TRIGGER_TAG
from beta_assets.resources import lake_from_environment
from beta_assets.settings import (
    GOLD_TABLE,
    LAKE_ENV,
    SILVER_TABLE,
)
from resources.lake import DeltaLake
from tests import datasets
from tests.pipeline import (
    TABLE_KEYS,
    covering_keys,
    materialize_from_cli,
    run_range,
    sorted_rows,
    write_silver,
)
from tests.sensing import SensorDriver, requested_ranges
from tests.servers import (
    TEST_ACCESS_KEY_ID,
    TEST_SECRET_ACCESS_KEY,
    S3Server,
    moto_s3_server,
    s3_client,
    s3_environment,
)

BUCKET = "tickbeta-lake"


@pytest.fixture(scope="module")
def s3(tmp_path_factory) -> S3Server:
    """The server, and the environment a user sets for it (restored after the module)."""
    log_dir = tmp_path_factory.mktemp("moto")
    with moto_s3_server(BUCKET, log_dir) as server, pytest.MonkeyPatch.context() as patch:
        for name, value in s3_environment(server).items():
            patch.setenv(name, value)
        yield server


def s3_lake(prefix: str) -> DeltaLake:
    """The lake resource as the code location builds it: secrets still unresolved EnvVars."""
    return lake_from_environment({**os.environ, LAKE_ENV: f"s3://{BUCKET}/{prefix}"})


def started(lake: DeltaLake) -> DeltaLake:
    """The resource as a run sees it, EnvVars resolved, for reading and writing from a test."""
    return lake.process_config_and_initialize()


def stored_keys(s3: S3Server, prefix: str) -> list[str]:
    listing = s3_client(s3.endpoint).list_objects_v2(Bucket=BUCKET, Prefix=f"{prefix}/")
    return [item["Key"] for item in listing.get("Contents", [])]


@dataclass(frozen=True)
class PipelineOnS3:
    s3_lake: DeltaLake
    local_lake: DeltaLake
    events: list[str]  # the feed's output, then every event of the run


@pytest.fixture(scope="module")
def pipeline_on_s3(s3, spark, tmp_path_factory) -> PipelineOnS3:
    """The feed writes silver to S3 from the command line; one run computes a range there.

    The same silver copied to a local lake and computed there is the expected result.
    """
    root = f"s3://{BUCKET}/pipeline"
    tickbeta = str(Path(sys.executable).parent / "tickbeta")
    feed = [tickbeta, "--lake", root, "simulate", "--symbols", "2", "--interval", "120"]
    result = subprocess.run(feed, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    feed_output = result.stdout + result.stderr

    lake = s3_lake("pipeline")
    silver = started(lake).require(SILVER_TABLE).to_pyarrow_table()
    local_lake = DeltaLake(root=str(tmp_path_factory.mktemp("local") / "lake"))
    write_silver(local_lake, silver)
    first, last = covering_keys(silver)
    run = run_range(lake, first, last)
    run_range(local_lake, first, last)
    events = [repr(event) for event in run.all_events]
    return PipelineOnS3(started(lake), local_lake, [feed_output, *events])


def test_a_range_on_s3_writes_what_a_local_lake_gets(pipeline_on_s3):
    for table in TABLE_KEYS:
        on_s3 = sorted_rows(pipeline_on_s3.s3_lake, table)
        local = sorted_rows(pipeline_on_s3.local_lake, table)
        assert on_s3.num_rows > 0, table
        assert on_s3.equals(local), f"{table} differs between the S3 and the local lake"
    assert pipeline_on_s3.s3_lake.uri(GOLD_TABLE) == f"s3://{BUCKET}/pipeline/{GOLD_TABLE}"


def test_credentials_appear_in_no_event_and_no_delta_commit(s3, pipeline_on_s3):
    secrets = (TEST_SECRET_ACCESS_KEY, TEST_ACCESS_KEY_ID)
    assert len(pipeline_on_s3.events) > 10
    assert not [e for e in pipeline_on_s3.events if any(s in e for s in secrets)]
    commits = [key for key in stored_keys(s3, "pipeline") if key.endswith(".json")]
    assert any(f"{GOLD_TABLE}/_delta_log/" in key for key in commits)
    client = s3_client(s3.endpoint)
    for key in commits:
        text = client.get_object(Bucket=BUCKET, Key=key)["Body"].read().decode()
        assert not any(s in text for s in secrets), key


def test_secrets_are_resolved_from_the_environment_when_the_resource_starts(s3):
    lake = s3_lake("resolution")
    assert TEST_SECRET_ACCESS_KEY not in repr(lake)  # the definition holds the variable's name
    options = started(lake).storage_options()
    assert options["secret_access_key"] == TEST_SECRET_ACCESS_KEY
    assert options["access_key_id"] == TEST_ACCESS_KEY_ID
    assert options["endpoint"] == s3.endpoint and options["allow_http"] == "True"


def test_a_missing_secret_fails_the_run_at_start_naming_the_variable(s3):
    ticks = datasets.simulated(symbols=1, interval=300.0, seed=2)
    write_silver(started(s3_lake("no-secret")), ticks)
    env = {**os.environ, LAKE_ENV: f"s3://{BUCKET}/no-secret"}
    del env["AWS_SECRET_ACCESS_KEY"]
    env.pop("DAGSTER_HOME", None)

    result = materialize_from_cli(env, *covering_keys(ticks))

    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert 'environment variable "AWS_SECRET_ACCESS_KEY" which is not set' in output
    assert "STEP_START" not in output and TEST_ACCESS_KEY_ID not in output
    assert all(key.startswith(f"no-secret/{SILVER_TABLE}/") for key in stored_keys(s3, "no-secret"))


def test_time_travel_by_version_on_s3(s3):
    lake = started(s3_lake("time-travel"))
    ticks = datasets.simulated(symbols=1, interval=300.0, seed=3)
    morning = ticks.filter(pc.less(ticks.column("event_time"), pa.scalar(datasets.at(17))))
    evening = ticks.filter(pc.greater_equal(ticks.column("event_time"), pa.scalar(datasets.at(17))))
    assert write_silver(lake, morning) == 0
    assert write_silver(lake, evening) == 1

    uri = lake.uri(SILVER_TABLE)
    first = DeltaTable(uri, version=0, storage_options=lake.storage_options())
    assert first.to_pyarrow_table().num_rows == morning.num_rows
    assert lake.require(SILVER_TABLE, version=0).version() == 0
    assert lake.require(SILVER_TABLE).to_pyarrow_table().num_rows == ticks.num_rows


def test_the_sensor_reads_silver_versions_from_s3(s3):
    lake = started(s3_lake("sensor"))
    day = datasets.simulated(symbols=2, interval=120.0, seed=4)
    times = day.column("event_time")

    def between(start, end) -> pa.Table:
        return day.filter(
            pc.and_(pc.greater_equal(times, pa.scalar(start)), pc.less(times, pa.scalar(end)))
        )

    write_silver(lake, between(datasets.at(0), datasets.at(16)))
    driver = SensorDriver(s3_lake("sensor"))
    assert requested_ranges(driver.evaluate()) == [("2026-01-05-12:00", "2026-01-05-15:00")]

    added = between(datasets.at(16), datasets.at(17))
    write_silver(lake, added)
    late = datasets.ticks([("T001", 50.0, 0.3, datasets.at(11, 2))])  # 3h behind the watermark
    write_silver(lake, late)
    result = driver.evaluate()
    # What each commit changed comes from its log entry on S3 (unreadable entries would mean a
    # full recompute): ticks in [11:02, 16:58] change the windows starting in (08:02, 17:58].
    assert result.run_requests[0].tags[SENSOR_TRIGGER_TAG] == "append"
    assert requested_ranges(result) == [("2026-01-05-08:00", "2026-01-05-17:00")]
    # Late ticks are counted from the added files, read from S3 through delta-rs.
    assert result.run_requests[0].tags["tickbeta/late_ticks"] == "1"
    rows_added = [event.metadata["rows_added"].value for event in result.asset_events]
    assert rows_added == [added.num_rows, 1]


def race_appends(lake: DeltaLake, table: str, round_: int, writers: int) -> list[Exception]:
    """Appends from `writers` threads released at the same instant; what they raised."""
    start, failures = threading.Barrier(writers), []

    def append_row(writer: int) -> None:
        start.wait()
        try:
            lake.append(table, pa.table({"round": [round_], "writer": [writer]}))
        except Exception as error:  # a thread's exception would otherwise vanish
            failures.append(error)

    threads = [threading.Thread(target=append_row, args=(w,)) for w in range(writers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return failures


def test_racing_appends_on_s3_all_commit(s3):
    """delta-rs writes each commit with a conditional put (If-None-Match): the writer that
    loses a race for a version gets 412 from the store, re-reads the log and commits the next.

    (Writers racing to create a table conflict on its protocol instead: the loser raises
    CommitFailedError, so the table is created first, as the feed creates silver.)
    """
    lake = started(s3_lake("race"))
    lake.append("events", pa.table({"round": [-1], "writer": [-1]}))
    writers, rounds = 3, 0
    while rounds == 0 or (not s3.rejected_commits("race/events") and rounds < 8):
        assert race_appends(lake, "events", rounds, writers) == []
        rounds += 1

    assert s3.rejected_commits("race/events") > 0, f"no two writers raced in {rounds} rounds"
    table = lake.require("events")
    assert table.version() == rounds * writers
    rows = table.to_pyarrow_table().sort_by([("round", "ascending"), ("writer", "ascending")])
    assert rows.to_pylist()[1:] == [
        {"round": r, "writer": w} for r in range(rounds) for w in range(writers)
    ]

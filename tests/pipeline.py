"""Running the Dagster assets in process against a temporary lake, and reading tables back."""

import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

import pandas as pd
import pyarrow as pa
from dagster import AssetSelection, DagsterInstance, ExecuteInProcessResult, materialize
from dagster._core.storage.tags import (
    ASSET_PARTITION_RANGE_END_TAG,
    ASSET_PARTITION_RANGE_START_TAG,
)

from beta_assets.assets.gold import WINDOW_START, gold_beta_metrics
from beta_assets.assets.returns import joined_returns, spy_returns
from beta_assets.assets.silver import silver_ticks
from beta_assets.band import BUCKET_START
from beta_assets.config import BetaMetricsConfig
from beta_assets.partitions import partition_keys_covering
from beta_assets.settings import (
    EVENT_TIME,
    GOLD_TABLE,
    JOINED_RETURNS_TABLE,
    MARKET_EVENT_TIME,
    SILVER_TABLE,
    SILVER_VERSION,
    SPY_RETURNS_TABLE,
    SYMBOL,
)
from resources.lake import DeltaLake
from resources.spark import SparkSessionResource

TEST_SPARK_CONFIG = {
    "spark.sql.shuffle.partitions": "4",
    "spark.ui.showConsoleProgress": "false",
    "spark.driver.memory": "2g",
}
ASSETS = [silver_ticks, spy_returns, joined_returns, gold_beta_metrics]
COMPUTED = AssetSelection.assets(spy_returns, joined_returns, gold_beta_metrics)
# What identifies a row of each derived table, to compare two lakes table by table.
TABLE_KEYS = {
    SPY_RETURNS_TABLE: [MARKET_EVENT_TIME],
    JOINED_RETURNS_TABLE: [SYMBOL, BUCKET_START],
    GOLD_TABLE: [SYMBOL, WINDOW_START],
}


def as_lake(lake: str | DeltaLake) -> DeltaLake:
    """A local lake from its folder, or a lake resource as configured (S3, EnvVar secrets)."""
    return DeltaLake(root=lake) if isinstance(lake, str) else lake


def write_silver(lake: str | DeltaLake, ticks: pa.Table) -> int:
    return as_lake(lake).append(SILVER_TABLE, ticks)


def resources(lake: str | DeltaLake, **settings) -> dict:
    return {
        "spark": SparkSessionResource(
            master="local[2]", ui_enabled=False, spark_config=TEST_SPARK_CONFIG
        ),
        "lake": as_lake(lake),
        "metrics": BetaMetricsConfig(**settings),
    }


def run_range(
    lake: str | DeltaLake,
    first_key: str,
    last_key: str,
    selection=COMPUTED,
    tags=None,
    raise_on_error: bool = True,
    instance: DagsterInstance | None = None,
    **settings,
) -> ExecuteInProcessResult:
    """One run over a partition range (a single-run backfill), as the CLI and sensor do."""
    range_tags = {
        ASSET_PARTITION_RANGE_START_TAG: first_key,
        ASSET_PARTITION_RANGE_END_TAG: last_key,
    }
    result = materialize(
        ASSETS,
        selection=selection,
        resources=resources(lake, **settings),
        tags={**range_tags, **(tags or {})},
        raise_on_error=raise_on_error,
        instance=instance,
    )
    assert result.success or not raise_on_error
    return result


def run_partition(lake_root: str, key: str, selection, **settings) -> None:
    result = materialize(
        ASSETS, selection=selection, resources=resources(lake_root, **settings), partition_key=key
    )
    assert result.success


def covering_keys(ticks: pa.Table) -> tuple[str, str]:
    times = ticks.column(EVENT_TIME).to_pylist()
    return partition_keys_covering(min(times), max(times))


def materialized_metadata(result, asset: str) -> dict:
    """The metadata of the asset's (first) materialization in a run, as plain values."""
    event = result.asset_materializations_for_node(asset)[0]
    return {key: value.value for key, value in event.metadata.items()}


def run_all(lake_root: str, ticks: pa.Table, **settings) -> pd.DataFrame:
    """Write `ticks` as silver, materialize every partition they touch, return gold."""
    write_silver(lake_root, ticks)
    run_range(lake_root, *covering_keys(ticks), **settings)
    return read_table(lake_root, GOLD_TABLE)


def read_table(lake: str | DeltaLake, table: str) -> pd.DataFrame:
    return as_lake(lake).require(table).to_pyarrow_table().to_pandas()


def sorted_rows(lake: str | DeltaLake, table: str) -> pa.Table:
    rows = as_lake(lake).require(table).to_pyarrow_table()
    return rows.sort_by([(key, "ascending") for key in TABLE_KEYS[table]])


def recomputed_from_scratch(lake_root: str, fresh_root: str) -> None:
    """The pipeline run over a copy of `lake_root`'s latest silver in a new lake, every hour."""
    silver = as_lake(lake_root).require(SILVER_TABLE).to_pyarrow_table()
    write_silver(fresh_root, silver)
    run_range(fresh_root, *covering_keys(silver))


def differences(lake_root: str, fresh_root: str, table: str) -> str | None:
    """How `table` differs between two lakes, lineage (silver versions) aside and floats to the
    contract's 1e-9 (reference shifts depend on each run's range); None if it does not."""
    ours, fresh = (
        sorted_rows(root, table).drop_columns([SILVER_VERSION]).to_pandas()
        for root in (lake_root, fresh_root)
    )
    try:
        pd.testing.assert_frame_equal(ours, fresh, check_exact=False, rtol=1e-9)
    except AssertionError as difference:
        return str(difference)
    return None


def materialize_from_cli(
    env: Mapping[str, str], first_key: str, last_key: str
) -> subprocess.CompletedProcess:
    """The README's `dagster asset materialize` over a partition range, in its own process;
    the code location takes its resources from `env` (TICKBETA_*, AWS_*)."""
    command = [
        str(Path(sys.executable).parent / "dagster"),
        *("asset", "materialize", "-m", "beta_assets.definitions"),
        *("--select", ",".join(TABLE_KEYS)),
        *("--partition-range", f"{first_key}...{last_key}"),
    ]
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)

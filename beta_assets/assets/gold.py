"""gold_beta_metrics: the notebook's output, one row per (symbol, 2-hour window)."""

from datetime import timedelta

from dagster import (
    AssetDep,
    AssetExecutionContext,
    BackfillPolicy,
    MaterializeResult,
    asset,
)

from beta_assets.assets.reporting import Stopwatch, commit_metadata, preview, written_metadata
from beta_assets.assets.retries import retry_transient_failures
from beta_assets.assets.silver import GROUP, silver_snapshot, writer_pool
from beta_assets.band import BUCKET_SCHEMA
from beta_assets.checks import GOLD_CHECKS, gold_results
from beta_assets.config import BetaMetricsConfig
from beta_assets.metrics import window_metrics
from beta_assets.partitions import WINDOW_REACH, hourly_partitions, window_span_mapping
from beta_assets.settings import GOLD_TABLE, JOINED_RETURNS_TABLE, SYMBOL
from beta_assets.storage import read_hours_arrow, write_hours
from beta_assets.watermarks import snapshot_high_water_marks
from resources.lake import DeltaLake
from resources.spark import SparkSessionResource, dataframe_from_arrow

WINDOW_START = "window_start"


@asset(
    name=GOLD_TABLE,
    partitions_def=hourly_partitions,
    backfill_policy=BackfillPolicy.single_run(),
    deps=[AssetDep(JOINED_RETURNS_TABLE, partition_mapping=window_span_mapping)],
    check_specs=GOLD_CHECKS,
    group_name=GROUP,
    kinds={"spark", "delta"},
    pool=writer_pool(GOLD_TABLE),
    description=(
        "Per (symbol, 2-hour window sliding every 5 minutes, starting in the hour): CAPM beta "
        "against the market, volatility, momentum, close price, sample size, cost of equity, "
        "is_final (the streaming query would have emitted it) and the silver version read."
    ),
)
@retry_transient_failures
def gold_beta_metrics(
    context: AssetExecutionContext,
    spark: SparkSessionResource,
    lake: DeltaLake,
    metrics: BetaMetricsConfig,
) -> MaterializeResult:
    watch = Stopwatch()
    start, end = context.partition_time_window
    settings = metrics.settings()
    snapshot = silver_snapshot(context, lake)
    bucket_rows = read_hours_arrow(
        lake, JOINED_RETURNS_TABLE, BUCKET_SCHEMA, start, end + WINDOW_REACH
    )
    buckets = dataframe_from_arrow(spark.spark_session, bucket_rows)
    marks = snapshot_high_water_marks(snapshot, settings.market_symbol)
    cutoff = marks.final_before()
    rows = window_metrics(buckets, settings, start, end, cutoff).toArrow()
    version = snapshot.version()
    written = write_hours(
        lake, GOLD_TABLE, rows, WINDOW_START, start, end, version, commit_metadata(context, version)
    )
    context.log.info(f"{written.rows} windows in {written.hours} hours; final before {cutoff}")
    _, latest_start = lake.column_range(lake.require(GOLD_TABLE), WINDOW_START)
    checks = gold_results(
        written.table,
        bucket_rows.to_pandas(),
        settings,
        (start, end),
        marks.latest(),
        latest_start,
        timedelta(minutes=metrics.freshness_bound_minutes),
    )
    return MaterializeResult(
        metadata={
            **written_metadata(rows, WINDOW_START, written, version, watch),
            "final_before": str(cutoff or ""),
            "preview": preview(rows, [(WINDOW_START, "descending"), (SYMBOL, "ascending")]),
        },
        check_results=list(checks),
    )

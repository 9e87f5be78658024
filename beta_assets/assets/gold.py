"""gold_beta_metrics: the notebook's output, one row per (symbol, 2-hour window)."""

from datetime import datetime, timedelta

import pyarrow as pa
import pyarrow.compute as pc
from dagster import (
    AssetDep,
    AssetExecutionContext,
    MaterializeResult,
)
from pyspark.sql import SparkSession

from beta_assets.assets.catalog import (
    GOLD_COLUMN_SCHEMA,
    WINDOW_START,
    hourly_table_asset,
)
from beta_assets.assets.reporting import (
    Stopwatch,
    add_partition_metadata,
    commit_metadata,
    metrics_plot,
    partition_span,
    preview,
    run_metadata,
    run_plot_metadata,
    spark_job_label,
    warn_if_kept_newer,
)
from beta_assets.assets.retries import retry_transient_failures
from beta_assets.assets.silver import silver_snapshot
from beta_assets.band import BUCKET_SCHEMA, epoch_us
from beta_assets.checks import (
    GOLD_CHECKS,
    counted_high_water_marks,
    gold_results,
    require_usable_silver,
)
from beta_assets.config import BetaMetricsConfig
from beta_assets.metrics import MetricSettings, window_metrics
from beta_assets.partitions import WINDOW_REACH, same_hour_mapping
from beta_assets.settings import (
    GOLD_IN_PROCESS_MAX_BUCKETS,
    GOLD_TABLE,
    JOINED_RETURNS_TABLE,
    SYMBOL,
)
from beta_assets.storage import read_hours_arrow, silver_high_water_marks, write_hours
from beta_assets.windows import GOLD_SCHEMA, gold_rows_in_passes
from resources.lake import DeltaLake
from resources.spark import SparkSessionResource, dataframe_from_arrow, stage_progress


@hourly_table_asset(
    GOLD_TABLE,
    deps=[AssetDep(JOINED_RETURNS_TABLE, partition_mapping=same_hour_mapping)],
    check_specs=GOLD_CHECKS,
    layer="gold",
    column_schema=GOLD_COLUMN_SCHEMA,
    description=(
        "Per (symbol, 2-hour window sliding every 5 minutes): CAPM beta against the market, "
        "volatility, momentum, close price, sample size, cost of equity, is_final (the "
        "streaming query would have emitted it) and the silver version read. Hourly UTC "
        "partitions: partition P holds the windows that start in P and reads joined_returns "
        "P ... P+2. Each materialization shows a preview and a plot, for the symbols with the "
        "most pairs, of beta_aligned with its standard-error band beside the notebook's beta, "
        "and of cost of equity."
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
    session = spark.spark_session
    snapshot = silver_snapshot(context, lake)
    require_usable_silver(context, spark, lake, metrics, snapshot)
    bucket_rows = read_hours_arrow(
        lake, JOINED_RETURNS_TABLE, BUCKET_SCHEMA, start, end + WINDOW_REACH
    )
    context.log.info(
        f"{GOLD_TABLE}: partitions {partition_span(context)} from {bucket_rows.num_rows} "
        f"buckets of {JOINED_RETURNS_TABLE}"
    )
    # Silver's checks counted this run's hours: when they reach silver's end, no read is needed.
    marks = counted_high_water_marks(context.run_id, snapshot) or silver_high_water_marks(
        session, lake, snapshot, settings.market_symbol
    )
    cutoff = marks.final_before()
    with stage_progress(session, spark_job_label(context), context.log.info):
        rows, path = window_rows(session, bucket_rows, settings, (start, end), cutoff)
    context.log.info(f"{GOLD_TABLE}: windows computed {path}")
    version = snapshot.version()
    written = write_hours(
        lake, GOLD_TABLE, rows, WINDOW_START, start, end, version, commit_metadata(context, version)
    )
    warn_if_kept_newer(context, written)
    final = final_windows(rows)
    context.log.info(
        f"{written.rows} windows of {_symbols(rows)} symbols in {written.hours} hours, "
        f"{final} final (window_end before {cutoff})"
    )
    add_partition_metadata(context, rows, WINDOW_START, partition_details)
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
            **run_metadata(written, version, watch, lake.uri(GOLD_TABLE)),
            "final_before": str(cutoff or ""),
            "window_path": path,
            **run_plot_metadata(context, metrics_plot(rows, SYMBOL, WINDOW_START)),
        },
        check_results=list(checks),
    )


IN_PROCESS_PATH = "in the run process (numpy over the buckets read)"
SPARK_PATH = "by Spark (buckets shuffled by symbol)"


def window_rows(
    session: SparkSession,
    buckets: pa.Table,
    settings: MetricSettings,
    hours: tuple[datetime, datetime],
    final_before: datetime | None,
) -> tuple[pa.Table, str]:
    """Gold's rows for the windows starting in `hours`, and where they were computed: here
    while the buckets (already in this process) are few, else in Spark's tasks. Both run
    `windows.gold_rows`."""
    if buckets.num_rows <= GOLD_IN_PROCESS_MAX_BUCKETS:
        start_us, end_us = (epoch_us(moment) for moment in hours)
        final_us = epoch_us(final_before) if final_before is not None else None
        return gold_rows_in_passes(buckets, settings, start_us, end_us, final_us), IN_PROCESS_PATH
    frame = dataframe_from_arrow(session, buckets)
    rows = window_metrics(frame, settings, *hours, final_before).toArrow()
    return rows.cast(GOLD_SCHEMA), SPARK_PATH


def partition_details(rows: pa.Table) -> dict:
    """What a gold partition's page shows beyond counts: its final windows and latest rows."""
    return {
        "final_windows": final_windows(rows),
        "preview": preview(rows, [(WINDOW_START, "descending"), (SYMBOL, "ascending")]),
    }


def final_windows(rows: pa.Table) -> int:
    return pc.sum(rows.column("is_final")).as_py() or 0


def _symbols(rows: pa.Table) -> int:
    return pc.count_distinct(rows.column(SYMBOL)).as_py()

"""spy_returns (the market series) and joined_returns (pair sums per symbol and 5-min bucket)."""

from collections.abc import Callable
from datetime import datetime, timedelta
from functools import cache

import pyarrow as pa
import pyarrow.compute as pc
from dagster import (
    AssetDep,
    AssetExecutionContext,
    MaterializeResult,
)
from deltalake import DeltaTable
from pyspark.sql import DataFrame, SparkSession

from beta_assets.assets.catalog import (
    JOINED_RETURNS_COLUMN_SCHEMA,
    SPY_RETURNS_COLUMN_SCHEMA,
    hourly_table_asset,
)
from beta_assets.assets.reporting import (
    Stopwatch,
    add_partition_metadata,
    commit_metadata,
    partition_span,
    read_metadata,
    run_metadata,
    spark_job_label,
    warn_if_kept_newer,
)
from beta_assets.assets.retries import retry_transient_failures
from beta_assets.assets.silver import (
    SILVER_READ_REACH,
    changed_buckets_within,
    hours_to_recompute,
    silver_snapshot,
    silver_ticks,
)
from beta_assets.band import BUCKET_SCHEMA, BUCKET_START, MarketSeries
from beta_assets.checks import (
    JOINED_CHECKS,
    SPY_CHECKS,
    counted_valid_ticker_ticks,
    joined_returns_results,
    record_silver_counts,
    require_silver_columns,
    require_usable_counts,
    require_usable_silver,
    silver_span_to_guard,
    spy_returns_results,
)
from beta_assets.config import BetaMetricsConfig
from beta_assets.file_tasks import FileRead, Shares, bucket_sums_from_files, needs_spark_typing
from beta_assets.metrics import (
    MARKET_SCHEMA,
    MetricSettings,
    bucket_geometry,
    bucket_sums,
    in_time_range,
    market_series,
    prepared_ticks,
    quality_counts_with_kept_rows,
    ticker_ticks,
    typed_ticks,
)
from beta_assets.partitions import (
    BAND_REACH,
    ceil_hour,
    floor_hour,
    hour_label,
    same_hour_mapping,
)
from beta_assets.quality_tasks import needs_spark_typing as quality_needs_spark_typing
from beta_assets.quality_tasks import quality_groups_from_files
from beta_assets.quarantine import (
    counts_and_kept_rows,
    market_series_rows,
    quarantine_rows,
    reason_counts,
    split_rows,
    write_quarantine,
)
from beta_assets.settings import (
    JOINED_RETURNS_TABLE,
    MARKET_EVENT_TIME,
    SPY_RETURNS_TABLE,
    SYMBOL,
)
from beta_assets.storage import (
    SilverRead,
    files_for_local_tasks,
    read_hours_arrow,
    read_labelled_hours,
    read_silver,
    recorded_versions,
    silver_files,
    write_hours,
)
from resources.lake import DeltaLake
from resources.spark import SparkSessionResource, read_parallelism, stage_progress


@hourly_table_asset(
    SPY_RETURNS_TABLE,
    deps=[silver_ticks],
    check_specs=SPY_CHECKS,
    layer="intermediate",
    column_schema=SPY_RETURNS_COLUMN_SCHEMA,
    description=(
        "The market's ticks (symbol = market_symbol, default SPY): one row per tick with "
        "m_event_time and m_return (its changePercent). Hourly UTC partitions: partition P holds "
        "the market ticks whose event_time is in P."
    ),
)
@retry_transient_failures
def spy_returns(
    context: AssetExecutionContext,
    spark: SparkSessionResource,
    lake: DeltaLake,
    metrics: BetaMetricsConfig,
) -> MaterializeResult:
    watch = Stopwatch()
    # Market ticks only affect their own hour.
    start, end = recompute_window(context, timedelta(0))
    settings = metrics.settings()
    snapshot = silver_snapshot(context, lake)
    # One read of silver gives both silver's blocking checks (when this run still needs them)
    # and the market's rows: the counts cover the hours the run reads, the rows spy's own.
    guarded = silver_span_to_guard(context, snapshot)
    if guarded is not None:
        require_silver_columns(snapshot)
    counted = covering(guarded, (start, end))
    session = spark.spark_session
    silver = read_silver(session, lake, snapshot, *counted)
    log_silver_read(context, silver)
    with stage_progress(session, spark_job_label(context), context.log.info):
        grouped, path = quality_groups(
            session, lake, snapshot, silver, settings, counted, (start, end)
        )
    context.log.info(f"spy_returns: silver's ticks counted by {path}")
    counts, rows = counts_and_kept_rows(grouped)
    record_silver_counts(context.run_id, snapshot, counted, counts)
    if guarded is not None:
        require_usable_counts(context, metrics, snapshot, counted, counts)
    market_rows, rejected = split_rows(rows)
    market, duplicates = market_series_rows(market_rows)
    commit = commit_metadata(context, silver.version)
    quarantined = quarantine_rows(rejected, silver.version)
    write_quarantine(lake, quarantined, start, end, silver.version, commit)
    written = write_hours(
        lake, SPY_RETURNS_TABLE, market, MARKET_EVENT_TIME, start, end, silver.version, commit
    )
    warn_if_kept_newer(context, written)
    rejected_by_reason = reason_counts(rejected)
    context.log.info(
        f"{written.rows} {settings.market_symbol} ticks in {written.hours} hours from silver "
        f"v{silver.version}; quarantined {rejected_by_reason or 'nothing'}; {duplicates} "
        "duplicate market ticks"
    )
    add_partition_metadata(context, market, MARKET_EVENT_TIME, recomputed=(start, end))
    return MaterializeResult(
        metadata={
            **run_metadata(written, silver.version, watch, lake.uri(SPY_RETURNS_TABLE)),
            **read_metadata(silver),
            "quality_path": path,
            "duplicate_market_ticks": duplicates,
            "quarantined_rows": sum(rejected_by_reason.values()),
            **{f"quarantined_{reason}": count for reason, count in rejected_by_reason.items()},
        },
        check_results=list(spy_returns_results(written.table)),
    )


@hourly_table_asset(
    JOINED_RETURNS_TABLE,
    deps=[silver_ticks, AssetDep(SPY_RETURNS_TABLE, partition_mapping=same_hour_mapping)],
    check_specs=JOINED_CHECKS,
    layer="intermediate",
    column_schema=JOINED_RETURNS_COLUMN_SCHEMA,
    description=(
        "Per (symbol, 5-minute bucket of its ticks): the sums over every (ticker tick, market "
        "tick within +-1h) pair, shifted by the row's x_ref / y_ref, with the pair count, "
        "min/max of both sides and the latest paired tick. Gold rolls 24 buckets into a window. "
        "Hourly UTC partitions: partition P holds the buckets starting in P and reads "
        "spy_returns P-1 ... P+1."
    ),
)
@retry_transient_failures
def joined_returns(
    context: AssetExecutionContext,
    spark: SparkSessionResource,
    lake: DeltaLake,
    metrics: BetaMetricsConfig,
) -> MaterializeResult:
    watch = Stopwatch()
    start, end = recompute_window(context, SILVER_READ_REACH)
    settings = metrics.settings()
    session = spark.spark_session
    market_rows = read_hours_arrow(
        lake, SPY_RETURNS_TABLE, MARKET_SCHEMA, start - BAND_REACH, end + BAND_REACH
    )
    snapshot = silver_snapshot(context, lake)
    # The hours are rewritten whole; their buckets the change cannot reach are kept.
    low, high = buckets_to_compute(context, lake, snapshot, (start, end))
    # One bar more before the buckets: the first bar's return needs the price of the one before.
    first_tick = low - settings.bar
    require_usable_silver(context, spark, lake, metrics, snapshot)
    silver = read_silver(session, lake, snapshot, first_tick, high)
    log_silver_read(context, silver)
    # Spark's plan of the ticker ticks, built only if a path needs it: about 0.3 s of calls to
    # the JVM on every run, which the file tasks never use.
    tickers = cache(lambda: spark_ticker_ticks(silver.frame, settings, first_tick, high))
    market = market_series(market_rows)
    with stage_progress(session, spark_job_label(context), context.log.info):
        rows, path = bucket_rows(
            session, lake, snapshot, silver, tickers, market, settings, low, high
        )
    context.log.info(f"joined_returns: buckets of {low} ... {high} by {path}")
    hours_rows = pa.concat_tables([unchanged_buckets(lake, (low, high)), rows])
    written = write_hours(
        lake,
        JOINED_RETURNS_TABLE,
        hours_rows,
        BUCKET_START,
        start,
        end,
        silver.version,
        commit_metadata(context, silver.version),
    )
    warn_if_kept_newer(context, written)
    tick_counts = ticker_tick_counts(rows)
    duplicates = pc.sum(rows.column("duplicate_ticks")).as_py() or 0
    context.log.info(
        f"{tick_counts['ticker_ticks']} ticks of {tick_counts['symbols']} symbols "
        f"({tick_counts['unpaired_ticks']} with no market tick within the band) paired with "
        f"{len(market_rows)} market ticks into {rows.num_rows} buckets ({written.rows} written "
        f"with those kept), silver v{silver.version}; {duplicates} duplicate ticks counted once"
    )
    add_partition_metadata(
        context, hours_rows, BUCKET_START, ticker_tick_counts, recomputed=(start, end)
    )
    return MaterializeResult(
        metadata={
            **run_metadata(written, silver.version, watch, lake.uri(JOINED_RETURNS_TABLE)),
            **read_metadata(silver),
            "market_ticks": len(market_rows),
            "bucket_path": path,
            # The buckets computed from silver; those of the hours around them were kept.
            "buckets_computed": f"{low.isoformat()} ... {high.isoformat()}",
            "duplicate_ticks": duplicates,
        },
        check_results=list(
            joined_returns_results(
                written.table,
                rows,
                valid_ticker_ticks(context, tickers, silver.version, low, high),
            )
        ),
    )


def spark_ticker_ticks(
    silver: DataFrame, settings: MetricSettings, first_tick: datetime, end: datetime
) -> DataFrame:
    """silver's non-market ticks of [first_tick, end), typed by Spark, for Spark's paths."""
    ticks = prepared_ticks(in_time_range(typed_ticks(silver), first_tick, end), settings)
    return ticker_ticks(ticks, settings.market_symbol)


def covering(
    hours: tuple[datetime, datetime] | None, more: tuple[datetime, datetime]
) -> tuple[datetime, datetime]:
    """The hours from the first to the last of both spans (an empty span adds nothing)."""
    spans = [span for span in (hours, more) if span is not None and span[0] < span[1]]
    if not spans:
        return more
    return min(span[0] for span in spans), max(span[1] for span in spans)


SPARK_PATH = "spark (ticks shuffled by symbol)"
SPARK_TYPING_PATH = "spark (ticks typed and grouped in the JVM)"
FILE_TASKS_PATH = "file tasks (silver's files read in local Python tasks)"


def local_file_read(
    session: SparkSession,
    lake: DeltaLake,
    snapshot: DeltaTable,
    silver: SilverRead,
    settings: MetricSettings,
) -> FileRead | None:
    """silver's files for the file tasks, when they type it as Spark does (no noise: its hash
    is Spark's); else None."""
    return None if settings.noise else files_for_local_tasks(session, lake, snapshot, silver.files)


def quality_groups(
    session: SparkSession,
    lake: DeltaLake,
    snapshot: DeltaTable,
    silver: SilverRead,
    settings: MetricSettings,
    counted: tuple[datetime, datetime],
    kept: tuple[datetime, datetime],
) -> tuple[pa.Table, str]:
    """`quality_counts_with_kept_rows` collected, and the path that computed it: in local mode
    the file tasks when they can (`quality_tasks`), else Spark."""
    read = local_file_read(session, lake, snapshot, silver, settings)
    if read is not None:
        cores = read_parallelism(session)
        symbol = settings.market_symbol
        grouped = quality_groups_from_files(session, read, symbol, counted, kept, cores).toArrow()
        if not quality_needs_spark_typing(grouped):
            return grouped, FILE_TASKS_PATH
    grouped = quality_counts_with_kept_rows(typed_ticks(silver.frame), settings, counted, kept)
    return grouped.toArrow(), SPARK_TYPING_PATH


def bucket_rows(
    session: SparkSession,
    lake: DeltaLake,
    snapshot: DeltaTable,
    silver: SilverRead,
    tickers: Callable[[], DataFrame],
    market: MarketSeries,
    settings: MetricSettings,
    start: datetime,
    end: datetime,
) -> tuple[pa.Table, str]:
    """joined_returns' rows for [start, end), and the path that computed them: in local mode
    the file tasks when they can type silver like Spark (`file_tasks`), else Spark's shuffle."""
    read = local_file_read(session, lake, snapshot, silver, settings)
    if read is not None:
        # As in the Spark path, ticks from one bar before `start` price the first bar.
        rows = bucket_sums_from_files(
            session,
            read,
            market,
            bucket_geometry(settings, start),
            settings.market_symbol,
            (start - settings.bar, end),
            Shares.of(read, read_parallelism(session)),
        ).toArrow()
        if not needs_spark_typing(rows):
            return rows.cast(BUCKET_SCHEMA), FILE_TASKS_PATH
    rows = bucket_sums(tickers(), market, settings, start).toArrow()
    return rows.cast(BUCKET_SCHEMA), SPARK_PATH


def recompute_window(context: AssetExecutionContext, reach: timedelta) -> tuple[datetime, datetime]:
    """The hours this step recomputes: all of the run's range, or on an incremental run the
    hours that the changed ticks reach (possibly none: an empty window)."""
    window = hours_to_recompute(context, reach)
    if window is None:
        start, _ = context.partition_time_window
        return start, start
    return window


def buckets_to_compute(
    context: AssetExecutionContext,
    lake: DeltaLake,
    snapshot: DeltaTable,
    hours: tuple[datetime, datetime],
) -> tuple[datetime, datetime]:
    """The buckets of the hours to rewrite that the run's change reaches. Where the table holds
    nothing of an edge hour yet, the rest of that hour is computed too, if silver's statistics
    say it may hold ticks there: there are no rows to keep."""
    if hours[0] == hours[1]:
        return hours
    reached = changed_buckets_within(
        tuple(context.partition_time_window), context.run.tags, SILVER_READ_REACH
    )
    low, high = reached or hours
    recorded = recorded_versions(lake, JOINED_RETURNS_TABLE, *hours)

    def uncomputed(edge_hour: datetime, start: datetime, end: datetime) -> bool:
        return (
            start < end
            and recorded.get(hour_label(edge_hour)) is None
            and bool(silver_files(lake, snapshot, start, end).uris)
        )

    if uncomputed(low, floor_hour(low), low):
        low = floor_hour(low)
    if uncomputed(high, high, ceil_hour(high)):
        high = ceil_hour(high)
    return low, high


def unchanged_buckets(lake: DeltaLake, computed: tuple[datetime, datetime]) -> pa.Table:
    """joined_returns' rows of the hours around the buckets computed, outside them: rewritten
    as they are (the hours are the unit of a write)."""
    low, high = computed
    # The hours the span starts or ends inside of; one read of both (they may be one hour).
    edge_hours = {hour_label(moment) for moment in computed if moment != floor_hour(moment)}
    rows = read_labelled_hours(lake, JOINED_RETURNS_TABLE, BUCKET_SCHEMA, sorted(edge_hours))
    starts = rows.column(BUCKET_START)
    return rows.filter(pc.or_(pc.less(starts, low), pc.greater_equal(starts, high)))


def valid_ticker_ticks(
    context: AssetExecutionContext,
    tickers: Callable[[], DataFrame],
    silver_version: int,
    start: datetime,
    end: datetime,
) -> int:
    """Silver's valid non-market ticks in [start, end), counted apart from the buckets: by
    silver's checks earlier in this run when they covered these hours, else by a Spark count."""
    counted = counted_valid_ticker_ticks(context.run_id, silver_version, start, end)
    return counted if counted is not None else in_time_range(tickers(), start, end).count()


def log_silver_read(context: AssetExecutionContext, silver: SilverRead) -> None:
    files = silver.files
    context.log.info(
        f"{context.asset_key.to_user_string()}: partitions {partition_span(context)} from "
        f"silver v{silver.version}, {len(files.uris)} of {files.total_files} files "
        f"({files.bytes:,} of {files.total_bytes:,} bytes)"
    )


def ticker_tick_counts(buckets: pa.Table) -> dict[str, int]:
    """Ticks and symbols behind the buckets, from their counters (no pass over the ticks)."""
    paired = pc.sum(buckets.column("paired_ticks")).as_py() or 0
    unpaired = pc.sum(buckets.column("unpaired_ticks")).as_py() or 0
    return {
        "ticker_ticks": paired + unpaired,
        "unpaired_ticks": unpaired,
        "symbols": pc.count_distinct(buckets.column(SYMBOL)).as_py(),
    }

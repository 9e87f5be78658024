"""Asset checks: what must hold of every table, with the rows that break it.

Column contracts are pandera models (pandas backend) evaluated on the rows a run just wrote
(small: buckets and windows, never ticks); their failure cases name the rows. Checks on
silver run in Spark over the run's hours and block everything downstream when silver is
broken. Validity of a tick has one definition, the quarantine reasons of `metrics.py`.
"""

from collections.abc import Iterator, Mapping
from datetime import datetime, timedelta

import numpy as np
import pandas as pd
import pandera.pandas as pa_schema
import pyarrow as pa
import pyarrow.compute as pc
from dagster import (
    AssetCheckExecutionContext,
    AssetCheckKey,
    AssetCheckResult,
    AssetCheckSeverity,
    AssetCheckSpec,
    AssetExecutionContext,
    AssetKey,
    Failure,
    MetadataValue,
    multi_asset_check,
)
from dagster._core.storage.asset_check_execution_record import AssetCheckExecutionRecordStatus
from deltalake import DeltaTable
from pandera.errors import SchemaErrors

from beta_assets.assets.reporting import markdown_table
from beta_assets.assets.silver import (
    SILVER_READ_REACH,
    changed_buckets_within,
    pinned_silver,
    whole_table_hours,
)
from beta_assets.band import BUCKET_START
from beta_assets.config import BetaMetricsConfig
from beta_assets.metrics import (
    QUARANTINE_REASON,
    MetricSettings,
    duplicate_tick_count,
    in_time_range,
    silver_quality_counts,
    typed_ticks,
    valid_ticks,
)
from beta_assets.partitions import HOUR_FORMAT, floor_hour, hours_of_run
from beta_assets.settings import (
    BUCKETS_PER_WINDOW,
    GOLD_TABLE,
    JOINED_RETURNS_TABLE,
    MARKET_EVENT_TIME,
    MARKET_RETURN,
    PARTITION_HOUR,
    SILVER_TABLE,
    SLIDE,
    SPY_RETURNS_TABLE,
    SYMBOL,
    WINDOW,
)
from beta_assets.storage import SilverSchemaError, micros_to_utc, read_silver, silver_schema
from beta_assets.times import UTC_MICROS_DTYPE
from beta_assets.watermarks import HighWaterMarks, newest_event_time
from beta_assets.windows import WINDOW_START
from resources.lake import DeltaLake
from resources.spark import SparkSessionResource

FAILURE_ROWS_SHOWN = 20
# Finite: NaN and infinities fail a range check, any real number passes.
_FINITE = {"in_range": {"min_value": -1e300, "max_value": 1e300}}
# cost_of_equity is recomputed from beta: they must agree to rounding.
COST_TOLERANCE = 1e-12


# --- check specs (declared on the assets; results computed below)

SPY_CHECKS = [
    AssetCheckSpec(
        "spy_returns_contract",
        asset=SPY_RETURNS_TABLE,
        blocking=True,
        description="One row per market tick (no repeated time and return), finite returns, "
        "every tick inside the hour partition it is stored in.",
    )
]
JOINED_CHECKS = [
    AssetCheckSpec(
        "band_statistics_consistent",
        asset=JOINED_RETURNS_TABLE,
        blocking=True,
        description="Per bucket: counts >= 0, sums finite, min <= max, a pair count exactly "
        "when there are paired ticks, buckets on the 5-minute grid inside their hour.",
    ),
    AssetCheckSpec(
        "every_ticker_tick_in_a_bucket",
        asset=JOINED_RETURNS_TABLE,
        blocking=True,
        description="The paired, unpaired and duplicate ticks of the buckets add up to the "
        "valid non-market ticks of silver in the run's hours (counted independently).",
    ),
]
GOLD_CHECKS = [
    AssetCheckSpec(
        "gold_contract",
        asset=GOLD_TABLE,
        description="One row per (symbol, window_start); sample_size >= the minimum; "
        "volatility >= 0; beta finite or null; cost_of_equity = rf + beta x premium; windows "
        "2 hours long, starting on the 5-minute grid inside their partition.",
    ),
    AssetCheckSpec(
        "gold_complete",
        asset=GOLD_TABLE,
        description="Every (symbol, window) whose 24 buckets hold at least the minimum of "
        "pairs is present, and no other: an independent rolling count over joined_returns.",
    ),
    AssetCheckSpec(
        "gold_fresh",
        asset=GOLD_TABLE,
        description="The latest gold window starts less than the configured bound before "
        "the latest silver tick.",
    ),
]


# --- pandera contracts


def _in_partition_hour(times: pd.Series, hours: pd.Series) -> pd.Series:
    # Each distinct hour formatted once: strftime row by row was most of a contract's time.
    floors = times.dt.floor("h")
    labels = {hour: hour.strftime(HOUR_FORMAT) for hour in floors.dropna().unique()}
    return floors.map(labels) == hours


class SpyReturnsContract(pa_schema.DataFrameModel):
    m_event_time: pd.DatetimeTZDtype("us", "UTC") = pa_schema.Field(nullable=False)
    m_return: float = pa_schema.Field(
        nullable=False, in_range={"min_value": -1e9, "max_value": 1e9}
    )
    partition_hour: str

    @pa_schema.dataframe_check(error="m_event_time outside its partition_hour")
    def inside_partition(cls, frame: pd.DataFrame) -> pd.Series:
        return _in_partition_hour(frame[MARKET_EVENT_TIME], frame[PARTITION_HOUR])

    class Config:
        unique = [MARKET_EVENT_TIME, MARKET_RETURN]


class JoinedReturnsContract(pa_schema.DataFrameModel):
    bucket_start: pd.DatetimeTZDtype("us", "UTC") = pa_schema.Field(nullable=False)
    pair_count: int = pa_schema.Field(ge=0)
    paired_ticks: int = pa_schema.Field(ge=0)
    unpaired_ticks: int = pa_schema.Field(ge=0)
    duplicate_ticks: int = pa_schema.Field(ge=0)
    sum_x: float = pa_schema.Field(nullable=False, **_FINITE)
    sum_y: float = pa_schema.Field(nullable=False, **_FINITE)
    sum_xx: float = pa_schema.Field(nullable=False, ge=0, le=1e300)
    sum_yy: float = pa_schema.Field(nullable=False, ge=0, le=1e300)
    sum_xy: float = pa_schema.Field(nullable=False, **_FINITE)
    partition_hour: str

    @pa_schema.dataframe_check(error="pairs without paired ticks, or paired ticks without pairs")
    def pairs_iff_paired_ticks(cls, frame: pd.DataFrame) -> pd.Series:
        return (frame["pair_count"] > 0) == (frame["paired_ticks"] > 0)

    @pa_schema.dataframe_check(error="min above max")
    def extremes_ordered(cls, frame: pd.DataFrame) -> pd.Series:
        no_pairs = frame["pair_count"] == 0
        ordered = (frame["x_min"] <= frame["x_max"]) & (frame["y_min"] <= frame["y_max"])
        return no_pairs | ordered

    @pa_schema.dataframe_check(error="bucket off the 5-minute grid or outside its partition")
    def bucket_on_grid(cls, frame: pd.DataFrame) -> pd.Series:
        on_grid = frame[BUCKET_START].dt.floor(SLIDE) == frame[BUCKET_START]
        return on_grid & _in_partition_hour(frame[BUCKET_START], frame[PARTITION_HOUR])

    class Config:
        unique = [SYMBOL, BUCKET_START]


def gold_contract(settings: MetricSettings) -> pa_schema.DataFrameSchema:
    """The gold contract for the run's settings (minimum sample size, CAPM constants)."""

    class GoldContract(pa_schema.DataFrameModel):
        s: str = pa_schema.Field(nullable=False, str_length={"min_value": 1})
        window_start: pd.DatetimeTZDtype("us", "UTC") = pa_schema.Field(nullable=False)
        window_end: pd.DatetimeTZDtype("us", "UTC") = pa_schema.Field(nullable=False)
        beta: float = pa_schema.Field(nullable=True, **_FINITE)
        volatility: float = pa_schema.Field(nullable=True, ge=0, le=1e300)
        momentum: float = pa_schema.Field(nullable=False, **_FINITE)
        sample_size: int = pa_schema.Field(ge=settings.min_sample_size)
        cost_of_equity: float = pa_schema.Field(nullable=True)
        is_final: bool
        beta_aligned: float = pa_schema.Field(nullable=True, **_FINITE)
        beta_aligned_se: float = pa_schema.Field(nullable=True, ge=0, le=1e300)
        beta_aligned_r2: float = pa_schema.Field(nullable=True, ge=0, le=1 + 1e-9)
        aligned_bars: int = pa_schema.Field(ge=0)
        partition_hour: str

        @pa_schema.dataframe_check(error="cost_of_equity != rf + beta x premium")
        def capm(cls, frame: pd.DataFrame) -> pd.Series:
            expected = settings.risk_free_rate + frame["beta"] * settings.market_premium
            both_null = expected.isna() & frame["cost_of_equity"].isna()
            return both_null | ((frame["cost_of_equity"] - expected).abs() <= COST_TOLERANCE)

        @pa_schema.dataframe_check(error="window not 2 hours, off the grid or outside its hour")
        def window_shape(cls, frame: pd.DataFrame) -> pd.Series:
            start = frame["window_start"]
            two_hours = frame["window_end"] - start == pd.Timedelta(WINDOW)
            on_grid = start.dt.floor(SLIDE) == start
            return two_hours & on_grid & _in_partition_hour(start, frame[PARTITION_HOUR])

        class Config:
            unique = [SYMBOL, "window_start"]

    return GoldContract.to_schema()


def contract_result(
    name: str, asset: str, schema: pa_schema.DataFrameSchema | type, rows: pd.DataFrame
) -> AssetCheckResult:
    """Validate `rows` (lazily: every failure) and report the failing rows."""
    try:
        schema.validate(rows, lazy=True)
    except SchemaErrors as errors:
        failures = errors.failure_cases
        return AssetCheckResult(
            check_name=name,
            asset_key=asset,
            passed=False,
            description=f"{len(failures)} failure(s) in {len(rows)} rows",
            metadata={
                "rows_checked": len(rows),
                "failures_by_check": MetadataValue.json(
                    failures.groupby("check").size().astype(int).to_dict()
                ),
                "failing_rows": _markdown(failures),
            },
        )
    return AssetCheckResult(
        check_name=name,
        asset_key=asset,
        passed=True,
        description=f"all {len(rows)} rows hold",
        metadata={"rows_checked": len(rows)},
    )


def _markdown(frame: pd.DataFrame) -> MetadataValue:
    shown = frame.head(FAILURE_ROWS_SHOWN).astype(str)
    return MetadataValue.md(markdown_table(pa.Table.from_pandas(shown, preserve_index=False)))


def as_pandas(rows: pa.Table) -> pd.DataFrame:
    return rows.to_pandas()


# --- spy_returns and joined_returns


def spy_returns_results(rows: pa.Table) -> Iterator[AssetCheckResult]:
    yield contract_result(
        "spy_returns_contract", SPY_RETURNS_TABLE, SpyReturnsContract, as_pandas(rows)
    )


def joined_returns_results(
    written: pa.Table, computed: pa.Table, valid_ticker_ticks: int
) -> Iterator[AssetCheckResult]:
    """The contract of the rows written; the tick count of every bucket computed (an hour kept
    from a newer silver version is not written, but its ticks were counted in silver)."""
    yield contract_result(
        "band_statistics_consistent",
        JOINED_RETURNS_TABLE,
        JoinedReturnsContract,
        as_pandas(written),
    )
    counters = computed.select(["paired_ticks", "unpaired_ticks", "duplicate_ticks"])
    in_buckets = sum(pc.sum(column).as_py() or 0 for column in counters.columns)
    yield AssetCheckResult(
        check_name="every_ticker_tick_in_a_bucket",
        asset_key=JOINED_RETURNS_TABLE,
        passed=in_buckets == valid_ticker_ticks,
        description=f"{in_buckets} ticks in buckets, {valid_ticker_ticks} valid in silver",
        metadata={"ticks_in_buckets": in_buckets, "valid_ticker_ticks": valid_ticker_ticks},
    )


# --- gold


def expected_windows(
    buckets: pd.DataFrame, min_sample_size: int, start: datetime, end: datetime
) -> pd.DataFrame:
    """(symbol, window_start) rows with enough pairs: every window start on the 5-minute grid
    from a window before a symbol's first bucket to its last, summed from prefix sums of the
    pair counts ordered by (symbol, bucket) (all symbols at once: a loop per symbol cost 1.2 s
    at 500 symbols)."""
    if buckets.empty:
        return _window_keys([], [])
    slide_us = SLIDE // timedelta(microseconds=1)
    codes, symbols = pd.factorize(buckets[SYMBOL], sort=True)
    slots = np.asarray(_epoch_micros(buckets[BUCKET_START]), dtype=np.int64) // slide_us
    order = np.lexsort((slots, codes))
    codes, slots = codes[order], slots[order]
    pairs = buckets["pair_count"].to_numpy(dtype=np.int64)[order]
    # Keys sort like (symbol, slot); a symbol's keys never reach the next symbol's.
    stride = int(slots.max() - slots.min()) + 2 * BUCKETS_PER_WINDOW
    base = slots.min() - BUCKETS_PER_WINDOW
    keys = codes * stride + (slots - base)
    before = np.concatenate(([0], np.cumsum(pairs)))
    # Candidate window starts per symbol: first slot - 23 ... last slot.
    firsts = np.flatnonzero(np.r_[True, codes[1:] != codes[:-1]])
    lasts = np.r_[firsts[1:], len(codes)] - 1
    lengths = slots[lasts] - slots[firsts] + BUCKETS_PER_WINDOW
    owner = np.repeat(np.arange(len(firsts)), lengths)
    offset = np.arange(len(owner)) - np.repeat(np.cumsum(lengths) - lengths, lengths)
    window_codes = codes[firsts][owner]
    window_slots = slots[firsts][owner] - (BUCKETS_PER_WINDOW - 1) + offset
    window_keys = window_codes * stride + (window_slots - base)
    totals = (
        before[np.searchsorted(keys, window_keys + BUCKETS_PER_WINDOW)]
        - before[np.searchsorted(keys, window_keys)]
    )
    window_us = window_slots * slide_us
    wanted = (
        (totals >= min_sample_size)
        & (window_us >= _epoch_micros(start))
        & (window_us < _epoch_micros(end))
    )
    return _window_keys(
        symbols[window_codes[wanted]], pd.to_datetime(window_us[wanted], unit="us", utc=True)
    )


def _window_keys(symbols, starts) -> pd.DataFrame:
    """(symbol, window_start) rows, the starts in one type so that two key sets merge."""
    return pd.DataFrame(
        {
            SYMBOL: pd.Series(symbols, dtype=object),
            WINDOW_START: pd.Series(pd.to_datetime(starts, utc=True)).astype(UTC_MICROS_DTYPE),
        }
    )


def _epoch_micros(times: pd.Series | datetime) -> pd.Series | int:
    """Microseconds since the epoch of aware times (a series or one moment)."""
    return (pd.to_datetime(times, utc=True) - pd.Timestamp(0, tz="UTC")) // pd.Timedelta(
        microseconds=1
    )


def gold_results(
    rows: pa.Table,
    buckets: pd.DataFrame,
    settings: MetricSettings,
    window: tuple[datetime, datetime],
    silver_latest: datetime | None,
    gold_latest_start: datetime | None,
    freshness_bound: timedelta,
) -> Iterator[AssetCheckResult]:
    frame = as_pandas(rows)
    yield contract_result("gold_contract", GOLD_TABLE, gold_contract(settings), frame)
    yield _completeness(frame, buckets, settings, window)
    yield _freshness(silver_latest, gold_latest_start, freshness_bound)


def _completeness(
    frame: pd.DataFrame,
    buckets: pd.DataFrame,
    settings: MetricSettings,
    window: tuple[datetime, datetime],
) -> AssetCheckResult:
    expected = expected_windows(buckets, settings.min_sample_size, *window)
    present = _window_keys(frame[SYMBOL], frame[WINDOW_START]).drop_duplicates()
    # One merge of the two sets of keys: a set of (symbol, Timestamp) tuples cost 0.5 s per
    # 100k windows in Timestamp objects alone.
    both = expected.merge(present, how="outer", on=[SYMBOL, WINDOW_START], indicator=True)
    missing, extra = _windows(both, "left_only"), _windows(both, "right_only")
    return AssetCheckResult(
        check_name="gold_complete",
        asset_key=GOLD_TABLE,
        passed=missing.empty and extra.empty,
        description=f"{len(expected)} windows expected, {len(missing)} missing, {len(extra)} extra",
        metadata={
            "windows_expected": len(expected),
            "missing": MetadataValue.json(_first_windows(missing)),
            "unexpected": MetadataValue.json(_first_windows(extra)),
        },
    )


def _windows(merged: pd.DataFrame, side: str) -> pd.DataFrame:
    """The windows of one side of an indicator merge, in (symbol, window_start) order."""
    return merged[merged["_merge"] == side].sort_values([SYMBOL, WINDOW_START])


def _first_windows(windows: pd.DataFrame) -> list[str]:
    shown = windows.head(FAILURE_ROWS_SHOWN)
    return [f"{s} {t}" for s, t in zip(shown[SYMBOL], shown[WINDOW_START], strict=True)]


def _freshness(
    silver_latest: datetime | None, gold_latest_start: datetime | None, bound: timedelta
) -> AssetCheckResult:
    if silver_latest is None:
        lag = timedelta(0)
    elif gold_latest_start is None:
        lag = None
    else:
        lag = max(silver_latest - gold_latest_start, timedelta(0))
    return AssetCheckResult(
        check_name="gold_fresh",
        asset_key=GOLD_TABLE,
        passed=lag is not None and lag < bound,
        severity=AssetCheckSeverity.WARN,
        description=f"gold lags silver by {lag if lag is not None else 'everything'} "
        f"(bound {bound})",
        metadata={
            "silver_latest_tick": str(silver_latest or ""),
            "gold_latest_window_start": str(gold_latest_start or ""),
            "lag_minutes": round(lag.total_seconds() / 60, 2) if lag is not None else -1.0,
        },
    )


# --- silver: run in Spark over the run's hours, blocking everything downstream

SILVER_CHECKS = [
    AssetCheckSpec(
        "silver_column_contract",
        asset=SILVER_TABLE,
        blocking=True,
        description="The required columns exist in types the pipeline can read without loss "
        "(s text; currentPrice, changePercent numbers or text; event_time a timestamp or text).",
    ),
    AssetCheckSpec(
        "silver_value_shares",
        asset=SILVER_TABLE,
        blocking=True,
        description="The share of ticks with a null, NaN, infinite or non-positive price, a "
        "bad changePercent, an unusable event time or no symbol stays under the bound.",
    ),
    AssetCheckSpec(
        "silver_exact_duplicates",
        asset=SILVER_TABLE,
        description="No tick appears twice (same symbol, time, price and change). Duplicates "
        "are counted once by the pipeline; this warns that the feed replays data.",
    ),
    # A warning, not a block: an hour without market ticks still has the notebook's answer
    # (pairs reach an hour either side), and a quiet market must not stall the pipeline.
    AssetCheckSpec(
        "silver_market_every_hour",
        asset=SILVER_TABLE,
        description="The market symbol has ticks in every hour that has ticks: without them "
        "that hour's ticks pair only with market ticks of the hours around it, or not at all.",
    ),
]


@multi_asset_check(
    specs=SILVER_CHECKS,
    name="silver_ticks_checks",
    description="Silver's contract over the hours of the run (the whole table when run alone).",
)
def silver_ticks_checks(
    context: AssetCheckExecutionContext,
    spark: SparkSessionResource,
    lake: DeltaLake,
    metrics: BetaMetricsConfig,
) -> Iterator[AssetCheckResult]:
    snapshot = pinned_silver(lake)
    span = silver_span_read(context.run.tags) or whole_table_hours(lake, snapshot)
    yield from silver_results(spark, lake, metrics, snapshot, span, context.run.run_id)


def silver_span_read(tags: Mapping[str, str]) -> tuple[datetime, datetime] | None:
    """The span of silver a partitioned run's steps compute from: its hours, or on an
    incremental run the 5-minute buckets within reach of the change (an empty span when none
    is); None without partitions.

    An appended minute is checked over the buckets it reaches, not over the whole range the
    sensor's run spans for gold's windows."""
    hours = hours_of_run(tags)
    if hours is None:
        return None
    return changed_buckets_within(hours, tags, SILVER_READ_REACH) or (hours[0], hours[0])


def silver_results(
    spark: SparkSessionResource,
    lake: DeltaLake,
    metrics: BetaMetricsConfig,
    snapshot: DeltaTable,
    hours: tuple[datetime, datetime],
    run_id: str,
    only_blocking: bool = False,
) -> Iterator[AssetCheckResult]:
    """Silver's checks over the span [start, end) of a snapshot (`only_blocking`: those that
    block the assets, without the duplicate pass). The tick counts are kept for the run's
    later steps (`counted_valid_ticker_ticks`)."""
    contract = _column_contract(snapshot)
    yield contract
    if not contract.passed:
        for spec in SILVER_CHECKS[1:]:
            yield _silver_result(spec.name, False, "not evaluated: silver's columns are broken")
        return
    start, end = hours
    typed = typed_ticks(read_silver(spark.spark_session, lake, snapshot, start, end).frame)
    counts = silver_quality_counts(typed, metrics.settings().market_symbol, start, end).toPandas()
    record_silver_counts(run_id, snapshot, hours, counts)
    yield _value_shares(counts, metrics.max_bad_share)
    if only_blocking:
        return
    yield _duplicates(duplicate_tick_count(valid_ticks(in_time_range(typed, start, end))))
    yield _market_every_hour(counts)


def _column_contract(snapshot: DeltaTable) -> AssetCheckResult:
    try:
        silver_schema(snapshot)
    except SilverSchemaError as error:
        return _silver_result("silver_column_contract", False, str(error))
    return _silver_result("silver_column_contract", True, "required columns readable")


def record_silver_counts(
    run_id: str, snapshot: DeltaTable, hours: tuple[datetime, datetime], counts: pd.DataFrame
) -> None:
    """Keep silver's tick counts over the span `hours` (`silver_quality_counts`, per hour) for
    the run's later steps, unless this run already counted that span and more."""
    key = (run_id, snapshot.version())
    # Only this run's: a process runs its runs one after another (in-process executor), and a
    # long-lived one (a warm bench, a test worker) would otherwise keep every run's counts.
    for other in [kept_key for kept_key in _silver_counts if kept_key[0] != run_id]:
        del _silver_counts[other]
    kept = _silver_counts.get(key)
    if kept is None or not (kept[0] <= hours[0] and hours[1] <= kept[1]):
        _silver_counts[key] = (*hours, counts)


# Silver's tick counts by (run, silver version): (start, end, counts per hour) of the hours
# that silver's checks counted in this process, for the run that counted last.
_silver_counts: dict[tuple[str, int], tuple[datetime, datetime, pd.DataFrame]] = {}


def counted_valid_ticker_ticks(
    run_id: str, silver_version: int, start: datetime, end: datetime
) -> int | None:
    """The valid non-market ticks of silver in [start, end), as silver's checks counted them in
    this run (independently of joined_returns' buckets); None when their counts do not give
    that span exactly."""
    counted = _silver_counts.get((run_id, silver_version))
    if counted is None or not _sum_of_hours(counted[:2], (start, end)):
        return None
    counts = counted[2]
    hour = counts["hour"].dt.tz_localize(None) if counts["hour"].dt.tz else counts["hour"]
    wanted = (
        counts[QUARANTINE_REASON].isna()
        & ~counts["is_market"].astype(bool)
        & (hour >= _naive_utc(floor_hour(start)))  # its hour's count holds only its ticks
        & (hour < _naive_utc(end))
    )
    return int(counts["count"].where(wanted, 0).sum())


def _sum_of_hours(counted: tuple[datetime, datetime], wanted: tuple[datetime, datetime]) -> bool:
    """Whether counts per hour of the span `counted` sum to the ticks of `wanted`: it lies
    inside, and each of its ends is an hour's boundary or the counted span's own end."""
    inside = counted[0] <= wanted[0] and wanted[1] <= counted[1]
    return inside and all(
        moment in (floor_hour(moment), bound) for moment, bound in zip(wanted, counted, strict=True)
    )


def counted_high_water_marks(run_id: str, snapshot: DeltaTable) -> HighWaterMarks | None:
    """Silver's high-water marks from the counts silver's checks made in this run, when those
    hours reach past silver's newest tick (by its file statistics) and hold ticks of both
    sides; else None. The same marks as `silver_high_water_marks`, without another read."""
    counted = _silver_counts.get((run_id, snapshot.version()))
    newest = newest_event_time(snapshot)
    if counted is None or newest is None or newest >= counted[1]:
        return None
    counts = counted[2]
    latest = counts.groupby(counts["is_market"].astype(bool))["latest_micros"].max()
    sides = {side: latest.get(side) for side in (True, False)}
    if any(micros is None or pd.isna(micros) for micros in sides.values()):
        return None
    market, tickers = (micros_to_utc(int(sides[side])) for side in (True, False))
    return HighWaterMarks(market=market, tickers=tickers)


def _naive_utc(moment: datetime) -> pd.Timestamp:
    return pd.Timestamp(moment).tz_convert("UTC").tz_localize(None)


BLOCKING_SILVER_CHECKS = {spec.name for spec in SILVER_CHECKS if spec.blocking}
# (run, silver version) pairs this process has already guarded: the steps of a run share it.
_guarded_runs: set[tuple[str, int]] = set()


def require_usable_silver(
    context: AssetExecutionContext,
    spark: SparkSessionResource,
    lake: DeltaLake,
    metrics: BetaMetricsConfig,
    snapshot: DeltaTable,
) -> None:
    """Fail the step before it writes anything when silver fails a blocking check.

    beta_pipeline runs silver's checks as its first step, and they block the assets. Every
    other launch (the UI's Materialize, an asset backfill, `dg launch`) selects assets only, so
    each step asks here: once per run and silver version, unless this run checked silver.
    """
    span = silver_span_to_guard(context, snapshot)
    if span is None:
        return
    # The warnings (duplicates: a shuffle of every tick's hash) are not evaluated here: they
    # block nothing and a launch of the assets alone does not report them.
    results = silver_results(
        spark, lake, metrics, snapshot, span, context.run_id, only_blocking=True
    )
    _raise_unless_usable(snapshot, list(results))
    _mark_guarded(context, snapshot, span)


def silver_span_to_guard(
    context: AssetExecutionContext, snapshot: DeltaTable
) -> tuple[datetime, datetime] | None:
    """The span of silver this step must check before it writes (what the run's steps compute
    from); None when this run has already checked or guarded this silver version."""
    if (context.run_id, snapshot.version()) in _guarded_runs or _silver_checked_in_run(context):
        return None
    return tuple(silver_span_read(context.run.tags) or context.partition_time_window)


def require_silver_columns(snapshot: DeltaTable) -> None:
    """Fail the step when silver lacks a required column (before it reads silver)."""
    _raise_unless_usable(snapshot, [_column_contract(snapshot)])


def require_usable_counts(
    context: AssetExecutionContext,
    metrics: BetaMetricsConfig,
    snapshot: DeltaTable,
    hours: tuple[datetime, datetime],
    counts: pd.DataFrame,
) -> None:
    """`require_usable_silver` on silver's tick counts over `hours` that the step made in its
    own read of silver (spy_returns: `quality_counts_with_kept_rows`), so no other read is
    needed; the columns are checked by `require_silver_columns` before that read."""
    _raise_unless_usable(snapshot, [_value_shares(counts, metrics.max_bad_share)])
    _mark_guarded(context, snapshot, hours)


def _raise_unless_usable(snapshot: DeltaTable, results: list[AssetCheckResult]) -> None:
    failed = [r for r in results if not r.passed and r.check_name in BLOCKING_SILVER_CHECKS]
    if failed:
        raise Failure(
            description=f"silver v{snapshot.version()} fails its blocking checks, nothing was "
            "written: " + "; ".join(f"{r.check_name}: {r.description}" for r in failed),
            metadata={r.check_name: r.description or "" for r in failed},
        )


def _mark_guarded(
    context: AssetExecutionContext, snapshot: DeltaTable, hours: tuple[datetime, datetime]
) -> None:
    context.log.info(
        f"silver v{snapshot.version()} passes its blocking checks over {hours[0]} ... {hours[1]}"
    )
    _guarded_runs.add((context.run_id, snapshot.version()))


def _silver_checked_in_run(context: AssetExecutionContext) -> bool:
    """True when this run already evaluated every blocking silver check and they passed."""
    keys = [AssetCheckKey(AssetKey(SILVER_TABLE), name) for name in BLOCKING_SILVER_CHECKS]
    latest = context.instance.event_log_storage.get_latest_asset_check_execution_by_key(keys)
    return all(
        (record := latest.get(key)) is not None
        and record.run_id == context.run_id
        and record.status == AssetCheckExecutionRecordStatus.SUCCEEDED
        for key in keys
    )


def _silver_result(
    name: str,
    passed: bool,
    description: str,
    severity: AssetCheckSeverity = AssetCheckSeverity.ERROR,
    **metadata,
) -> AssetCheckResult:
    return AssetCheckResult(
        check_name=name,
        asset_key=SILVER_TABLE,
        passed=passed,
        severity=severity,
        description=description,
        metadata=metadata,
    )


def _value_shares(counts: pd.DataFrame, max_share: float) -> AssetCheckResult:
    total = int(counts["count"].sum())
    by_reason = counts.dropna(subset=[QUARANTINE_REASON]).groupby(QUARANTINE_REASON)["count"].sum()
    bad = int(by_reason.sum())
    share = bad / total if total else 0.0
    return _silver_result(
        "silver_value_shares",
        share <= max_share,
        f"{bad} of {total} ticks unusable ({share:.4%}; bound {max_share:.4%})",
        ticks=total,
        unusable=bad,
        unusable_by_reason=MetadataValue.json({k: int(v) for k, v in by_reason.items()}),
    )


def _duplicates(duplicates: int) -> AssetCheckResult:
    return AssetCheckResult(
        check_name="silver_exact_duplicates",
        asset_key=SILVER_TABLE,
        passed=duplicates == 0,
        severity=AssetCheckSeverity.WARN,
        description=f"{duplicates} exact duplicate ticks (counted once by the pipeline)",
        metadata={"duplicate_ticks": duplicates},
    )


def _market_every_hour(counts: pd.DataFrame) -> AssetCheckResult:
    timed = counts.dropna(subset=["hour"])
    valid_market = timed["is_market"].astype(bool) & timed[QUARANTINE_REASON].isna()
    per_hour = timed["count"].where(valid_market, 0).groupby(timed["hour"]).sum()
    missing = [f"{hour:%Y-%m-%dT%H:00Z}" for hour, ticks in per_hour.items() if ticks == 0]
    return _silver_result(
        "silver_market_every_hour",
        not missing,
        f"{len(missing)} of {len(per_hour)} hours with ticks have no valid market tick",
        AssetCheckSeverity.WARN,
        hours_without_market=MetadataValue.json(missing[:FAILURE_ROWS_SHOWN]),
    )

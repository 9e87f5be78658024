"""How the assets present themselves in the Dagster UI: group, owners, layers, table schemas.

Column types come from the Arrow schemas the tables are written with, so the schema a user
reads in the UI is the one on disk; every column must have a description here (building a
schema fails on an undescribed column, so a new column cannot reach the UI unexplained).
"""

import inspect
from collections.abc import Mapping, Sequence

import pyarrow as pa
from dagster import (
    AssetCheckSpec,
    AssetsDefinition,
    BackfillPolicy,
    CodeReferencesMetadataValue,
    LocalFileCodeReference,
    TableColumn,
    TableSchema,
    asset,
)

from beta_assets.band import BUCKET_SCHEMA, BUCKET_START
from beta_assets.feed.simulator import TICK_SCHEMA
from beta_assets.metrics import MARKET_SCHEMA
from beta_assets.partitions import hourly_partitions
from beta_assets.settings import (
    BLUME_PRIOR,
    BLUME_WEIGHT,
    CHANGE,
    EVENT_TIME,
    MARKET_EVENT_TIME,
    MARKET_PRICE,
    MARKET_RETURN,
    PARTITION_HOUR,
    PRICE,
    SILVER_VERSION,
    SYMBOL,
)
from beta_assets.windows import GOLD_SCHEMA, WINDOW_START

GROUP = "tickbeta"
OWNERS = ["team:tickbeta"]
COLUMN_SCHEMA = "dagster/column_schema"
CODE_REFERENCES = "dagster/code_references"
# A tag per medallion layer lets the asset catalog filter silver / intermediate / gold.
LAYER = "layer"


# Every derived table also stores the lineage and on-disk partition columns (storage.write_hours).
_STORED = pa.schema([(SILVER_VERSION, pa.int64()), (PARTITION_HOUR, pa.string())])
_STORED_DESCRIPTIONS = {
    SILVER_VERSION: "Version of silver_ticks this row was computed from.",
    PARTITION_HOUR: "On-disk Delta partition: the UTC hour the row belongs to (2026-01-05T14).",
}

SILVER_DESCRIPTIONS = {
    SYMBOL: "Stock symbol; trimmed of any whitespace and zero-width characters and upper-cased "
    "when read. The market is SPY by default.",
    PRICE: "Quoted price.",
    CHANGE: "Change against the previous close in percent: x for a ticker, y for the market.",
    EVENT_TIME: "When the quote happened (UTC; naive times and parseable text are read as UTC).",
}

SPY_RETURNS_DESCRIPTIONS = {
    MARKET_EVENT_TIME: "Time of the market tick (UTC); its hour is the partition.",
    MARKET_RETURN: "The market's changePercent at that tick: y in the beta regression.",
    MARKET_PRICE: "The market's price at that tick (its bar returns give beta_aligned).",
}

JOINED_RETURNS_DESCRIPTIONS = {
    SYMBOL: "Ticker symbol (never the market).",
    BUCKET_START: "Start of the 5-minute bucket of the ticker ticks; its hour is the partition.",
    "pair_count": "(ticker tick, market tick within +-1h) pairs of the bucket's ticks.",
    "x_ref": "Reference x the sums are shifted by (against cancellation).",
    "y_ref": "Reference y the sums are shifted by (against cancellation).",
    "sum_x": "Sum over the pairs of (x - x_ref).",
    "sum_y": "Sum over the pairs of (y - y_ref).",
    "sum_xx": "Sum over the pairs of (x - x_ref)^2.",
    "sum_yy": "Sum over the pairs of (y - y_ref)^2.",
    "sum_xy": "Sum over the pairs of (x - x_ref)(y - y_ref).",
    "x_min": "Smallest x over the pairs (x_min = x_max: zero variance, decided exactly).",
    "x_max": "Largest x over the pairs.",
    "y_min": "Smallest y over the pairs (y_min = y_max: the market is constant, beta is null).",
    "y_max": "Largest y over the pairs.",
    "paired_ticks": "Ticker ticks with at least one market tick within +-1h.",
    "unpaired_ticks": "Ticker ticks with no market tick within +-1h (they count in no window).",
    "last_paired_time": "Time of the bucket's latest paired ticker tick.",
    "last_paired_price": "Price of that tick (the higher one at equal times): gold's close_price.",
    "duplicate_ticks": "Exact repeats of a tick (same symbol, time, price, change), counted once.",
    "aligned_bars": "Bars (1 minute by default) in which symbol and market both have a return.",
    "sum_rm": "Sum over those bars of the market's bar log return rm.",
    "sum_rt": "Sum over those bars of the symbol's bar log return rt.",
    "sum_rm_rm": "Sum over those bars of rm^2.",
    "sum_rt_rt": "Sum over those bars of rt^2.",
    "sum_rm_rt": "Sum over those bars of rm * rt.",
}

GOLD_DESCRIPTIONS = {
    SYMBOL: "Ticker symbol.",
    WINDOW_START: "Start of the 2-hour window (a multiple of 5 min); its hour is the partition.",
    "window_end": "window_start + 2 hours (exclusive).",
    "beta": (
        "covar_samp(x, y) / var_samp(y) over the window's pairs, x the ticker's and y the "
        "market's changePercent; null when the market side is constant or has one pair."
    ),
    "volatility": "stddev_samp(x) over the pairs.",
    "momentum": "avg(x) over the pairs.",
    "close_price": "Price of the latest ticker tick in the window that has a market pair.",
    "sample_size": "Pairs in the window; windows with fewer than min_sample_size are dropped.",
    "cost_of_equity": "CAPM: risk_free_rate + beta * market_premium.",
    "is_final": (
        "True when the notebook's streaming query would already have emitted the window "
        "(window_end < min(market, ticker high-water mark) - 3h watermark - 1h band); "
        "false windows are provisional and recomputed as ticks arrive."
    ),
    "beta_aligned": (
        "OLS slope of the symbol's bar log returns on the market's over time-aligned bars; "
        "null below min_aligned_bars bars."
    ),
    "beta_aligned_se": "Standard error of beta_aligned.",
    "beta_aligned_r2": "R^2 of that regression.",
    "beta_aligned_blume": (
        f"Blume's adjustment toward the market's beta of 1: {BLUME_WEIGHT} * beta_aligned + "
        f"{BLUME_PRIOR}."
    ),
    "aligned_bars": "Bars in the window where both series have a return.",
}


def table_schema(columns: pa.Schema, descriptions: Mapping[str, str]) -> TableSchema:
    """A Dagster table schema of Arrow columns; every column needs a description."""
    undescribed = [name for name in columns.names if name not in descriptions]
    if undescribed:
        raise KeyError(f"columns without a description: {undescribed}")
    return TableSchema(
        columns=[
            TableColumn(name=field.name, type=str(field.type), description=descriptions[field.name])
            for field in columns
        ]
    )


def _stored(columns: pa.Schema, descriptions: Mapping[str, str]) -> TableSchema:
    return table_schema(
        pa.unify_schemas([columns, _STORED]), {**descriptions, **_STORED_DESCRIPTIONS}
    )


SILVER_COLUMN_SCHEMA = table_schema(TICK_SCHEMA, SILVER_DESCRIPTIONS)
SPY_RETURNS_COLUMN_SCHEMA = _stored(MARKET_SCHEMA, SPY_RETURNS_DESCRIPTIONS)
JOINED_RETURNS_COLUMN_SCHEMA = _stored(BUCKET_SCHEMA, JOINED_RETURNS_DESCRIPTIONS)
GOLD_COLUMN_SCHEMA = _stored(GOLD_SCHEMA, GOLD_DESCRIPTIONS)


def with_local_code_references(assets: Sequence[AssetsDefinition]) -> list[AssetsDefinition]:
    """Each asset with a link to the file and line of its decorated function.

    Dagster's `with_source_code_references` takes the file of the outermost function: for an
    asset wrapped by `retry_transient_failures` that is retries.py (with gold.py's line).
    Unwrapping first points at the asset's own module.
    """
    return [_with_reference(asset, code_reference(asset)) for asset in assets]


def _with_reference(asset: AssetsDefinition, reference: LocalFileCodeReference) -> AssetsDefinition:
    references = CodeReferencesMetadataValue(code_references=[reference])
    return asset.map_asset_specs(
        lambda spec: spec.merge_attributes(metadata={CODE_REFERENCES: references})
    )


def code_reference(asset: AssetsDefinition) -> LocalFileCodeReference:
    compute = asset.op.compute_fn
    function = inspect.unwrap(getattr(compute, "decorated_fn", compute))
    return LocalFileCodeReference(
        file_path=inspect.getsourcefile(function), line_number=inspect.getsourcelines(function)[1]
    )


def hourly_table_asset(
    name: str,
    *,
    deps: Sequence,
    check_specs: Sequence[AssetCheckSpec],
    layer: str,
    column_schema: TableSchema,
    description: str,
):
    """The decorator of a computed table: hourly partitions run as one Spark job per range,
    its writers in a pool of one, and how the UI presents it."""
    return asset(
        name=name,
        partitions_def=hourly_partitions,
        backfill_policy=BackfillPolicy.single_run(),
        deps=deps,
        check_specs=check_specs,
        group_name=GROUP,
        owners=OWNERS,
        kinds={"spark", "delta"},
        tags={LAYER: layer},
        metadata={COLUMN_SCHEMA: column_schema},
        pool=writer_pool(name),
        description=description,
    )


def writer_pool(table: str) -> str:
    """The concurrency pool of a table's writers: one at a time (deploy/dagster.yaml)."""
    return f"delta_{table}"

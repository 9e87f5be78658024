"""The facts every module shares: column names, the market, the time geometry, CAPM defaults.

Each fact lives here once; everything else imports it.
"""

import os
from datetime import timedelta

# --- silver input contract (the notebook's columns)
SYMBOL = "s"
PRICE = "currentPrice"
CHANGE = "changePercent"
EVENT_TIME = "event_time"
SILVER_COLUMNS = (SYMBOL, PRICE, CHANGE, EVENT_TIME)

# --- market series (spy_returns)
MARKET_RETURN = "m_return"
MARKET_EVENT_TIME = "m_event_time"
MARKET_PRICE = "m_price"

# --- time geometry of the notebook's query
WINDOW = timedelta(hours=2)  # window(event_time, "2 hours", ...)
SLIDE = timedelta(minutes=5)  # window(..., "5 minutes"): also the bucket size of joined_returns
BAND = timedelta(hours=1)  # market ticks within +-1h of a ticker tick are paired with it
WATERMARK = timedelta(hours=3)  # withWatermark(..., "3 hours") on both sides
BUCKETS_PER_WINDOW = WINDOW // SLIDE  # 24: a window is exactly this many buckets
PARTITION_SPAN = timedelta(hours=1)  # Dagster partitions are hourly (UTC)
PARTITION_SPAN_MICROS = PARTITION_SPAN // timedelta(microseconds=1)

# A window is final once the streaming query would have emitted it: the join holds its output
# watermark back by the band, on top of the 3h event-time watermark.
FINALITY_LAG = WATERMARK + BAND

# --- CAPM and the notebook's defaults
MARKET_SYMBOL = "SPY"
RISK_FREE_RATE = 0.0425
MARKET_PREMIUM = 0.05
MIN_SAMPLE_SIZE = 20
NOISE_AMPLITUDE = 0.1  # the notebook added (rand() - 0.5) * 0.1

# --- the time-aligned beta (beta_aligned)
# One-minute bars: with ticks every few seconds the last price of a bar lies a few seconds
# before its end for both series, so the asynchrony that biases betas toward zero (the Epps
# effect) is a few percent of a bar; shorter bars would grow it, longer ones leave fewer bars.
BAR = timedelta(minutes=1)
MIN_ALIGNED_BARS = 30
# Blume's adjustment toward the market's beta of 1.
BLUME_WEIGHT = 0.67
BLUME_PRIOR = 0.33

# --- gold's columns (without Spark: the benchmark's Polars peer shares them)
# The notebook's columns, then the time-aligned beta.
NOTEBOOK_COLUMNS = (
    SYMBOL,
    "window_start",
    "window_end",
    "beta",
    "volatility",
    "momentum",
    "close_price",
    "sample_size",
    "cost_of_equity",
    "is_final",
)
ALIGNED_COLUMNS = (
    "beta_aligned",
    "beta_aligned_se",
    "beta_aligned_r2",
    "beta_aligned_blume",
    "aligned_bars",
)
GOLD_COLUMNS = NOTEBOOK_COLUMNS + ALIGNED_COLUMNS

# Gold's buckets are in the run process already (a day of 500 symbols: about 40k rows). Up to
# this many, gold's rows are computed there; a Spark job would ship them out and back for
# nothing. Above it (months of thousands of symbols), Spark's tasks share the work.
GOLD_IN_PROCESS_MAX_BUCKETS = 1_000_000
# In the run process, the buckets of whole symbols go through numpy this many at a time: a
# window's 24 buckets are gathered side by side, so memory grows with the rows of a pass.
GOLD_BUCKETS_PER_PASS = 50_000

# Why a silver row cannot be used, in the order the conditions are tested (a row gets the first).
QUARANTINE_REASONS = (
    EMPTY_SYMBOL,
    BAD_EVENT_TIME,
    BAD_PRICE,
    NON_POSITIVE_PRICE,
    BAD_CHANGE_PERCENT,
) = ("empty_symbol", "bad_event_time", "bad_price", "non_positive_price", "bad_change_percent")

# --- tables in the lake
SILVER_TABLE = "silver_ticks"
SPY_RETURNS_TABLE = "spy_returns"
JOINED_RETURNS_TABLE = "joined_returns"
GOLD_TABLE = "gold_beta_metrics"
QUARANTINE_TABLE = "quarantine_ticks"
IMPORT_REJECTS_TABLE = "quarantine_ticks_import"  # rows `tickbeta import` could not read
PLANTED_BETAS_TABLE = "planted_betas"

# Every derived table is partitioned on disk by the hour its rows belong to, so that replacing a
# Dagster partition is a metadata-only Delta operation.
PARTITION_HOUR = "partition_hour"
SILVER_VERSION = "silver_version"

# --- public configuration contract (environment variables)
LAKE_ENV = "TICKBETA_LAKE"
DEFAULT_LAKE = "./data/lake"
START_ENV = "TICKBETA_START"
DEFAULT_START = "2026-01-01"
SPARK_MASTER_ENV = "TICKBETA_SPARK_MASTER"
DEFAULT_SPARK_MASTER = "local[*]"
SPARK_REMOTE_ENV = "TICKBETA_SPARK_REMOTE"
SPARK_UI_ENV = "TICKBETA_SPARK_UI"
# true: Spark's tasks get the run's object-store credentials; else their own environment's.
SHIP_CREDENTIALS_ENV = "TICKBETA_SHIP_CREDENTIALS"
# Memory of a classic session's driver and of a cluster's executors, in Spark's sizes (2g, 512m).
# Unset: LOCAL_DEFAULTS / CLUSTER_DEFAULTS in resources/spark.py. A Connect server sets its own.
SPARK_DRIVER_MEMORY_ENV = "TICKBETA_SPARK_DRIVER_MEMORY"
SPARK_EXECUTOR_MEMORY_ENV = "TICKBETA_SPARK_EXECUTOR_MEMORY"
SENSOR_INTERVAL_ENV = "TICKBETA_SENSOR_INTERVAL"
SENSOR_MAX_PARTITIONS_ENV = "TICKBETA_SENSOR_MAX_PARTITIONS"
SENSOR_STATUS_ENV = "TICKBETA_SENSOR_STATUS"  # running | stopped: the sensor's default status
DEFAULT_SENSOR_STATUS = "running"
GIT_URL_ENV = "TICKBETA_GIT_URL"  # set: code references in the UI link to this repository
GIT_BRANCH_ENV = "TICKBETA_GIT_BRANCH"
DEFAULT_GIT_BRANCH = "main"


def partitions_start() -> str:
    return os.environ.get(START_ENV) or DEFAULT_START

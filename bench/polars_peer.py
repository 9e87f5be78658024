"""The benchmark's peer: tickbeta's gold in Polars' lazy API, on one machine, from silver's files.

What a quant would write instead of tickbeta, with the same semantics (DESIGN.md, "Semantics")
and the same algorithm ("The algorithm"): prefix sums over the market series, two binary
searches (`search_sorted`) per ticker tick, sums per (symbol, 5-minute bucket), and each
2-hour window rolled up from its 24 buckets. Every column of gold_beta_metrics is produced,
the time-aligned beta included; `bench.run_bench --peer polars` checks them equal to
tickbeta's gold.

    python -m bench.polars_peer SILVER_TABLE_URI --start ISO --end ISO --out gold.parquet

computes the gold windows starting in [start, end) and prints the compute seconds as JSON; the
benchmark times that process whole. Polars uses POLARS_MAX_THREADS threads (default: every
core). This module imports neither Spark nor Dagster, so the timed process does not pay for
them: tickbeta's MetricSettings lives next to Spark code, hence `PeerSettings`.

Not covered: the optional noise (tickbeta draws it from Spark's xxhash64 of the tick); text
event times other than ISO 8601 with seconds ('2026-01-05T14:30:00.5+01:00', '2026-01-05
14:30:00', '2026-01-05'), which Spark's cast also accepts in other spellings; text numbers
with Java's suffixes ('1.5d'), which Spark reads and Polars drops. Sums are taken in
parallel, so the last bits of a value can change from run to run (seen: 2e-13 relative).
"""

import argparse
import json
import sys
import time
import urllib.parse
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta

import polars as pl
import pyarrow as pa
from deltalake import DeltaTable

from beta_assets.settings import (
    BAND,
    BAR,
    BLUME_PRIOR,
    BLUME_WEIGHT,
    BUCKETS_PER_WINDOW,
    CHANGE,
    EVENT_TIME,
    FINALITY_LAG,
    GOLD_COLUMNS,
    MARKET_PREMIUM,
    MARKET_SYMBOL,
    MIN_ALIGNED_BARS,
    MIN_SAMPLE_SIZE,
    PARTITION_SPAN,
    PRICE,
    RISK_FREE_RATE,
    SILVER_COLUMNS,
    SLIDE,
    SYMBOL,
    WINDOW,
)
from resources.delta_files import (
    data_files,
    needs_delta_aware_read,
    read_data_file,
    table_filesystem,
    table_layout,
)

GOLD_ORDER = [SYMBOL, "window_start"]
_US = 1_000_000
_KEY_LIMIT = 2**62  # (symbol, time) packed into one int64 sort key must stay below this


@dataclass(frozen=True)
class PeerSettings:
    """The MetricSettings fields the peer uses, with the same defaults."""

    market_symbol: str = MARKET_SYMBOL
    risk_free_rate: float = RISK_FREE_RATE
    market_premium: float = MARKET_PREMIUM
    min_sample_size: int = MIN_SAMPLE_SIZE
    bar_seconds: float = BAR.total_seconds()
    min_aligned_bars: int = MIN_ALIGNED_BARS

    @classmethod
    def of(cls, settings) -> "PeerSettings":
        """From tickbeta's MetricSettings (duck-typed: importing it would import pyspark)."""
        if settings.noise:
            raise ValueError("the Polars peer does not reproduce tickbeta's hashed noise")
        return cls(
            market_symbol=settings.market_symbol,
            risk_free_rate=settings.risk_free_rate,
            market_premium=settings.market_premium,
            min_sample_size=settings.min_sample_size,
            bar_seconds=settings.bar.total_seconds(),
            min_aligned_bars=settings.min_aligned_bars,
        )

    @property
    def bar_us(self) -> int:
        return round(self.bar_seconds * _US)


def _micros(delta: timedelta) -> int:
    return round(delta.total_seconds() * _US)


def _epoch_us(moment: datetime) -> int:
    return round(moment.timestamp() * _US)


# --- silver, typed and cleaned as tickbeta's typed_ticks does


def silver_scan(
    snapshot: DeltaTable, storage_options: dict[str, str] | None = None
) -> pl.LazyFrame:
    """Silver's required columns. Plain tables are scanned from their parquet files by Polars;
    tables with deletion vectors, column mapping or partition columns are read through
    tickbeta's own Delta reader (the files alone do not hold their rows)."""
    table_schema = pa.schema(snapshot.schema().to_arrow())
    schema = pa.schema([table_schema.field(name) for name in SILVER_COLUMNS])
    partitioned = set(snapshot.metadata().partition_columns) & set(SILVER_COLUMNS)
    uris = snapshot.file_uris()
    if not uris:
        return pl.from_arrow(schema.empty_table()).lazy()
    local = "://" not in snapshot.table_uri or snapshot.table_uri.startswith("file://")
    if local and not partitioned and not needs_delta_aware_read(snapshot):
        paths = [urllib.parse.unquote(uri) for uri in uris]  # file_uris keeps escapes
        return pl.scan_parquet(paths).select(SILVER_COLUMNS)
    layout = table_layout(snapshot, schema)
    filesystem = table_filesystem(snapshot.table_uri, storage_options or {})
    tables = [read_data_file(layout, file, filesystem) for file in data_files(snapshot, None)]
    return pl.from_arrow(pa.concat_tables(tables)).lazy()


def _number(column: str, kind: pl.DataType) -> pl.Expr:
    """try_cast(... AS DOUBLE): text that is no number becomes null."""
    value = pl.col(column)
    if kind == pl.String:
        value = value.str.strip_chars()
    return value.cast(pl.Float64, strict=False)


_TIME_FORMATS = (
    "%Y-%m-%dT%H:%M:%S%.f%#z",
    "%Y-%m-%d %H:%M:%S%.f%#z",
    "%Y-%m-%dT%H:%M:%S%.f",
    "%Y-%m-%d %H:%M:%S%.f",
    "%Y-%m-%d",
)


def _event_micros(kind: pl.DataType) -> pl.Expr:
    """Epoch microseconds in UTC; naive times are UTC (the contract), bad text null."""
    value = pl.col(EVENT_TIME)
    if kind == pl.String:
        text = value.str.strip_chars()
        parsed = [text.str.to_datetime(f, time_zone="UTC", strict=False) for f in _TIME_FORMATS]
        value = pl.coalesce(parsed)
    elif kind == pl.Date:
        value = value.cast(pl.Datetime("us")).dt.replace_time_zone("UTC")
    elif isinstance(kind, pl.Datetime) and kind.time_zone is None:
        value = value.dt.replace_time_zone("UTC")
    return value.dt.epoch("us")


MARKET_CODE = -1


@dataclass(frozen=True)
class Symbols:
    """Every spelling of a symbol in silver and what it stands for once trimmed and
    upper-cased as Spark's trim() (spaces only) and upper() do: the market (MARKET_CODE), a
    ticker (its rank among the tickers' names) or no symbol (null). Each distinct spelling
    is cleaned once, not every row's string: most of what typing would cost."""

    spellings: pl.Series
    codes: pl.Series
    tickers: pl.Series  # the tickers' names; a ticker's code is its position

    @classmethod
    def of(cls, spellings: pl.Series, market_symbol: str) -> "Symbols":
        raw = spellings.drop_nulls().cast(pl.String)
        clean = raw.str.strip_chars(" ").str.to_uppercase()
        tickers = clean.filter((clean != "") & (clean != market_symbol)).unique().sort()
        ranks = pl.DataFrame({"clean": tickers, "rank": pl.int_range(len(tickers), eager=True)})
        codes = (
            pl.DataFrame({"clean": clean})
            .join(ranks, on="clean", how="left", maintain_order="left")
            .select(
                pl.when(pl.col("clean") == market_symbol)
                .then(MARKET_CODE)
                .otherwise(pl.col("rank"))
                .cast(pl.Int64)
            )
            .to_series()
        )
        return cls(raw, codes, tickers)

    def code(self) -> pl.Expr:
        return (
            pl.col(SYMBOL)
            .cast(pl.String)
            .replace_strict(self.spellings, self.codes, default=None, return_dtype=pl.Int64)
        )


def typed_ticks(silver: pl.LazyFrame, symbols: Symbols) -> pl.LazyFrame:
    """code (see Symbols), currentPrice, changePercent, t (epoch us) and `valid`: tickbeta's
    typed_ticks with its quarantine reasons folded into one flag (a quarantined row is left
    out of gold)."""
    schema = silver.collect_schema()
    typed = silver.select(
        symbols.code().alias("code"),
        _number(PRICE, schema[PRICE]).alias(PRICE),
        _number(CHANGE, schema[CHANGE]).alias(CHANGE),
        _event_micros(schema[EVENT_TIME]).alias("t"),
    )
    valid = (
        pl.col("code").is_not_null()
        & pl.col("t").is_not_null()
        & pl.col(PRICE).is_finite()
        & (pl.col(PRICE) > 0)
        & pl.col(CHANGE).is_finite()
    )
    return typed.with_columns(valid.fill_null(False).alias("valid"))


# --- the market series: collected, sorted, with its prefix sums


@dataclass(frozen=True)
class Market:
    times: pl.Series  # epoch us, ascending (ties by price)
    prices: pl.Series
    y_ref: float
    prefix_y: pl.Series  # prefix_y[k]: sum of (y - y_ref) over the first k ticks
    prefix_yy: pl.Series
    # changes[k]: how many j in 1..k have y_j != y_{j-1}: [a, b) is constant iff
    # changes[b-1] == changes[a], the exact form of min == max over the range.
    changes: pl.Series

    @classmethod
    def of(cls, rows: pl.DataFrame) -> "Market":
        y = rows.get_column("y")
        y_ref = float(y.median()) if len(y) else 0.0
        shifted = rows.select(d=pl.col("y") - y_ref).get_column("d")
        zero = pl.Series([0.0])
        changed = (y != y.shift(1)).fill_null(False).cast(pl.Int64)
        return cls(
            times=rows.get_column("t"),
            prices=rows.get_column(PRICE),
            y_ref=y_ref,
            prefix_y=pl.concat([zero, shifted.cum_sum()]),
            prefix_yy=pl.concat([zero, (shifted * shifted).cum_sum()]),
            changes=changed.cum_sum(),
        )


def market_rows(typed: pl.LazyFrame, start_us: int, end_us: int) -> pl.LazyFrame:
    """spy_returns' rows in [start, end): exact duplicate ticks counted once."""
    in_range = (pl.col("t") >= start_us) & (pl.col("t") < end_us)
    market = typed.filter(pl.col("valid") & (pl.col("code") == MARKET_CODE) & in_range)
    return market.select("t", PRICE, pl.col(CHANGE).alias("y")).unique().sort("t", PRICE)


def high_water_cutoff(typed: pl.LazyFrame) -> pl.LazyFrame:
    """One row: the is_final cutoff in epoch us (null while a side has no tick).

    A tick with a symbol and an event time moves its side's watermark, whatever its price.
    Spark keeps watermarks in milliseconds: the latest times are truncated to them.
    """
    moving = typed.filter(pl.col("code").is_not_null() & pl.col("t").is_not_null())
    is_market = pl.col("code") == MARKET_CODE
    market, tickers = pl.col("t").filter(is_market), pl.col("t").filter(~is_market)
    latest = pl.min_horizontal(market.max(), tickers.max())
    both = (market.count() > 0) & (tickers.count() > 0)
    cutoff = (latest // 1000 * 1000) - _micros(FINALITY_LAG)
    return moving.select(pl.when(both).then(cutoff).alias("final_before_us"))


# --- joined_returns: sums per (symbol, bucket)


@dataclass(frozen=True)
class TickKeys:
    """(symbol code, time) packed into one int64 that sorts like the pair. Its quotients by
    the slide and by the bar are (symbol, bucket) and (symbol, bar) keys, sorted too."""

    origin_us: int  # a multiple of the slide, at or before the first tick
    span_us: int  # per symbol: a multiple of the slide past the last tick

    @classmethod
    def covering(cls, first_us: int, end_us: int, symbols: int) -> "TickKeys":
        slide_us = _micros(SLIDE)
        origin_us = first_us // slide_us * slide_us
        span_us = -(-(end_us - origin_us) // slide_us) * slide_us
        if max(symbols, 1) * span_us >= _KEY_LIMIT:
            raise ValueError(f"{symbols} symbols over {span_us} us do not pack into an int64")
        return cls(origin_us, span_us)

    def key(self) -> pl.Expr:
        return pl.col("code") * self.span_us + (pl.col("t") - self.origin_us)

    def bucket_key(self) -> pl.Expr:
        return pl.col("key") // _micros(SLIDE)

    def code_and_bucket(self) -> list[pl.Expr]:
        """(symbol code, bucket number since the epoch) of a bucket key."""
        slide_us = _micros(SLIDE)
        per_symbol = self.span_us // slide_us
        return [
            (pl.col("bucket_key") // per_symbol).alias("code"),
            (self.origin_us // slide_us + pl.col("bucket_key") % per_symbol).alias("bucket"),
        ]


def unique_sorted_ticks(keyed: pl.DataFrame) -> pl.DataFrame:
    """Ticks sorted by the packed key, then price and change; exact duplicates (a replayed
    file) once. The rare rows sharing a key are deduplicated and ordered apart, then merged
    back in place."""
    key = pl.col("key")
    tied = ((key == key.shift(1)) | (key == key.shift(-1))).fill_null(False)
    alone = keyed.lazy().filter(~tied)
    identity = ["key", PRICE, CHANGE]
    ties = keyed.lazy().filter(tied).unique(subset=identity).sort(identity)
    merged = alone.merge_sorted(ties, key="key").collect()
    return merged.with_columns(key.set_sorted())


def bucket_sums(ticks: pl.LazyFrame, market: Market, keys: TickKeys, start_us: int) -> pl.LazyFrame:
    """Per (symbol code, bucket number) with pairs: pair sums shifted by the bucket's first
    x and the market's median, extremes, the band's index range, the latest paired price."""
    band_us = _micros(BAND)
    t, x, c = pl.col("t"), pl.col(CHANGE), pl.col("c")
    times = pl.lit(market.times)
    prefix_y, prefix_yy = pl.lit(market.prefix_y), pl.lit(market.prefix_yy)
    lo, hi = pl.col("lo"), pl.col("hi")
    bucket_key = pl.col("bucket_key")
    banded = ticks.filter(t >= start_us).with_columns(
        keys.bucket_key().set_sorted().alias("bucket_key"),
        times.search_sorted(t - band_us, side="left").cast(pl.Int64).alias("lo"),
        # Integer times: m <= t + band exactly when m < t + band + 1.
        times.search_sorted(t + band_us + 1, side="left").cast(pl.Int64).alias("hi"),
    )
    per_tick = banded.with_columns(
        (hi - lo).alias("c"),
        (prefix_y.gather(hi) - prefix_y.gather(lo)).alias("sy"),
        (prefix_yy.gather(hi) - prefix_yy.gather(lo)).alias("syy"),
        (bucket_key != bucket_key.shift(1)).fill_null(True).alias("first"),
    ).with_columns(
        # Rows are in (symbol, time, price, change) order: a bucket's first row is its
        # earliest tick, and its last paired row the latest paired tick, the higher price on
        # equal times (tickbeta's close_price rule). Filled forward past a bucket's end, the
        # latest paired price is only read from buckets with pairs.
        pl.when("first").then(x).forward_fill().alias("x_ref"),
        pl.when(c > 0).then(pl.col(PRICE)).forward_fill().alias("last_paired_price"),
        (c > 0).alias("is_paired"),
    )
    dx = x - pl.col("x_ref")
    when_paired = pl.when("is_paired")
    buckets = per_tick.group_by("bucket_key").agg(
        c.sum().alias("pair_count"),
        pl.col("x_ref").first(),
        (c * dx).sum().alias("sum_x"),
        (c * dx * dx).sum().alias("sum_xx"),
        pl.col("sy").sum().alias("sum_y"),
        pl.col("syy").sum().alias("sum_yy"),
        (dx * pl.col("sy")).sum().alias("sum_xy"),
        when_paired.then(x).min().alias("x_min"),
        when_paired.then(x).max().alias("x_max"),
        when_paired.then(lo).min().alias("band_lo"),
        when_paired.then(hi).max().alias("band_hi"),
        pl.col("last_paired_price").last(),
    )
    with_pairs = buckets.filter(pl.col("pair_count") > 0)
    return with_pairs.with_columns(keys.code_and_bucket()).drop("bucket_key")


def _bar_closes(rows: pl.LazyFrame, bar_key: pl.Expr, bar_us: int) -> pl.LazyFrame:
    """The last row of every bar (rows sorted by bar key, then time and price)."""
    keyed = rows.with_columns(bar_key.alias("bar_key"), (pl.col("t") // bar_us).alias("bar"))
    is_last = (pl.col("bar_key") != pl.col("bar_key").shift(-1)).fill_null(True)
    return keyed.filter(is_last)


def _log_return(follows: pl.Expr, name: str) -> pl.Expr:
    """The log return from the bar before, where that bar has a price."""
    ratio = pl.col(PRICE) / pl.col(PRICE).shift(1)
    return pl.when(follows.fill_null(False)).then(ratio.log()).alias(name)


def aligned_bucket_sums(
    ticks: pl.LazyFrame, market: Market, settings: PeerSettings, start_us: int
) -> pl.LazyFrame:
    """Per (symbol code, bucket): the sums of the (market, symbol) bar returns of the bars
    that close in it."""
    bar_us, slide_us = settings.bar_us, _micros(SLIDE)
    bar = pl.col("bar")
    market_rows = pl.LazyFrame({"t": market.times, PRICE: market.prices})
    market_closes = _bar_closes(market_rows, pl.col("t") // bar_us, bar_us)
    market_bars = market_closes.select(
        "bar", _log_return(bar == bar.shift(1) + 1, "rm")
    ).drop_nulls()
    closes = _bar_closes(ticks, pl.col("key") // bar_us, bar_us)
    same_symbol = pl.col("code") == pl.col("code").shift(1)
    symbol_bars = closes.select(
        "code", "bar", _log_return(same_symbol & (bar == bar.shift(1) + 1), "rt")
    ).drop_nulls()
    pairs = symbol_bars.filter(bar * bar_us >= start_us).join(market_bars, on="bar")
    rm, rt = pl.col("rm"), pl.col("rt")
    return pairs.group_by("code", (bar * bar_us // slide_us).alias("bucket")).agg(
        pl.len().cast(pl.Int64).alias("aligned_bars"),
        rm.sum().alias("sum_rm"),
        rt.sum().alias("sum_rt"),
        (rm * rm).sum().alias("sum_rm_rm"),
        (rt * rt).sum().alias("sum_rt_rt"),
        (rm * rt).sum().alias("sum_rm_rt"),
    )


# --- gold: windows rolled up from 24 buckets

_BAR_SUMS = ("aligned_bars", "sum_rm", "sum_rt", "sum_rm_rm", "sum_rt_rt", "sum_rm_rt")


def window_sums(buckets: pl.LazyFrame, start_us: int, end_us: int) -> pl.LazyFrame:
    """Per (symbol code, window start slot): the sums of its buckets, in the frame of its
    earliest bucket's x_ref (exact shift identities; y shares one reference)."""
    slide_us = _micros(SLIDE)
    slot = pl.col("bucket") - pl.col("k")
    exploded = (
        buckets.with_columns(k=pl.int_ranges(0, BUCKETS_PER_WINDOW))
        .explode("k")
        .with_columns(window=slot)
        .filter((pl.col("window") * slide_us >= start_us) & (pl.col("window") * slide_us < end_us))
        .sort("code", "window", "bucket")
    )
    n, sx, sy = pl.col("pair_count"), pl.col("sum_x"), pl.col("sum_y")
    d = pl.col("x_ref") - pl.col("x_ref").first()
    return exploded.group_by("code", "window").agg(
        n.sum(),
        pl.col("x_ref").first(),
        (sx + n * d).sum().alias("sum_x"),
        (pl.col("sum_xx") + 2 * d * sx + n * d * d).sum().alias("sum_xx"),
        sy.sum(),
        pl.col("sum_yy").sum(),
        (pl.col("sum_xy") + d * sy).sum().alias("sum_xy"),
        pl.col("x_min").min(),
        pl.col("x_max").max(),
        pl.col("band_lo").min(),
        pl.col("band_hi").max(),
        pl.col("last_paired_price").last(),
        *[pl.col(name).sum() for name in _BAR_SUMS],
    )


def window_metrics(
    windows: pl.LazyFrame, market: Market, settings: PeerSettings, final_before: pl.Expr
) -> pl.LazyFrame:
    """tickbeta's windows.finished_metrics, column for column."""
    n = pl.col("pair_count").cast(pl.Float64)
    sum_x, sum_y = pl.col("sum_x"), pl.col("sum_y")
    degrees = n - 1
    defined = degrees != 0  # try_divide: a zero divisor gives null
    var_x = pl.when(defined).then((pl.col("sum_xx") - sum_x * sum_x / n) / degrees)
    var_y = pl.when(defined).then((pl.col("sum_yy") - sum_y * sum_y / n) / degrees)
    covariance = pl.when(defined).then((pl.col("sum_xy") - sum_x * sum_y / n) / degrees)
    changes = pl.lit(market.changes)
    constant_y = changes.gather(pl.col("band_hi") - 1) == changes.gather(pl.col("band_lo"))
    constant_x = pl.col("x_min") == pl.col("x_max")
    beta = pl.when(constant_y | (var_y <= 0)).then(None).otherwise(covariance / var_y)
    volatility = (
        pl.when(degrees < 1)
        .then(None)
        .when(constant_x)
        .then(0.0)
        .otherwise(pl.max_horizontal(var_x, 0.0).sqrt())
    )
    window_start = (pl.col("window") * _micros(SLIDE)).cast(pl.Datetime("us", "UTC"))
    window_end = window_start + pl.duration(microseconds=_micros(WINDOW))
    is_final = (window_end.dt.epoch("us") < final_before).fill_null(False)
    metrics = windows.select(
        "code",
        window_start.alias("window_start"),
        window_end.alias("window_end"),
        beta.cast(pl.Float64).alias("beta"),
        volatility.cast(pl.Float64).alias("volatility"),
        (pl.col("x_ref") + sum_x / n).alias("momentum"),
        pl.col("last_paired_price").alias("close_price"),
        pl.col("pair_count").alias("sample_size"),
        (settings.risk_free_rate + beta * settings.market_premium).alias("cost_of_equity"),
        is_final.alias("is_final"),
        *_aligned_beta(settings.min_aligned_bars),
    )
    return metrics.filter(pl.col("sample_size") >= settings.min_sample_size)


def _aligned_beta(min_bars: int) -> list[pl.Expr]:
    n = pl.col("aligned_bars").cast(pl.Float64)
    sum_rm, sum_rt = pl.col("sum_rm"), pl.col("sum_rt")
    sxx = pl.col("sum_rm_rm") - sum_rm * sum_rm / n
    syy = pl.col("sum_rt_rt") - sum_rt * sum_rt / n
    sxy = pl.col("sum_rm_rt") - sum_rm * sum_rt / n
    enough = (pl.col("aligned_bars") >= max(min_bars, 3)) & (sxx > 0)
    slope = sxy / sxx
    residual = pl.max_horizontal(syy - slope * sxy, 0.0)
    standard_error = (residual / (n - 2) / sxx).sqrt()
    r_squared = sxy * sxy / (sxx * syy)
    return [
        pl.when(enough).then(slope).alias("beta_aligned"),
        pl.when(enough).then(standard_error).alias("beta_aligned_se"),
        pl.when(enough & (syy > 0)).then(r_squared).alias("beta_aligned_r2"),
        pl.when(enough).then(BLUME_WEIGHT * slope + BLUME_PRIOR).alias("beta_aligned_blume"),
        pl.col("aligned_bars"),
    ]


# --- the whole computation


def polars_gold(
    silver: pl.LazyFrame, start: datetime, end: datetime, settings: PeerSettings
) -> pl.DataFrame:
    """Gold rows for the windows starting in [start, end), as tickbeta computes them over the
    same range: market ticks within the band's whole hours around it, ticker ticks from one
    bar before `start` (they only price the bar before the first) to `end`."""
    start_us, end_us = _epoch_us(start), _epoch_us(end)
    reach_us = -(-_micros(BAND) // _micros(PARTITION_SPAN)) * _micros(PARTITION_SPAN)
    first_tick_us = start_us - settings.bar_us
    spellings = silver.select(pl.col(SYMBOL).unique()).collect().to_series()
    symbols = Symbols.of(spellings, settings.market_symbol)
    # Typed once, in memory: the market, the cutoff and the ticker ticks all read it.
    typed = typed_ticks(silver, symbols).collect().lazy()
    keys = TickKeys.covering(first_tick_us, end_us, len(symbols.tickers))
    in_range = (pl.col("t") >= first_tick_us) & (pl.col("t") < end_us)
    tickers = typed.filter(pl.col("valid") & (pl.col("code") != MARKET_CODE) & in_range)
    coded = tickers.select("code", "t", PRICE, CHANGE, keys.key().alias("key"))
    market_frame, cutoff, keyed = pl.collect_all(
        [
            market_rows(typed, start_us - reach_us, end_us + reach_us),
            high_water_cutoff(typed),
            coded.sort("key"),
        ]
    )
    market = Market.of(market_frame)
    ticks = unique_sorted_ticks(keyed).lazy()
    aligned = aligned_bucket_sums(ticks, market, settings, start_us)
    buckets = bucket_sums(ticks, market, keys, start_us).join(
        aligned, on=["code", "bucket"], how="left"
    )
    buckets = buckets.with_columns(pl.col(name).fill_null(0) for name in _BAR_SUMS)
    windows = window_sums(buckets, start_us, end_us)
    gold = window_metrics(windows, market, settings, pl.lit(cutoff.item(), dtype=pl.Int64))
    names_by_code = pl.LazyFrame(
        {"code": range(len(symbols.tickers)), SYMBOL: symbols.tickers},
        schema={"code": pl.Int64, SYMBOL: pl.String},
    )
    return gold.join(names_by_code, on="code").select(GOLD_COLUMNS).sort(GOLD_ORDER).collect()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("silver", help="the silver Delta table's uri")
    parser.add_argument("--start", required=True, type=datetime.fromisoformat)
    parser.add_argument("--end", required=True, type=datetime.fromisoformat)
    parser.add_argument("--out", required=True, help="parquet file for the gold rows")
    parser.add_argument("--settings", default="{}", help="PeerSettings fields as JSON")
    args = parser.parse_args()
    settings = PeerSettings(**json.loads(args.settings))
    started = time.monotonic()
    gold = polars_gold(silver_scan(DeltaTable(args.silver)), args.start, args.end, settings)
    seconds = time.monotonic() - started
    gold.write_parquet(args.out)
    report = {"compute_seconds": seconds, "rows": gold.height, "threads": pl.thread_pool_size()}
    print(json.dumps(report))
    return 0


def settings_argument(settings: PeerSettings) -> str:
    return json.dumps(asdict(settings))


if __name__ == "__main__":
    sys.exit(main())

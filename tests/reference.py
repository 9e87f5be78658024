"""The notebook's query, kept only as the definition of correct (DESIGN.md, "The notebook").

Noise is off (the product's noise is a deterministic option tested on its own). The plan is
the notebook's: a constant join key, a time-interval band join of every ticker tick to every
market tick, then Spark's sliding window. It is quadratic, which is why the product does not
use it; on the small data of the tests it is the truth.
"""

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from beta_assets.settings import MARKET_PREMIUM, MARKET_SYMBOL, MIN_SAMPLE_SIZE, RISK_FREE_RATE


def notebook_joined(df: DataFrame, market_symbol: str = MARKET_SYMBOL) -> DataFrame:
    market = (
        df.filter(F.col("s") == market_symbol)
        .selectExpr("changePercent as m_return", "CAST(event_time as TIMESTAMP) as m_event_time")
        .withColumn("m_join_key", F.lit(1))
        .withWatermark("m_event_time", "3 hours")
    )
    tickers = (
        df.filter(F.col("s") != market_symbol)
        .withColumn("join_key", F.lit(1))
        .withWatermark("event_time", "3 hours")
    )
    cond = (
        (F.col("m_join_key") == F.col("join_key"))
        & (F.col("event_time") >= F.col("m_event_time") - F.expr("INTERVAL 1 HOUR"))
        & (F.col("event_time") <= F.col("m_event_time") + F.expr("INTERVAL 1 HOUR"))
    )
    return tickers.join(market, cond, "inner")


def notebook_gold(
    df: DataFrame,
    market_symbol: str = MARKET_SYMBOL,
    min_sample_size: int = MIN_SAMPLE_SIZE,
    risk_free_rate: float = RISK_FREE_RATE,
    market_premium: float = MARKET_PREMIUM,
) -> DataFrame:
    """The notebook's gold rows, flattened to the product's column names."""
    joined = notebook_joined(df, market_symbol)
    var = F.var_samp("m_return")
    cov = F.covar_samp("changePercent", "m_return")
    gold = (
        joined.groupBy("s", F.window("event_time", "2 hours", "5 minutes"))
        .agg(
            F.when(var == 0, F.lit(None)).otherwise(cov / var).alias("beta"),
            F.stddev_samp("changePercent").alias("volatility"),
            F.avg("changePercent").alias("momentum"),
            F.last("currentPrice").alias("close_price"),
            F.count("*").alias("sample_size"),
        )
        .withColumn("cost_of_equity", F.lit(risk_free_rate) + F.col("beta") * F.lit(market_premium))
        .filter(F.col("sample_size") >= min_sample_size)
    )
    return gold.select(
        "s",
        F.col("window.start").alias("window_start"),
        F.col("window.end").alias("window_end"),
        "beta",
        "volatility",
        "momentum",
        "close_price",
        "sample_size",
        "cost_of_equity",
    )


def notebook_close_price(df: DataFrame, market_symbol: str = MARKET_SYMBOL) -> DataFrame:
    """close_price with a defined order: the latest paired tick, ties to the higher price."""
    joined = notebook_joined(df, market_symbol)
    return (
        joined.groupBy("s", F.window("event_time", "2 hours", "5 minutes"))
        .agg(F.max_by("currentPrice", F.struct("event_time", "currentPrice")).alias("close_price"))
        .select("s", F.col("window.start").alias("window_start"), "close_price")
    )

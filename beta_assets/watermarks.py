"""Silver's high-water marks and the is_final cutoff they imply (no Spark, no Dagster).

The notebook's stream keeps one event-time watermark per side of its join (market and other
symbols). A window is final once the stream would have emitted it. The same function serves
the gold asset (to mark rows) and the sensor (to know which windows just became final), so
both agree by construction.

A tick moves its side's watermark when its event time parses and it has a symbol, whatever
its price: in the notebook's stream such a tick flows through the watermark too.
"""

from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
from deltalake import DeltaTable

from beta_assets.settings import EVENT_TIME, FINALITY_LAG, SYMBOL, WATERMARK
from beta_assets.symbols import normalised_symbols
from beta_assets.times import parse_utc
from resources.delta_files import column_bounds

_FIRST_LOOKBACK = timedelta(hours=6)


@dataclass(frozen=True)
class HighWaterMarks:
    """Latest event time of the market and of every other symbol."""

    market: datetime | None
    tickers: datetime | None

    def final_before(self) -> datetime | None:
        """Windows ending strictly before this are final (emitted by the streaming query).

        The join's output watermark is min over both sides of (latest event time - 3h), held
        back a further 1h by the time-interval join, in milliseconds as Spark keeps it.
        """
        if self.market is None or self.tickers is None:
            return None
        latest = min(self.market, self.tickers)
        return latest.replace(microsecond=latest.microsecond // 1000 * 1000) - FINALITY_LAG

    def latest(self) -> datetime | None:
        """The latest tick of either side."""
        return _later(self.market, self.tickers)

    def watermark(self, is_market: bool) -> datetime | None:
        latest = self.market if is_market else self.tickers
        return latest - WATERMARK if latest is not None else None

    def merged(self, other: "HighWaterMarks") -> "HighWaterMarks":
        return HighWaterMarks(
            _later(self.market, other.market), _later(self.tickers, other.tickers)
        )


def _later(a: datetime | None, b: datetime | None) -> datetime | None:
    return max(a, b) if a is not None and b is not None else (a if b is None else b)


def sided_times(ticks: pa.Table, market_symbol: str) -> pd.DataFrame:
    """(is_market, event_time UTC) of the ticks that move a watermark."""
    symbols = normalised_symbols(ticks.column(SYMBOL))
    times = _utc_times(ticks.column(EVENT_TIME))
    is_market = pc.fill_null(pc.equal(symbols, market_symbol), False)
    frame = pd.DataFrame({"is_market": is_market.to_numpy(zero_copy_only=False), "t": times})
    has_symbol = pc.fill_null(pc.greater(pc.utf8_length(symbols), 0), False)
    return frame[has_symbol.to_numpy(zero_copy_only=False) & frame["t"].notna().to_numpy()]


def _utc_times(column: pa.ChunkedArray) -> pd.Series:
    if pa.types.is_timestamp(column.type):
        values = column.to_pandas()
        if values.dt.tz is None:  # timestamp_ntz: the contract says UTC
            return values.dt.tz_localize("UTC")
        return values.dt.tz_convert("UTC")
    return parse_utc(column.to_pandas())


def high_water_marks(ticks: pa.Table, market_symbol: str) -> HighWaterMarks:
    sided = sided_times(ticks, market_symbol)
    market = sided.loc[sided["is_market"], "t"]
    tickers = sided.loc[~sided["is_market"], "t"]
    return HighWaterMarks(_max_time(market), _max_time(tickers))


def _max_time(times: pd.Series) -> datetime | None:
    return times.max().to_pydatetime() if len(times) else None


def late_tick_count(ticks: pa.Table, market_symbol: str, before: HighWaterMarks) -> int:
    """Ticks older than their side's watermark as it stood before they arrived.

    The notebook's stream dropped them; here their windows are recomputed.
    """
    sided = sided_times(ticks, market_symbol)
    late = 0
    for is_market in (True, False):
        mark = before.watermark(is_market)
        if mark is not None:
            late += int(np.sum(sided.loc[sided["is_market"] == is_market, "t"] < mark))
    return late


def snapshot_high_water_marks(snapshot: DeltaTable, market_symbol: str) -> HighWaterMarks:
    """High-water marks of a silver snapshot, reading only its newest ticks.

    Read with delta-rs' own engine (`scan`), which honours deletion vectors and column mapping.
    The lookback grows until both sides have a tick inside it or it covers the whole table.
    """
    oldest, newest = event_time_bounds(snapshot)
    lookback = _FIRST_LOOKBACK
    while True:
        start = newest - lookback if newest is not None else None
        predicate = f"{EVENT_TIME} >= '{start.isoformat()}'" if start is not None else None
        ticks = snapshot.scan(columns=[SYMBOL, EVENT_TIME], predicate=predicate).read_all()
        marks = high_water_marks(pa.table(ticks), market_symbol)
        whole_table = start is None or oldest is None or start <= oldest
        if (marks.market and marks.tickers) or whole_table:
            return marks
        lookback *= 4


def newest_event_time(snapshot: DeltaTable) -> datetime | None:
    return event_time_bounds(snapshot)[1]


def event_time_bounds(snapshot: DeltaTable) -> tuple[datetime | None, datetime | None]:
    """(oldest, newest) event time by the snapshot's file statistics, in UTC; None where the
    statistics do not say (no files, no statistics, or text event times)."""
    oldest, newest = column_bounds(snapshot, EVENT_TIME)
    if not isinstance(newest, datetime):
        return None, None  # text event times: statistics do not order like time
    return _utc(oldest), _utc(newest)


def _utc(moment: datetime | None) -> datetime | None:
    # timestamp_ntz statistics carry no zone: silver's contract is UTC.
    if moment is None or moment.tzinfo is not None:
        return moment
    return moment.replace(tzinfo=timezone.utc)

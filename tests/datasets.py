"""Small silver tables with the edge cases the notebook's semantics hinge on."""

from datetime import datetime, timedelta, timezone

import numpy as np
import pyarrow as pa

from beta_assets.feed.simulator import TICK_SCHEMA, SimulationSpec, simulate_sessions
from beta_assets.settings import CHANGE, EVENT_TIME, MARKET_SYMBOL, PRICE, SYMBOL

DAY = datetime(2026, 1, 5, tzinfo=timezone.utc)


def at(hour: int, minute: int = 0, second: float = 0.0) -> datetime:
    return DAY + timedelta(hours=hour, minutes=minute, seconds=second)


def ticks(rows: list[tuple[str, float, float, datetime]]) -> pa.Table:
    symbols, prices, changes, times = zip(*rows, strict=True) if rows else ([], [], [], [])
    return pa.table(
        {
            SYMBOL: list(symbols),
            PRICE: list(prices),
            CHANGE: list(changes),
            EVENT_TIME: list(times),
        },
        schema=TICK_SCHEMA,
    )


def simulated(symbols: int = 3, interval: float = 60.0, seed: int = 11) -> pa.Table:
    return next(
        simulate_sessions(SimulationSpec(symbols=symbols, interval_seconds=interval, seed=seed))
    )


def without_market_between(table: pa.Table, start: datetime, end: datetime) -> pa.Table:
    """A gap in the market's ticks longer than the band: some ticker ticks have no pair."""
    rows = table.to_pylist()
    kept = [r for r in rows if not (r[SYMBOL] == MARKET_SYMBOL and start <= r[EVENT_TIME] < end)]
    return pa.Table.from_pylist(kept, schema=TICK_SCHEMA)


def with_constant_market(table: pa.Table, value: float = 0.25) -> pa.Table:
    is_market = np.array(table.column(SYMBOL).to_pylist()) == MARKET_SYMBOL
    change = np.where(is_market, value, table.column(CHANGE).to_numpy())
    return table.set_column(table.schema.get_field_index(CHANGE), CHANGE, pa.array(change))


def market_series(start: datetime, count: int, step: timedelta, seed: int = 3) -> list[tuple]:
    rng = np.random.default_rng(seed)
    return [
        (MARKET_SYMBOL, 500.0, float(rng.normal(0, 0.3)), start + i * step) for i in range(count)
    ]


def band_edges() -> pa.Table:
    """Ticker ticks exactly 1h from a market tick (paired), and 1 microsecond beyond (not)."""
    market = market_series(at(14), 30, timedelta(minutes=2))  # 14:00 .. 14:58
    first, last = at(14), at(14, 58)
    rows = [
        ("EDGE", 10.0, 0.5, first - timedelta(hours=1)),  # 13:00: pairs with 14:00 only
        ("EDGE", 10.5, 0.7, last + timedelta(hours=1)),  # 15:58: pairs with 14:58 only
        ("EDGE", 11.0, 0.9, first - timedelta(hours=1, microseconds=1)),  # no pair
        ("EDGE", 11.5, 1.1, last + timedelta(hours=1, microseconds=1)),  # no pair
    ]
    rows += [("EDGE", 12.0 + i, 0.1 * i, at(14, 30, i)) for i in range(25)]
    return ticks(market + rows)


def window_boundaries() -> pa.Table:
    """Ticks exactly on 5-minute and hour boundaries, windows straddling partitions."""
    market = market_series(at(13), 120, timedelta(minutes=2))  # 13:00 .. 16:58
    rows = [("BOUND", 20.0 + i, 0.05 * i, at(14) + i * timedelta(minutes=5)) for i in range(30)]
    rows += [("BOUND", 40.0, -0.3, at(15)), ("BOUND", 41.0, -0.2, at(16))]  # duplicates times
    return ticks(market + rows)


def pairs_19_and_20() -> pa.Table:
    """One symbol whose windows have exactly 20 pairs (kept), one with 19 (dropped)."""
    market = market_series(at(14, 10), 20, timedelta(minutes=5))  # 14:10 .. 15:45
    market += market_series(at(19, 10), 19, timedelta(minutes=5), seed=4)  # 19:10 .. 20:40
    rows = [("TWENTY", 30.0, 0.4, at(15)), ("NINETEEN", 31.0, -0.4, at(20))]
    return ticks(market + rows)


def one_symbol() -> pa.Table:
    table = simulated(symbols=1, interval=45.0, seed=5)
    return table


def equal_times_different_prices() -> pa.Table:
    """Two paired ticks at the same latest instant: close_price takes the higher price."""
    market = market_series(at(14), 40, timedelta(minutes=1))
    rows = [("TIE", 10.0 + i, 0.1 * i, at(14, 10, i)) for i in range(5)]
    rows += [("TIE", 99.0, 0.2, at(14, 12)), ("TIE", 98.0, 0.3, at(14, 12))]
    return ticks(market + rows)

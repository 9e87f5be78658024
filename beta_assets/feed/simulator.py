"""Simulated ticks with planted betas: SPY plus K symbols, as a quote feed reports them.

Prices move on a one-second grid: the market's log return is Gaussian and every symbol's log
return is `beta * market log return + idiosyncratic noise`, with `beta` planted per symbol.
Each symbol (the market too) is quoted at its own jittered tick times; a quote carries the
price of its second, rounded to the cent, and `changePercent` against the previous close.
"""

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta, timezone
from zoneinfo import ZoneInfo

import numpy as np
import pyarrow as pa

from beta_assets.settings import CHANGE, EVENT_TIME, MARKET_SYMBOL, PRICE, SYMBOL

MARKET_ZONE = ZoneInfo("America/New_York")
MARKET_OPEN, MARKET_CLOSE = time(9, 30), time(16, 0)
SESSION_SECONDS = 6.5 * 3600
_MICROS = 1_000_000
_SYMBOLS_PER_CHUNK = 25  # bounds memory: a chunk's one-second price grid is held at once

TICK_SCHEMA = pa.schema(
    [
        (SYMBOL, pa.string()),
        (PRICE, pa.float64()),
        (CHANGE, pa.float64()),
        (EVENT_TIME, pa.timestamp("us", tz="UTC")),
    ]
)


@dataclass(frozen=True)
class SimulationSpec:
    symbols: int = 20
    days: int = 1
    start_date: date = date(2026, 1, 5)
    interval_seconds: float = 10.0
    jitter: float = 0.5  # a gap between ticks is interval * U(1 - jitter, 1 + jitter)
    seed: int = 7
    market_symbol: str = MARKET_SYMBOL
    beta_low: float = 0.3
    beta_high: float = 2.0
    market_daily_volatility: float = 0.01
    idiosyncratic_daily_volatility: float = 0.01


@dataclass
class FeedState:
    """Where every price path stands; carried across days and live batches."""

    symbols: list[str]
    betas: np.ndarray  # per symbol, the market's own entry is 1.0
    prices: np.ndarray  # where each price path stands (market first)
    previous_close: np.ndarray
    last_quote: np.ndarray
    next_tick_us: np.ndarray = field(default_factory=lambda: np.empty(0, dtype=np.int64))


def symbol_names(count: int) -> list[str]:
    return [f"T{index:03d}" for index in range(1, count + 1)]


def planted_betas(spec: SimulationSpec) -> dict[str, float]:
    rng = np.random.default_rng([spec.seed, 0])
    betas = rng.uniform(spec.beta_low, spec.beta_high, spec.symbols)
    return {
        name: round(float(beta), 4)
        for name, beta in zip(symbol_names(spec.symbols), betas, strict=True)
    }


def initial_state(spec: SimulationSpec) -> FeedState:
    rng = np.random.default_rng([spec.seed, 1])
    betas = planted_betas(spec)
    symbols = [spec.market_symbol, *betas]
    prices = np.round(np.concatenate(([480.0], rng.uniform(20.0, 400.0, spec.symbols))), 2)
    return FeedState(
        symbols=symbols,
        betas=np.array([1.0, *betas.values()]),
        prices=prices,
        previous_close=prices.copy(),
        last_quote=prices.copy(),
    )


def trading_sessions(start: date, days: int) -> list[tuple[datetime, datetime]]:
    """UTC open and close of the first `days` weekdays from `start` (US market hours)."""
    sessions, day = [], start
    while len(sessions) < days:
        if day.weekday() < 5:
            opening = datetime.combine(day, MARKET_OPEN, MARKET_ZONE).astimezone(timezone.utc)
            closing = datetime.combine(day, MARKET_CLOSE, MARKET_ZONE).astimezone(timezone.utc)
            sessions.append((opening, closing))
        day += timedelta(days=1)
    return sessions


def simulate_sessions(spec: SimulationSpec) -> Iterator[pa.Table]:
    """One table of ticks per trading day; each is meant to become one Delta version."""
    state = initial_state(spec)
    for day_index, (opening, closing) in enumerate(trading_sessions(spec.start_date, spec.days)):
        rng = np.random.default_rng([spec.seed, 2, day_index])
        if day_index:
            _overnight_gap(state, spec, rng)
        state.next_tick_us = _first_ticks(opening, spec, rng, len(state.symbols))
        yield simulate_span(state, spec, opening, closing, rng)
        state.previous_close = state.last_quote.copy()


def simulate_span(
    state: FeedState, spec: SimulationSpec, start: datetime, end: datetime, rng: np.random.Generator
) -> pa.Table:
    """Ticks with event times in [start, end); moves `state` to `end`."""
    seconds = max(int((end - start).total_seconds()), 0)
    per_second_market = spec.market_daily_volatility / np.sqrt(SESSION_SECONDS)
    per_second_own = spec.idiosyncratic_daily_volatility / np.sqrt(SESSION_SECONDS)
    market_steps = rng.normal(0.0, per_second_market, seconds)
    start_us = int(start.timestamp() * _MICROS)
    end_us = int(end.timestamp() * _MICROS)
    chunks = []
    for first in range(0, len(state.symbols), _SYMBOLS_PER_CHUNK):
        members = np.arange(first, min(first + _SYMBOLS_PER_CHUNK, len(state.symbols)))
        own = rng.normal(0.0, per_second_own, (len(members), seconds))
        own[members == 0] = 0.0  # the market has no idiosyncratic part
        log_steps = state.betas[members, None] * market_steps[None, :] + own
        paths = state.prices[members, None] * np.exp(np.cumsum(log_steps, axis=1))
        chunks.extend(_quotes(state, spec, members, paths, start_us, end_us, rng))
        if seconds:
            state.prices[members] = paths[:, -1]
    if not chunks:
        return TICK_SCHEMA.empty_table()
    # A feed delivers ticks in time order; files and row groups then cover spans of time.
    return pa.concat_tables(chunks).sort_by([(EVENT_TIME, "ascending"), (SYMBOL, "ascending")])


def _quotes(
    state: FeedState,
    spec: SimulationSpec,
    members: np.ndarray,
    paths: np.ndarray,
    start_us: int,
    end_us: int,
    rng: np.random.Generator,
) -> Iterator[pa.Table]:
    for row, member in enumerate(members):
        times = _tick_times(state, member, spec, end_us, rng)
        second = np.minimum((times - start_us) // _MICROS, paths.shape[1] - 1)
        price = (
            np.round(paths[row, second], 2)
            if paths.shape[1]
            else np.full(len(times), state.prices[member])
        )
        change = (price / state.previous_close[member] - 1.0) * 100.0
        if len(price):
            state.last_quote[member] = price[-1]
        yield pa.table(
            {
                SYMBOL: pa.array([state.symbols[member]] * len(times), pa.string()),
                PRICE: pa.array(price, pa.float64()),
                CHANGE: pa.array(change, pa.float64()),
                EVENT_TIME: pa.array(times, pa.int64()).cast(pa.timestamp("us", tz="UTC")),
            },
            schema=TICK_SCHEMA,
        )


def _tick_times(
    state: FeedState, member: int, spec: SimulationSpec, end_us: int, rng: np.random.Generator
) -> np.ndarray:
    """Jittered tick times from the symbol's next tick up to `end_us`, in whole milliseconds."""
    first = state.next_tick_us[member]
    expected = max(int((end_us - first) / (spec.interval_seconds * _MICROS)) + 2, 1)
    gaps = _gaps(spec, rng, int(expected * 1.2) + 8)
    times = first + np.concatenate(([0], np.cumsum(gaps)))
    while times[-1] < end_us:  # rare: the draw of gaps ran short
        times = np.concatenate((times, times[-1] + np.cumsum(_gaps(spec, rng, expected + 8))))
    inside = times[times < end_us]
    state.next_tick_us[member] = times[len(inside)]
    return inside // 1000 * 1000


def _gaps(spec: SimulationSpec, rng: np.random.Generator, count: int) -> np.ndarray:
    low, high = 1.0 - spec.jitter, 1.0 + spec.jitter
    return (rng.uniform(low, high, count) * spec.interval_seconds * _MICROS).astype(np.int64)


def _first_ticks(
    opening: datetime, spec: SimulationSpec, rng: np.random.Generator, count: int
) -> np.ndarray:
    offsets = rng.uniform(0.0, spec.interval_seconds, count) * _MICROS
    return int(opening.timestamp() * _MICROS) + offsets.astype(np.int64)


def _overnight_gap(state: FeedState, spec: SimulationSpec, rng: np.random.Generator) -> None:
    market_gap = rng.normal(0.0, spec.market_daily_volatility / 2)
    own_gap = rng.normal(0.0, spec.idiosyncratic_daily_volatility / 2, len(state.symbols))
    own_gap[0] = 0.0
    state.prices = np.round(state.prices * np.exp(state.betas * market_gap + own_gap), 2)

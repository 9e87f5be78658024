"""Writing simulated ticks into silver: whole trading days, or live batches every few seconds."""

import time
from collections.abc import Callable
from dataclasses import asdict
from datetime import datetime, timezone

import numpy as np
import pyarrow as pa

from beta_assets.feed.simulator import (
    SimulationSpec,
    initial_state,
    planted_betas,
    simulate_sessions,
    simulate_span,
)
from beta_assets.settings import PLANTED_BETAS_TABLE, SILVER_TABLE, SYMBOL
from resources.lake import DeltaLake

PLANTED_BETA = "planted_beta"
# A day in several time-ordered files: reads of a few hours skip the other files.
DAY_FILE_BYTES = 16 * 2**20


def save_planted_betas(lake: DeltaLake, spec: SimulationSpec) -> None:
    """The true betas next to silver, so anyone can compare what the pipeline finds."""
    betas = planted_betas(spec)
    lake.overwrite(
        PLANTED_BETAS_TABLE,
        pa.table(
            {
                SYMBOL: list(betas),
                PLANTED_BETA: list(betas.values()),
                "seed": [spec.seed] * len(betas),
                "spec": [str(asdict(spec))] * len(betas),
            }
        ),
    )


def append_sessions(lake: DeltaLake, spec: SimulationSpec, report: Callable[[str], None]) -> int:
    """Append one Delta version per simulated trading day; returns the ticks written."""
    save_planted_betas(lake, spec)
    written = 0
    for day in simulate_sessions(spec):
        version = lake.append(
            SILVER_TABLE, day, {"tickbeta_feed": "simulate"}, target_file_size=DAY_FILE_BYTES
        )
        written += day.num_rows
        report(f"silver v{version}: {day.num_rows} ticks")
    return written


def run_live(
    lake: DeltaLake,
    spec: SimulationSpec,
    every_seconds: float,
    duration_seconds: float | None,
    report: Callable[[str], None],
) -> None:
    """Append the ticks of the last `every_seconds` of wall-clock time, again and again.

    Live mode ignores market hours, so a demo works at any hour; changePercent is against the
    prices the feed started from.
    """
    save_planted_betas(lake, spec)
    state = initial_state(spec)
    started = last = datetime.now(timezone.utc)
    state.next_tick_us = np.full(len(state.symbols), int(last.timestamp() * 1_000_000))
    rng = np.random.default_rng([spec.seed, 3])
    while duration_seconds is None or (last - started).total_seconds() < duration_seconds:
        time.sleep(every_seconds)
        now = datetime.now(timezone.utc)
        batch = simulate_span(state, spec, last, now, rng)
        last = now
        if batch.num_rows:
            version = lake.append(SILVER_TABLE, batch, {"tickbeta_feed": "live"})
            report(f"silver v{version}: {batch.num_rows} ticks up to {now:%H:%M:%S}")

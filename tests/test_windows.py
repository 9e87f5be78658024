"""Window sums from bucket sums against a direct sum over each window's buckets."""

import numpy as np
import pyarrow as pa
import pytest

from beta_assets.band import BUCKET_SCHEMA
from beta_assets.windows import window_sums

SLIDE_US = 300 * 1_000_000
PER_WINDOW = 24


def random_buckets(seed: int) -> pa.Table:
    rng = np.random.default_rng(seed)
    rows = []
    for symbol in ("A", "B"):
        for slot in sorted(rng.choice(200, 60, replace=False)):
            n = int(rng.integers(0, 40))
            rows.append(
                {
                    "s": symbol,
                    "bucket_start": int(slot) * SLIDE_US,
                    "pair_count": n,
                    "x_ref": float(rng.normal(2, 0.5)),
                    "y_ref": 0.3,
                    **{k: float(rng.normal(0, 5)) for k in ("sum_x", "sum_y", "sum_xy")},
                    **{k: float(rng.uniform(0, 9)) for k in ("sum_xx", "sum_yy")},
                    "x_min": -1.0,
                    "x_max": float(rng.uniform(0, 3)),
                    "y_min": float(-rng.uniform(0, 3)),
                    "y_max": 1.0,
                    "paired_ticks": 1 if n else 0,
                    "unpaired_ticks": 2,
                    "duplicate_ticks": 0,
                    "last_paired_time": int(slot) * SLIDE_US + 7,
                    "last_paired_price": float(slot),
                    "aligned_bars": 3,
                    **{
                        k: float(rng.normal())
                        for k in ("sum_rm", "sum_rt", "sum_rm_rm", "sum_rt_rt", "sum_rm_rt")
                    },
                }
            )
    table = pa.Table.from_pylist(rows)
    return (
        table.set_column(
            1, "bucket_start", table.column("bucket_start").cast(pa.timestamp("us", tz="UTC"))
        )
        .select(BUCKET_SCHEMA.names)
        .cast(BUCKET_SCHEMA)
    )


def direct(buckets: pa.Table, symbol: str, start_slot: int) -> dict:
    rows = [
        r
        for r in buckets.to_pylist()
        if r["s"] == symbol
        and r["pair_count"] > 0
        and start_slot * SLIDE_US
        <= r["bucket_start"].timestamp() * 1e6
        < (start_slot + PER_WINDOW) * SLIDE_US
    ]
    ref = rows[0]["x_ref"]
    n = sum(r["pair_count"] for r in rows)
    sx = sum(r["sum_x"] + r["pair_count"] * (r["x_ref"] - ref) for r in rows)
    sxx = sum(
        r["sum_xx"]
        + 2 * (r["x_ref"] - ref) * r["sum_x"]
        + r["pair_count"] * (r["x_ref"] - ref) ** 2
        for r in rows
    )
    return {
        "pair_count": n,
        "sum_x": sx,
        "sum_xx": sxx,
        "x_ref": ref,
        "x_max": max(r["x_max"] for r in rows),
        "last_paired_price": rows[-1]["last_paired_price"],
        "sum_rm": sum(r["sum_rm"] for r in rows),
    }


@pytest.mark.parametrize("seed", [1, 2])
def test_windows_add_up_their_buckets(seed):
    buckets = random_buckets(seed)
    windows = window_sums(buckets, SLIDE_US, PER_WINDOW, 20 * SLIDE_US, 150 * SLIDE_US).to_pylist()
    expected_starts = {
        (r["s"], slot)
        for r in buckets.to_pylist()
        if r["pair_count"] > 0
        for slot in range(
            int(r["bucket_start"].timestamp() * 1e6) // SLIDE_US - PER_WINDOW + 1,
            int(r["bucket_start"].timestamp() * 1e6) // SLIDE_US + 1,
        )
        if 20 <= slot < 150
    }
    assert {
        (w["s"], int(w["window_start"].timestamp() * 1e6) // SLIDE_US) for w in windows
    } == expected_starts
    for window in windows[::7]:
        slot = int(window["window_start"].timestamp() * 1e6) // SLIDE_US
        for name, value in direct(buckets, window["s"], slot).items():
            assert window[name] == pytest.approx(value, rel=1e-12, abs=1e-9), name

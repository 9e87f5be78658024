"""Window sums from bucket sums against a direct sum over each window's buckets; gold's rows
the same in passes and wherever they are computed."""

from datetime import datetime, timezone

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from beta_assets.assets import gold as gold_module
from beta_assets.assets.gold import window_rows
from beta_assets.band import BUCKET_SCHEMA
from beta_assets.metrics import MetricSettings
from beta_assets.windows import gold_rows_in_passes, window_sums

SLIDE_US = 300 * 1_000_000
PER_WINDOW = 24


def random_buckets(seed: int, symbols: tuple[str, ...] = ("A", "B")) -> pa.Table:
    rng = np.random.default_rng(seed)
    rows = []
    for symbol in symbols:
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


def test_gold_rows_in_passes_equal_one_pass():
    buckets = random_buckets(3, symbols=("A", "B", "C", "D"))
    settings = MetricSettings(min_sample_size=1)
    one_pass = gold_rows_in_passes(buckets, settings, 0, 200 * SLIDE_US, 90 * SLIDE_US, 10**9)
    # 100 buckets a pass: each of the four symbols (60 buckets) is cut off from the next.
    in_passes = gold_rows_in_passes(buckets, settings, 0, 200 * SLIDE_US, 90 * SLIDE_US, 100)
    assert one_pass.num_rows > 0
    assert_same_rows(in_passes, one_pass)


def test_gold_in_the_run_process_equals_gold_in_sparks_tasks(spark, monkeypatch):
    buckets = random_buckets(6, symbols=("A", "B", "C"))
    settings = MetricSettings(min_sample_size=1)
    hours = (datetime.fromtimestamp(0, timezone.utc), datetime.fromtimestamp(60_000, timezone.utc))
    final_before = datetime.fromtimestamp(30_000, timezone.utc)
    here, here_path = window_rows(spark, buckets, settings, hours, final_before)
    monkeypatch.setattr(gold_module, "GOLD_IN_PROCESS_MAX_BUCKETS", buckets.num_rows - 1)
    in_tasks, tasks_path = window_rows(spark, buckets, settings, hours, final_before)
    assert (here_path, tasks_path) == (gold_module.IN_PROCESS_PATH, gold_module.SPARK_PATH)
    assert here.num_rows > 0 and pc.any(here.column("is_final")).as_py()
    assert_same_rows(in_tasks, here)


def assert_same_rows(actual: pa.Table, expected: pa.Table) -> None:
    order = [("s", "ascending"), ("window_start", "ascending")]
    assert actual.schema == expected.schema
    assert actual.sort_by(order).to_pylist() == expected.sort_by(order).to_pylist()

"""The simulated feed and the importer: what they write into silver."""

from datetime import date, datetime, timedelta, timezone

import numpy as np
import pandas as pd
import pytest

from beta_assets.feed.feed import append_sessions
from beta_assets.feed.importer import CaptureSchemaError, import_capture
from beta_assets.feed.simulator import SimulationSpec, planted_betas, simulate_sessions
from beta_assets.settings import IMPORT_REJECTS_TABLE, PLANTED_BETAS_TABLE, SILVER_TABLE
from resources.lake import DeltaLake


def frame(spec: SimulationSpec) -> pd.DataFrame:
    return pd.concat(t.to_pandas() for t in simulate_sessions(spec))


def test_ticks_stay_inside_us_market_hours_across_dst():
    winter = frame(SimulationSpec(symbols=1, start_date=date(2026, 1, 5)))
    summer = frame(SimulationSpec(symbols=1, start_date=date(2026, 7, 6)))
    assert winter["event_time"].min() >= pd.Timestamp("2026-01-05 14:30", tz="UTC")
    assert winter["event_time"].max() < pd.Timestamp("2026-01-05 21:00", tz="UTC")
    assert summer["event_time"].min() >= pd.Timestamp("2026-07-06 13:30", tz="UTC")
    assert summer["event_time"].max() < pd.Timestamp("2026-07-06 20:00", tz="UTC")


def test_weekends_are_skipped_and_each_day_is_one_version(lake_root):
    lake = DeltaLake(root=lake_root)
    spec = SimulationSpec(symbols=2, days=2, start_date=date(2026, 1, 9), interval_seconds=60)
    append_sessions(lake, spec, lambda _: None)
    silver = lake.require(SILVER_TABLE)
    assert silver.version() == 1
    days = silver.to_pyarrow_table().to_pandas()["event_time"].dt.date.unique()
    assert sorted(days) == [date(2026, 1, 9), date(2026, 1, 12)]  # Friday, then Monday
    planted = lake.require(PLANTED_BETAS_TABLE).to_pyarrow_table().to_pandas()
    assert dict(zip(planted["s"], planted["planted_beta"], strict=True)) == planted_betas(spec)


def test_change_percent_is_against_the_previous_close():
    ticks = frame(SimulationSpec(symbols=2, days=2, interval_seconds=30)).sort_values("event_time")
    ticks["day"] = ticks["event_time"].dt.date
    for _, rows in ticks.groupby("s"):
        first_day, second_day = (group for _, group in rows.groupby("day"))
        opening = first_day["currentPrice"].iloc[0] / (1 + first_day["changePercent"].iloc[0] / 100)
        assert (
            first_day["currentPrice"]
            .div(opening)
            .sub(1)
            .mul(100)
            .sub(first_day["changePercent"])
            .abs()
            .max()
            < 1e-9
        )
        close = first_day["currentPrice"].iloc[-1]
        implied = second_day["currentPrice"] / (1 + second_day["changePercent"] / 100)
        assert np.allclose(implied, close, rtol=1e-12)


def test_tick_gaps_follow_interval_and_jitter():
    spec = SimulationSpec(symbols=1, interval_seconds=10, jitter=0.3)
    ticks = frame(spec)
    for _, rows in ticks.groupby("s"):
        gaps = rows["event_time"].sort_values().diff().dropna().dt.total_seconds()
        assert gaps.min() >= 7 - 0.002 and gaps.max() <= 13 + 0.002
        assert abs(gaps.mean() - 10) < 0.3


def test_same_seed_same_ticks_and_planted_betas_recoverable():
    spec = SimulationSpec(symbols=3, interval_seconds=1, seed=5)
    ticks = frame(spec)
    assert ticks.equals(frame(spec))
    bars = (
        ticks.set_index("event_time")
        .groupby("s")["currentPrice"]
        .resample("1min")
        .last()
        .unstack(0)
    )
    returns = np.log(bars).diff().dropna()
    market = returns["SPY"]
    for symbol, beta in planted_betas(spec).items():
        slope = np.cov(returns[symbol], market)[0, 1] / market.var()
        assert slope == pytest.approx(beta, abs=0.2)


def test_import_keeps_valid_rows_and_quarantines_the_rest(lake_root, tmp_path):
    capture = tmp_path / "capture.csv"
    capture.write_text(
        "s,currentPrice,changePercent,event_time,venue\n"
        "aapl ,190.5,0.4,2026-01-05T14:30:00Z,X\n"
        "AAPL,190.6,0.5,2026-01-05 09:31:00-05:00,X\n"
        "SPY,480.1,0.1,2026-01-05 14:32:00,X\n"
        ",1.0,0.1,2026-01-05T14:30:00Z,X\n"
        "MSFT,abc,0.1,2026-01-05T14:30:00Z,X\n"
        "MSFT,-3,0.1,2026-01-05T14:30:00Z,X\n"
        "MSFT,3,inf,2026-01-05T14:30:00Z,X\n"
        "MSFT,3,0.2,yesterday,X\n"
    )
    lake = DeltaLake(root=lake_root)
    report = import_capture(lake, capture)
    assert report.valid_rows == 3 and report.silver_version == 0
    assert report.rejected_rows == {
        "empty_symbol": 1,
        "bad_price": 1,
        "non_positive_price": 1,
        "bad_change_percent": 1,
        "bad_event_time": 1,
    }
    silver = lake.require(SILVER_TABLE).to_pyarrow_table().to_pandas()
    assert list(silver["s"]) == ["AAPL", "AAPL", "SPY"]
    utc = timezone.utc
    assert list(silver["event_time"]) == [
        datetime(2026, 1, 5, 14, 30, tzinfo=utc),
        datetime(2026, 1, 5, 14, 31, tzinfo=utc),
        datetime(2026, 1, 5, 14, 32, tzinfo=utc),  # naive: read as UTC
    ]
    rejects = lake.require(IMPORT_REJECTS_TABLE).to_pyarrow_table().to_pandas()
    assert len(rejects) == 5 and set(rejects["currentPrice"]) >= {"abc", "-3"}


def test_import_reads_json_lines_and_parquet(lake_root, tmp_path):
    rows = pd.DataFrame(
        {
            "s": ["SPY", "IBM"],
            "currentPrice": [480.0, 150.0],
            "changePercent": [0.1, -0.2],
            "event_time": ["2026-01-05T14:30:00Z", "2026-01-05T14:30:01Z"],
        }
    )
    rows.to_json(tmp_path / "ticks.jsonl", orient="records", lines=True)
    rows.to_parquet(tmp_path / "ticks.parquet")
    lake = DeltaLake(root=lake_root)
    assert import_capture(lake, tmp_path / "ticks.jsonl").valid_rows == 2
    assert import_capture(lake, tmp_path / "ticks.parquet").silver_version == 1
    assert lake.require(SILVER_TABLE).to_pyarrow_table().num_rows == 4


def test_import_without_a_required_column_names_it(lake_root, tmp_path):
    capture = tmp_path / "capture.csv"
    capture.write_text("s,price,changePercent,event_time\nSPY,1,0.1,2026-01-05T14:30:00Z\n")
    with pytest.raises(CaptureSchemaError, match="currentPrice"):
        import_capture(DeltaLake(root=lake_root), capture)
    assert DeltaLake(root=lake_root).open(SILVER_TABLE) is None


def test_live_batches_continue_the_price_paths():
    from beta_assets.feed.simulator import initial_state, simulate_span

    spec = SimulationSpec(symbols=2, interval_seconds=1)
    state = initial_state(spec)
    start = datetime(2026, 3, 1, 3, 0, tzinfo=timezone.utc)  # live mode ignores market hours
    state.next_tick_us = np.full(3, int(start.timestamp() * 1e6))
    rng = np.random.default_rng(0)
    first = simulate_span(state, spec, start, start + timedelta(seconds=30), rng).to_pandas()
    second = simulate_span(
        state, spec, start + timedelta(seconds=30), start + timedelta(seconds=60), rng
    ).to_pandas()
    assert first["event_time"].max() < second["event_time"].min()
    assert len(first) > 60 and len(second) > 60
    jumps = (
        pd.concat([first, second])
        .groupby("s")["currentPrice"]
        .apply(lambda p: p.pct_change().abs().max())
    )
    assert (jumps < 0.01).all()  # one path, no restarts between batches

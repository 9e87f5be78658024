"""Comparing gold tables: same (symbol, window) rows, values equal to 1e-9 relative."""

import numpy as np
import pandas as pd

KEY = ["s", "window_start"]
METRICS = ["beta", "volatility", "momentum", "sample_size", "cost_of_equity"]
RELATIVE = 1e-9
# Values that are themselves rounding noise (a covariance of ~1e-17 where the truth is 0)
# cannot agree relatively; below this they must agree absolutely.
ABSOLUTE_FLOOR = 1e-12


def naive_utc(frame: pd.DataFrame, columns: list[str]) -> pd.DataFrame:
    frame = frame.copy()
    for column in columns:
        values = pd.to_datetime(frame[column])
        if values.dt.tz is not None:
            values = values.dt.tz_convert("UTC").dt.tz_localize(None)
        frame[column] = values.astype("datetime64[us]")
    return frame


def keyed(frame: pd.DataFrame) -> pd.DataFrame:
    return naive_utc(frame, ["window_start"]).set_index(KEY).sort_index()


def assert_close(actual: pd.Series, expected: pd.Series, name: str) -> None:
    a, e = actual.astype(float).to_numpy(), expected.astype(float).to_numpy()
    assert np.array_equal(np.isnan(a), np.isnan(e)), f"{name}: nulls differ"
    both = ~np.isnan(a)
    tolerance = np.maximum(RELATIVE * np.maximum(np.abs(a[both]), np.abs(e[both])), ABSOLUTE_FLOOR)
    worst = np.abs(a[both] - e[both]) - tolerance
    assert (worst <= 0).all(), f"{name}: off by {np.max(np.abs(a[both] - e[both]))}"


def assert_same_windows(gold: pd.DataFrame, reference: pd.DataFrame, metrics=METRICS) -> None:
    ours, truth = keyed(gold), keyed(reference)
    missing = truth.index.difference(ours.index)
    extra = ours.index.difference(truth.index)
    assert missing.empty and extra.empty, f"missing {list(missing)[:5]}, extra {list(extra)[:5]}"
    for column in metrics:
        assert_close(ours[column], truth.loc[ours.index, column], column)

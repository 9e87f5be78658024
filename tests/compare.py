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


def close_mismatch(actual: pd.Series, expected: pd.Series, name: str) -> str | None:
    """How two float columns differ beyond the tolerance, or None."""
    a, e = actual.astype(float).to_numpy(), expected.astype(float).to_numpy()
    if not np.array_equal(np.isnan(a), np.isnan(e)):
        return f"{name}: nulls differ in {int(np.sum(np.isnan(a) != np.isnan(e)))} rows"
    both = ~np.isnan(a)
    tolerance = np.maximum(RELATIVE * np.maximum(np.abs(a[both]), np.abs(e[both])), ABSOLUTE_FLOOR)
    worst = np.abs(a[both] - e[both]) - tolerance
    if (worst > 0).any():
        off = np.max(np.abs(a[both] - e[both]))
        return f"{name}: off by {off} in {int(np.sum(worst > 0))} rows"
    return None


def assert_close(actual: pd.Series, expected: pd.Series, name: str) -> None:
    mismatch = close_mismatch(actual, expected, name)
    assert mismatch is None, mismatch


def assert_same_windows(gold: pd.DataFrame, reference: pd.DataFrame, metrics=METRICS) -> None:
    ours, truth = keyed(gold), keyed(reference)
    missing = truth.index.difference(ours.index)
    extra = ours.index.difference(truth.index)
    assert missing.empty and extra.empty, f"missing {list(missing)[:5]}, extra {list(extra)[:5]}"
    for column in metrics:
        assert_close(ours[column], truth.loc[ours.index, column], column)


def gold_differences(
    actual: pd.DataFrame, expected: pd.DataFrame, close: list[str], exact: list[str]
) -> list[str]:
    """Everything that differs between two gold tables: their (symbol, window) rows, the
    `close` columns beyond the tolerance, the `exact` columns at all (nulls equal nulls)."""
    ours, truth = keyed(actual), keyed(expected)
    problems = [
        f"{len(frame)} rows but {frame.index.nunique()} distinct keys in {name}"
        for name, frame in (("actual", ours), ("expected", truth))
        if not frame.index.is_unique
    ]
    missing, extra = truth.index.difference(ours.index), ours.index.difference(truth.index)
    if len(missing) or len(extra):
        problems.append(
            f"rows: {len(missing)} missing, e.g. {list(missing)[:3]}; "
            f"{len(extra)} extra, e.g. {list(extra)[:3]}"
        )
    common = ours.index.intersection(truth.index)
    ours, truth = ours.loc[common], truth.loc[common]
    for column in close:
        mismatch = close_mismatch(ours[column], truth[column], column)
        if mismatch:
            problems.append(mismatch)
    timestamps = [c for c in exact if pd.api.types.is_datetime64_any_dtype(truth[c])]
    ours, truth = naive_utc(ours, timestamps), naive_utc(truth, timestamps)
    for column in exact:
        a, e = ours[column], truth[column]
        differs = ~((a == e) | (a.isna() & e.isna()))
        if differs.any():
            first = differs.to_numpy().argmax()
            problems.append(
                f"{column}: differs in {int(differs.sum())} rows, e.g. {common[first]}: "
                f"{a.iloc[first]!r} != {e.iloc[first]!r}"
            )
    return problems

"""Reading event times as UTC, the contract of silver."""

import pandas as pd

# pandas' type of event times: UTC, microseconds (Delta's and Spark's precision).
UTC_MICROS_DTYPE = "datetime64[us, UTC]"
_ZONE_SUFFIX = r"(?:Z|[+-]\d{2}:?\d{2})$"


def parse_utc(values: pd.Series) -> pd.Series:
    """ISO 8601 times to UTC; naive ones are read as UTC. Unparseable ones become NaT.

    Zoned and naive strings are parsed apart: pandas applies one row's offset to the naive
    rows of a mixed column.
    """
    if pd.api.types.is_datetime64_any_dtype(values):
        return values.dt.tz_localize("UTC") if values.dt.tz is None else values.dt.tz_convert("UTC")
    text = values.astype("string").str.strip()
    zoned = text.str.contains(_ZONE_SUFFIX, regex=True, na=False)
    parsed = pd.Series(pd.NaT, index=values.index, dtype=UTC_MICROS_DTYPE)
    for mask in (zoned, ~zoned):
        if mask.any():
            parsed[mask] = pd.to_datetime(text[mask], utc=True, errors="coerce", format="ISO8601")
    return parsed

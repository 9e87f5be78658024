"""Import captured ticks (CSV, Parquet, JSON lines) into silver, validating every row.

Valid rows are appended to silver as one Delta version. Invalid rows are not dropped: they go
to the quarantine table with their raw values (as text) and the reason, and are counted.
Time-zone-naive times are read as UTC, the contract of silver.
"""

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.json as pa_json
import pyarrow.parquet as pq

from beta_assets.feed.simulator import TICK_SCHEMA
from beta_assets.settings import (
    CHANGE,
    EVENT_TIME,
    IMPORT_REJECTS_TABLE,
    PRICE,
    QUARANTINE_REASONS,
    SILVER_COLUMNS,
    SILVER_TABLE,
    SYMBOL,
)
from beta_assets.symbols import SYMBOL_BLANKS
from beta_assets.times import parse_utc
from resources.lake import DeltaLake

FORMATS = ("csv", "parquet", "jsonl")
REASON = "quarantine_reason"
SOURCE = "source"


class CaptureSchemaError(ValueError):
    """The capture lacks a required column."""


@dataclass(frozen=True)
class ImportReport:
    valid_rows: int
    rejected_rows: dict[str, int]
    silver_version: int | None


def detect_format(path: Path) -> str:
    suffix = path.suffix.lower().lstrip(".")
    if suffix in ("json", "jsonl", "ndjson"):
        return "jsonl"
    if suffix in ("csv", "parquet"):
        return suffix
    raise ValueError(f"cannot tell the format of {path}; pass --format ({', '.join(FORMATS)})")


def read_capture(path: Path, file_format: str) -> pd.DataFrame:
    """The capture's required columns as text: parsing is ours, so that nothing fails silently."""
    if file_format == "csv":
        text = {column: pa.string() for column in SILVER_COLUMNS}
        table = pa_csv.read_csv(path, convert_options=pa_csv.ConvertOptions(column_types=text))
    elif file_format == "parquet":
        table = pq.read_table(path)
    else:
        table = pa_json.read_json(path)
    missing = [column for column in SILVER_COLUMNS if column not in table.column_names]
    if missing:
        raise CaptureSchemaError(f"{path} has no column {missing}; it has {table.column_names}")
    return table.select(list(SILVER_COLUMNS)).to_pandas()


def validate(raw: pd.DataFrame) -> tuple[pa.Table, pd.DataFrame]:
    """Rows in silver's types, and the rejected rows with the first reason each failed."""
    symbol = raw[SYMBOL].astype("string").str.strip(SYMBOL_BLANKS).str.upper()
    price = pd.to_numeric(raw[PRICE], errors="coerce").astype("float64")
    change = pd.to_numeric(raw[CHANGE], errors="coerce").astype("float64")
    event_time = parse_utc(raw[EVENT_TIME])
    reasons = np.select(
        [
            symbol.isna() | (symbol == ""),
            event_time.isna(),
            ~np.isfinite(price),
            price <= 0,
            ~np.isfinite(change),
        ],
        list(QUARANTINE_REASONS),
        default="",
    )
    good = reasons == ""
    valid = pd.DataFrame(
        {
            SYMBOL: symbol[good],
            PRICE: price[good],
            CHANGE: change[good],
            EVENT_TIME: event_time[good],
        }
    )
    rejected = raw[~good].astype("string").assign(**{REASON: reasons[~good]})
    return pa.Table.from_pandas(valid, schema=TICK_SCHEMA, preserve_index=False), rejected


def import_capture(lake: DeltaLake, path: Path, file_format: str | None = None) -> ImportReport:
    file_format = file_format or detect_format(path)
    valid, rejected = validate(read_capture(path, file_format))
    version = None
    if valid.num_rows:
        version = lake.append(SILVER_TABLE, valid, {"tickbeta_import": path.name})
    if len(rejected):
        rows = pa.Table.from_pandas(rejected.assign(**{SOURCE: str(path)}), preserve_index=False)
        lake.append(IMPORT_REJECTS_TABLE, rows)
    counts = rejected[REASON].value_counts().to_dict() if len(rejected) else {}
    return ImportReport(valid.num_rows, {str(k): int(v) for k, v in counts.items()}, version)

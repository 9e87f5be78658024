"""One definition of a blank, trimmed alike by Spark, Arrow and Python."""

import sys

import pyarrow as pa
import pyarrow.compute as pc

from beta_assets.config import BetaMetricsConfig
from beta_assets.metrics import QUARANTINE_REASON, typed_ticks
from beta_assets.symbols import SYMBOL_BLANKS, normalised_symbol, normalised_symbols
from tests import datasets

NOT_BLANK = ["\x00", "\u00ad", "\u034f", "-", "_", "."]  # a NUL, a soft hyphen, visible marks


def every_character() -> list[str]:
    return [chr(c) for c in range(sys.maxunicode + 1) if not 0xD800 <= c <= 0xDFFF]


def test_blanks_are_every_whitespace_python_and_arrow_know_and_the_zero_width_ones():
    characters = every_character()
    python = {c for c in characters if c.isspace()}
    trimmed = pc.utf8_trim_whitespace(pa.array(characters)).to_pylist()
    arrow = {c for c, t in zip(characters, trimmed, strict=True) if not t}
    assert python == arrow
    assert set(SYMBOL_BLANKS) - python == set("\u180e\u200b\u200c\u200d\u2060\ufeff")
    assert len(set(SYMBOL_BLANKS)) == len(SYMBOL_BLANKS)


def symbol_cases() -> list[str]:
    cases = []
    for blank in SYMBOL_BLANKS:
        cases += [
            blank,
            blank * 3,
            f"{blank}spy",
            f"Spy{blank}",
            f"{blank}t001{blank}",
            f"a{blank}b",
        ]
    for visible in NOT_BLANK:
        cases += [visible, f" {visible}\t", f"{visible}spy"]
    return cases


def test_spark_arrow_and_python_trim_the_same_characters(spark):
    cases = symbol_cases()
    silver = datasets.ticks([(s, 10.0, 0.1, datasets.at(14)) for s in cases])
    typed = typed_ticks(spark.createDataFrame(silver)).toArrow()
    in_spark = typed.column("s").to_pylist()
    assert in_spark == normalised_symbols(silver.column("s")).to_pylist()
    assert in_spark == [normalised_symbol(s) for s in cases]
    reasons = typed.column(QUARANTINE_REASON).to_pylist()
    empty = [s for s, reason in zip(cases, reasons, strict=True) if reason]
    assert empty == [s for s in cases if not s.strip(SYMBOL_BLANKS)]
    assert all(s.strip(SYMBOL_BLANKS) for s in NOT_BLANK)


def test_the_configured_market_is_trimmed_alike():
    assert BetaMetricsConfig(market_symbol="\ufeff spy\u3000").settings().market_symbol == "SPY"

"""What a symbol is once read: trimmed at both ends of SYMBOL_BLANKS, then upper-cased.

A symbol that is nothing but SYMBOL_BLANKS is blank (quarantined as `empty_symbol`), so
"\\t", "\\u3000" or "\\ufeff" never become a ticker and " spy\\t" is the market. Every reader of
symbols trims exactly these characters: Spark (`metrics.typed_ticks`, which the quarantine, the
checks and gold's high-water marks use), Arrow (the sensor's high-water marks) and Python (the
importer and the configured market symbol). Spark's `trim` strips spaces only and Java's `\\s`
is ASCII, so each engine is given this set explicitly.
"""

import pyarrow as pa
import pyarrow.compute as pc

# Every character Python's str.isspace() and Arrow's utf8_trim_whitespace count: the 25 of
# Unicode's White_Space property plus the ASCII separators U+001C..U+001F.
_WHITESPACE = (
    "\t\n\v\f\r\x1c\x1d\x1e\x1f \x85\xa0\u1680"
    "\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009\u200a"
    "\u2028\u2029\u202f\u205f\u3000"
)
# Characters that render as nothing and ride along when a symbol is copied from a web page or a
# spreadsheet export (the BOM): Mongolian vowel separator (White_Space before Unicode 6.3),
# zero-width space, non-joiner and joiner, word joiner, zero-width no-break space (BOM).
# "\ufeffSPY" would otherwise be an invisible second market that gets betas of its own.
_INVISIBLE = "\u180e\u200b\u200c\u200d\u2060\ufeff"
SYMBOL_BLANKS = _WHITESPACE + _INVISIBLE


def normalised_symbol(text: str) -> str:
    return text.strip(SYMBOL_BLANKS).upper()


def normalised_symbols(values: pa.Array | pa.ChunkedArray) -> pa.ChunkedArray | pa.Array:
    """The same, over an Arrow array of text (nulls stay null)."""
    return pc.utf8_upper(pc.utf8_trim(values.cast(pa.string()), characters=SYMBOL_BLANKS))

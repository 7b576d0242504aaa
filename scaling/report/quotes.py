"""Numbers a paper quotes, checked against the files they come from.

A quoted number is a Markdown link whose target is a table in the repository and whose title selects one
value of it: the column, then the row as `column=value` pairs, separated by semicolons:

    OOD accuracy rose by [4.1](../fits/study-core/claims.csv "gain; split=ood_family; factor=4") points.

The link text is the number as printed; it matches when the selected value, rounded to the decimals the
text shows, is that number (a trailing `%` means the value is a fraction printed as a percentage). Tables
are CSV or Parquet files. Every number a paper states with a decimal point must be such a link, so nothing
in it is typed by hand.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

_LINK = re.compile(r'\[(?P<text>[^\]]*)\]\((?P<path>[^)\s]+)\s+"(?P<selector>[^"]*)"\)')
_NUMBER = re.compile(r"^[-+−]?\d[\d,]*(?:\.(?P<decimals>\d+))?(?P<percent>%)?$")
# A decimal number in running text: what must be a quote. Version strings and the like sit in `code`.
_BARE_DECIMAL = re.compile(r"(?<![\w.])[-+−]?\d+\.\d+(?![\w.])")


@dataclass(frozen=True)
class Quote:
    line: int  # in the paper, for messages
    text: str  # the number as printed
    path: Path  # the table, resolved against the paper's folder
    column: str
    row: tuple[tuple[str, str], ...]  # (column, value as written) pairs that pick one row


def quotes_of(paper: Path) -> list[Quote]:
    """Every quote of a Markdown file, in order."""
    out = []
    for number, line in enumerate(paper.read_text().splitlines(), 1):
        for match in _LINK.finditer(line):
            column, *conditions = [part.strip() for part in match["selector"].split(";")]
            row = tuple(tuple(part.strip() for part in c.split("=", 1)) for c in conditions if c)
            out.append(Quote(number, match["text"].strip(), paper.parent / match["path"], column, row))
    return out


def unquoted_numbers(paper: Path) -> list[tuple[int, str]]:
    """(line, number) of every decimal number in the running text that is not a quote (code spans, code blocks
    and link targets excepted)."""
    found, in_block = [], False
    for number, line in enumerate(paper.read_text().splitlines(), 1):
        if line.lstrip().startswith("```"):
            in_block = not in_block
            continue
        if in_block:
            continue
        text = re.sub(r"`[^`]*`", " ", _LINK.sub(" ", line))
        text = re.sub(r"\]\([^)]*\)", "]", text)  # a figure's or a section's link target
        found += [(number, m.group(0)) for m in _BARE_DECIMAL.finditer(text)]
    return found


def check_quote(quote: Quote, tables: dict[Path, pd.DataFrame] | None = None) -> str | None:
    """Why a quote does not match its source; None when it does."""
    where = f"line {quote.line} ({quote.text!r})"
    shape = _NUMBER.match(quote.text.replace("−", "-"))
    if shape is None:
        return f"{where}: the link text is not a number"
    tables = {} if tables is None else tables
    if quote.path not in tables:
        if not quote.path.is_file():
            return f"{where}: {quote.path} does not exist"
        tables[quote.path] = pd.read_parquet(quote.path) if quote.path.suffix == ".parquet" else pd.read_csv(quote.path)
    table = tables[quote.path]
    for column in [quote.column, *(c for c, _ in quote.row)]:
        if column not in table.columns:
            return f"{where}: {quote.path.name} has no column {column!r}"
    chosen = table
    for column, value in quote.row:
        chosen = chosen[_matches(chosen[column], value)]
    if len(chosen) != 1:
        return f"{where}: {len(chosen)} rows of {quote.path.name} match {dict(quote.row)}, not one"
    value = float(chosen[quote.column].iloc[0]) * (100 if shape["percent"] else 1)
    decimals = len(shape["decimals"] or "")
    printed = float(quote.text.replace("−", "-").replace(",", "").rstrip("%"))
    if round(value, decimals) != printed:
        return f"{where}: {quote.path.name} holds {value:.{decimals + 2}f} at {quote.column}, {dict(quote.row)}"
    return None


def _matches(column: pd.Series, value: str) -> pd.Series:
    """Rows whose value is the one written: numerically for a numeric column ("1" matches 1.0), else as text."""
    if pd.api.types.is_numeric_dtype(column):
        try:
            return column == float(value)
        except ValueError:
            return pd.Series(False, index=column.index)
    return column.astype(str) == value


def check_paper(paper: Path) -> list[str]:
    """Every problem with a paper's numbers: quotes that do not match their source, and decimals typed by hand."""
    tables: dict[Path, pd.DataFrame] = {}
    problems = [p for q in quotes_of(paper) if (p := check_quote(q, tables)) is not None]
    problems += [f"line {line}: {text} is typed by hand; quote it from its file" for line, text in unquoted_numbers(paper)]
    return problems

"""`scaling figures`: redraw every figure of the paper from the files in runs/ and fits/.

The figures are listed in `paper/figures.toml`, one `[[figure]]` table each:

    [[figure]]
    name = "reference_sft_fit"        # written as paper/figures/NAME.png and .pdf
    kind = "law_fit"                  # a kind of scaling.report.kinds.FIGURE_KINDS: accuracy_by_split |
                                      # training_curves | accuracy_by_family | accuracy_by_condition |
                                      # post_memorization | law_fit | backtest | returns | posterior
    fit = "fits/reference-sft"        # law_fit, backtest, returns: a `scaling fit` folder
    results = "runs/reference/results.nc"  # accuracy_by_split: a collected run
    families = "runs/x/families.parquet"   # accuracy_by_family: a collected run's per-family table
    where = "diversity == 4"          # accuracy_by_family, accuracy_by_condition (optional): the cells to use
    group_by = ["size", "diversity"]  # accuracy_by_split: a column per value of all but the last, a line per the last
    x = ["quality", "cot"]            # accuracy_by_condition: results (a path or a list, pooled), x and hue (axes),
    hue = ["size"]                    # splits (one panel column each) and steps (budgets, one panel row each);
                                      # `run` (the run folder's name) tells pooled runs apart
    hue = "diversity"                 # law_fit (optional): columns for colour, panel column, panel row
    col = "quality"
    row = "params"

Paths are relative to the folder that holds the paper folder (the repository root). Every input is
checked before anything is drawn, the tables are made before any figure is drawn, and the figures
are drawn into a staging folder that replaces paper/figures/ only when all of them are done, so a bad
spec or a failed figure or table (a `where` that selects no rows) leaves the old ones; its one-line
error names the figure or table.
The folder's INDEX lists what was drawn from what, and marks the folder as ours to replace.
"""

from __future__ import annotations

import tomllib
from dataclasses import MISSING, dataclass, fields, replace
from pathlib import Path

import pandas as pd

from scaling.report.kinds import FIGURE_KINDS, TABLE_KINDS
from scaling.errors import UserError
from scaling.user_files import regular_file
from scaling.staging import publish_folder
from scaling.typed_toml import typed_table

SPEC_FILE = "figures.toml"
OUTPUT = "figures"
INDEX = "INDEX"  # written last into the figures folder: what was drawn from what
TABLES = "tables"  # where [[table]] entries are written, as CSV


@dataclass(frozen=True)
class FigureSpec:
    """One figure of the paper."""

    name: str  # file stem under paper/figures/
    kind: str  # one of FIGURE_KINDS (a figure) or TABLE_KINDS (a table)
    options: object  # the kind's options dataclass, paths resolved against the repository root
    keys: tuple[str, ...]  # the options its table gave, in the order given (the INDEX shows these)
    root: Path  # the repository root: the paper folder's parent


def read_figure_specs(paper: Path) -> list[FigureSpec]:
    """The paper's figures, validated: known kinds and keys, unique names, every input file present."""
    path = paper / SPEC_FILE
    if not path.exists():
        raise UserError(f"{path} does not exist (it lists the paper's figures)")
    regular_file(path, "the figure list")
    try:
        entries = tomllib.loads(path.read_text()).get("figure", [])
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as error:
        raise UserError(f"{path} is not valid TOML ({error})") from None
    if not isinstance(entries, list) or not entries:
        raise UserError(f"{path} lists no [[figure]] tables")
    return _specs(entries, path, "figure", FIGURE_KINDS, paper.resolve().parent)


def read_table_specs(paper: Path) -> list[FigureSpec]:
    """The paper's tables ([[table]] in figures.toml), validated like its figures; none when it lists none."""
    path = paper / SPEC_FILE
    entries = tomllib.loads(path.read_text()).get("table", [])
    return _specs(entries if isinstance(entries, list) else [], path, "table", TABLE_KINDS, paper.resolve().parent)


def _specs(entries: list, path: Path, noun: str, kinds: dict, root: Path) -> list[FigureSpec]:
    """Each [[figure]] or [[table]] entry as a spec: a new plain name, a known kind, its options typed by the kind's
    options dataclass with paths resolved against the repository root, and every file it reads present."""
    specs, names = [], set()
    for number, entry in enumerate(entries, 1):
        where = f"{path} {noun} {number}"
        name, kind = entry.get("name"), entry.get("kind")
        if not isinstance(name, str) or not name or "/" in name:
            raise UserError(f"{where}: name must be a plain file name")
        if name in names:
            raise UserError(f"{where}: name {name!r} is used twice")
        if kind not in kinds:
            raise UserError(f"{where}: kind {kind!r} is not one of {', '.join(kinds)}")
        options = {k: v for k, v in entry.items() if k not in ("name", "kind")}
        needed = [f.name for f in fields(kinds[kind].options)
                  if f.default is MISSING and f.default_factory is MISSING and f.name not in options]
        if needed:
            raise UserError(f"{where} ({name}): missing key {needed[0]!r}")
        typed = _under(typed_table(kinds[kind].options, options, f"[{noun}]", f"{where} ({name})"), root)
        for said, file in kinds[kind].inputs(typed, root):
            if not file.exists():
                raise UserError(f"{where} ({name}): {said}{file} does not exist")
            regular_file(file, f"{where} ({name}): {said}".strip())
        names.add(name)
        specs.append(FigureSpec(name, kind, typed, tuple(options), root))
    return specs


def _under(options, root: Path):
    """The options with every path in them, as written relative to the repository root, resolved against it."""
    def resolved(value):
        if isinstance(value, Path):
            return root / value
        if isinstance(value, tuple):
            return tuple(resolved(v) for v in value)
        if isinstance(value, dict):
            return {k: resolved(v) for k, v in value.items()}
        return value
    return replace(options, **{f.name: resolved(getattr(options, f.name)) for f in fields(options)})


def make_table(spec: FigureSpec) -> pd.DataFrame:
    """One table of the paper; a UserError names it."""
    return _named(f"table {spec.name}", lambda: TABLE_KINDS[spec.kind].table(spec.options))


def write_table(spec: FigureSpec, table: pd.DataFrame, folder: Path) -> Path:
    """One table of the paper as CSV (fixed float format: the same inputs give the same bytes)."""
    out = folder / f"{spec.name}.csv"
    table.to_csv(out, index=False, float_format="%.6g")
    return out


def draw(spec: FigureSpec, folder: Path) -> list[Path]:
    """One figure of the paper as PNG and PDF; a UserError names it."""
    return _named(f"figure {spec.name}", lambda: FIGURE_KINDS[spec.kind].draw(spec.options, folder / spec.name, spec.root))


def _named(what: str, make):
    """What make() returns; its UserError (a `where` that selects no rows, a budget a run lacks) says which figure or
    table of the spec it was making."""
    try:
        return make()
    except UserError as error:
        raise UserError(f"{what}: {error}") from None


def regenerate_figures(paper: Path, say=print) -> list[Path]:
    """Draw every figure of paper/figures.toml into paper/figures/, replacing the earlier ones all at once.

    The folder also gets an INDEX (each figure's name, kind and inputs), which marks it as drawn here: a
    figures folder without one holds someone's own files and is never replaced.
    """
    specs = read_figure_specs(paper)

    def fill(staging: Path) -> None:
        for spec in specs:
            draw(spec, staging)
            say(f"drew {spec.name} ({spec.kind})")
        (staging / INDEX).write_text(_index(specs))

    tables = read_table_specs(paper)  # checked before anything is drawn
    made = [make_table(spec) for spec in tables]  # before the figures are replaced: a table that fails leaves them
    out = paper / OUTPUT
    publish_folder(out, fill, INDEX, "scaling figures")
    if tables:
        def fill_tables(staging: Path) -> None:
            for spec, table in zip(tables, made):
                write_table(spec, table, staging)
                say(f"wrote table {spec.name} ({spec.kind})")
            (staging / INDEX).write_text(_index(tables))

        publish_folder(paper / TABLES, fill_tables, INDEX, "scaling figures")
    return sorted(out.iterdir()) + (sorted((paper / TABLES).iterdir()) if tables else [])


def _index(specs: list[FigureSpec]) -> str:
    lines = [f"Drawn by `scaling figures` from {SPEC_FILE}; redraw with `scaling figures`, never by hand.", ""]
    for spec in specs:
        inputs = ", ".join(f"{k}={_shown(getattr(spec.options, k), spec.root)}" for k in spec.keys)
        lines.append(f"{spec.name}.png/.pdf: {spec.kind} ({inputs})")
    return "\n".join(lines) + "\n"


def _shown(value, root: Path):
    """An option as the INDEX shows it: paths relative to the repository root."""
    if isinstance(value, tuple):
        return [_shown(v, root) for v in value]
    if isinstance(value, dict):  # an accuracy_rows row: its grades file too
        return {k: _shown(v, root) for k, v in value.items()}
    return str(value.relative_to(root)) if isinstance(value, Path) else value

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
checked before anything is drawn, and the figures are drawn into a staging folder that replaces
paper/figures/ only when all of them are done, so a bad spec or a failed figure leaves the old ones.
The folder's INDEX lists what was drawn from what, and marks the folder as ours to replace.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path

from scaling.report.kinds import FIGURE_KINDS, TABLE_KINDS
from scaling.errors import UserError
from scaling.staging import publish_folder

SPEC_FILE = "figures.toml"
OUTPUT = "figures"
INDEX = "INDEX"  # written last into the figures folder: what was drawn from what
ROW_KEYS = ({"label", "grades"}, {"where", "step"})  # an accuracy_rows row: per-example grades, which of them
TABLES = "tables"  # where [[table]] entries are written, as CSV


@dataclass(frozen=True)
class FigureSpec:
    """One figure of the paper."""

    name: str  # file stem under paper/figures/
    kind: str  # one of FIGURE_KINDS (a figure) or TABLE_KINDS (a table)
    options: dict  # the kind's keys, paths resolved against the repository root
    root: Path  # the repository root: the paper folder's parent


def read_figure_specs(paper: Path) -> list[FigureSpec]:
    """The paper's figures, validated: known kinds and keys, unique names, every input file present."""
    path = paper / SPEC_FILE
    if not path.is_file():
        raise UserError(f"{path} does not exist (it lists the paper's figures)")
    try:
        entries = tomllib.loads(path.read_text()).get("figure", [])
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as error:
        raise UserError(f"{path} is not valid TOML ({error})") from None
    if not isinstance(entries, list) or not entries:
        raise UserError(f"{path} lists no [[figure]] tables")
    root = paper.resolve().parent
    specs, names = [], set()
    for number, entry in enumerate(entries, 1):
        where = f"{path} figure {number}"
        name, kind, options = _entry(entry, where, FIGURE_KINDS, names)
        figure_kind = FIGURE_KINDS[kind]
        for key in ("results", "families", "fit"):
            if key in options:
                many = figure_kind.pooled and key == "results"  # several runs, pooled
                value = options[key] if many and isinstance(options[key], list) else [options[key]]
                if not value or not all(isinstance(v, str) for v in value):
                    raise UserError(f"{where} ({name}): {key} must be a path" + (" or a list of paths" if many else ""))
                options[key] = [root / v for v in value] if many else root / value[0]
        for key in ("x", "hue", "splits", "by") if figure_kind.pooled else ():
            if key in options:
                options[key] = [options[key]] if isinstance(options[key], str) else options[key]
                if not isinstance(options[key], list) or not all(isinstance(v, str) for v in options[key]):
                    raise UserError(f"{where} ({name}): {key} must be a name or a list of names")
        for key, what in (("steps", "budgets"), ("factors", "whole multiples of the memorization step")):
            if key in options and (not isinstance(options[key], list) or not options[key]
                                   or not all(isinstance(v, int) and v > 0 for v in options[key])):
                raise UserError(f"{where} ({name}): {key} must be a list of {what}")
        for what, file in figure_kind.inputs(options, root):
            if not file.is_file():
                raise UserError(f"{where} ({name}): {what}{file} does not exist")
        names.add(name)
        specs.append(FigureSpec(name, kind, options, root))
    return specs


def _entry(entry: dict, where: str, kinds: dict, names: set[str]) -> tuple[str, str, dict]:
    """(name, kind, options) of one [[figure]] or [[table]]: a new plain name, a known kind, its keys and no others."""
    name, kind = entry.get("name"), entry.get("kind")
    if not isinstance(name, str) or not name or "/" in name:
        raise UserError(f"{where}: name must be a plain file name")
    if name in names:
        raise UserError(f"{where}: name {name!r} is used twice")
    if kind not in kinds:
        raise UserError(f"{where}: kind {kind!r} is not one of {', '.join(kinds)}")
    needed, optional = kinds[kind].needed, kinds[kind].optional
    options = {k: v for k, v in entry.items() if k not in ("name", "kind")}
    if missing := needed - set(options):
        raise UserError(f"{where} ({name}): missing key {sorted(missing)[0]!r}")
    if unknown := set(options) - needed - optional:
        raise UserError(f"{where} ({name}): unknown key {sorted(unknown)[0]!r}")
    return name, kind, options


def read_table_specs(paper: Path) -> list[FigureSpec]:
    """The paper's tables ([[table]] in figures.toml), validated like its figures; none when it lists none."""
    path = paper / SPEC_FILE
    entries = tomllib.loads(path.read_text()).get("table", [])
    root = paper.resolve().parent
    specs, names = [], set()
    for number, entry in enumerate(entries if isinstance(entries, list) else [], 1):
        where = f"{path} table {number}"
        name, kind, options = _entry(entry, where, TABLE_KINDS, names)
        if kind == "accuracy_rows":
            options["rows"] = _accuracy_rows(options, f"{where} ({name})", root)
            names.add(name)
            specs.append(FigureSpec(name, kind, options, root))
            continue
        results = options["results"] if isinstance(options["results"], list) else [options["results"]]
        options["results"] = [root / r for r in results]
        for key in ("x", "hue", "splits", "by", "factors", "steps"):  # one name stands for a list of one
            if key in options and not isinstance(options[key], list):
                options[key] = [options[key]]
        for file in options["results"]:
            if not file.is_file():
                raise UserError(f"{where} ({name}): {file} does not exist")
            if kind == "post_memorization" and not (file.parent / "grades.parquet").is_file():
                raise UserError(f"{where} ({name}): {file.parent / 'grades.parquet'} does not exist")
        names.add(name)
        specs.append(FigureSpec(name, kind, options, root))
    return specs


def _accuracy_rows(options: dict, where: str, root: Path) -> list[dict]:
    """An accuracy_rows table's rows, validated: each a label, an existing per-example grades file (a run's
    grades.parquet, or the baseline.parquet of `scaling baseline`), and optionally a row condition and a budget."""
    rows, splits = options["rows"], options["splits"]
    if not isinstance(splits, dict) or not splits or not all(isinstance(v, str) for v in splits.values()):
        raise UserError(f"{where}: splits must be a table of column = split, e.g. {{ ID = \"id\" }}")
    if not isinstance(rows, list) or not rows or not all(isinstance(row, dict) for row in rows):
        raise UserError(f"{where}: rows must be a list of tables {{ label, grades, where, step }}")
    checked = []
    for number, row in enumerate(rows, 1):
        needed, optional = ROW_KEYS
        if missing := needed - set(row):
            raise UserError(f"{where} row {number}: missing key {sorted(missing)[0]!r}")
        if unknown := set(row) - needed - optional:
            raise UserError(f"{where} row {number}: unknown key {sorted(unknown)[0]!r}")
        if not (root / row["grades"]).is_file():
            raise UserError(f"{where} row {number}: {root / row['grades']} does not exist")
        checked.append({**row, "grades": root / row["grades"]})
    return checked


def write_table(spec: FigureSpec, folder: Path) -> Path:
    """One table of the paper as CSV (fixed float format: the same inputs give the same bytes)."""
    out = folder / f"{spec.name}.csv"
    TABLE_KINDS[spec.kind].table(spec.options).to_csv(out, index=False, float_format="%.6g")
    return out


def draw(spec: FigureSpec, folder: Path) -> list[Path]:
    """One figure of the paper as PNG and PDF."""
    return FIGURE_KINDS[spec.kind].draw(spec.options, folder / spec.name, spec.root)


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
    out = paper / OUTPUT
    publish_folder(out, fill, INDEX, "scaling figures")
    if tables:
        def fill_tables(staging: Path) -> None:
            for spec in tables:
                write_table(spec, staging)
                say(f"wrote table {spec.name} ({spec.kind})")
            (staging / INDEX).write_text(_index(tables))

        publish_folder(paper / TABLES, fill_tables, INDEX, "scaling figures")
    return sorted(out.iterdir()) + (sorted((paper / TABLES).iterdir()) if tables else [])


def _index(specs: list[FigureSpec]) -> str:
    lines = [f"Drawn by `scaling figures` from {SPEC_FILE}; redraw with `scaling figures`, never by hand.", ""]
    for spec in specs:
        inputs = ", ".join(f"{k}={_shown(v, spec.root)}" for k, v in spec.options.items())
        lines.append(f"{spec.name}.png/.pdf: {spec.kind} ({inputs})")
    return "\n".join(lines) + "\n"


def _shown(value, root: Path):
    """An option as the INDEX shows it: paths relative to the repository root."""
    if isinstance(value, list):
        return [_shown(v, root) for v in value]
    if isinstance(value, dict):  # an accuracy_rows row: its grades file too
        return {k: _shown(v, root) for k, v in value.items()}
    return str(value.relative_to(root)) if isinstance(value, Path) else value

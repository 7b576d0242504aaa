"""A fit folder's record, `fit.toml`, written and read back in one place: the request that made it (to
rerun it), the input it read, what it found (a fit's law, diagnostics and backtest, or a comparison's
laws), its provenance, and how its groups are named in the posterior.

Paths in `fit.toml` are relative to the fit folder itself, so a folder and its input can move together
(a demo folder, a copied repository). Folders written before that recorded the input relative to the
repository root; they are still read.
"""

from __future__ import annotations

import dataclasses
import os
import tomllib
from dataclasses import dataclass
from pathlib import Path

import tomli_w

from scaling.errors import UserError
from scaling.user_files import regular_file
from scaling.fit.data import Columns
from scaling.fit.infer import SamplerConfig
from scaling.fit.items import POPULATIONS
from scaling.fit.laws import Law
from scaling.fit.request import FitRequest, as_columns
from scaling.fit.returns import ReturnsConfig
from scaling.provenance import provenance

MARKER = "fit.toml"  # what `scaling fit` writes last-but-one into every folder; its presence marks the folder as ours
WRITER = "scaling fit"  # who writes fit folders, as a refusal to replace another folder names it (scaling.staging)
GROUP_DIM = "group"  # the posterior's dimension over groups when --by names several columns
# Law axes renamed since fits were first recorded: old name -> new. An old record's `--x steps=step` reads
# as `--x step=step`, so committed fits stay drawable exactly as they were run.
LEGACY_LAW_AXES = {"steps": "step"}


@dataclass(frozen=True)
class FitRecord:
    """What a fit folder says about the fit in it."""

    folder: Path
    law: str
    y: str
    x: tuple[str, ...]  # AXIS=COLUMN mappings as requested
    by: tuple[str, ...]  # the --by columns, () without
    split: str | None  # results.nc: the split fitted
    where: str | None  # the row condition of the rows used
    input: Path  # the table or results.nc read, resolved

    @property
    def group_dim(self) -> str | None:
        """The posterior dimension over groups: the --by column itself, GROUP_DIM for several, None without."""
        return group_dim(self.by)


def group_dim(by: tuple[str, ...]) -> str | None:
    if not by:
        return None
    return by[0] if len(by) == 1 else GROUP_DIM


def read_fit(folder: Path, root: Path = Path(".")) -> FitRecord:
    """The fit in folder; root is where a folder of the older format ran (its input is relative to it)."""
    folder = Path(folder)
    path = folder / MARKER
    if not path.exists():
        raise UserError(f"{folder} is not a fit folder (it has no {MARKER})")
    regular_file(path, "fit record")
    try:
        request = tomllib.loads(path.read_text())["fit"]
    except (tomllib.TOMLDecodeError, KeyError, UnicodeDecodeError) as error:
        raise UserError(f"{path} is not a fit record ({type(error).__name__}: {error})") from None
    recorded = Path(request["input"])
    beside = recorded if recorded.is_absolute() else folder / recorded
    legacy = root / recorded
    return FitRecord(folder=folder, law=request["law"], y=request["y"], x=tuple(_renamed(m) for m in request.get("x", ())),
                     by=as_columns(request.get("by")), split=request.get("split"), where=request.get("where"),
                     input=beside if beside.exists() or not legacy.exists() else legacy)


def read_request(folder: Path, root: Path = Path(".")) -> FitRequest:
    """The request that made the fit in folder, to read its input again (its rows, groups and holdout) without
    refitting; keys this version does not know are left out."""
    record = read_fit(folder, root)
    spec = tomllib.loads((Path(folder) / MARKER).read_text())["fit"]
    known = {f.name for f in dataclasses.fields(FitRequest)}
    nested = {"sampler": SamplerConfig, "returns": ReturnsConfig}
    fields = {k: nested[k](**{n: v for n, v in spec[k].items() if n in {f.name for f in dataclasses.fields(nested[k])}})
              if k in nested else v for k, v in spec.items() if k in known}
    return FitRequest(**fields | {"input": record.input, "x": record.x, "by": record.by, "out": Path(folder)})


def _renamed(mapping: str) -> str:
    axis, sep, column = mapping.partition("=")
    return f"{LEGACY_LAW_AXES.get(axis, axis)}{sep}{column}"


def fit_toml(request: FitRequest, out: Path, law: Law, diagnostics: dict, backtest: dict, columns: Columns) -> str:
    """fit.toml of a fit written to out: its request, law, likelihood, diagnostics, backtest scores per group and
    provenance."""
    spec = recorded_request(request, out)
    attrs = provenance(tomli_w.dumps({"fit": spec}))
    return tomli_w.dumps({
        "fit": spec, "law": {"name": law.name, "formula": law.formula, "params": list(law.params)},
        "likelihood": likelihood_section(columns, law), "diagnostics": diagnostics, "backtest": backtest,
        "provenance": {k: v for k, v in attrs.items() if k != "spec"},
    })


def likelihood_section(columns: Columns, law: Law) -> dict:
    """fit.toml's [likelihood]: which one was used, and for an item-level fit its units and the population
    each output describes (scaling.fit.items)."""
    section = {"kind": columns.likelihood(law)}
    if columns.item:
        section |= {"item_column": columns.item, "run_unit": " × ".join(columns.units) or "none",
                    "population": {"summary": POPULATIONS["median"], "returns": POPULATIONS["median"],
                                   "backtest": POPULATIONS["these"], "new_items": POPULATIONS["new"]}}
    else:  # every row's examples count as independent: intervals describe the evaluation set's own items
        section["population"] = {"summary": "these items (the rows' evaluation set)", "backtest": "these items"}
    return section


def compare_toml(request: FitRequest, out: Path, laws: list[str], ic: str, scheme: str) -> str:
    """fit.toml of a comparison written to out: its request, the laws compared, and how they were scored."""
    return tomli_w.dumps({"fit": recorded_request(request, out), "compare": {"laws": laws, "ic": ic, "scheme": scheme}})


def recorded_request(request: FitRequest, out: Path) -> dict:
    """The request as fit.toml keeps it: the input relative to the fit folder (they move together), and no
    `out` (the folder is where the record lies)."""
    spec = _toml_ready(dataclasses.asdict(request))
    spec["input"] = Path(os.path.relpath(Path(request.input).resolve(), Path(out).resolve())).as_posix()
    spec.pop("out", None)
    return spec


def _toml_ready(value):
    """A dict TOML can hold: paths as strings, None values left out (TOML has no null)."""
    if isinstance(value, dict):
        return {k: _toml_ready(v) for k, v in value.items() if v is not None}
    if isinstance(value, (list, tuple)):
        return [_toml_ready(v) for v in value]
    return str(value) if isinstance(value, Path) else value

"""A fit folder as `scaling fit` writes it, read back in one place: its request (`fit.toml`), the input
it read, and how its groups are named in the posterior.

Paths in `fit.toml` are relative to the fit folder itself, so a folder and its input can move together
(a demo folder, a copied repository). Folders written before that recorded the input relative to the
repository root; they are still read.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path

from scaling.errors import UserError

MARKER = "fit.toml"  # what `scaling fit` writes last-but-one into every folder; its presence marks the folder as ours
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


def as_columns(by) -> tuple[str, ...]:
    """--by as a tuple of columns: from a list, a comma-separated string (one or more), or nothing."""
    if by is None:
        return ()
    items = [by] if isinstance(by, str) else list(by)
    return tuple(c.strip() for item in items for c in str(item).split(",") if c.strip())


def read_fit(folder: Path, root: Path = Path(".")) -> FitRecord:
    """The fit in folder; root is where a folder of the older format ran (its input is relative to it)."""
    folder = Path(folder)
    path = folder / MARKER
    if not path.is_file():
        raise UserError(f"{folder} is not a fit folder (it has no {MARKER})")
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


def _renamed(mapping: str) -> str:
    axis, sep, column = mapping.partition("=")
    return f"{LEGACY_LAW_AXES.get(axis, axis)}{sep}{column}"

"""Cells' curves where people look at them: TensorBoard event files or Weights & Biases runs.

A grid with `[run] log = "tensorboard"` writes one event folder per cell, RUN/logs/CELL_ID/, that a stock
`tensorboard --logdir RUN/logs` reads; `log = "wandb"` logs the same scalars as one W&B run per cell
(id the cell id, grouped by grid, config the cell's axes), offline unless WANDB_MODE says otherwise, so
no network is needed (`wandb sync RUN/logs/wandb/offline-run-*` uploads later). Both are optional
extras; the default logs nothing extra. Logs are a view of the cell file, never its source: a logger
that fails cannot fail a cell.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path
from typing import Callable, Protocol

from scaling.errors import UserError, first_line

# What each [run] log needs installed, and the extra that installs it.
NEEDS = {"tensorboard": ("tensorboardX", "tensorboard"), "wandb": ("wandb", "wandb")}
LOGS_DIR = "logs"


class CellLog(Protocol):
    def scalars(self, step: int, values: dict[str, float]) -> None: ...

    def close(self) -> None: ...


def check_log_installed(kind: str) -> None:
    """Refuse a [run] log whose package is missing, before any work starts."""
    if kind in NEEDS and importlib.util.find_spec(NEEDS[kind][0]) is None:
        raise UserError(f"[run] log = {kind!r} needs {NEEDS[kind][0]}: pip install 'scaling[{NEEDS[kind][1]}]'")


class TensorBoardLog:
    """One cell's event file(s) under logs_dir/CELL_ID (a resumed cell adds a file; TensorBoard merges them)."""

    def __init__(self, logs_dir: Path, cell_id: str):
        from tensorboardX import SummaryWriter

        self.writer = SummaryWriter(logdir=str(logs_dir / cell_id), flush_secs=10)

    def scalars(self, step: int, values: dict[str, float]) -> None:
        for tag, value in values.items():
            self.writer.add_scalar(tag, value, global_step=step)

    def close(self) -> None:
        self.writer.close()


class WandbLog:
    """One cell as one W&B run. Steps go in a `train_step` field rather than W&B's own step: a wsd budget's
    scores (at the budget) come after trunk losses past its decay branch's start, and W&B's own step may
    only increase."""

    def __init__(self, logs_dir: Path, cell_id: str, grid: str, label: str, config: dict):
        import wandb

        logs_dir.mkdir(parents=True, exist_ok=True)
        self.run = wandb.init(
            project=os.environ.get("WANDB_PROJECT", "scaling"), group=grid, name=label, id=cell_id, config=config,
            dir=str(logs_dir), mode=os.environ.get("WANDB_MODE", "offline"), resume="allow", reinit="create_new",
            settings=wandb.Settings(silent=True, console="off"),
        )
        self.run.define_metric("train_step")
        self.run.define_metric("*", step_metric="train_step")

    def scalars(self, step: int, values: dict[str, float]) -> None:
        self.run.log({"train_step": step, **values})

    def close(self) -> None:
        self.run.finish()


class GuardedLog:
    """A logger whose first failure is reported on stderr and turns it off: the cell goes on."""

    def __init__(self, open_log: Callable[[], CellLog], warn: Callable[[str], None]):
        self.inner: CellLog | None = None
        self.warn = warn
        self._guard(lambda: setattr(self, "inner", open_log()))

    def _guard(self, action: Callable[[], None]) -> None:
        try:
            action()
        except Exception as error:  # any logging failure: the results must not depend on it
            self.warn(f"logging turned off for this cell: {first_line(error, with_type=True)}")
            self.inner = None

    def scalars(self, step: int, values: dict[str, float]) -> None:
        if self.inner is not None:
            self._guard(lambda: self.inner.scalars(step, values))

    def close(self) -> None:
        if self.inner is not None:
            self._guard(self.inner.close)


def open_cell_log(kind: str, logs_dir: Path, cell_id: str, grid: str, label: str, config: dict,
                  warn: Callable[[str], None]) -> CellLog | None:
    """The cell's logger for [run] log = kind (guarded), None for "none"."""
    if kind == "tensorboard":
        return GuardedLog(lambda: TensorBoardLog(logs_dir, cell_id), warn)
    if kind == "wandb":
        return GuardedLog(lambda: WandbLog(logs_dir, cell_id, grid, label, config), warn)
    return None

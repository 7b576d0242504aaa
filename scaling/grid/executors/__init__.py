"""Executors run a grid's pending cells: `local` (this process or worker processes), `ray`, `slurm`.

Each is an `Executor`, named in `scaling.grid.spec.EXECUTORS` and defined as `EXECUTOR` in the module of
the same name here, imported only when chosen (Ray and SLURM need the optional `scaling[cluster]`).
Every cell runs through `scaling.grid.runner.work_on_cells` (`work_on_cells_by_id` where only the run
folder's URL travels), so executors differ only in where cells run.
"""

from __future__ import annotations

import importlib
from abc import ABC, abstractmethod
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar, Iterator

from scaling.errors import UserError
from scaling.grid.spec import EXECUTORS, GridSpec

if TYPE_CHECKING:
    from scaling.grid.folder import RunFolder
    from scaling.grid.runner import EventHook, Outcome
    from scaling.grid.spec import Cell


# What asking another executor for an option says ({executor}: the one chosen).
_ELSEWHERE = {
    "workers": "--workers sets the local executor's processes: the {executor} executor schedules its own",
    "address": "--address joins a Ray cluster: it needs --executor ray (the executor here is {executor})",
}


@dataclass(frozen=True)
class ExecutorOptions:
    """What the command line says about where cells run, over the spec's [run] section (None: not said)."""

    workers: int | None = None  # --workers: the local executor's processes ([run] workers)
    address: str | None = None  # --address: the Ray cluster to join ([run.ray] address)

    def __post_init__(self) -> None:
        if self.workers is not None and self.workers < 1:
            raise UserError(f"--workers must be >= 1, got {self.workers}")

    def check_taken(self, executor: type[Executor], spec: GridSpec) -> None:
        """A UserError for an option the chosen executor does not take (--workers repeating [run] workers asks
        nothing)."""
        asked = {"address": self.address is not None, "workers": self.workers not in (None, spec.run.workers)}
        refused = [name for name, given in asked.items() if given and name not in executor.takes]
        if refused:
            raise UserError(_ELSEWHERE[refused[0]].format(executor=executor.name))


class Executor(ABC):
    """Where a grid's cells run. `choose_executor` makes one and `check` judges it before anything is
    written; `ready` holds what it runs on for the run, and `run` works on the cells."""

    name: ClassVar[str]  # as --executor and [run] executor call it
    takes: ClassVar[frozenset[str]] = frozenset()  # the ExecutorOptions it reads

    @classmethod
    @abstractmethod
    def configured(cls, spec: GridSpec, options: ExecutorOptions) -> Executor:
        """This executor with the spec's [run] settings, overridden by the options it takes."""

    @property
    def shares_memory(self) -> bool:
        """Whether its cells run in this process, so that an in-memory run folder (memory://) reaches them."""
        return False

    def check(self, run_url: str) -> None:
        """Whatever can be judged of the run before anything is written (its packages, addresses, the run
        folder), as a UserError; an executor adds its own checks to these."""
        if run_url.startswith("memory://") and not self.shares_memory:
            raise UserError(f"the {self.name} executor cannot use {run_url}: its cells run in other processes, "
                            f"which do not share this one's memory")

    @contextmanager
    def ready(self) -> Iterator[None]:
        """What the cells run on (a Ray cluster, say), started or joined for the run; nothing here."""
        yield

    @abstractmethod
    def run(self, folder: RunFolder, spec: GridSpec, cells: list[Cell], retry_failed: bool,
            on_event: EventHook) -> list[Outcome]:
        """Work on every cell (inside `ready`), telling on_event each one's "end" and whatever else it sees."""


def choose_executor(name: str, spec: GridSpec, options: ExecutorOptions) -> Executor:
    """The executor `name` for spec with the command line's options; one it cannot use, or an option it does not
    take, is a UserError."""
    if name not in EXECUTORS:
        raise UserError(f"--executor must be one of {', '.join(EXECUTORS)}, got {name!r}")
    try:
        chosen: type[Executor] = importlib.import_module(f"{__name__}.{name}").EXECUTOR
    except ImportError as error:
        raise UserError(f"the {name} executor needs {error.name}: pip install 'scaling[cluster]'") from None
    options.check_taken(chosen, spec)
    return chosen.configured(spec, options)

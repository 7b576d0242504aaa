"""The Ray executor: one Ray task per cell, on a local Ray instance or an existing cluster.

Each task calls `work_on_cells_by_id`, so cells coordinate through the run folder's lock files exactly
as separate runners do; the run folder must therefore be reachable from every node (a shared
filesystem or an fsspec URL). A cell's own failure is recorded in its cell file by `work_on_cells` and
is never retried here (`retry_exceptions=False`); Ray's `max_retries` is for workers that die. A retry
on the same node takes over the dead worker's lock at once and resumes the cell from its checkpoints; a
retry on another node finds that lock fresh until `[run] stale_after_s` has passed and skips the cell,
which a rerun then resumes. Tasks report only their end: cells' steps are not shown while they run.
A driver stopped by SIGTERM cancels its tasks; a running one takes that (and a SIGTERM of its own) as a
stop: it checkpoints its cell at the step it reached and releases its lock (`scaling.grid.preempt`), and the
driver waits `[run] grace_s` (+ TASK_EXIT_S) for them before it exits.
"""

from __future__ import annotations

import logging
import socket
from contextlib import contextmanager
from dataclasses import dataclass
from typing import ClassVar, Iterator

from scaling.errors import UserError, first_line
from scaling.grid.executors import Executor, ExecutorOptions
from scaling.grid.spec import Cell, GridSpec, RaySpec
from scaling.grid.folder import RunFolder
from scaling.grid.preempt import Preempted, stop_on_signals
from scaling.grid.runner import EventHook, Outcome, work_on_cells_by_id
from scaling.results import CellStatus

TASK_EXIT_S = 5.0  # what a cancelled task may take beyond grace_s to end once its cell stopped

# The share of a GPU's memory JAX may take in a cell holding a fraction of it; JAX's default (75% of
# the whole GPU, allocated up front) would leave nothing for the other cells sharing that GPU.
GPU_MEMORY_SHARE = 0.9
# `ray start` turns token authentication on by default, and Ray sends the token to an explicit address only when asked.
AUTH_HINT = ("a cluster with token authentication also needs RAY_AUTH_MODE=token here, and its token in "
             "~/.ray/auth_token or RAY_AUTH_TOKEN")


@dataclass(frozen=True)
class RayExecutor(Executor):
    """Every cell as a Ray task, on a Ray instance started here or on the cluster at `address`."""

    address: str  # an existing cluster's HOST:PORT (or ray://HOST:PORT, or auto); "": start a local instance

    name: ClassVar[str] = "ray"
    takes: ClassVar[frozenset[str]] = frozenset({"address"})

    @classmethod
    def configured(cls, spec: GridSpec, options: ExecutorOptions) -> RayExecutor:
        return cls(spec.run.ray.address if options.address is None else options.address)

    def check(self, run_url: str) -> None:
        super().check(run_url)
        try:
            import ray  # noqa: F401
        except ImportError:
            raise UserError("the ray executor needs Ray: pip install 'scaling[cluster]'") from None
        if self.address:
            check_reachable(self.address)

    @contextmanager
    def ready(self) -> Iterator[None]:
        """Ray, started here or joined at the address, for the duration; shut down after, unless this process was
        already connected (a notebook's own connection is kept)."""
        import ray

        started = not ray.is_initialized()
        if started:
            _connect(ray, self.address)
        try:
            yield
        finally:
            if started:
                ray.shutdown()

    def run(self, folder: RunFolder, spec: GridSpec, cells: list[Cell], retry_failed: bool,
            on_event: EventHook) -> list[Outcome]:
        import ray

        task = ray.remote(_cell_task).options(**_task_options(spec.run.ray))
        running = {task.remote(folder.url, [cell.cell_id], retry_failed): cell for cell in cells}
        outcomes = []
        wait_s = spec.run.grace_s + TASK_EXIT_S
        with stop_on_signals(wait_s + TASK_EXIT_S) as stop:
            while running:
                if stop.requested():
                    for ref in running:
                        ray.cancel(ref)  # a running task gets a KeyboardInterrupt: its cell stops, checkpointed
                    ray.wait(list(running), num_returns=len(running), timeout=wait_s)
                    raise Preempted(f"asked its {len(running)} unfinished Ray tasks to stop (each checkpoints its "
                                    f"cell); rerun to resume")
                ready, _ = ray.wait(list(running), num_returns=1, timeout=0.5)
                if ready:
                    cell = running.pop(ready[0])
                    outcomes.append(_outcome(ray, ready[0], cell))
                    on_event("end", cell, outcomes[-1])
        return outcomes


def _cell_task(run_url: str, cell_ids: list[str], retry_failed: bool) -> list[Outcome]:
    """A Ray task: `work_on_cells_by_id`, stopped gracefully by SIGTERM and by `ray.cancel` (which interrupts
    the task as Ctrl-C would)."""
    return work_on_cells_by_id(run_url, cell_ids, retry_failed, sigint_stops=True)


def _connect(ray, address: str) -> None:
    """Start a local Ray instance (address "") or join the cluster at address; a bad address is a UserError."""
    # "local" rather than None: a RAY_ADDRESS in the environment must not turn "start one" into "join".
    options = dict(address=address or "local", logging_level=logging.WARNING, log_to_driver=False)
    if not address:
        options["include_dashboard"] = False
    try:
        ray.init(**options)
    except ValueError as error:  # a malformed address
        raise UserError(f"--address {address!r}: {first_line(error)}") from None
    except ConnectionError as error:  # it listens but refused us: most often the missing token
        raise UserError(f"cannot join the Ray cluster at {address}: {first_line(error)} ({AUTH_HINT})") from None


def check_reachable(address: str) -> None:
    """A malformed address, or a HOST:PORT nothing listens at, is a UserError now: Ray itself retries such an
    address for minutes. `auto` (the cluster this machine's `ray start` left a note of) is left to ray.init."""
    if address == "auto":
        return
    target = address.removeprefix("ray://")
    host, sep, port = target.rpartition(":")
    if not sep or not host or "/" in target or not port.isdigit() or not 0 < int(port) < 65536:
        raise UserError(f"--address {address!r} must be HOST:PORT (or ray://HOST:PORT, or auto)")
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=10).close()
    except (OSError, UnicodeError) as error:
        raise UserError(f"cannot reach a Ray cluster at {address} ({getattr(error, 'strerror', None) or error}); "
                        f"start one with `ray start --head --port={port}`") from None


def _task_options(resources: RaySpec) -> dict:
    options = dict(num_cpus=resources.num_cpus, num_gpus=resources.num_gpus, max_retries=resources.max_retries,
                   retry_exceptions=False)
    if 0 < resources.num_gpus < 1:
        share = f"{GPU_MEMORY_SHARE * resources.num_gpus:.3f}"
        options["runtime_env"] = {"env_vars": {"XLA_PYTHON_CLIENT_MEM_FRACTION": share}}
    return options


def _outcome(ray, ref, cell: Cell) -> Outcome:
    """The task's Outcome, or a failed one (the cell stays unfinished on disk) when the task did not return."""
    try:
        (outcome,) = ray.get(ref)
        return outcome
    except ray.exceptions.RayTaskError as error:  # raised by the task itself, outside the cell (e.g. its run folder)
        cause = error.cause if error.cause is not None else error
        return Outcome(cell.cell_id, CellStatus("failed", first_line(cause, with_type=True)), False)
    except ray.exceptions.RayError as error:  # its worker or node died once more than max_retries allows
        return Outcome(cell.cell_id, CellStatus("failed", f"worker died: {first_line(error, with_type=True)}"), False)


EXECUTOR = RayExecutor

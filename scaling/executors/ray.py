"""The Ray executor: one Ray task per cell, on a local Ray instance or an existing cluster.

Each task calls `work_on_cell_by_id`, so cells coordinate through the run folder's lock files exactly
as separate runners do; the run folder must therefore be reachable from every node (a shared
filesystem or an fsspec URL). A cell's own failure is recorded in its cell file by `work_on_cell` and
is never retried here (`retry_exceptions=False`); Ray's `max_retries` is for workers that die. A retry
on the same node takes over the dead worker's lock at once and resumes the cell from its checkpoints; a
retry on another node finds that lock fresh until `[run] stale_after_s` has passed and skips the cell,
which a rerun then resumes. Tasks report only their end: cells' steps are not shown while they run.
"""

from __future__ import annotations

import logging
import socket

from scaling.errors import UserError
from scaling.grid import Cell, GridSpec
from scaling.runfolder import RunFolder
from scaling.runner import EventHook, Outcome, work_on_cell_by_id

# The share of a GPU's memory JAX may take in a cell holding a fraction of it; JAX's default (75% of
# the whole GPU, allocated up front) would leave nothing for the other cells sharing that GPU.
GPU_MEMORY_SHARE = 0.9
# `ray start` turns token authentication on by default, and Ray sends the token to an explicit address only when asked.
AUTH_HINT = ("a cluster with token authentication also needs RAY_AUTH_MODE=token here, and its token in "
             "~/.ray/auth_token or RAY_AUTH_TOKEN")


def run_ray(folder: RunFolder, spec: GridSpec, cells: list[Cell], retry_failed: bool, address: str,
            on_event: EventHook) -> list[Outcome]:
    """Work on every cell as a Ray task; address "" starts a local Ray instance, HOST:PORT joins a cluster."""
    import ray

    if folder.url.startswith("memory://"):
        raise UserError(f"the ray executor cannot use {folder.url}: Ray workers do not share this process's memory")
    started = not ray.is_initialized()  # in a notebook already connected to Ray, use that connection
    if started:
        _connect(ray, address)
    try:
        task = ray.remote(work_on_cell_by_id).options(**_task_options(spec))
        running = {task.remote(folder.url, cell.cell_id, retry_failed): cell for cell in cells}
        outcomes = []
        while running:
            ready, _ = ray.wait(list(running), num_returns=1)
            cell = running.pop(ready[0])
            outcomes.append(_outcome(ray, ready[0], cell))
            on_event("end", cell, outcomes[-1])
        return outcomes
    finally:
        if started:
            ray.shutdown()


def _connect(ray, address: str) -> None:
    """Start a local Ray instance (address "") or join the cluster at address; a bad address is a UserError."""
    if address:
        check_reachable(address)
    # "local" rather than None: a RAY_ADDRESS in the environment must not turn "start one" into "join".
    options = dict(address=address or "local", logging_level=logging.WARNING, log_to_driver=False)
    if not address:
        options["include_dashboard"] = False
    try:
        ray.init(**options)
    except ValueError as error:  # a malformed address
        raise UserError(f"--address {address!r}: {_one_line(str(error))}") from None
    except ConnectionError as error:  # it listens but refused us: most often the missing token
        raise UserError(f"cannot join the Ray cluster at {address}: {_one_line(str(error))} ({AUTH_HINT})") from None


def check_reachable(address: str) -> None:
    """Fail fast on a HOST:PORT nothing listens at: Ray itself retries such an address for minutes."""
    host, _, port = address.rpartition(":")
    if "://" in address or not host or not port.isdigit():
        return  # "auto", ray://HOST:PORT (Ray Client) or a malformed address, which ray.init reports
    try:
        socket.create_connection((host, int(port)), timeout=10).close()
    except OSError as error:
        raise UserError(f"cannot reach a Ray cluster at {address} ({error.strerror or error}); "
                        f"start one with `ray start --head --port={port}`") from None


def _task_options(spec: GridSpec) -> dict:
    resources = spec.run.ray
    options = dict(num_cpus=resources.num_cpus, num_gpus=resources.num_gpus, max_retries=resources.max_retries,
                   retry_exceptions=False)
    if 0 < resources.num_gpus < 1:
        share = f"{GPU_MEMORY_SHARE * resources.num_gpus:.3f}"
        options["runtime_env"] = {"env_vars": {"XLA_PYTHON_CLIENT_MEM_FRACTION": share}}
    return options


def _outcome(ray, ref, cell: Cell) -> Outcome:
    """The task's Outcome, or a failed one (the cell stays unfinished on disk) when the task did not return."""
    try:
        return ray.get(ref)
    except ray.exceptions.RayTaskError as error:  # raised by the task itself, outside the cell (e.g. its run folder)
        cause = error.cause if error.cause is not None else error
        return Outcome(cell.cell_id, _one_line(f"failed: {type(cause).__name__}: {cause}"), False)
    except ray.exceptions.RayError as error:  # its worker or node died once more than max_retries allows
        return Outcome(cell.cell_id, _one_line(f"failed: worker died: {type(error).__name__}: {error}"), False)


def _one_line(text: str) -> str:
    return text.strip().splitlines()[0]

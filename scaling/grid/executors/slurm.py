"""The SLURM executor: one array task per cell, submitted through submitit from a login node.

Each task calls `work_on_cells_by_id`, so it coordinates with every other runner through the run folder's
lock files; the run folder and this Python environment must be visible from the compute nodes. A task
that is preempted or reaches its time limit is requeued (up to `max_num_timeout` times) and resumes its
cell from the orbax checkpoints in the scratch folder. Tasks are submitted with `--requeue`, and the runner
takes SLURM's SIGTERM (preemption) and submitit's USR2 (time limit) alike: it checkpoints the cell at the
step it reached and releases its lock within `[run] grace_s` (`scaling.grid.preempt`), then SLURM requeues
the preempted task and submitit's own USR2 handler the timed-out one. A cell
signalled once more than that is recorded as failed ("... timed-out too many times"), its checkpoints
kept for `scaling run --retry-failed`. Jobs keep running if this process is stopped; a rerun skips the
cells they hold or finished.
"""

from __future__ import annotations

import importlib
import os
import re
from dataclasses import dataclass
from types import ModuleType
from typing import ClassVar

from scaling.errors import UserError, first_line
from scaling.grid.executors import Executor, ExecutorOptions
from scaling.grid.spec import Cell, GridSpec
from scaling.grid.folder import RunFolder
from scaling.grid.runner import EventHook, Outcome, scratch_dir, work_on_cells_by_id
from scaling.results import CellStatus

SUBMITIT_LOG_LEVEL = "SUBMITIT_LOG_LEVEL"  # submitit's own setting; "NOCONFIG" leaves the process's logging alone


def _submitit() -> ModuleType:
    """submitit, imported without letting it configure logging. Its import calls logging.config.dictConfig, which
    closes every logging handler the process already has; absl's closes its stream with it unless that is the
    stderr of the moment, so importing this module under a redirected stderr closed the stream absl was given
    (in the tests, pytest's captured stderr: the run died with "lost sys.stderr"). Its warnings still reach
    stderr (logging's last resort); its jobs, which do not inherit the setting, log as submitit sets them to; a
    user's own SUBMITIT_LOG_LEVEL is kept."""
    if SUBMITIT_LOG_LEVEL in os.environ:
        return importlib.import_module("submitit")
    os.environ[SUBMITIT_LOG_LEVEL] = "NOCONFIG"
    try:
        return importlib.import_module("submitit")
    finally:
        del os.environ[SUBMITIT_LOG_LEVEL]


submitit = _submitit()
from submitit.core.utils import DelayedSubmission, FailedJobError, FailedSubmissionError  # noqa: E402

CLUSTER_ENV = "SCALING_SUBMITIT_CLUSTER"  # forces submitit's cluster: "local" (subprocesses), "debug" (in-process)
POLL_S = {"slurm": 10.0}  # seconds between checks of running jobs: sacct is a shared service, so slowly there
TRACE_RULE = "\n" + "-" * 22 + "\n"  # what submitit's FailedJobError puts around the job's traceback


class CellTask(submitit.helpers.Checkpointable):
    """One cell of a run folder as a job; requeued as itself, since its progress lives in its checkpoints."""

    def __call__(self, run_url: str, cell_id: str, retry_failed: bool) -> Outcome:
        (outcome,) = work_on_cells_by_id(run_url, [cell_id], retry_failed)
        return outcome

    def checkpoint(self, run_url: str, cell_id: str, retry_failed: bool) -> DelayedSubmission:
        # Called by submitit's signal handler (SLURM's USR2 before preemption or the time limit), once the runner
        # has checkpointed the cell where it stood and released its lock (scaling.grid.preempt passes the signal
        # on): the requeued call takes the lock and resumes from that checkpoint.
        return DelayedSubmission(CellTask(), run_url, cell_id, retry_failed)


@dataclass(frozen=True)
class SlurmExecutor(Executor):
    """Every cell as a task of one SLURM job array, submitted through submitit with the resources of [run.slurm]."""

    name: ClassVar[str] = "slurm"

    @classmethod
    def configured(cls, spec: GridSpec, options: ExecutorOptions) -> SlurmExecutor:
        return cls()

    def check(self, run_url: str) -> None:
        super().check(run_url)
        submitit_cluster()

    def run(self, folder: RunFolder, spec: GridSpec, cells: list[Cell], retry_failed: bool,
            on_event: EventHook) -> list[Outcome]:
        """Submit every cell as one job array, print its job ids, and wait for each task to finish."""
        executor = make_executor(folder, spec)
        try:
            jobs = executor.map_array(CellTask(), [folder.url] * len(cells), [c.cell_id for c in cells],
                                      [retry_failed] * len(cells))
        except (FailedJobError, FailedSubmissionError) as error:  # sbatch refused: partition, account, array size...
            raise UserError(f"sbatch refused the array of {len(cells)} cells: {first_line(error)}") from None
        ids = sorted({job.job_id.split("_")[0] for job in jobs})
        print(f"submitted {len(jobs)} cells as {executor.cluster} job{'s' if len(ids) > 1 else ''} {', '.join(ids)}; "
              f"logs in {executor.folder}", flush=True)
        by_job = {job.job_id: cell for job, cell in zip(jobs, cells)}
        outcomes = []
        for job in submitit.helpers.as_completed(jobs, poll_frequency=POLL_S.get(executor.cluster, 1.0)):
            cell = by_job[job.job_id]
            outcomes.append(_outcome(job, cell))
            on_event("end", cell, outcomes[-1])
        return outcomes


def submitit_cluster() -> str:
    """The submitit cluster to submit to; no SLURM here (and no override) is a UserError."""
    forced = os.environ.get(CLUSTER_ENV)
    cluster = forced or submitit.AutoExecutor.which()
    if cluster != "slurm" and not forced:
        # submitit would fall back to running every cell at once on this machine
        raise UserError(f"the slurm executor found no SLURM here (no srun on PATH); use --executor local, "
                        f"or set {CLUSTER_ENV}=local to try the SLURM path with local processes")
    if forced and forced not in ("slurm", "local", "debug"):
        raise UserError(f"{CLUSTER_ENV} must be slurm, local or debug, got {forced!r}")
    return cluster


def make_executor(folder: RunFolder, spec: GridSpec) -> submitit.AutoExecutor:
    """A submitit executor with [run.slurm]'s resources, logging under the run's scratch folder."""
    slurm = spec.run.slurm
    executor = submitit.AutoExecutor(folder=scratch_dir(folder) / "submitit", cluster=submitit_cluster(),
                                     slurm_max_num_timeout=slurm.max_num_timeout,
                                     local_max_num_timeout=slurm.max_num_timeout)
    # --requeue: a preempted task (SIGTERM, then SIGKILL after KillWait) goes back to the queue as itself; its
    # runner checkpoints the cell within [run] grace_s of the SIGTERM (scaling.grid.preempt).
    parameters = dict(name=f"scaling-{spec.name}", timeout_min=slurm.timeout_min, cpus_per_task=slurm.cpus_per_task,
                      gpus_per_node=slurm.gpus_per_node, mem_gb=slurm.mem_gb,
                      slurm_array_parallelism=slurm.array_parallelism, slurm_additional_parameters={"requeue": True})
    if slurm.partition:
        parameters["slurm_partition"] = slurm.partition
    executor.update_parameters(**parameters)
    return executor


def _outcome(job, cell: Cell) -> Outcome:
    """The job's Outcome, or a failed one (the cell stays unfinished on disk) when the job returned none."""
    error = job.exception()
    if error is None:
        return job.result()
    return Outcome(cell.cell_id, CellStatus("failed", f"job {job.job_id}: {_reason(error)}"), False)


def _reason(error: Exception) -> str:
    """One line on why a job returned no Outcome: its exception, or the state it ended in."""
    text = str(error)
    if isinstance(error, FailedJobError) and text.count(TRACE_RULE) >= 2:  # the job's traceback between two rules
        return text.split(TRACE_RULE)[1].strip().splitlines()[-1]
    state = re.search(r"\(state: ([^)]*)\)", text)  # an UncompletedJobError: killed, out of memory, cancelled
    return f"no result (state: {state.group(1)})" if state else first_line(error)


EXECUTOR = SlurmExecutor

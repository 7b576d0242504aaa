"""Running a grid's cells into a run folder: each cell exactly once, whoever runs it and however often.

The run folder (a local path or an fsspec URL) holds
    grid.toml             the spec as first run; a later run must ask for the same results
    cells/<id>.nc         one file per finished cell, status "done" or "failed: <reason>"
    locks/<id>.lock       the cell a runner is working on, with its owner and heartbeat
    results.nc            the hypercube, written by `scaling collect`
and a local scratch folder (inside a local run folder, else under ~/.cache/scaling) holds each
running cell's checkpoints and the pretrained bases. Every executor calls `work_on_cells` (in a worker
process, a Ray task or a SLURM job: `work_on_cells_by_id`), which calls `work_on_cell` for each: take the
cell's lock, re-check that it is still unfinished, train (resuming from its checkpoints), write its
file atomically, release. A runner killed at any point leaves a lock whose owner is dead, which the
next runner takes over, and checkpoints it resumes from; one sent SIGTERM checkpoints its cell at the step it
reached, releases the lock and exits (`scaling.grid.preempt`).
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import shutil
import socket
import sys
import tempfile
import traceback
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

from scaling.cache import local_cache
from scaling.errors import DiskFull, UserError, first_line, out_of_memory
from scaling.grid.spec import Cell, GridSpec, expand, parse_spec
from scaling.grid.locks import acquire
from scaling.grid.folder import RunFolder
from scaling.grid.preempt import Preempted, StopRequest, stop_on_signals
from scaling.results import CellStatus
from scaling.schema import DATA_VERSION, METRICS
from scaling.grid.store import (CellResult, arm_grades_table, cell_dataset, cell_status, grades_table, read_folder_cell,
                                write_dataset, write_grades)

SPEC = "grid.toml"
VERSION = "data_version"  # the data version the folder's cells are drawn with (schema.DATA_VERSION)
RESULTS_FILE = "results.nc"
SPEC_DIR = "spec_dir"  # the folder the spec was read from: hf:PATH bases and [data] source resolve against it


def cell_file(cell_id: str) -> str:
    return f"cells/{cell_id}.nc"


def grades_file(cell_id: str) -> str:
    """A cell's per-example grades: written before its cell file, whose presence marks the cell finished."""
    return f"cells/{cell_id}.grades.parquet"


def arm_grades_file(cell_id: str) -> str:
    """The per-example grades of a cell's arms after SFT ([rl], [rft]), written with its grades."""
    return f"cells/{cell_id}.arm_grades.parquet"


def lock_file(cell_id: str) -> str:
    return f"locks/{cell_id}.lock"


def progress_file(cell_id: str) -> str:
    """A running cell's latest CellProgress (JSON), beside its lock: what `scaling status` shows."""
    return f"locks/{cell_id}.progress"


@dataclass(frozen=True)
class Outcome:
    """What one attempt at a cell did."""

    cell_id: str
    status: CellStatus  # done, failed, or skipped (with why) when this runner did not compute it
    computed: bool  # this runner trained the cell and wrote its file
    worker: str = ""  # host:pid of the process that tried


# Why an attempt computed nothing: the first leaves the cell to another runner, the others find it finished.
RUNNING_ELSEWHERE = CellStatus("skipped", "running elsewhere")
ALREADY_FINISHED = CellStatus("skipped", "already finished")
LOCK_LOST = CellStatus("skipped", "lock lost")

# on_event(kind, cell, value): "start" (value: total steps) and "step" (value: a scaling.grid.watch.CellProgress)
# from work_on_cell, and "end" (value: the Outcome) for every cell tried; executors whose cells run elsewhere
# report each "end" from the Outcome they get back.
EventHook = Callable[[str, Cell, object], None]


def open_run(spec: GridSpec, out: str | os.PathLike) -> RunFolder:
    """The run folder for spec at out, created with its grid.toml; a folder of another grid is a UserError.

    Runners started together on a new folder (job arrays, several nodes) race here: exactly one
    initializes it, all at once, and the others find its grid.toml and check it as a later run would.
    """
    folder = RunFolder(out)
    if folder.is_local and folder.local_path.exists() and not folder.local_path.is_dir():
        raise UserError(f"--out {folder.url} is a file; give a folder")
    if not folder.exists(SPEC):
        if folder.is_local and folder.local_path.is_dir() and _has_content(folder.local_path):
            raise UserError(f"--out {folder.url} exists and holds no {SPEC}; choose an empty or new folder")
        files = {SPEC: spec.text.encode(), VERSION: f"{DATA_VERSION}\n".encode()}
        if spec.needs_spec_dir:
            files[SPEC_DIR] = str(Path(spec.base_dir).resolve()).encode()
        try:
            if folder.initialize(files, last=SPEC):
                return folder
        except OSError as error:
            raise UserError(f"cannot write the run folder {folder.url} ({type(error).__name__}: "
                            f"{error.strerror or error})") from None
        if not folder.exists(SPEC):  # it had content, but not a grid: a user's folder, not another runner's
            raise UserError(f"--out {folder.url} exists and holds no {SPEC}; choose an empty or new folder")
    check_same_grid(spec, folder)
    return folder


def check_same_grid(spec: GridSpec, folder: RunFolder) -> None:
    """Refuse a run folder (one with a grid.toml) whose cells are not spec's: another data version, or a grid.toml
    asking for other results. Reads only, so a dry run refuses what a run would."""
    check_data_version(folder)
    earlier = parse_spec(folder.read_text(SPEC), source=folder.path(SPEC), base_dir=Path(spec.base_dir))
    if earlier.results_content() != spec.results_content():
        raise UserError(f"run folder {folder.url} holds another grid (its {SPEC} differs in axes, data, train or "
                        f"eval); choose another --out")


def _has_content(path: Path) -> bool:
    """Whether a folder holds anything besides what an initializing runner writes before grid.toml."""
    return any(not entry.name.startswith(".") and entry.name not in (SPEC_DIR, VERSION) for entry in path.iterdir())


def check_data_version(folder: RunFolder) -> None:
    """Refuse a run folder whose cells were drawn by another data version (schema.DATA_VERSION): its cells
    would never match this version's cell ids, so a rerun would start over beside them and collect would
    find none. A folder started before versions were recorded is version 1 when it holds cells."""
    version = _recorded_version(folder) if folder.exists(VERSION) else (1 if folder.list("cells", ".nc") else DATA_VERSION)
    if version != DATA_VERSION:
        raise UserError(f"run folder {folder.url} holds cells of data version {version}; this scaling draws data "
                        f"version {DATA_VERSION} (evaluation sets of n problems per family, rule variants, a length ladder): "
                        f"run the grid into a new "
                        f"--out ({RESULTS_FILE} there still opens with scaling.open_results)")


def _recorded_version(folder: RunFolder) -> int:
    """The data version a run folder's VERSION file holds; a UserError naming the file and (a printable start of)
    what it holds where that is no version number."""
    held = folder.read_bytes(VERSION)
    text = held.decode("utf-8", errors="replace").strip()
    if not text.isascii() or not text.isdigit():
        raise UserError(f"{folder.path(VERSION)} should hold the data version its cells were drawn with (a number), "
                        f"but holds {text[:40]!r}{'...' if len(text) > 40 else ''}")
    return int(text)


def read_run_spec(folder: RunFolder) -> GridSpec:
    """The spec a run folder was started with."""
    if not folder.exists(SPEC):
        raise UserError(f"{folder.url} is not a run folder (it has no {SPEC})")
    check_data_version(folder)
    # hf:PATH bases and dataset files are relative to the folder of the spec the run was started from, not the
    # run folder's.
    base_dir = folder.read_text(SPEC_DIR).strip() if folder.exists(SPEC_DIR) else "."
    return parse_spec(folder.read_text(SPEC), source=folder.path(SPEC), base_dir=base_dir)


def finished_status(folder: RunFolder, cell_id: str) -> CellStatus | None:
    """The recorded status of a finished cell, None if it has no file; a corrupt file is a UserError."""
    if not folder.exists(cell_file(cell_id)):
        return None
    return cell_status(read_folder_cell(folder, cell_file(cell_id)), folder.path(cell_file(cell_id)))


def needs_work(folder: RunFolder, cell_id: str, retry_failed: bool) -> bool:
    """Whether a cell is still to be computed: no file yet, or (with retry_failed) a failed or corrupt one."""
    try:
        status = finished_status(folder, cell_id)
    except UserError:
        if retry_failed:
            return True
        raise
    return status is None or (retry_failed and not status.done)


def scratch_dir(folder: RunFolder) -> Path:
    """Where checkpoints and bases live: inside a local run folder, else a local cache keyed by the URL."""
    if folder.is_local:
        return folder.local_path / "scratch"
    return local_cache() / "runs" / hashlib.sha256(folder.url.encode()).hexdigest()[:16]


def use_compilation_cache() -> None:
    """Keep compiled programs on disk (in the local cache, unless JAX_COMPILATION_CACHE_DIR says where), so
    that worker processes, reruns and later grids with the same shapes skip compiling: a cell's train
    step, evaluation and decoding take seconds each to compile on CPU. Entries are keyed by the program
    and the JAX version, so a hit is the same executable."""
    import jax

    if os.environ.get("JAX_COMPILATION_CACHE_DIR") or jax.config.jax_compilation_cache_dir:
        return
    jax.config.update("jax_compilation_cache_dir", str(local_cache() / "jax"))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.2)


def logs_dir(folder: RunFolder) -> Path:
    """Where [run] log writes cells' TensorBoard or W&B files: RUN/logs, or the local scratch for a remote run."""
    from scaling.grid.logs import LOGS_DIR

    return (folder.local_path if folder.is_local else scratch_dir(folder)) / LOGS_DIR


def checkpoints_dir(folder: RunFolder, cell_id: str) -> Path:
    return scratch_dir(folder) / "checkpoints" / cell_id


def worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def work_on_cell(folder: RunFolder, spec: GridSpec, cell: Cell, retry_failed: bool = False,
                 on_event: EventHook | None = None, stop: StopRequest | None = None) -> Outcome:
    """Compute one cell unless it is finished or another runner holds it; never stops on a failed cell.

    Once `stop` is requested the cell is checkpointed at the step it reached and `Preempted` raised: no cell
    file (it did not fail), its lock released on the way out."""
    from scaling.grid.arms import ArmStopped
    from scaling.grid.cell import run_cell  # the trainer's imports only where cells are trained
    from scaling.grid.plan import cell_plan, load_or_pretrain_base, measured_base
    from scaling.provenance import provenance
    from scaling.trainer.train import Stopped

    use_compilation_cache()
    worker = worker_name()
    lock = acquire(folder, lock_file(cell.cell_id), spec.run.heartbeat_s, spec.run.stale_after_s)
    if lock is None:
        return Outcome(cell.cell_id, RUNNING_ELSEWHERE, False, worker)
    stop = stop or StopRequest(spec.run.grace_s)
    with lock, stop.holding(lock):
        # Checked again under the lock: another runner may have finished it since this one listed the work.
        if not needs_work(folder, cell.cell_id, retry_failed):
            return Outcome(cell.cell_id, ALREADY_FINISHED, False, worker)
        notify = on_event or _unheard
        checkpoints = checkpoints_dir(folder, cell.cell_id)
        plan = None
        try:
            bases = scratch_dir(folder) / "bases"
            plan = cell_plan(spec, cell, load_or_pretrain_base(spec, cell, bases))
            plan = dataclasses.replace(plan, base_measures=measured_base(spec, cell, plan, bases))
            notify("start", cell, plan.train_cfg.total_steps)
            keep = (lambda params: save_cell_model(folder, cell, plan, params)) if spec.run.save_models else None
            with _reporter(folder, spec, cell, plan, notify) as reporter:
                result = run_cell(plan, checkpoints=checkpoints, on_final=keep, observer=reporter,
                                  should_stop=stop.requested)
        except ArmStopped as stopped:  # inside an arm after SFT: its own step
            raise Preempted.of_cell(cell.cell_id, stopped.saved_step, stopped.steps, stopped.phase) from None
        except Stopped as stopped:
            raise Preempted.of_cell(cell.cell_id, stopped.saved_step, plan.train_cfg.budgets[-1]) from None
        except Exception as error:  # recorded as the cell's failure: one bad cell must not stop the grid
            result = failed_result(cell, failure_reason(error, spec, cell, plan))
            traceback.print_exc()
        if lock.lost:  # a runner took the lock over (this one looked dead): its result will be the same
            return Outcome(cell.cell_id, LOCK_LOST, False, worker)
        attrs = provenance(spec.text, spec.source.provenance()) | {"worker": worker}
        try:
            write_result(folder, result, attrs)
        except DiskFull as full:
            # No room for the cell's grades or file: it is recorded failed in its small file where that still fits,
            # its checkpoints kept for the rerun; where not even that fits, DiskFull stops the runner.
            result = failed_result(cell, str(full))
            write_result(folder, result, attrs)
        if result.status.done:
            shutil.rmtree(checkpoints, ignore_errors=True)
        return Outcome(cell.cell_id, result.status, True, worker)


def write_result(folder: RunFolder, result: CellResult, attrs: dict) -> None:
    """A cell's grades, then its file (whose presence marks the cell finished)."""
    write_grades(folder, grades_file(result.cell_id), grades_table(result))
    if result.arms:
        write_grades(folder, arm_grades_file(result.cell_id), arm_grades_table(result))
    write_dataset(folder, cell_file(result.cell_id), cell_dataset(result, attrs))


def failure_reason(error: Exception, spec: GridSpec, cell: Cell, plan) -> str:
    """What a failed cell's status says: a full disk's one line as it is; memory running out as "out of
    memory" with the cell's shape; else the error's type and first line."""
    if isinstance(error, DiskFull):
        return str(error)
    if out_of_memory(error):
        return f"out of memory ({cell_shape(spec, cell, plan)}): {first_line(error, with_type=True)}"
    return first_line(error, with_type=True)


def cell_shape(spec: GridSpec, cell: Cell, plan) -> str:
    """What sizes a cell's memory, as far as it is known: from its plan once it has one (None before: its base
    is being loaded or pretrained), else from the spec."""
    params = plan.model_cfg.non_embedding_params if plan is not None else cell.base.params_known_upfront
    parts = [f"size={cell.size}" + (f" ({params:,} params)" if params else "")]
    if plan is None and cell.pretrain_tokens:
        parts.append(f"pretraining batch {spec.train.pretrain_batch_size} × {spec.train.pretrain_context} tokens")
    rows = f" × {plan.train_data.inputs.shape[1]} tokens" if plan is not None else ""
    eval_batch = plan.eval_batch if plan is not None else spec.eval.decode_batch
    return ", ".join([*parts, f"batch {spec.train.batch_size}{rows}", f"eval batch {eval_batch}"])


@contextmanager
def _reporter(folder: RunFolder, spec: GridSpec, cell: Cell, plan, notify: EventHook):
    """The cell's CellReporter: progress to the console (`notify`) and to its progress file, curves to its
    [run] log; the file is removed and the log closed when the cell ends, however it ends."""
    from scaling.grid.logs import open_cell_log
    from scaling.grid.watch import CellReporter

    def publish(progress) -> None:
        try:
            folder.write_bytes_atomic(progress_file(cell.cell_id), progress.to_json())
        except (OSError, DiskFull):  # progress is a courtesy: a full disk or a flaky bucket must not fail the cell
            pass

    def warn(message: str) -> None:
        print(f"scaling: cell {cell.cell_id}: {message}", file=sys.stderr)

    log = open_cell_log(spec.run.log, logs_dir(folder), cell.cell_id, spec.name, cell.label,
                        {"cell_id": cell.cell_id, "grid": spec.name, **cell.axes}, warn)
    reporter = CellReporter(plan.train_cfg.total_steps, plan.train_cfg.budgets, plan.tokens_per_step,
                            show=lambda progress: notify("step", cell, progress), publish=publish, log=log,
                            publish_every_s=min(5.0, spec.run.heartbeat_s))
    try:
        yield reporter
    finally:
        if log is not None:
            log.close()
        folder.remove(progress_file(cell.cell_id))


def model_dir(cell_id: str) -> str:
    return f"models/{cell_id}"


def save_cell_model(folder: RunFolder, cell: Cell, plan, params) -> None:
    """Write a cell's final model as a model folder in RUN/models/CELL_ID/, replacing an earlier attempt's
    (what the folder holds, and how it exports, is its base's business: `Base.save_model`)."""
    scratch_dir(folder).mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=scratch_dir(folder)) as staging:
        written = cell.base.save_model(Path(staging) / cell.cell_id, plan.model_cfg, params,
                                       source=f"cell {cell.cell_id} of {folder.url}", adapter=plan.train_cfg.adapter)
        for file in sorted(written.iterdir()):  # every file atomically; a rerun overwrites an earlier attempt's
            folder.put_file_atomic(f"{model_dir(cell.cell_id)}/{file.name}", file)


def failed_result(cell: Cell, reason: str) -> CellResult:
    """The record of a cell that failed (for `reason`) before it measured anything."""
    return CellResult(cell_id=cell.cell_id, axes=cell.axes, steps=(), splits=("train",),
                      metrics={"train": {m: [] for m in METRICS}}, params=cell.base.params_known_upfront, flops=(),
                      wall_seconds=0.0, status=CellStatus("failed", reason))


def work_on_cells(folder: RunFolder, spec: GridSpec, cells: Sequence[Cell], retry_failed: bool = False,
                  on_event: EventHook | None = None, sigint_stops: bool = False, resumable: bool = True) -> list[Outcome]:
    """`work_on_cell` for each cell in turn, each one's "end" told to on_event too; SIGTERM (and SIGINT, if
    `sigint_stops`) stops them (see `scaling.grid.preempt`). A run that is not `resumable` (its folder is
    thrown away when it stops: the demo's staging) has nothing to checkpoint for: signals keep the handlers
    they had, which unwind at once."""
    notify = on_event or _unheard
    outcomes = []
    stops = stop_on_signals(spec.run.grace_s, sigint_stops=sigint_stops) if resumable else nullcontext(
        StopRequest(spec.run.grace_s))
    with stops as stop:
        for index, cell in enumerate(cells):
            if stop.requested():
                left = len(cells) - index
                raise Preempted(f"{left} cell{'s' * (left > 1)} not started; rerun to run them")
            outcomes.append(work_on_cell(folder, spec, cell, retry_failed, notify, stop))
            notify("end", cell, outcomes[-1])
    return outcomes


def work_on_cells_by_id(run_url: str, cell_ids: Sequence[str], retry_failed: bool = False,
                        on_event: EventHook | None = None, sigint_stops: bool = False) -> list[Outcome]:
    """`work_on_cells` for cells named by id in a run folder, with the spec it was started with: what a worker
    process, a Ray task and a SLURM job call, knowing nothing but the folder's URL."""
    folder = RunFolder(run_url)
    spec = read_run_spec(folder)
    cells = {cell.cell_id: cell for cell in expand(spec)}
    unknown = [cell_id for cell_id in cell_ids if cell_id not in cells]
    if unknown:
        raise UserError(f"cell {unknown[0]} is not in the grid of {folder.url}")
    return work_on_cells(folder, spec, [cells[cell_id] for cell_id in cell_ids], retry_failed, on_event, sigint_stops)


def _unheard(kind: str, cell: Cell, value) -> None:
    """The EventHook of a caller that listens to none."""

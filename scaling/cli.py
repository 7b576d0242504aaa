"""The `scaling` command line: parses and dispatches; every command is an importable function.

Exit status: 0 success; 2 bad input, reported in one plain line on stderr with no traceback;
1 a failure while running (a full disk too, in one line naming what could not be written); 130 Ctrl-C, 128 + N
a termination signal N (143 SIGTERM, 129 SIGHUP).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import sys
import unicodedata
from pathlib import Path

import click

from scaling.errors import DiskFull, UserError
from scaling.fit import METHODS
from scaling.grid.spec import EXECUTORS, MAX_WORKERS
from scaling.interrupts import Terminated, unwinding_on_termination
from scaling.tasks.jsonl import MODES as ANSWER_MODES
from scaling.tasks.quality import COT_STYLES

MAX_SAMPLE = 100_000  # examples per `scaling data sample`: about 20 s on one core, the rest is a Python loop
MAX_EVERY = 86_400  # `status --every`, seconds: a day; time.sleep overflows the platform's time_t not far beyond 2**63
MAX_DRAWS = 10**6  # `fit --warmup/--samples` per chain (and 1024 `--chains`): every draw is kept in memory


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="scaling")
def cli() -> None:
    """Scaling laws for reasoning generalization after chain-of-thought SFT."""


@cli.command()
@click.option("--out", type=click.Path(path_type=Path), default=Path("runs/demo"), show_default=True,
              help="Folder for the results, fit and figures (replaced if an earlier demo wrote it).")
def demo(out: Path) -> None:
    """Train a small grid on CPU, fit the saturating accuracy law over steps by NUTS, and draw it (a few minutes)."""
    from scaling.demo import DemoConfig, run_demo  # heavy imports only when the command runs

    run_demo(DemoConfig(), out)


@cli.group()
def data() -> None:
    """Synthetic CoT tasks: list families, sample splits, grade completions."""


@data.command("families")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list instead of a table.")
def data_families(as_json: bool) -> None:
    """List task families with their ID and OOD difficulty ranges."""
    from scaling.tasks.catalog import family_records

    records = family_records()
    if as_json:
        click.echo(json.dumps(records, indent=1))
        return
    for r in records:
        click.echo(f"{r['name']:<20} {r['kind']:<12} id {r['id_range'][0]}-{r['id_range'][1]:<3} "
                   f"ood {r['ood_range'][0]}-{r['ood_range'][1]:<3} {r['description']}")


@data.command("sample")
@click.option("--family", required=True, help="Task family (see `scaling data families`).")
@click.option("--split", required=True,
              help="train, id, ood_length, ood_family, ood_phrasing, ood_compose (a composition) or ood_rule (a variant).")
@click.option("--n", "n", type=int, default=10, show_default=True, help="Number of examples.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--quality", type=float, default=1.0, show_default=True, help="Fraction of training examples with correct CoT.")
@click.option("--cot", type=click.Choice(COT_STYLES), default="full", show_default=True, help="CoT style.")
def data_sample(family: str, split: str, n: int, seed: int, quality: float, cot: str) -> None:
    """Print examples of one family and split as JSON lines."""
    from scaling.tasks.catalog import example_record
    from scaling.tasks.mixture import SPLITS, sample

    if split not in SPLITS:
        raise UserError(f"unknown split {split!r}; splits are {', '.join(SPLITS)}")
    if seed < 0:
        raise UserError(f"--seed must be >= 0, got {seed}")
    if n > MAX_SAMPLE:
        raise UserError(f"--n {n} is more than {MAX_SAMPLE:,}, the most one `data sample` draws (every example is kept "
                        f"to keep them distinct, and evaluation splits build a training pool of --n to exclude first)")
    try:
        examples = sample(family, split, n, seed, quality, cot)
    except ValueError as error:
        raise UserError(str(error)) from None
    click.echo("\n".join(json.dumps(example_record(e)) for e in examples))


@data.command("check")
@click.argument("file", type=click.Path(path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object instead of a table.")
@click.option("--steps", is_flag=True,
              help="Check every arithmetic step of each completion (calculator annotations <<a*b=c>> and a op b = c).")
@click.option("--answer-mode", type=click.Choice(ANSWER_MODES), default="marker", show_default=True,
              help="How the answer is read from completions of your own data (lines with an `answer`).")
@click.option("--answer-pattern", default=None, help="The regex of --answer-mode regex (group 1 if it has one).")
@click.option("--answer-marker", default="####", show_default=True, help="The marker of --answer-mode marker.")
def data_check(file: Path, as_json: bool, steps: bool, answer_mode: str, answer_pattern: str | None,
               answer_marker: str) -> None:
    """Grade completions in FILE (JSON lines with family, prompt, completion, and optionally answer; `-` reads
    standard input); with --steps, check their arithmetic steps (lines need only a completion)."""
    from scaling.tasks.check import check_file, check_file_steps, format_report, format_steps_report, readable
    from scaling.tasks.jsonl import AnswerExtractor

    extractor = AnswerExtractor(answer_mode, answer_marker, answer_pattern)
    with readable(file) as path:
        report = check_file_steps(path) if steps else check_file(path, extractor)
    if steps:
        click.echo(json.dumps(report) if as_json else format_steps_report(report))
    else:
        click.echo(json.dumps(report) if as_json else format_report(report))


@cli.command()
@click.argument("grid", type=click.Path(path_type=Path))
@click.option("--out", default=None, help="Run folder, a path or an fsspec URL  [default: runs/NAME].")
@click.option("--executor", type=click.Choice(EXECUTORS), default=None,
              help="Where cells run  [default: the spec's [run] executor, else local].")
@click.option("--workers", type=int, default=None, help="Local executor: worker processes  [default: [run] workers].")
@click.option("--address", default=None, help="Ray executor: HOST:PORT of an existing cluster.")
@click.option("--dry-run", is_flag=True, help="Print the first cells, parameters, FLOPs, estimated time and peak memory, and the totals; write nothing.")
@click.option("--retry-failed", is_flag=True, help="Recompute failed cells and cells whose file is corrupt.")
def run(grid: Path, out: str | None, executor: str | None, workers: int | None, address: str | None,
        dry_run: bool, retry_failed: bool) -> None:
    """Run the grid in GRID.toml; rerun to resume (finished cells are skipped)."""
    from scaling.grid.launch import run_grid

    if workers is not None and workers > MAX_WORKERS:
        raise UserError(f"--workers must be at most {MAX_WORKERS}, got {workers}")
    report = run_grid(grid, out, executor, workers, address, retry_failed, dry_run)
    if report.failed:
        click.echo(f"scaling: {len(report.failed)} cells failed (see `scaling status {report.folder}`)", err=True)
        raise SystemExit(1)


@cli.command()
@click.argument("run_dir")
@click.option("--json", "as_json", is_flag=True, help="One JSON object a cell instead of the summary.")
@click.option("--watch", is_flag=True, help="Refresh until no cell is running or pending (Ctrl-C stops watching).")
@click.option("--every", type=float, default=2.0, show_default=True, help="--watch: seconds between refreshes.")
def status(run_dir: str, as_json: bool, watch: bool, every: float) -> None:
    """Done / running / failed / pending cells of a run folder, with failure reasons and running cells' progress."""
    from scaling.grid.collect import format_status, run_status, watch_status

    if watch:
        if as_json:
            raise UserError("--watch refreshes a summary for people; for --json, call `scaling status --json` repeatedly")
        if not 0 < every <= MAX_EVERY:
            raise UserError(f"--every must lie in (0, {MAX_EVERY}] seconds, got {every}")
        watch_status(run_dir, every, click.echo)
        return
    states = run_status(run_dir)
    if as_json:
        click.echo("\n".join(json.dumps({"cell_id": s.cell.cell_id, "state": s.state, "detail": s.detail, **s.cell.axes}
                                        | ({"progress": dataclasses.asdict(s.progress)} if s.progress else {}))
                             for s in states))
        return
    click.echo(format_status(states))


@cli.command()
@click.argument("run_dir")
def collect(run_dir: str) -> None:
    """Validate every cell file and merge them into RUN_DIR/results.nc."""
    from scaling.grid.collect import ARM_GRADES, FAMILIES, GRADES, RESULTS, collect_run, format_status
    from scaling.schema import ARM_DIMS

    cube, states = collect_run(run_dir)
    click.echo(format_status(states).splitlines()[0])
    tables = [GRADES, FAMILIES] + ([ARM_GRADES] if ARM_DIMS[0] in cube.dims else [])
    click.echo(f"wrote {run_dir.rstrip('/')}/{RESULTS}, {', '.join(tables[:-1])} and {tables[-1]}")


@cli.command()
@click.argument("run_dir")
@click.option("--quiet", is_flag=True, help="No progress lines (they go to stderr, one per base and split).")
def baseline(run_dir: str, quiet: bool) -> None:
    """Grade each base of RUN_DIR's grid before SFT on the grid's evaluation splits, answers read leniently,
    into RUN_DIR/baseline.parquet."""
    from scaling.grid.baseline import BASELINE, baseline_summary, run_baseline

    def progress(rows: list[dict], seconds: float) -> None:
        first = rows[0]
        click.echo(f"baseline: {first['size']} pretrain {first['pretrain_tokens']} {first['split']}: "
                   f"{sum(r['answer_correct'] for r in rows)}/{len(rows)} right ({seconds:.0f} s)", err=True)

    table = run_baseline(run_dir, None if quiet else progress)
    click.echo(baseline_summary(table))
    click.echo(f"wrote {run_dir.rstrip('/')}/{BASELINE}")


@cli.command()
@click.argument("input_path", metavar="INPUT", type=click.Path(path_type=Path), required=False)
@click.option("--law", default=None, help="A law of the registry (see `scaling fit --laws`).")
@click.option("--y", "y", default=None, help="The response: a metric of results.nc or a column of the table.")
@click.option("--x", "x", multiple=True, help="AXIS=COLUMN: a law axis and its column, e.g. --x N=params (repeatable).")
@click.option("--n", "n", default=None, help="Column of evaluation examples behind each accuracy (Beta-Binomial).")
@click.option("--item", default=None, help="Column naming each row's evaluation problem: one 0/1 --y grade per row, "
              "fitted item-level (run and item effects crossed)  [default: `key` where --y is 0/1 and --n is not given].")
@click.option("--by", multiple=True, help="Fit each group of this column separately; several columns (repeated, or "
              "comma-separated) group by each combination of their values.")
@click.option("--pool", is_flag=True, help="With --by: one joint fit, each law parameter partially pooled across the groups.")
@click.option("--where", default=None, help="Row condition selecting the rows to use, e.g. \"size == 'xs' and step >= 64\".")
@click.option("--holdout", default=None, help="Row condition of rows held out of the fit and predicted (backtest).")
@click.option("--split", default=None, help="results.nc: the split to fit (train, id, ood_family, ...).")
@click.option("--method", type=click.Choice(METHODS), default="nuts", show_default=True)
@click.option("--seed", type=int, default=0, show_default=True, help="Sampler seed: same seed, same numbers.")
@click.option("--chains", type=int, default=4, show_default=True)
@click.option("--samples", type=int, default=2000, show_default=True, help="Kept draws per chain.")
@click.option("--warmup", type=int, default=1000, show_default=True, help="Adaptation steps per chain.")
@click.option("--threshold", type=float, default=None, help="Gain per doubling counted as diminished [1 point or 1%].")
@click.option("--compare", default=None, help="law1,law2,...: fit each and print the PSIS-LOO comparison.")
@click.option("--allow-unconverged", is_flag=True, help="Write the outputs even if r_hat, ESS or divergences fail.")
@click.option("--out", type=click.Path(path_type=Path), default=None, help="Output folder  [default: fits/LAW].")
@click.option("--laws", "list_laws", is_flag=True, help="List the laws with their formulas and exit.")
@click.option("--refresh", is_flag=True, help="INPUT is a fit folder: recompute its summary labels, returns and "
              "backtest baseline from its posterior with this version, without refitting.")
@click.option("--quiet", is_flag=True, help="No progress display (it goes to stderr, and only to a terminal).")
def fit(input_path: Path, law: str | None, y: str | None, x: tuple[str, ...], n: str | None, item: str | None,
        by: tuple[str, ...], pool: bool,
        where: str | None, holdout: str | None, split: str | None, method: str, seed: int, chains: int, samples: int,
        warmup: int, threshold: float | None, compare: str | None, allow_unconverged: bool, out: Path | None,
        list_laws: bool, refresh: bool, quiet: bool) -> None:
    """Fit a scaling law to INPUT (a results.nc or a CSV/Parquet table) with honest uncertainty."""
    from scaling.fit.command import run_fit
    from scaling.fit.compare import compare_laws
    from scaling.fit.infer import SamplerConfig
    from scaling.fit.progress import fit_progress
    from scaling.fit.laws import LAWS
    from scaling.fit.request import FitRequest
    from scaling.fit.returns import ReturnsConfig

    if list_laws:
        for entry in LAWS.values():
            click.echo(f"{entry.name:<15} {entry.response:<9} {entry.formula}")
        return
    names = [name.strip() for name in compare.split(",") if name.strip()] if compare else []
    if input_path is None:
        raise UserError("give INPUT: a results.nc, or a .csv or .parquet table")
    if refresh:
        from scaling.fit.record import read_fit
        from scaling.fit.refresh import write_refreshed

        read_fit(input_path)  # a folder `scaling fit` wrote, or one line saying it is not
        write_refreshed(input_path)
        click.echo(f"refreshed {input_path}/ (summary.csv, returns.csv, backtest.csv, fit.toml's backtest scores)")
        return
    if not (law or names) or not y:
        raise UserError("give --law NAME (or --compare LAW1,LAW2) and --y VAR")
    for flag, value, most in (("--warmup", warmup, MAX_DRAWS), ("--samples", samples, MAX_DRAWS), ("--chains", chains, 1024)):
        if value < 1:
            raise UserError(f"{flag} must be at least 1, got {value}")
        if value > most:
            raise UserError(f"{flag} must be at most {most:,}, got {value}")
    if not 0 <= seed < 2**31:
        raise UserError(f"--seed must lie between 0 and 2**31 - 1, got {seed}")
    if chains < 2 and method != "huber":
        raise UserError(f"--chains must be at least 2 with --method {method}: r_hat, the convergence check, compares chains")
    if any(not column.strip() for item in by for column in item.split(",")):
        raise UserError(f"--by {','.join(by)!r} names an empty column: give column names, e.g. --by family")
    sampler = SamplerConfig(warmup=warmup, samples=samples, chains=chains, seed=seed)
    try:
        returns = ReturnsConfig(threshold=threshold)
    except ValueError as error:
        raise UserError(str(error)) from None
    request = FitRequest(input=input_path, law=law or names[0], y=y, x=x, n=n, item=item, by=by, pool=pool, where=where, holdout=holdout,
                         split=split, method=method, sampler=sampler, returns=returns,
                         allow_unconverged=allow_unconverged, out=out)
    if names:
        with fit_progress(enabled=not quiet):
            compare_laws(request, names, click.echo)
        return
    with fit_progress(enabled=not quiet):
        _, written = run_fit(request, click.echo)
    if written is None:
        click.echo("scaling: the fit did not converge; nothing written (rerun with more --samples/--warmup, "
                   "or --allow-unconverged)", err=True)
        raise SystemExit(1)


@cli.command()
@click.option("--paper", type=click.Path(path_type=Path), default=Path("paper"), show_default=True,
              help="The paper folder: its figures.toml lists the figures and tables, drawn into its figures/ and tables/.")
def figures(paper: Path) -> None:
    """Redraw every figure and table of the paper from the run and fit files it names (none trains or fits)."""
    from scaling.report.paper import TABLES, regenerate_figures

    written = regenerate_figures(paper, click.echo)
    tables = [p for p in written if p.parent.name == TABLES]
    click.echo(f"wrote {len(written) - len(tables)} files to {paper / 'figures'}/"
               + (f" and {len(tables)} to {paper / TABLES}/" if tables else ""))


@cli.command()
@click.argument("run_dir", type=click.Path(path_type=Path))
@click.option("--step", type=int, default=None, help="The budget  [default: the last one].")
@click.option("--by", multiple=True, help="Columns beside split and family, e.g. --by distance (repeated, or "
              "comma-separated).")
@click.option("--where", default=None, help="Row condition picking the regular cells, e.g. \"diversity == 4\" "
              "(controls are matched to them by base).")
@click.option("--csv", "csv_out", type=click.Path(path_type=Path), default=None, help="Also write the table here.")
def transfer(run_dir: Path, step: int | None, by: tuple[str, ...], where: str | None, csv_out: Path | None) -> None:
    """Per split and family of RUN_DIR's grades: accuracy against chance and the control's headroom, whether it
    is above chance, and transfer = (acc - chance) / (headroom - chance), with 90% intervals, each labelled with
    what it counts: runs and items (3 runs or more), items only (1 or 2 runs), exact over the items (every answer
    alike)."""
    from scaling.grid.collect import GRADES
    from scaling.report.transfer import format_transfer, read_grades_file, transfer_table, write_transfer_csv

    if csv_out is not None and csv_out.is_dir():
        raise UserError(f"--csv {csv_out} is a folder: give a file name")
    extra = tuple(column.strip() for item in by for column in item.split(","))
    table = transfer_table(read_grades_file(run_dir / GRADES), ("split", "family", *extra), step, where)
    click.echo(format_transfer(table))
    if csv_out is not None:
        write_transfer_csv(table, csv_out)
        click.echo(f"wrote {csv_out}")


@cli.command()
@click.argument("run_dir", type=click.Path(path_type=Path))
@click.option("--split", "splits", multiple=True, help="Evaluation splits (repeated, or comma-separated)  "
              "[default: every split but train].")
@click.option("--csv", "csv_out", type=click.Path(path_type=Path), default=None, help="Also write the table here.")
def arms(run_dir: Path, splits: tuple[str, ...], csv_out: Path | None) -> None:
    """What RUN_DIR's arms after SFT (RL, RFT) bought: each arm point's accuracy against the SFT model it started
    from and against the first SFT budget of no less training compute, with 90% intervals over runs and items,
    and the gains per 10^15 FLOPs."""
    from scaling.grid.collect import ARM_GRADES, GRADES
    from scaling.report.arms import arm_table, format_arms
    from scaling.report.transfer import read_grades_file, write_transfer_csv

    if csv_out is not None and csv_out.is_dir():
        raise UserError(f"--csv {csv_out} is a folder: give a file name")
    grades = read_grades_file(run_dir / GRADES)
    if not (run_dir / ARM_GRADES).is_file() and (run_dir / GRADES).is_file():
        raise UserError(f"{run_dir} has no arms after SFT (its grid has no [rl] or [rft] section)")
    chosen = [split.strip() for item in splits for split in item.split(",")]
    table = arm_table(grades, read_grades_file(run_dir / ARM_GRADES), chosen)
    click.echo(format_arms(table))
    if csv_out is not None:
        write_transfer_csv(table, csv_out)
        click.echo(f"wrote {csv_out}")


@cli.command()
@click.argument("pilot", type=click.Path(path_type=Path))
@click.option("--step", type=int, default=None, help="The budget two conditions are compared at  [default: the last one].")
@click.option("--seeds", type=int, default=None, help="Runs per condition of the planned grid  [default: the pilot's].")
@click.option("--items", type=int, default=None, help="Items per family of the planned grid  [default: the pilot's].")
@click.option("--alpha", type=float, default=0.05, show_default=True, help="Two-sided significance level.")
@click.option("--power", "power_", type=float, default=0.8, show_default=True, help="Chance of detecting the difference.")
@click.option("--factor", type=int, default=4, show_default=True, help="The gain past memorization: from m to FACTOR x m.")
@click.option("--detect", type=float, default=None, help="A difference of accuracy to plan for: the seeds and items it needs.")
@click.option("--check", type=int, default=0, help="Simulate this many grids at each MDD and print the share detected.")
@click.option("--csv", "csv_out", type=click.Path(path_type=Path), default=None, help="Also write the table here.")
def power(pilot: Path, step: int | None, seeds: int | None, items: int | None, alpha: float, power_: float, factor: int,
          detect: float | None, check: int, csv_out: Path | None) -> None:
    """Minimum detectable differences (two conditions; a gain past memorization) from PILOT, a run folder or a
    grades table: its spreads between runs and items per split and family, at the planned seeds and items."""
    from scaling.power import Design, checked, estimate_spreads, format_power, power_table, read_grades, write_power_csv

    if csv_out is not None and csv_out.is_dir():
        raise UserError(f"--csv {csv_out} is a folder: give a file name")
    if factor < 2 or check < 0 or (items is not None and items < 2):
        raise UserError(f"--factor and --items must be at least 2 and --check at least 0, got {factor}, {items} and {check}")
    spreads = estimate_spreads(read_grades(pilot), step, factor)
    design = Design(seeds=seeds, items=None if items is None else {(s.split, s.family): items for s in spreads},
                    alpha=alpha, power=power_, detect=detect)
    table = power_table(spreads, design)
    if check:
        table = checked(table, spreads, check)
    click.echo(format_power(table, design, factor))
    if csv_out is not None:
        write_power_csv(table, csv_out)
        click.echo(f"wrote {csv_out}")


@cli.command("import-hf")
@click.argument("path", type=click.Path(path_type=Path))
@click.option("--out", type=click.Path(path_type=Path), required=True, help="New model folder (must not exist, or be empty).")
def import_hf_command(path: Path, out: Path) -> None:
    """Convert a local Hugging Face checkpoint folder (Llama, Qwen2, Qwen3, Gemma 3 text, GPT-NeoX, GPT-2) or a
    GGUF file (llama, qwen2, qwen3, gemma3, gpt2; dequantized to float32 as transformers does) into a model folder."""
    from scaling.hf import describe, import_hf

    written = import_hf(path, out)
    click.echo(f"imported {describe(written)} -> {written}")


@cli.command("export-hf")
@click.argument("src", type=click.Path(path_type=Path))
@click.option("--out", type=click.Path(path_type=Path), required=True, help="New checkpoint folder (must not exist, or be empty).")
@click.option("--merge", is_flag=True, help="An adapter folder (a LoRA cell's model): fold its adapters into its base "
              "and write a full checkpoint, instead of PEFT's adapter files.")
def export_hf_command(src: Path, out: Path, merge: bool) -> None:
    """Write a model folder (imported or fine-tuned) as a Hugging Face checkpoint that transformers loads; an adapter
    folder (a LoRA cell's model) as PEFT's adapter, or with --merge as a full checkpoint."""
    from scaling.hf import describe, export_hf
    from scaling.hf.adapter import export_adapter, is_adapter_folder

    if is_adapter_folder(src):
        written = export_adapter(src, out, merge)
        click.echo(f"exported {'merged ' if merge else ''}LoRA adapters of {src} -> {written}")
        return
    if merge:
        raise UserError(f"--merge: {src} is no adapter folder (a LoRA cell's model); a model folder exports as it is")
    written = export_hf(src, out)
    click.echo(f"exported {describe(src)} -> {written}")


def one_line(message: str) -> str:
    """The message with every control or line-breaking character escaped: a user's text (a column name, a
    path, an expression) quoted in an error must not split its one line in two."""
    return "".join(repr(c)[1:-1] if unicodedata.category(c) in ("Cc", "Zl", "Zp") else c for c in message)


def main(argv: list[str] | None = None) -> int:
    """Entry point: usage errors and UserErrors become one line on stderr and exit status 2, a full disk one line
    and exit status 1; SIGTERM and SIGHUP unwind the command as Ctrl-C does (its staging folders and temporaries
    removed), then say so in one line. Called as the program (no argv), it leaves them ignored on return: the
    work is done, and the interpreter's exit is not to be cut short."""
    try:
        with unwinding_on_termination(ignore_after=argv is None):
            cli.main(args=argv, prog_name="scaling", standalone_mode=False)
    except click.exceptions.NoArgsIsHelpError as shown:  # `scaling` alone prints help: not an error
        click.echo(shown.ctx.get_help() if shown.ctx else "", err=False)
        return 0
    except click.UsageError as error:
        click.echo(f"scaling: error: {one_line(error.format_message())}", err=True)
        return 2
    except UserError as error:
        click.echo(f"scaling: error: {one_line(str(error))}", err=True)
        return 2
    except DiskFull as error:  # the environment failed, not the input: what was there before is kept
        click.echo(f"scaling: error: {one_line(str(error))}", err=True)
        return 1
    except SystemExit as exit_:
        return exit_.code if isinstance(exit_.code, int) else 1
    except click.Abort:
        click.echo("scaling: interrupted", err=True)
        return 130
    except KeyboardInterrupt:
        click.echo("scaling: interrupted", err=True)
        return 130
    except Terminated as terminated:
        with contextlib.suppress(OSError):  # after SIGHUP the terminal may be gone; the exit status still says it
            click.echo(f"scaling: terminated ({terminated.name})", err=True)
        return terminated.exit_status
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The `scaling` command line: parses and dispatches; every command is an importable function.

Exit status: 0 success; 2 bad input, reported in one plain line on stderr with no traceback;
1 a failure while running.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from scaling.errors import UserError


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="scaling")
def cli() -> None:
    """Scaling laws for reasoning generalization after chain-of-thought SFT."""


@cli.command()
@click.option("--out", type=click.Path(path_type=Path), default=Path("runs/demo"), show_default=True,
              help="Folder for the results, fit and figures (replaced if an earlier demo wrote it).")
def demo(out: Path) -> None:
    """Train a tiny grid on CPU, fit a Bayesian power law in steps, and draw it (a few minutes)."""
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
@click.option("--split", required=True, help="train, id, ood_length, ood_family or ood_compose.")
@click.option("--n", "n", type=int, default=10, show_default=True, help="Number of examples.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--quality", type=float, default=1.0, show_default=True, help="Fraction of training examples with correct CoT.")
@click.option("--cot", type=click.Choice(["full", "short", "none"]), default="full", show_default=True, help="CoT style.")
def data_sample(family: str, split: str, n: int, seed: int, quality: float, cot: str) -> None:
    """Print examples of one family and split as JSON lines."""
    from scaling.tasks.catalog import example_record
    from scaling.tasks.mixture import SPLITS, sample

    if split not in SPLITS:
        raise UserError(f"unknown split {split!r}; splits are {', '.join(SPLITS)}")
    try:
        examples = sample(family, split, n, seed, quality, cot)
    except ValueError as error:
        raise UserError(str(error)) from None
    click.echo("\n".join(json.dumps(example_record(e)) for e in examples))


@data.command("check")
@click.argument("file", type=click.Path(path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object instead of a table.")
@click.option("--answer-mode", type=click.Choice(["marker", "regex", "last_number"]), default="marker", show_default=True,
              help="How the answer is read from completions of your own data (lines with an `answer`).")
@click.option("--answer-pattern", default=None, help="The regex of --answer-mode regex (group 1 if it has one).")
@click.option("--answer-marker", default="####", show_default=True, help="The marker of --answer-mode marker.")
def data_check(file: Path, as_json: bool, answer_mode: str, answer_pattern: str | None, answer_marker: str) -> None:
    """Grade completions in FILE (JSON lines with family, prompt, completion, and optionally answer)."""
    from scaling.tasks.check import check_file
    from scaling.tasks.jsonl import AnswerExtractor

    report = check_file(file, AnswerExtractor(answer_mode, answer_marker, answer_pattern))
    if as_json:
        click.echo(json.dumps(report))
        return
    rows = {**report["families"], "overall": report["overall"]}
    click.echo(f"{'family':<20} {'n':>6} {'answer_acc':>10} {'process_acc':>11}")
    for name, r in rows.items():
        process = "-" if r["process_acc"] is None else f"{r['process_acc']:.3f}"
        click.echo(f"{name:<20} {r['n']:>6} {r['answer_acc']:>10.3f} {process:>11}")


@cli.command()
@click.argument("grid", type=click.Path(path_type=Path))
@click.option("--out", default=None, help="Run folder, a path or an fsspec URL  [default: runs/NAME].")
@click.option("--executor", type=click.Choice(["local", "ray", "slurm"]), default=None,
              help="Where cells run  [default: the spec's [run] executor, else local].")
@click.option("--workers", type=int, default=None, help="Local executor: worker processes  [default: [run] workers].")
@click.option("--address", default=None, help="Ray executor: HOST:PORT of an existing cluster.")
@click.option("--dry-run", is_flag=True, help="Print the cells, parameters, FLOPs and estimated time; write nothing.")
@click.option("--retry-failed", is_flag=True, help="Recompute failed cells and cells whose file is corrupt.")
def run(grid: Path, out: str | None, executor: str | None, workers: int | None, address: str | None,
        dry_run: bool, retry_failed: bool) -> None:
    """Run the grid in GRID.toml; rerun to resume (finished cells are skipped)."""
    from scaling.launch import run_grid

    report = run_grid(grid, out, executor, workers, address, retry_failed, dry_run)
    if report.failed:
        click.echo(f"scaling: {len(report.failed)} cells failed (see `scaling status {report.folder}`)", err=True)
        raise SystemExit(1)


@cli.command()
@click.argument("run_dir")
@click.option("--json", "as_json", is_flag=True, help="One JSON object a cell instead of the summary.")
def status(run_dir: str, as_json: bool) -> None:
    """Done / running / failed / pending cells of a run folder, with failure reasons."""
    from scaling.collect import format_status, run_status

    states = run_status(run_dir)
    if as_json:
        click.echo("\n".join(json.dumps({"cell_id": s.cell.cell_id, "state": s.state, "detail": s.detail, **s.cell.axes})
                             for s in states))
        return
    click.echo(format_status(states))


@cli.command()
@click.argument("run_dir")
def collect(run_dir: str) -> None:
    """Validate every cell file and merge them into RUN_DIR/results.nc."""
    from scaling.collect import RESULTS, collect_run, format_status

    _, states = collect_run(run_dir)
    click.echo(format_status(states).splitlines()[0])
    click.echo(f"wrote {run_dir.rstrip('/')}/{RESULTS}")


def main(argv: list[str] | None = None) -> int:
    """Entry point: usage errors and UserErrors become one line on stderr and exit status 2."""
    try:
        cli.main(args=argv, prog_name="scaling", standalone_mode=False)
    except click.exceptions.NoArgsIsHelpError as shown:  # `scaling` alone prints help: not an error
        click.echo(shown.ctx.get_help() if shown.ctx else "", err=False)
        return 0
    except click.UsageError as error:
        click.echo(f"scaling: error: {error.format_message()}", err=True)
        return 2
    except UserError as error:
        click.echo(f"scaling: error: {error}", err=True)
        return 2
    except SystemExit as exit_:
        return exit_.code if isinstance(exit_.code, int) else 1
    except click.Abort:
        click.echo("scaling: interrupted", err=True)
        return 130
    except KeyboardInterrupt:
        click.echo("scaling: interrupted", err=True)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())

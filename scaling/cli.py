"""The `scaling` command line: parses and dispatches; every command is an importable function.

Exit status: 0 success; 2 bad input, reported in one plain line on stderr with no traceback;
1 a failure while running.
"""

from __future__ import annotations

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
    except click.Abort:
        click.echo("scaling: interrupted", err=True)
        return 130
    except KeyboardInterrupt:
        click.echo("scaling: interrupted", err=True)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())

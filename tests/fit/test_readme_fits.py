"""Every `scaling fit` example of the README's "Fitting laws" that reads a run's results works, as documented,
on the demo's own results: with default settings (no sampler flags, no --allow-unconverged), each writes its
folder. The commands are read from README.md, so the test follows the README."""

import re
import shlex
import tomllib
from pathlib import Path

import pytest

from scaling.cli import main
from scaling.demo import DemoConfig, run_demo

README = Path(__file__).parents[2] / "README.md"
# A run folder's results, as the README's examples name them: the demo's (runs/demo/) or a grid's (runs/reference/).
RUN_INPUT = re.compile(r"^runs/[^/\s]+/(results\.nc|families\.parquet|grades\.parquet)$")


def readme_fit_commands() -> list[list[str]]:
    """The arguments of each `scaling fit` command in the README's "Fitting laws" code blocks that reads a run's
    results (continuation lines joined, comments dropped)."""
    section = README.read_text().split("## Fitting laws", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```\n(.*?)```", section, re.S)
    lines = " ".join(blocks).replace("\\\n", " ").splitlines()
    commands = [shlex.split(line, comments=True) for line in lines if line.strip().startswith("scaling fit ")]
    return [command[2:] for command in commands if RUN_INPUT.match(command[2])]


@pytest.fixture(scope="module")
def demo(tmp_path_factory) -> Path:
    """The demo's results, as `make demo` writes them (its default settings)."""
    out = tmp_path_factory.mktemp("readme") / "demo"
    run_demo(DemoConfig(), out, say=lambda *_: None)
    return out


def test_the_readme_shows_fits_of_a_runs_results():
    laws = {command[command.index("--law") + 1] for command in readme_fit_commands()}
    assert {"logistic", "accuracy", "sft"} <= laws, laws


@pytest.mark.slow
@pytest.mark.parametrize("command", readme_fit_commands(), ids=lambda command: command[command.index("--law") + 1])
def test_every_readme_fit_of_a_runs_results_converges_on_the_demo_by_default(command, demo, tmp_path):
    arguments = [str(demo / Path(command[0]).name), *command[1:], "--out", str(tmp_path / "fit")]
    assert main(["fit", *arguments]) == 0, arguments
    record = tomllib.loads((tmp_path / "fit" / "fit.toml").read_text())
    assert record["diagnostics"]["converged"], record["diagnostics"]

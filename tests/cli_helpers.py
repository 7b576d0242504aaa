"""Driving the command line in this process, and checking the bad-input contract: exit 2, one line on
stderr, no traceback, nothing created or changed on disk."""

import contextlib
import io
import os
from dataclasses import dataclass
from pathlib import Path

from scaling.cli import main


@dataclass(frozen=True)
class Result:
    code: int
    out: str
    err: str


def run_cli(argv: list[str], cwd: Path) -> Result:
    """`scaling ARGV` run in cwd, its stdout and stderr captured."""
    out, err = io.StringIO(), io.StringIO()
    previous = Path.cwd()
    os.chdir(cwd)
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = main(argv)
    finally:
        os.chdir(previous)
    return Result(code, out.getvalue(), err.getvalue())


def snapshot(root: Path) -> dict[str, tuple[int, int]]:
    """Every file and folder under root, with its size and modification time: what a command must not change."""
    state = {}
    for path in sorted(root.rglob("*")):
        info = path.stat()
        state[str(path.relative_to(root))] = (info.st_size if path.is_file() else -1, info.st_mtime_ns)
    return state


def assert_refused(argv: list[str], cwd: Path, named: str | None = None) -> str:
    """Run argv in cwd and check the bad-input contract; returns the one error line."""
    before = snapshot(cwd)
    result = run_cli(argv, cwd)
    lines = result.err.strip().splitlines()
    assert result.code == 2, (argv, result)
    assert len(lines) == 1 and lines[0].startswith("scaling: error: "), (argv, result)
    assert "Traceback" not in result.err + result.out, (argv, result)
    assert result.out == "", (argv, "printed before refusing", result)
    assert snapshot(cwd) == before, (argv, "changed files", result)
    if named is not None:
        assert named in lines[0], (argv, lines[0])
    return lines[0]

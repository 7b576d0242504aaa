"""Files users name must be regular files, refused by name before they are opened; JSON lines are read one
bounded line at a time. Real special files throughout: FIFOs made by os.mkfifo, /dev/zero, a socket, a folder.

The command-line cases run `scaling` in a subprocess under a time limit and a memory limit, so a regression
(a reader that opens a FIFO and waits for a writer, or reads /dev/zero until memory runs out) fails the test
instead of hanging the suite or exhausting the machine.
"""

import json
import os
import resource
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from scaling.errors import UserError
from scaling.user_files import MAX_LINE_BYTES, lines, regular_file

HANG_S = 60  # far beyond what a refusal takes (about a second): only a blocked or runaway command reaches it
MEMORY_CAP = 6 << 30  # bytes of data a command may allocate: /dev/zero read whole would pass it in seconds


def scaling(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    """`scaling ARGS` in a subprocess, killed after HANG_S (a test failure, not a hang) and unable to allocate
    more than MEMORY_CAP."""
    def cap_memory():
        resource.setrlimit(resource.RLIMIT_DATA, (MEMORY_CAP, MEMORY_CAP))

    try:
        return subprocess.run([sys.executable, "-m", "scaling", *args], cwd=cwd, capture_output=True, text=True,
                              timeout=HANG_S, preexec_fn=cap_memory)
    except subprocess.TimeoutExpired:
        pytest.fail(f"`scaling {' '.join(args)}` was still running after {HANG_S} s (blocked on a special file?)")


def refusal(result: subprocess.CompletedProcess) -> str:
    """The one line of a refusal (exit 2, no traceback)."""
    lines_ = result.stderr.strip().splitlines()
    assert result.returncode == 2 and len(lines_) == 1 and "Traceback" not in result.stderr, result
    return lines_[0]


@pytest.fixture
def fifo(tmp_path) -> Path:
    path = tmp_path / "pipe.jsonl"
    os.mkfifo(path)
    return path


GRID = """
name = "special"
[axes]
size = ["tiny"]
diversity = [1]
[data]
source = "{source}"
groups = ["add"]
examples = 8
[train]
budgets = [8]
batch_size = 8
[eval]
n = 4
"""


# --- the rule: os.stat decides, nothing is opened -------------------------------------------------------

def test_a_regular_file_passes_and_special_files_are_named(tmp_path, fifo):
    good = tmp_path / "good.jsonl"
    good.write_text("{}\n")
    assert regular_file(good, "source") == good
    listener = socket.socket(socket.AF_UNIX)
    listener.bind(str(tmp_path / "sock"))
    try:
        for path, kind in [(fifo, "a FIFO"), (Path("/dev/zero"), "a character device"), (tmp_path, "a folder"),
                           (tmp_path / "sock", "a socket")]:
            with pytest.raises(UserError, match=f"^source {path} is {kind}, not a regular file$"):
                regular_file(path, "source")  # a FIFO opened for reading would block here: stat alone decides
    finally:
        listener.close()
    with pytest.raises(UserError, match="missing.jsonl does not exist"):
        regular_file(tmp_path / "missing.jsonl", "source")


def test_a_link_to_a_regular_file_is_one_and_a_link_to_a_fifo_is_not(tmp_path, fifo):
    (tmp_path / "good.jsonl").write_text("{}\n")
    (tmp_path / "to_good").symlink_to(tmp_path / "good.jsonl")
    (tmp_path / "to_fifo").symlink_to(fifo)
    assert regular_file(tmp_path / "to_good", "source") == tmp_path / "to_good"
    with pytest.raises(UserError, match="is a FIFO"):
        regular_file(tmp_path / "to_fifo", "source")


def test_lines_are_streamed_and_bounded(tmp_path):
    path = tmp_path / "d.jsonl"
    path.write_bytes(b"a\n" + b"b" * (MAX_LINE_BYTES - 1) + b"\n" + b"c")
    assert [(n, len(raw)) for n, raw in lines(path, "source")] == [(1, 2), (2, MAX_LINE_BYTES), (3, 1)]
    path.write_bytes(b"a\n" + b"b" * MAX_LINE_BYTES + b"\n")
    read = lines(path, "source")
    assert next(read) == (1, b"a\n")  # what comes before the long line is read first: a stream, not a slurp
    with pytest.raises(UserError, match=r"d.jsonl line 2 is longer than 1 MiB"):
        next(read)


# --- regressions: each hung, ran out of memory or accepted the file before --------------------------------

def test_data_check_refuses_dev_zero(tmp_path):
    line = refusal(scaling(["data", "check", "/dev/zero"], tmp_path))
    assert line == "scaling: error: completions file /dev/zero is a character device, not a regular file"


def test_data_check_refuses_a_fifo_not_blocking(tmp_path, fifo):
    line = refusal(scaling(["data", "check", str(fifo)], tmp_path))
    assert line.endswith(f"{fifo} is a FIFO, not a regular file")


def test_grid_source_dev_zero_is_refused(tmp_path):
    (tmp_path / "grid.toml").write_text(GRID.format(source="/dev/zero"))
    line = refusal(scaling(["run", "grid.toml", "--out", "run"], tmp_path))
    assert line.endswith("[data] source /dev/zero is a character device, not a regular file")
    assert not (tmp_path / "run").exists()


def test_grid_source_fifo_is_refused_not_blocking(tmp_path, fifo):
    (tmp_path / "grid.toml").write_text(GRID.format(source=fifo.name))
    line = refusal(scaling(["run", "grid.toml", "--out", "run"], tmp_path))
    assert line.endswith(f"[data] source {fifo} is a FIFO, not a regular file")
    assert not (tmp_path / "run").exists()


def test_overlong_jsonl_line_is_refused(tmp_path):
    record = {"family": "user", "prompt": "p", "completion": "x" * (2 << 20) + "\n#### 1", "answer": "1"}
    (tmp_path / "long.jsonl").write_text(json.dumps({**record, "completion": "#### 1"}) + "\n" + json.dumps(record) + "\n")
    line = refusal(scaling(["data", "check", "long.jsonl"], tmp_path))
    assert line == "scaling: error: long.jsonl line 2 is longer than 1 MiB (a JSON line holds one record; is this a binary file?)"

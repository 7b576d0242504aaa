"""The command line contract: help lists working commands only; bad input is one line and exit 2."""

import subprocess
import sys


def scaling(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "scaling", *args], capture_output=True, text=True, cwd=cwd, timeout=120)


def _one_plain_line(stderr: str) -> str:
    assert "Traceback" not in stderr
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    return lines[0]


def test_help_lists_the_demo_and_no_unbuilt_command():
    result = scaling("--help")
    assert result.returncode == 0
    commands = [line.split()[0] for line in result.stdout.split("Commands:")[1].splitlines() if line.strip()]
    assert commands == ["arms", "baseline", "collect", "data", "demo", "export-hf", "figures", "fit", "import-hf", "power", "run", "status",
                        "transfer"]


def test_out_that_is_a_file_is_refused(tmp_path):
    target = tmp_path / "results.txt"
    target.write_text("mine")
    result = scaling("demo", "--out", str(target))
    assert result.returncode == 2
    assert "is a file" in _one_plain_line(result.stderr)
    assert target.read_text() == "mine"


def test_a_folder_the_demo_did_not_write_is_never_touched(tmp_path):
    (tmp_path / "paper.tex").write_text("draft")
    result = scaling("demo", "--out", str(tmp_path))
    assert result.returncode == 2
    assert "not written by `scaling demo`" in _one_plain_line(result.stderr)
    assert [p.name for p in tmp_path.iterdir()] == ["paper.tex"]


def test_usage_errors_are_one_line_with_status_2():
    for args in (("demo", "--bogus"), ("nonsense",)):
        result = scaling(*args)
        assert result.returncode == 2
        assert _one_plain_line(result.stderr).startswith("scaling: error:")

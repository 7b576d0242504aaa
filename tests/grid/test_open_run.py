"""Starting a run folder: runners started together on a new folder all get it, whatever the timing.

The window is opened on purpose: every file write is slowed down, so a runner that could see a folder
being filled would see it here every time, not only on a loaded machine.
"""

import threading
import time
from pathlib import Path

import pytest

from scaling import staging
from scaling.errors import UserError
from scaling.grid.spec import parse_spec
from scaling.grid.runner import SPEC, VERSION, open_run

RUNNERS = 12
WRITE_DELAY_S = 0.2

GRID = """
name = "race"
[axes]
size = ["tiny"]
[data]
families = ["add"]
examples = 100
[train]
budgets = [8]
[eval]
splits = ["id"]
n = 8
"""


@pytest.fixture
def slow_writes(monkeypatch):
    """Every new file takes WRITE_DELAY_S between its creation and its contents."""
    write = staging.write_new_file

    def slowly(path: Path, data: bytes) -> None:
        time.sleep(WRITE_DELAY_S)
        write(path, data)

    monkeypatch.setattr(staging, "write_new_file", slowly)


def start_together(out: Path, text: str = GRID) -> list[object]:
    """open_run from RUNNERS threads released at once; each one's RunFolder, or the exception it raised."""
    spec = parse_spec(text, source="grid.toml", base_dir=out.parent)
    gate, results = threading.Barrier(RUNNERS), [None] * RUNNERS

    def runner(index: int) -> None:
        gate.wait()
        try:
            results[index] = open_run(spec, out)
        except Exception as error:  # noqa: BLE001 - collected and asserted on below
            results[index] = error

    threads = [threading.Thread(target=runner, args=(i,)) for i in range(RUNNERS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results


def test_runners_started_together_on_a_new_folder_all_open_it(slow_writes, tmp_path):
    out = tmp_path / "runs" / "race"
    results = start_together(out)
    assert [type(r).__name__ for r in results] == ["RunFolder"] * RUNNERS, results
    assert (out / SPEC).read_text() == GRID
    assert sorted(p.name for p in out.iterdir()) == [VERSION, SPEC]
    assert sorted(p.name for p in out.parent.iterdir()) == ["race"]  # no staging folder left behind


def test_an_empty_folder_made_for_the_run_is_opened_alike_and_keeps_its_permissions(slow_writes, tmp_path):
    out = tmp_path / "shared"
    out.mkdir(mode=0o2775)
    out.chmod(0o2775)  # a group's folder: setgid, group-writable
    results = start_together(out)
    assert all(type(r).__name__ == "RunFolder" for r in results), results
    assert (out / SPEC).read_text() == GRID
    assert out.stat().st_mode & 0o7777 == 0o2775


def test_where_the_folder_cannot_be_renamed_into_place_one_runner_still_writes_it_whole(slow_writes, monkeypatch, tmp_path):
    # A mount point (or an object store) cannot take a renamed folder: the spec is written in place,
    # exclusively and whole, and the others wait on nothing but read it.
    monkeypatch.setattr(staging, "publish_once", lambda target, files: None)
    out = tmp_path / "mounted"
    out.mkdir()
    results = start_together(out)
    assert all(type(r).__name__ == "RunFolder" for r in results), results
    assert (out / SPEC).read_text() == GRID
    assert sorted(p.name for p in out.iterdir()) == [VERSION, SPEC]


def test_a_folder_with_someone_elses_files_is_refused_and_left_alone(tmp_path):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("precious")
    with pytest.raises(UserError, match="holds no grid.toml"):
        open_run(parse_spec(GRID, source="grid.toml", base_dir=tmp_path), out)
    assert sorted(p.name for p in out.iterdir()) == ["notes.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mine"]


def test_another_grid_in_the_folder_is_refused(tmp_path):
    out = tmp_path / "run"
    open_run(parse_spec(GRID, source="grid.toml", base_dir=tmp_path), out)
    other = GRID.replace("examples = 100", "examples = 200")
    with pytest.raises(UserError, match="holds another grid"):
        open_run(parse_spec(other, source="grid.toml", base_dir=tmp_path), out)
    assert (out / SPEC).read_text() == GRID

"""Publishing outputs whole: the one staging mechanism behind fits, the demo, figures, model folders and caches."""

import os
import stat
import subprocess
import sys

import pytest

from scaling.errors import UserError
from scaling.staging import check_replaceable, publish_once, staged_folder, write_file_atomic

MARKER = "made.toml"


def test_a_staged_folder_replaces_an_earlier_one_of_the_same_writer_only_when_complete(tmp_path):
    out = tmp_path / "out"
    with staged_folder(out, MARKER, "scaling test") as staging:
        (staging / MARKER).write_text("first")
        (staging / "old.csv").write_text("1")
    with pytest.raises(RuntimeError):
        with staged_folder(out, MARKER, "scaling test") as staging:
            (staging / MARKER).write_text("second")
            raise RuntimeError("interrupted half way")
    assert (out / MARKER).read_text() == "first"  # the failed run changed nothing
    with staged_folder(out, MARKER, "scaling test") as staging:
        (staging / MARKER).write_text("third")
    assert sorted(p.name for p in out.iterdir()) == [MARKER]  # replaced whole: old.csv is gone
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]  # no staging or retired folder left


def test_a_folder_someone_else_wrote_is_refused_before_anything_runs(tmp_path):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("precious")
    ran = []
    with pytest.raises(UserError, match="was not written by `scaling test`"):
        with staged_folder(mine, MARKER, "scaling test"):
            ran.append(True)
    with pytest.raises(UserError, match="is not empty"):
        check_replaceable(mine, None, "scaling import-hf")
    with pytest.raises(UserError, match="is a file"):
        check_replaceable(mine / "notes.txt", MARKER, "scaling test")
    assert not ran and [p.name for p in mine.iterdir()] == ["notes.txt"]
    check_replaceable(tmp_path / "new", None, "scaling import-hf")  # absent: fine
    (tmp_path / "empty").mkdir()
    check_replaceable(tmp_path / "empty", None, "scaling import-hf")  # empty: fine


def test_publish_once_lets_the_first_complete_folder_win(tmp_path):
    target = tmp_path / "base"
    assert publish_once(target, {"a.txt": b"first", "sub/b.txt": b"x"}) is True
    assert publish_once(target, lambda folder: (folder / "a.txt").write_text("second")) is False
    assert (target / "a.txt").read_text() == "first" and (target / "sub" / "b.txt").read_bytes() == b"x"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["base"]


def test_files_are_written_whole_and_readable_by_the_group(tmp_path):
    previous = os.umask(0o002)
    try:
        write_file_atomic(tmp_path / "a" / "file.bin", b"one")
        write_file_atomic(tmp_path / "a" / "file.bin", lambda out: out.write(b"two"))
    finally:
        os.umask(previous)
    path = tmp_path / "a" / "file.bin"
    assert path.read_bytes() == b"two" and stat.S_IMODE(path.stat().st_mode) == 0o664
    assert [p.name for p in path.parent.iterdir()] == ["file.bin"]


def test_a_full_disk_leaves_the_earlier_folder_and_file_and_says_which(tmp_path):
    from disk_helpers import full_disk
    from scaling.errors import DiskFull

    with full_disk(tmp_path / "disk") as disk:
        disk.need_real("the block writes its files without a flush, as the demo and export-hf do")
        out = disk.path / "out"
        with staged_folder(out, MARKER, "scaling test") as staging:
            (staging / MARKER).write_text("first")
        write_file_atomic(disk.path / "file.bin", b"first")
        disk.fill(leave=0)
        with pytest.raises(DiskFull, match=f"^no space left on device writing {out} \\(the earlier folder is unchanged\\); "
                                           "free space and rerun$"):  # the old code: the bare OSError
            with staged_folder(out, MARKER, "scaling test") as staging:
                (staging / MARKER).write_text("second")
                (staging / "big.bin").write_bytes(os.urandom(1 << 20))
        with pytest.raises(DiskFull, match="file.bin \\(the earlier file is unchanged\\)"):
            write_file_atomic(disk.path / "file.bin", os.urandom(1 << 20))
        with pytest.raises(DiskFull, match="new \\(nothing was written there\\)"):
            publish_once(disk.path / "new", {"a.bin": os.urandom(1 << 20)})
        assert (out / MARKER).read_text() == "first" and (disk.path / "file.bin").read_bytes() == b"first"
        assert disk.listing() == ["file.bin", "out", f"out/{MARKER}"]


# Run in its own process: an audit hook, once added, stays for the life of the process.
SIGNAL_BETWEEN_RENAMES = """
import signal, sys
from pathlib import Path
from scaling.interrupts import Terminated, unwinding_on_termination
from scaling.staging import staged_folder

out = Path(sys.argv[1])

def terminate_before_the_new_folder_moves_in(event, args):
    # Audit events come before the operation: this is the rename of the staging folder onto out, after out
    # was moved aside. The signal's handler runs inside raise_signal, so the rename never happens.
    if event == "os.rename" and Path(args[1]) == out:
        signal.raise_signal(signal.SIGTERM)

with unwinding_on_termination():
    try:
        with staged_folder(out, "made.toml", "scaling test") as staging:
            (staging / "made.toml").write_text("second")
            sys.addaudithook(terminate_before_the_new_folder_moves_in)
    except Terminated as terminated:
        sys.exit(terminated.exit_status)
"""


def test_a_termination_while_a_staged_folder_replaces_another_leaves_the_earlier_one(tmp_path):
    out = tmp_path / "out"
    with staged_folder(out, MARKER, "scaling test") as staging:
        (staging / MARKER).write_text("first")
    ended = subprocess.run([sys.executable, "-c", SIGNAL_BETWEEN_RENAMES, str(out)], capture_output=True, text=True,
                           timeout=60)
    assert ended.returncode == 143, ended.stderr
    assert (out / MARKER).read_text() == "first"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]  # neither the staging nor the retired folder left


def interrupted_just_after(call):
    """`call`, standing in for a signal Python handles at the first bytecode after the call returns, where it
    made a temporary (a dot-name: `staging.temporary_name`): it did its work, then the handler raised."""

    def interrupted(path, *args, **kwargs):
        made = call(path, *args, **kwargs)
        if os.path.basename(path).startswith("."):
            raise KeyboardInterrupt
        return made

    return interrupted


@pytest.mark.parametrize("made_by", ["staged_folder", "publish_once", "write_file_atomic"])
def test_an_interrupt_the_moment_a_temporary_is_made_leaves_nothing(tmp_path, monkeypatch, made_by):
    """Seen in CI: `scaling figures` signalled at its start left `paper/.figures.<hash>.tmp` (made just before the
    `try` that removes it)."""
    work = tmp_path / "work"
    work.mkdir()
    if made_by == "write_file_atomic":
        monkeypatch.setattr(os, "open", interrupted_just_after(os.open))
    else:
        monkeypatch.setattr(type(work), "mkdir", interrupted_just_after(type(work).mkdir))
    with pytest.raises(KeyboardInterrupt):
        if made_by == "staged_folder":
            with staged_folder(work / "out", None, "test"):
                pass
        elif made_by == "publish_once":
            publish_once(work / "out", {"a.txt": b"a"})
        else:
            write_file_atomic(work / "out.txt", b"a")
    monkeypatch.undo()
    assert list(work.iterdir()) == []

"""Whole folders of outputs, published at once: filled aside, then renamed into place."""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Callable


@contextlib.contextmanager
def staged_folder(out: Path) -> Iterator[Path]:
    """A staging folder beside `out` that replaces `out` (an earlier one is retired) once the block
    completes; on any failure, interrupts included, `out` is as it was and the staging folder is gone."""
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = out.parent / f".{out.name}.partial-{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir()
    try:
        yield staging
        retired = out.parent / f".{out.name}.old-{os.getpid()}"
        if out.exists():
            out.rename(retired)
        staging.rename(out)
        shutil.rmtree(retired, ignore_errors=True)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def publish_folder(out: Path, fill: Callable[[Path], None]) -> None:
    """`fill` a staging folder, then put it in place of `out` (see `staged_folder`)."""
    with staged_folder(out) as staging:
        fill(staging)

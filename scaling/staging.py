"""Whole folders of outputs, published at once: filled aside, then renamed into place."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Callable


def publish_folder(out: Path, fill: Callable[[Path], None]) -> None:
    """Fill a staging folder beside `out`, then put it in place of `out` (replacing an earlier one) by
    renames; on any failure, interrupts included, `out` is as it was and the staging folder is gone."""
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = out.parent / f".{out.name}.partial-{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir()
    try:
        fill(staging)
        retired = out.parent / f".{out.name}.old-{os.getpid()}"
        if out.exists():
            out.rename(retired)
        staging.rename(out)
        shutil.rmtree(retired, ignore_errors=True)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise

"""This machine's cache folder, shared by every layer that keeps something local (compiled programs, built
kernels, scratch for remote runs)."""

from __future__ import annotations

import os
from pathlib import Path


def local_cache() -> Path:
    """This machine's cache folder: $SCALING_CACHE, else ~/.cache/scaling."""
    return Path(os.environ.get("SCALING_CACHE", Path.home() / ".cache" / "scaling"))

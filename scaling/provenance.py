"""Provenance attributes carried by every dataset the toolkit writes."""

from __future__ import annotations

import datetime
import importlib.metadata
import json
import platform
import subprocess
from pathlib import Path

_DEPENDENCIES = ("jax", "jaxlib", "flax", "optax", "numpyro", "arviz", "xarray", "numpy", "h5netcdf")


def git_commit() -> str:
    """The commit of the source tree the package runs from, with `+dirty` when it has changes."""
    source = Path(__file__).resolve().parent
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=source, capture_output=True, text=True, check=True, timeout=10
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"], cwd=source, capture_output=True, text=True, timeout=10
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return commit + ("+dirty" if dirty else "")


def device_kind() -> str:
    import jax

    device = jax.devices()[0]
    return f"{device.platform}:{device.device_kind} x{jax.device_count()}"


def provenance(spec_text: str, data_sources: dict | None = None) -> dict[str, str]:
    """Attributes: the spec that produced the data, versions, commit, device and creation time, and where its data
    came from (`data_sources`: a data source's `provenance()`, as JSON; absent where it has none)."""
    versions = {}
    for name in ("scaling", *_DEPENDENCIES):
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return {
        "spec": spec_text,
        "versions": ", ".join(f"{name}=={version}" for name, version in versions.items()),
        "python": platform.python_version(),
        "git_commit": git_commit(),
        "device": device_kind(),
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    } | ({"data_sources": json.dumps(data_sources, sort_keys=True)} if data_sources else {})

"""scaling: how reasoning generalization after CoT SFT scales with steps, data and base capability."""

__version__ = "0.1.0"


def open_results(path):
    """The results hypercube at path (a `results.nc`) as an `xarray.Dataset`."""
    from scaling.grid.store import open_results as _open  # keeps `import scaling` free of the heavy stack

    return _open(path)

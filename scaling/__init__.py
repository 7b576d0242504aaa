"""scaling: how reasoning generalization after CoT SFT scales with steps, data and base capability."""

import warnings

__version__ = "0.1.0"

# ArviZ announces its 1.0 refactor on import; the toolkit pins arviz<1, so the notice is noise to users.
# Set here, before any module of the package can import ArviZ.
warnings.filterwarnings("ignore", message="ArviZ is undergoing a major refactor", category=FutureWarning)


def open_results(path):
    """The results hypercube at path (a `results.nc`) as an `xarray.Dataset`."""
    from scaling.results import open_results as _open  # keeps `import scaling` free of the heavy stack

    return _open(path)

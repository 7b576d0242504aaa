"""Bayesian scaling-law fits: pure law functions, numpyro models around them, and their summaries."""

import warnings

# ArviZ announces its 1.0 refactor on import; the toolkit pins arviz<1, so the notice is noise to users.
warnings.filterwarnings("ignore", message="ArviZ is undergoing a major refactor", category=FutureWarning)

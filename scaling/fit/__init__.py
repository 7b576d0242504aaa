"""Bayesian scaling-law fits: pure law functions, numpyro models around them, and their summaries."""

METHODS = ("nuts", "svi", "huber")  # how a posterior is computed (see scaling.fit.infer)

"""Scaling laws as pure functions of arrays; numpyro models add priors and likelihoods around them."""

from __future__ import annotations

import jax.numpy as jnp


def saturating_power(x, E, A, alpha):
    """y = E + A · x^(−alpha): a power-law decay towards the floor E (irreducible loss)."""
    return E + A * jnp.power(x, -alpha)


def saturating_accuracy(x, C, x50, k):
    """acc = C / (1 + (x / x50)^(-k)): a power law x^k at few steps that saturates at the ceiling C.

    x50 is where accuracy reaches half its ceiling; it is the logistic curve in log x, the usual
    shape of accuracy over steps when a task is learned and then memorized.
    """
    return C / (1.0 + jnp.power(x / x50, -k))


# name -> (law, parameter names in order, whether x is divided by the fit's x_ref first)
LAWS = {
    "power": (saturating_power, ("E", "A", "alpha"), True),
    "accuracy": (saturating_accuracy, ("C", "x50", "k"), False),
}

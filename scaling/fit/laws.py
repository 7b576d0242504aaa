"""Scaling laws as pure functions of arrays; numpyro models add priors and likelihoods around them."""

from __future__ import annotations

import jax.numpy as jnp


def saturating_power(x, E, A, alpha):
    """y = E + A · x^(−alpha): a power-law decay towards the floor E (irreducible loss)."""
    return E + A * jnp.power(x, -alpha)

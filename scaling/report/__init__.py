"""Figures and the paper, drawn from result and fit files only."""

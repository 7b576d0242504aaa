"""Synthetic chain-of-thought tasks: families with checkable steps, mixtures, grading, tokenization."""

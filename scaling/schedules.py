"""Learning-rate shapes as multipliers of the optimizer's warmup-then-constant rate.

The optimizer owns the warmup; these pure functions give the factor each step is scaled by, so one
compiled train step serves every schedule and every branch (the factor is a traced argument).
"""

from __future__ import annotations

import math

SCHEDULES = ("wsd", "cosine", "constant")


def linear_decay(step_in_decay: int, length: int) -> float:
    """The factor during a decay of `length` steps: 1 at its first step, falling linearly towards 0."""
    return 1.0 - step_in_decay / length


def cosine(step: int, warmup: int, total: int) -> float:
    """The factor of a cosine decay to 0 over steps warmup..total (1 during warmup)."""
    if step < warmup or total <= warmup:
        return 1.0
    return 0.5 * (1.0 + math.cos(math.pi * (step - warmup) / (total - warmup)))

"""Learning-rate shapes: the factor each step's peak rate is multiplied by (after warmup).

Pure functions of the step, so one compiled train step serves every schedule and every branch
(the resulting rate is a traced argument of the step).
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

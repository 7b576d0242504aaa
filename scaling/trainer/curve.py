"""A cell's training curve: the loss of the final model's trajectory between budgets, not only at them.

The budgets say where a model is evaluated; the curve says how its training loss got there. It holds
the mean loss of each window of `every` optimizer steps along the path that produced the last budget's
model (the trunk, then that budget's decay branch under wsd), at most CURVE_POINTS points a cell. Losses
stay on the device until `settle` (called at each budget, where the loop waits anyway), so recording
costs the training loop no synchronization.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

CURVE_POINTS = 256  # the most points a cell's curve keeps: enough for a figure, small in a cell file


def curve_every(final_budget: int) -> int:
    """Steps per curve point for a run whose last budget is `final_budget`."""
    return max(1, math.ceil(final_budget / CURVE_POINTS))


@dataclass
class LossCurve:
    """Window means of the training loss: after step s (s steps done, s a multiple of `every`), the mean
    loss of steps s - every + 1 .. s and the learning rate of step s."""

    every: int
    steps: list[int] = field(default_factory=list)
    losses: list[float] = field(default_factory=list)
    rates: list[float] = field(default_factory=list)
    window: list = field(default_factory=list)  # this window's losses so far (device scalars or floats)
    pending: list = field(default_factory=list)  # closed windows not yet read back: (step, losses, rate)

    def add(self, step: int, loss, rate: float) -> None:
        """Record optimizer step `step` (0-based) of the trajectory, its loss (a device scalar) and rate."""
        self.window.append(loss)
        if (step + 1) % self.every == 0:
            self.pending.append((step + 1, self.window, rate))
            self.window = []

    def settle(self) -> None:
        """Read the closed windows back from the device (a mean over float32 values, on the host, so a
        resumed run computes exactly what an uninterrupted one does)."""
        for step, losses, rate in self.pending:
            self.steps.append(step)
            self.losses.append(float(np.mean(np.asarray([float(v) for v in losses], np.float64))))
            self.rates.append(float(rate))
        self.pending = []

    def state(self) -> dict:
        """Plain values for a checkpoint (settled first)."""
        self.settle()
        return {"every": self.every, "steps": list(self.steps), "losses": list(self.losses), "rates": list(self.rates),
                "window": [float(v) for v in self.window]}

    @classmethod
    def from_state(cls, state: dict) -> LossCurve:
        return cls(int(state["every"]), [int(s) for s in state["steps"]], [float(v) for v in state["losses"]],
                   [float(v) for v in state["rates"]], [float(v) for v in state["window"]])

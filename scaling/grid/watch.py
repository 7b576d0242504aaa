"""Watching a running cell: where it is (step, budget, phase), how fast (tokens/s) and how long it has
left, told to the grid's console, to `scaling status --watch` through a small file beside the cell's
lock, and to the cell's TensorBoard or W&B log.

Nothing here changes a result: a reporter only reads what the cell reports. (Light on imports: `scaling
status` reads progress records without loading the trainer.)
"""

from __future__ import annotations

import json
import time
from collections import deque
from dataclasses import asdict, dataclass
from typing import Callable

from scaling.trainer.curve import LossCurve

PHASES = ("train", "evaluate")


@dataclass(frozen=True)
class CellProgress:
    """A running cell's position: picklable (it crosses from worker processes) and JSON-able (it is read
    by `scaling status` on another machine)."""

    steps_done: int  # optimizer steps so far, every branch included
    total_steps: int  # optimizer steps the cell runs in all
    budget: int  # the budget being trained towards or evaluated
    phase: str  # one of PHASES
    tokens_per_s: float  # training tokens per second over the last steps (0 until measured)
    mean_tokens_per_s: float  # over all training so far in this process (evaluation excluded)
    eta_s: float | None  # seconds left, None until measured
    updated: float  # time.time() when this was measured

    def describe(self) -> str:
        """`step 120/1,064 · training to 256 · 8.1k tok/s · 1 min 20 s left`."""
        doing = f"training to {self.budget}" if self.phase == "train" else f"evaluating {self.budget}"
        parts = [f"step {self.steps_done:,}/{self.total_steps:,}", doing]
        if self.tokens_per_s > 0:
            parts.append(f"{_short(self.tokens_per_s)} tok/s")
        if self.eta_s is not None:
            parts.append(f"{duration(self.eta_s)} left")
        return " · ".join(parts)

    def to_json(self) -> bytes:
        return json.dumps(asdict(self)).encode()

    @classmethod
    def from_json(cls, data: bytes) -> CellProgress | None:
        """None for a file that is not (or not yet) a progress record."""
        try:
            return cls(**json.loads(data))
        except (ValueError, TypeError):
            return None


def duration(seconds: float) -> str:
    seconds = max(0, round(seconds))
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60:02d} s"
    return f"{seconds // 3600} h {seconds % 3600 // 60:02d} min"


def _short(value: float) -> str:
    return f"{value / 1e3:.1f}k" if value >= 1e3 else f"{value:.0f}"


class CellReporter:
    """A scaling.grid.cell.CellObserver: turns a cell's reports into CellProgress for `show` (at most every `show_every_s`) and `publish`
    (at most every `publish_every_s`: a file write), and its curve and scores into `log` scalars.

    Speed is measured over the last RATE_WINDOW step reports of the current training stretch, so
    evaluation time never counts as training; the ETA adds, per budget left, the last evaluation's duration.
    """

    RATE_WINDOW = 50

    def __init__(self, total_steps: int, budgets: tuple[int, ...], tokens_per_step: int,
                 show: Callable[[CellProgress], None], publish: Callable[[CellProgress], None] | None = None,
                 log=None, show_every_s: float = 0.25, publish_every_s: float = 5.0):
        self.total, self.budgets, self.tokens_per_step = total_steps, budgets, tokens_per_step
        self.show, self.publish, self.log = show, publish, log
        self.show_every_s, self.publish_every_s = show_every_s, publish_every_s
        self.evaluated_count, self.phase, self.steps_done = 0, "train", 0
        self.recent: deque[tuple[float, int]] = deque(maxlen=self.RATE_WINDOW)
        self.trained_s, self.trained_steps = 0.0, 0  # timed training so far (between reports of one stretch)
        self.evaluation_s, self.evaluation_started = 0.0, 0.0
        self.shown_at = self.published_at = float("-inf")
        self.curve_logged = 0  # curve points already logged
        self.last: CellProgress | None = None

    @property
    def budget(self) -> int:
        return self.budgets[min(self.evaluated_count, len(self.budgets) - 1)]

    def tokens_per_s(self) -> float:
        if len(self.recent) < 2 or self.recent[-1][0] <= self.recent[0][0]:
            return 0.0
        (t0, s0), (t1, s1) = self.recent[0], self.recent[-1]
        return (s1 - s0) * self.tokens_per_step / (t1 - t0)

    def mean_tokens_per_s(self) -> float:
        return self.trained_steps * self.tokens_per_step / self.trained_s if self.trained_s > 0 else 0.0

    def eta_s(self) -> float | None:
        rate = self.tokens_per_s() / self.tokens_per_step if self.tokens_per_step else 0.0
        if rate <= 0:
            return None
        evaluations_left = len(self.budgets) - self.evaluated_count - (self.phase == "evaluate")
        return (self.total - self.steps_done) / rate + evaluations_left * self.evaluation_s

    def progress(self) -> CellProgress:
        return CellProgress(self.steps_done, self.total, self.budget, self.phase, self.tokens_per_s(),
                            self.mean_tokens_per_s(), self.eta_s(), time.time())

    def _report(self, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self.shown_at < self.show_every_s and now - self.published_at < self.publish_every_s:
            return
        self.last = self.progress()
        if force or now - self.shown_at >= self.show_every_s:
            self.show(self.last)
            self.shown_at = now
        if self.publish is not None and (force or now - self.published_at >= self.publish_every_s):
            self.publish(self.last)
            self.published_at = now

    # CellObserver
    def trained(self, steps_done: int, loss: float) -> None:
        now = time.monotonic()
        if self.recent:
            self.trained_s += now - self.recent[-1][0]
            self.trained_steps += steps_done - self.recent[-1][1]
        self.steps_done = steps_done
        self.recent.append((now, steps_done))
        self._report()

    def evaluating(self, budget: int) -> None:
        self.phase, self.evaluation_started = "evaluate", time.monotonic()
        self._report(force=True)

    def evaluated(self, budget: int, scores: dict[str, dict[str, float]], curve: LossCurve) -> None:
        self.evaluation_s = time.monotonic() - self.evaluation_started
        if self.log is not None:
            self._log(budget, scores, curve)
        self.phase, self.evaluated_count = "train", self.evaluated_count + 1
        self.recent.clear()  # the next stretch's speed, without the evaluation in it
        self._report(force=True)

    def _log(self, budget: int, scores: dict[str, dict[str, float]], curve: LossCurve) -> None:
        for step, loss, rate in list(zip(curve.steps, curve.losses, curve.rates))[self.curve_logged:]:
            self.log.scalars(step, {"train/loss": loss, "train/lr": rate})
        self.curve_logged = len(curve.steps)
        at_budget = {f"eval/{split}/{metric}": value for split, values in scores.items()
                     for metric, value in values.items() if metric != "n"}
        if self.tokens_per_s() > 0:
            at_budget["train/tokens_per_s"] = self.tokens_per_s()
        self.log.scalars(budget, at_budget)

"""What the fit's progress display costs: the same NUTS fit (a power law on 16 points, 4 chains × 2000
draws after 1000 warmup: a cheap model, where a per-iteration cost would show most) with the display on
(a terminal, drawn into memory: chains compile a host callback every 1% of their iterations) and off,
compiled once each first, then timed in alternating rounds.
Last line: a JSON object whose "ratio" is time with the display / time without (goal <= 1.05).
"""

from __future__ import annotations

import io
import json
import time

import numpy as np
from rich.console import Console

from scaling.fit import progress
from scaling.fit.infer import FitData, SamplerConfig, fit_law
from scaling.fit.laws import LAWS

GOAL = 1.05
ROUNDS = 5
SAMPLER = SamplerConfig(warmup=1000, samples=2000, chains=4, seed=0)


def timed(data: FitData, shown: bool) -> float:
    law = LAWS["power"]
    started = time.perf_counter()
    with progress.fit_progress(enabled=shown, console=Console(file=io.StringIO(), force_terminal=True)):
        fit_law(law, data, "nuts", SAMPLER)
    return time.perf_counter() - started


def main() -> None:
    x = np.geomspace(10, 10_000, 16)
    data = FitData({"x": x}, (1.5 + 4 * x ** -0.5) * np.exp(np.random.default_rng(0).normal(0, 0.03, x.size)))
    timed(data, True), timed(data, False)  # compile both programs
    on, off = [], []
    for _ in range(ROUNDS):
        on.append(timed(data, True))
        off.append(timed(data, False))
    ratio = float(np.median(on) / np.median(off))
    print(f"display on  {np.median(on):.1f} s (rounds {', '.join(f'{t:.1f}' for t in on)})")
    print(f"display off {np.median(off):.1f} s (rounds {', '.join(f'{t:.1f}' for t in off)})")
    print(json.dumps({"bench": "fit_progress", "on_s": float(np.median(on)), "off_s": float(np.median(off)),
                      "ratio": ratio, "goal": GOAL, "met": ratio <= GOAL}))


if __name__ == "__main__":
    main()

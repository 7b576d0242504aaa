"""What a NUTS fit's divergent transitions mean for its estimates: where they sit, and whether the reported
quantities depend on the draws taken there. The one place that decides when a few divergences may pass.

A divergent transition marks a region the sampler enters only with difficulty (a funnel's neck, a kink, an
overflowing gradient), so the posterior there may be under-represented and the estimates biased towards the
rest. The model is made smooth first (laws._rise: a rise that cannot overflow, where (x/x50)^(−k) did and its
NaN gradients diverged); what remains is judged by this rule:

    a fit's divergences pass when they are rare, at most MAX_SHARE of its draws (8 of the default 4 × 2,000),
    AND every reported parameter's posterior mean and central 90% interval bounds (its 5% and 95% quantiles),
    computed without the draws within NEIGHBOURHOOD iterations of a divergence (in its chain), differ from those
    of all the draws by less than MAX_SHIFT posterior sd.

Why that works as a test of bias: the draws near a divergence are where the sampler met the region it could
not enter. If that region held posterior mass the estimates are missing, they are pulled towards its edge, and
the draws at the edge carry the pull: leaving them out moves a mean or a bound. Divergences in a reported
parameter's tail (the top 2% of log k, say) move its 90% bound by ~0.2 sd and are refused; divergences where the
reported quantities do not depend on the sampled site (the overdispersion near the Binomial limit) move nothing
and pass. Left out at random, as many stretches of draws move these figures by 0.005-0.05 sd (99th percentile
over the demo's `accuracy` fits), so the threshold stands above Monte Carlo noise. (Quantiles, not the summary's
HDI bounds: an HDI bound where the density is flat, a ceiling piling up below 1, moved by 0.11 sd at random.)
A fit with more divergences than MAX_SHARE allows is refused whatever they move.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

MAX_SHARE = 1e-3  # divergent draws allowed, as a share of all draws (the rarity half of the rule)
MAX_SHIFT = 0.1  # the largest move of a reported mean or 90% interval bound, in posterior sd, that still passes
NEIGHBOURHOOD = 10  # draws either side of a divergent one (in its chain) left out: NUTS draws of these laws
# are correlated over a few iterations (bulk ESS ~0.2-0.5 per draw), so a divergence's region spans several
TAIL = 0.9  # a divergent draw counts as in a site's tail beyond its 10th or 90th percentile
RULE = (f"divergences pass when at most {MAX_SHARE:.1%} of the draws diverged and every reported parameter's mean "
        f"and central 90% interval bounds move by < {MAX_SHIFT} posterior sd without the {NEIGHBOURHOOD} draws either "
        "side of each divergent one")  # the rule in one line, for fit.toml


@dataclass(frozen=True)
class Divergences:
    """A fit's divergent transitions, where they sit and what they do to the reported quantities."""

    count: int  # divergent transitions after warmup
    draws: int  # all draws after warmup (chains × draws)
    where: str  # the sampled sites in whose tails they sit, e.g. "4 at log_k above its 96th percentile (> 2.15)"
    shift: float  # the largest move of a reported mean or 90% bound without their neighbourhood, in posterior sd
    moved: str  # the reported quantity that moved most ("" without divergences)

    @property
    def harmless(self) -> bool:
        """None, or few that move no reported quantity by MAX_SHIFT sd or more (the rule above)."""
        return self.count == 0 or (self.count <= MAX_SHARE * self.draws and self.shift < MAX_SHIFT)

    def describe(self) -> str:
        """One line: how many, where, what they move, and the verdict against the rule."""
        if self.count == 0:
            return "no divergent transitions"
        verdict = "harmless" if self.harmless else "refused"
        rare = self.count <= MAX_SHARE * self.draws
        return (f"{self.count} divergent transition{'s' if self.count > 1 else ''} of {self.draws:,} draws ({self.count / self.draws:.2%}), {self.where}; "
                f"without the {NEIGHBOURHOOD} draws either side of each, the reported means and 90% bounds move by up "
                f"to {self.shift:.2f} sd ({self.moved}): {verdict} (passes with <= {MAX_SHARE:.1%} of the draws"
                f"{'' if rare else ', which these exceed'} and < {MAX_SHIFT} sd)")


def judged(divergent: np.ndarray, sampled: dict[str, np.ndarray], reported: dict[str, np.ndarray],
           interval: float) -> Divergences:
    """The divergences of a run: `divergent` (chains, draws) bool, the sampled sites as drawn (chains, draws, ...),
    the reported parameters (chains, draws) and the probability of their reported interval."""
    divergent = np.asarray(divergent, bool)
    count, draws = int(divergent.sum()), divergent.size
    if count == 0:
        return Divergences(0, draws, "", 0.0, "")
    kept = ~_neighbourhood(divergent).reshape(-1)
    moves = {name: _move(np.asarray(values, float).reshape(-1), kept, interval) for name, values in reported.items()}
    moved = max(moves, key=moves.get) if moves else ""
    return Divergences(count, draws, _where(divergent.reshape(-1), sampled), moves.get(moved, 0.0), moved)


def _neighbourhood(divergent: np.ndarray) -> np.ndarray:
    """The draws within NEIGHBOURHOOD iterations of a divergent one, in the same chain."""
    width = 2 * NEIGHBOURHOOD + 1
    return np.stack([np.convolve(chain.astype(float), np.ones(width), mode="same") > 0 for chain in divergent])


def _move(values: np.ndarray, kept: np.ndarray, interval: float) -> float:
    """How far the mean and the central interval's bounds move, in posterior sd, when only the `kept` draws are used."""
    sd = values.std()
    if not sd > 0 or kept.sum() < 2:
        return 0.0
    bounds = [(1 - interval) / 2, (1 + interval) / 2]
    every = np.array([values.mean(), *np.quantile(values, bounds)])
    some = np.array([values[kept].mean(), *np.quantile(values[kept], bounds)])
    return float(np.max(np.abs(every - some)) / sd)


def _where(divergent: np.ndarray, sampled: dict[str, np.ndarray]) -> str:
    """The (at most two) sampled scalars in whose tail most divergent draws sit, with the tail's edge."""
    found = []
    for site, values in sampled.items():
        flat = np.asarray(values, float).reshape(divergent.size, -1)
        for j in range(flat.shape[1]):
            column = flat[:, j]
            ranks = np.searchsorted(np.sort(column), column[divergent]) / column.size
            for above, inside in ((True, ranks >= TAIL), (False, ranks <= 1 - TAIL)):
                if inside.sum() * 2 > divergent.sum():  # most of them
                    edge = (ranks[inside].min() if above else ranks[inside].max()) * 100
                    value = column[divergent][inside].min() if above else column[divergent][inside].max()
                    name = site if flat.shape[1] == 1 else f"{site}[{j}]"
                    extremeness = np.abs(ranks[inside] - 0.5).mean()
                    found.append((int(inside.sum()), extremeness, f"{inside.sum()} at {name} "
                                  f"{'above' if above else 'below'} its {int(edge) if above else int(np.ceil(edge))}th "
                                  f"percentile ({'>' if above else '<'} {value:.3g})"))
    if not found:
        return "in no sampled site's tail (spread over the posterior)"
    found.sort(key=lambda item: (-item[0], -item[1]))
    return ", ".join(text for *_, text in found[:2])

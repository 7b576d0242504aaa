"""Scaling laws as pure functions of arrays, and the registry that names them.

A law's `mean(theta, x)` takes dicts of arrays (parameters in original units, one array per axis) and
broadcasts, so a (S, 1) column of posterior draws against a (1, m) row of inputs gives (S, m) curves.
numpyro models (models.py) wrap these functions with priors and likelihoods; nothing here samples.
Each law is declared once, by keyword: its mean, latent priors, unscale and derived quantities side by side.

Priors are scale-free: a fit divides each axis by its geometric mean (x_ref) and a loss by its median
(y_scale), places Normal priors on unconstrained *latent* sites in those units, and maps the draws
back to original units with the law's `unscale`. Because every law is equivariant under that
rescaling, `mean(unscale(theta'), x) == y_scale * mean(theta', x / x_ref)` holds exactly (a test checks
it for every law), so the scaled parameters are the same law in other units.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable

import jax
import jax.numpy as jnp

from scaling.errors import UserError

RESPONSES = ("loss", "accuracy")
# What models.py puts around each response (its constants hold the noise priors).
LIKELIHOODS = {
    "loss": "Student-t (4 degrees of freedom) on log loss, scale fitted; seeds as pooled offsets on log loss.",
    "accuracy": "with n examples, Beta-Binomial (binomial eval noise plus a fitted overdispersion); without n, "
                "Student-t on the value; seeds as pooled offsets on the logit.",
}
TRANSFORMS = {"log": jnp.exp, "logit": jax.nn.sigmoid, "identity": lambda v: v}
RUN_LINKS = {"log": lambda p, u: p * jnp.exp(u), "identity": lambda p, u: p + u}
# Covariates the fit checks before fitting: (low, high, what a value means) with low <= value < high.
COVARIATE_RANGES = {"chance": (0.0, 1.0, "a chance accuracy lies in [0, 1)"),
                    "past": (0.0, math.inf, "log steps past memorization are >= 0 (0 before it, or never memorized)")}


@dataclass(frozen=True)
class Latent:
    """One unconstrained prior site in scaled units: `{transform}_{name} ~ Normal(loc, scale)`."""

    name: str  # the scaled quantity it becomes (a reported parameter, or one `derive` turns into one)
    transform: str  # "log" (positive), "logit" (in (0, 1)) or "identity" (real)
    loc: float  # prior mean on the unconstrained scale
    scale: float  # prior standard deviation on the unconstrained scale
    meaning: str  # one line for the law's doc

    def __post_init__(self) -> None:
        if self.transform not in TRANSFORMS or not self.scale > 0:
            raise ValueError(f"Latent {self.name}: transform must be one of {list(TRANSFORMS)}, scale > 0")

    @property
    def site(self) -> str:
        return self.name if self.transform == "identity" else f"{self.transform}_{self.name}"

    def describe(self) -> str:
        return f"{self.site} ~ Normal({self.loc:.3g}, {self.scale:.3g})  {self.meaning}"


def _same(theta: dict) -> dict:
    return theta


@dataclass(frozen=True, kw_only=True)
class Law:
    """A named law: its formula, inputs, reported parameters, response type and scale-free prior. Declared by
    keyword, in one place: its mean, priors, unscale and derived quantities side by side (see LAWS)."""

    name: str  # registry key, e.g. "chinchilla"
    formula: str  # e.g. "L = E + A·N^(−alpha) + B·D^(−beta)"
    axes: tuple[str, ...]  # the law's inputs; the CLI maps them to columns with --x N=params
    params: tuple[str, ...]  # reported parameters in original units
    response: str  # "loss" (positive; Student-t on log y) or "accuracy" (in [0, 1])
    mean: Callable  # mean(theta, x) -> array: pure jnp, broadcasting, original units
    latent: tuple[Latent, ...]  # the prior: independent Normals on unconstrained sites, in scaled units
    unscale: Callable  # unscale(theta_scaled, x_ref: dict, y_scale) -> theta in original units
    derive: Callable = _same  # scaled quantities from the constrained latents (e.g. a ceiling above a floor)
    meaning: str = ""  # what the parameters mean, for the doc
    # Per-row inputs read as given, never rescaled (they may be 0): a chance floor, log steps past memorization.
    covariates: tuple[str, ...] = ()
    # (parameter, link) pairs that vary from run to run around the law's value: "log" multiplies the parameter
    # by exp(u), "identity" adds u, u ~ Normal(0, run_sd). Both commute with `unscale` (a parameter with a log
    # link is rescaled by a factor, one with an identity link shifted), so effects mean the same in scaled and
    # original units. A law without them gets one constant offset per run on the logit or log loss (models.py).
    run_effects: tuple[tuple[str, str], ...] = ()
    doc: str = field(init=False)  # what each parameter means and the priors, for `scaling fit --help`/docs

    def __post_init__(self) -> None:
        if self.response not in RESPONSES:
            raise ValueError(f"Law {self.name}: response must be one of {RESPONSES}, got {self.response!r}")
        if any(param not in self.params or link not in RUN_LINKS for param, link in self.run_effects):
            raise ValueError(f"Law {self.name}: run effects must name its parameters with a link in {list(RUN_LINKS)}")
        y_units = "y / median(y)" if self.response == "loss" else "accuracy as is"
        priors = "\n".join(f"    {latent.describe()}" for latent in self.latent)
        likelihood = LIKELIHOODS[self.response]
        if self.run_effects:
            likelihood = likelihood.split(";")[0] + "; runs (grid cells) vary in " + ", ".join(
                f"{'log ' if link == 'log' else ''}{param}" for param, link in self.run_effects) + " (partially pooled)."
        inputs = f"  Inputs taken as given per row: {', '.join(self.covariates)}\n" if self.covariates else ""
        text = (f"{self.name}: {self.formula}\n{self.meaning.strip()}\n{inputs}"
                f"  Priors, scale-free (each axis / its geometric mean, {y_units}); reported in original units:\n{priors}\n"
                f"  Likelihood: {likelihood}")
        object.__setattr__(self, "doc", text)

    @property
    def inputs(self) -> tuple[str, ...]:
        """Everything `mean` reads per row: the axes (rescaled), then the covariates (as given)."""
        return (*self.axes, *self.covariates)

    def scaled(self, z: dict) -> dict:
        """The law's parameters in scaled units from its latent draws (site name -> value)."""
        return self.derive({lat.name: TRANSFORMS[lat.transform](z[lat.site]) for lat in self.latent})

    def for_runs(self, theta: dict, effects: dict) -> dict:
        """theta with each run-varying parameter moved by its effect u (param -> array): exp(u)·p or p + u."""
        moved = dict(theta)
        for param, link in self.run_effects:
            if param in effects:
                moved[param] = RUN_LINKS[link](theta[param], effects[param])
        return moved


# --- building blocks several laws share --------------------------------------------------------------

def _power(v, exponent):
    return jnp.power(v, -exponent)


def _breaks(x, theta, count: int):
    """Π_i (1 + (x / d_i)^(1 / f_i))^(−c_i·f_i): each break bends the log-log slope by −c_i over a width f_i."""
    log_factor = 0.0
    for i in range(1, count + 1):
        c, d, f = theta[f"c{i}"], theta[f"d{i}"], theta[f"f{i}"]
        # log(1 + (x/d)^(1/f)) as a softplus: (x/d)^(1/f) overflows float32 for sharp breaks (small f).
        log_factor = log_factor - c * f * jax.nn.softplus(jnp.log(x / d) / f)
    return jnp.exp(log_factor)


def _rise(ratio, k):
    """1 / (1 + ratio^(−k)) as sigmoid(k·ln ratio): finite, with finite gradients, however steep the rise."""
    return jax.nn.sigmoid(k * jnp.log(ratio))


def _ceiling_above_floor(t):
    """ceiling = floor + (1 − floor)·headroom keeps floor < ceiling <= 1 for every draw."""
    t = dict(t)
    t["ceiling"] = t["floor"] + (1.0 - t["floor"]) * t.pop("headroom")
    return t


# Priors several laws share, in scaled units.
LOG_HALF = math.log(0.5)
FLOOR_LOSS = Latent("E", "log", LOG_HALF, 1.0, "floor: irreducible loss, a fraction of the median loss")
EXPONENT = dict(transform="log", loc=LOG_HALF, scale=1.0)  # decay exponents around 0.5: 95% in 0.07–3.5
FLOOR_ACC = Latent("floor", "logit", -2.0, 1.5, "floor: accuracy with no learning (chance), around 0.12")
HEADROOM = Latent("headroom", "logit", 1.0, 1.5, "ceiling = floor + (1 − floor)·headroom: the plateau")


def _amplitude(name: str, share: float, meaning: str) -> Latent:
    """A term's size at the reference point, as a share of the median loss (wide: sd 1.5 in log)."""
    return Latent(name, "log", math.log(share), 1.5, meaning)


def _exponent(name: str, meaning: str) -> Latent:
    return Latent(name, meaning=meaning, **EXPONENT)


# --- the laws, each declared once --------------------------------------------------------------------
# Each law's unscale: substituting x = x_ref·x', y = y_scale·y' into its formula gives the factors (accuracies:
# y_scale is 1).

def power_mean(theta, x):
    """y = E + A·x^(−alpha): a power-law decay towards the floor E (irreducible loss)."""
    return theta["E"] + theta["A"] * _power(x["x"], theta["alpha"])


POWER = Law(
    name="power", formula="y = E + A·x^(−alpha)", axes=("x",), params=("E", "A", "alpha"), response="loss",
    mean=power_mean,
    latent=(FLOOR_LOSS, _amplitude("A", 0.5, "excess over the floor at x_ref"), _exponent("alpha", "decay exponent")),
    unscale=lambda t, r, s: {"E": s * t["E"], "A": s * t["A"] * r["x"] ** t["alpha"], "alpha": t["alpha"]},
    meaning="A saturating power law in one axis: E the floor, A the reducible part at x = 1, alpha its decay.",
)


def chinchilla_mean(theta, x):
    """L = E + A·N^(−alpha) + B·D^(−beta) (Hoffmann et al. 2022): parameters N and tokens D."""
    return theta["E"] + theta["A"] * _power(x["N"], theta["alpha"]) + theta["B"] * _power(x["D"], theta["beta"])


CHINCHILLA = Law(
    name="chinchilla", formula="L = E + A·N^(−alpha) + B·D^(−beta)", axes=("N", "D"),
    params=("E", "A", "B", "alpha", "beta"), response="loss", mean=chinchilla_mean,
    latent=(FLOOR_LOSS, _amplitude("A", 0.25, "parameter term at the reference N"),
            _amplitude("B", 0.25, "data term at the reference D"),
            _exponent("alpha", "parameter exponent"), _exponent("beta", "data exponent")),
    unscale=lambda t, r, s: {"E": s * t["E"], "A": s * t["A"] * r["N"] ** t["alpha"], "B": s * t["B"] * r["D"] ** t["beta"],
                             "alpha": t["alpha"], "beta": t["beta"]},
    meaning="Hoffmann et al. 2022: N parameters, D training tokens; E the entropy floor, A and B the two "
            "reducible terms (at N = 1, D = 1), alpha and beta their exponents.",
)


def multiplicative_mean(theta, x):
    """L = A·X^(−alpha)·D^(−beta) + E (Zhang et al. 2024): a scale factor X and fine-tuning data D, jointly."""
    return theta["A"] * _power(x["X"], theta["alpha"]) * _power(x["D"], theta["beta"]) + theta["E"]


MULTIPLICATIVE = Law(
    name="multiplicative", formula="L = A·X^(−alpha)·D^(−beta) + E", axes=("X", "D"), params=("A", "alpha", "beta", "E"),
    response="loss", mean=multiplicative_mean,
    latent=(_amplitude("A", 0.5, "joint term at the reference X and D"),
            _exponent("alpha", "exponent of the scale factor X"), _exponent("beta", "exponent of the fine-tuning data D"),
            FLOOR_LOSS),
    unscale=lambda t, r, s: {"A": s * t["A"] * r["X"] ** t["alpha"] * r["D"] ** t["beta"], "alpha": t["alpha"],
                             "beta": t["beta"], "E": s * t["E"]},
    meaning="Zhang et al. 2024's joint fine-tuning law: X a scaling factor (model size, pre-training data, "
            "PEFT parameters), D the fine-tuning data; the two multiply.",
)


def rectified_mean(theta, x):
    """L(D) = B / (D_l + D^beta) + E (Lin et al. 2024): D_l is the data the pre-trained model already 'knows'."""
    return theta["B"] / (theta["D_l"] + jnp.power(x["D"], theta["beta"])) + theta["E"]


def _unscale_rectified(t, r, s):
    stretch = r["D"] ** t["beta"]
    return {"B": s * t["B"] * stretch, "D_l": t["D_l"] * stretch, "beta": t["beta"], "E": s * t["E"]}


def _rectified_from_bend(t):
    """B, D_l, beta and E from what a curve's data place (scaled units, D' = 1 the reference D):
    L_ref = L(1), the floor's share of it, the bend D_half = D_l^(1/beta) (where the reducible loss has
    halved: L = E + (B/D_l) / (1 + (D/D_half)^beta)) and slope = (1 − share)·beta, the log-log slope of the
    power-law phase at D' = 1. Sampled directly, B and D_l (in units of D^beta) move with beta, and a floor
    the data barely bend towards trades against beta along a curved ridge (r_hat up to 1.29 on Lin et al.'s
    FLAN curves); here that ridge is nearly axis-aligned. Every positive (B, D_l, beta, E) has one such point."""
    t = dict(t)
    level, share, bend = t.pop("L_ref"), t.pop("floor_share"), t.pop("D_half")
    t["E"] = share * level
    t["beta"] = t.pop("slope") / (1.0 - share)
    t["D_l"] = jnp.power(bend, t["beta"])
    t["B"] = (1.0 - share) * level * (t["D_l"] + 1.0)
    return t


RECTIFIED = Law(
    name="rectified", formula="L(D) = B / (D_l + D^beta) + E", axes=("D",), params=("B", "D_l", "beta", "E"),
    response="loss", mean=rectified_mean,
    latent=(Latent("L_ref", "log", 0.0, 1.0, "loss at the reference D, a share of the median loss"),
            Latent("floor_share", "logit", 0.0, 1.5, "E / L_ref: the share of the loss at the reference D that is irreducible"),
            Latent("D_half", "log", 0.0, 2.0, "data at which the reducible loss halves: D_l = D_half^beta"),
            Latent("slope", "log", math.log(0.25), 1.0, "(1 − floor_share)·beta: log-log slope of the power-law phase at the reference D")),
    unscale=_unscale_rectified, derive=_rectified_from_bend,
    meaning="Lin et al. 2024: fine-tuning loss over fine-tuning data D; D_l is the data the pre-trained model "
            "behaves as if it had already seen, which flattens the start of the curve.",
)


def logistic_mean(theta, x):
    """acc = floor + (ceiling − floor) / (1 + (x / x50)^(−k)): logistic in log x."""
    # As a sigmoid of k·ln(x / x50), the same function: (x / x50)^(−k) overflows float32 for a steep rise (k ~ 45
    # at x / x50 = 0.1) and its nan gradients made NUTS diverge on the demo's results (`--by diversity`, seeds 2, 4).
    return theta["floor"] + (theta["ceiling"] - theta["floor"]) * _rise(x["x"] / theta["x50"], theta["k"])


LOGISTIC = Law(
    name="logistic", formula="acc = floor + (ceiling − floor) / (1 + (x/x50)^(−k))", axes=("x",),
    params=("floor", "ceiling", "x50", "k"), response="accuracy", mean=logistic_mean,
    latent=(FLOOR_ACC, HEADROOM, Latent("x50", "log", 0.0, 2.0, "midpoint, relative to the geometric mean of x"),
            Latent("k", "log", 0.0, 1.0, "steepness: slope in log x")),
    unscale=lambda t, r, s: {"floor": t["floor"], "ceiling": t["ceiling"], "x50": r["x"] * t["x50"], "k": t["k"]},
    derive=_ceiling_above_floor,
    meaning="Accuracy rising as a logistic in log x from a floor (chance) to a ceiling; x50 is where it is halfway.",
)


def saturating_accuracy_mean(theta, x):
    """acc = C / (1 + (x / x50)^(−k)): the logistic law with no floor (the demo's accuracy law)."""
    # As C·sigmoid(k·ln(x / x50)), the same function: (x / x50)^(−k) overflows float32 for a sharp rise (large
    # k) far below x50, and its nan gradients made NUTS diverge on the demo's per-family fits.
    return theta["C"] * _rise(x["x"] / theta["x50"], theta["k"])


ACCURACY = Law(
    name="accuracy", formula="acc = C / (1 + (x/x50)^(−k))", axes=("x",), params=("C", "x50", "k"), response="accuracy",
    mean=saturating_accuracy_mean,
    latent=(Latent("C", "logit", 1.0, 1.5, "ceiling"), Latent("x50", "log", 0.0, 2.0, "steps to half the ceiling"),
            Latent("k", "log", math.log(2.0), 1.0, "steepness: the power of the early rise")),
    unscale=lambda t, r, s: {"C": t["C"], "x50": r["x"] * t["x50"], "k": t["k"]},
    meaning="The demo's accuracy law: logistic with no floor; a power x^k at small x, saturating at C.",
)


def _unscale_bnsl(count: int):
    def unscale(t, r, s):
        out = {"E": s * t["E"], "b": s * t["b"] * r["x"] ** t["c0"], "c0": t["c0"]}
        for i in range(1, count + 1):
            out |= {f"c{i}": t[f"c{i}"], f"d{i}": r["x"] * t[f"d{i}"], f"f{i}": t[f"f{i}"]}
        return out
    return unscale


def bnsl_mean(theta, x):
    """y = E + b·x^(−c0)·(1 + (x/d1)^(1/f1))^(−c1·f1) (Caballero et al. 2023), one break at d1."""
    return theta["E"] + theta["b"] * _power(x["x"], theta["c0"]) * _breaks(x["x"], theta, 1)


BNSL = Law(
    name="bnsl", formula="y = E + b·x^(−c0)·(1 + (x/d1)^(1/f1))^(−c1·f1)", axes=("x",),
    params=("E", "b", "c0", "c1", "d1", "f1"), response="loss", mean=bnsl_mean,
    latent=(FLOOR_LOSS, _amplitude("b", 0.5, "power-law term at x_ref"), _exponent("c0", "slope before the break"),
            Latent("c1", "identity", 0.0, 1.0, "change of slope at the break (negative: the loss turns up)"),
            Latent("d1", "log", 0.0, 1.5, "break location, relative to the geometric mean of x"),
            Latent("f1", "log", LOG_HALF, 1.0, "break width (smaller is sharper)")),
    unscale=_unscale_bnsl(1),
    meaning="Broken neural scaling law (Caballero et al. 2023), one break: slope c0 before d1, c0 + c1 after.",
)


def bnsl2_mean(theta, x):
    """As bnsl with a second break at d2 > d1: memorization, then a post-memorization phase."""
    return theta["E"] + theta["b"] * _power(x["x"], theta["c0"]) * _breaks(x["x"], theta, 2)


def _second_break_after_first(t):
    """d2 = d1·exp(gap): the post-memorization break always comes after the first."""
    t = dict(t)
    t["d2"] = t["d1"] * jnp.exp(t.pop("gap"))
    return t


BNSL2 = Law(
    name="bnsl2", formula="y = E + b·x^(−c0)·Π_{i=1,2}(1 + (x/d_i)^(1/f_i))^(−c_i·f_i)", axes=("x",),
    params=("E", "b", "c0", "c1", "d1", "f1", "c2", "d2", "f2"), response="loss", mean=bnsl2_mean,
    latent=(FLOOR_LOSS, _amplitude("b", 0.5, "power-law term at x_ref"), _exponent("c0", "slope before memorization"),
            Latent("c1", "identity", 0.0, 1.0, "slope change at memorization d1"),
            Latent("d1", "log", -0.5, 1.5, "memorization break, relative to the geometric mean of x"),
            Latent("f1", "log", LOG_HALF, 1.0, "first break width"),
            Latent("c2", "identity", 0.0, 1.0, "slope change at the post-memorization break d2"),
            Latent("gap", "log", 0.0, 0.75, "d2 = d1·exp(gap): how far (in log x) the second break follows"),
            Latent("f2", "log", LOG_HALF, 1.0, "second break width")),
    unscale=_unscale_bnsl(2), derive=_second_break_after_first,
    meaning="Two breaks: a memorization phase after d1 and a post-memorization phase after d2 > d1.",
)


def two_step_mean(theta, x):
    """acc = floor + (ceiling − floor)·sigmoid(margin − A·x^(−alpha)): a sigmoid of a power-law loss."""
    return theta["floor"] + (theta["ceiling"] - theta["floor"]) * jax.nn.sigmoid(theta["margin"] - theta["A"] * _power(x["x"], theta["alpha"]))


TWO_STEP = Law(
    name="two-step", formula="acc = floor + (ceiling − floor)·sigmoid(margin − A·x^(−alpha))", axes=("x",),
    params=("floor", "ceiling", "A", "alpha", "margin"), response="accuracy", mean=two_step_mean,
    latent=(FLOOR_ACC, HEADROOM, _amplitude("A", 2.0, "reducible loss at x_ref, in units of the sigmoid's width"),
            _exponent("alpha", "the loss's decay exponent"),
            Latent("margin", "identity", 1.0, 2.0, "k·(L50 − E): how far the loss floor lies below the half-accuracy loss")),
    unscale=lambda t, r, s: {"floor": t["floor"], "ceiling": t["ceiling"], "A": t["A"] * r["x"] ** t["alpha"],
                             "alpha": t["alpha"], "margin": t["margin"]},
    derive=_ceiling_above_floor,
    meaning="Loss → accuracy: the loss E + A'·x^(−alpha) (latent) maps to accuracy through a sigmoid of width 1/k. "
            "From accuracy alone only k·A' (reported as A) and k·(L50 − E) (margin) are identified; with "
            "margin finite, accuracy saturates below the ceiling because the loss has a floor.",
)


def sft_mean(theta, x):
    """Joint SFT law: rise·(chance + (1 − chance)·ceiling), every factor in (0, 1), so accuracy < 1 and the
    plateau lies between chance and 1.

    Accuracy starts at 0, not at chance: an untrained model does not write an answer in the graded format
    (measured: 0.00 at 32 steps where the guessing floor is 0.26), so chance is where a run that has learned
    the format but not the skill ends up. ceiling = sigmoid(c + kappa·ln capability + rho·ln quality + beta·past): the share above chance a run
    reaches, raised (beta > 0) or lowered (beta < 0) by each e-fold of steps past the run's memorization step
    (past = max(0, ln(step / m_run)), 0 for a run that never memorized); rise = 1 / (1 + (step / t50)^−k),
    t50 = T·diversity^delta·quality^gamma·capability^−eta.
    """
    c, q = x["capability"], x["quality"]
    ceiling = jax.nn.sigmoid(theta["c"] + theta["kappa"] * jnp.log(c) + theta["rho"] * jnp.log(q) + theta["beta"] * x["past"])
    t50 = theta["T"] * jnp.power(x["diversity"], theta["delta"]) * jnp.power(q, theta["gamma"]) * _power(c, theta["eta"])
    # A steep pooled group's k (e^2.6 shared, more in a group) overflowed (step / t50)^(−k) in float32 on the
    # demo's families: 5 divergent transitions, all in the top 4% of log k. The sigmoid form cannot overflow.
    rise = _rise(x["step"] / t50, theta["k"])
    return rise * (x["chance"] + (1.0 - x["chance"]) * ceiling)


def _unscale_sft(t, r, s):
    c, q = r["capability"], r["quality"]
    return {"c": t["c"] - t["kappa"] * jnp.log(c) - t["rho"] * jnp.log(q), "kappa": t["kappa"], "rho": t["rho"],
            "beta": t["beta"], "T": t["T"] * r["step"] * r["diversity"] ** -t["delta"] * q ** -t["gamma"] * c ** t["eta"],
            "k": t["k"], "delta": t["delta"], "gamma": t["gamma"], "eta": t["eta"]}


SFT = Law(
    name="sft",
    formula="acc = rise·(chance + (1 − chance)·ceiling), ceiling = sigmoid(c + kappa·ln capability + rho·ln quality "
            "+ beta·past), rise = 1/(1 + (step/t50)^(−k)), t50 = T·diversity^delta·quality^gamma·capability^(−eta)",
    axes=("step", "diversity", "quality", "capability"),
    params=("c", "kappa", "rho", "beta", "T", "k", "delta", "gamma", "eta"), response="accuracy", mean=sft_mean,
    latent=(
        Latent("c", "identity", 1.0, 1.5, "logit of the ceiling (share of the way from chance to 1) at the reference "
               "capability and quality (prior: 0.73)"),
        Latent("kappa", "identity", 0.0, 1.0, "ceiling logit per e-fold of capability (free in sign)"),
        Latent("rho", "identity", 0.0, 1.0, "ceiling logit per e-fold of CoT quality (free in sign)"),
        Latent("beta", "identity", 0.0, 1.0, "ceiling logit per e-fold of steps past the run's memorization step: "
               "> 0 training past memorization helps, < 0 it hurts"),
        Latent("T", "log", 0.0, 1.5, "t50: steps to half the rise, at the reference diversity, quality and capability"),
        Latent("k", "log", math.log(2.0), 1.0, "steepness of the rise in log steps"),
        Latent("delta", "identity", 0.0, 1.0, "t50 ∝ diversity^delta"),
        Latent("gamma", "identity", 0.0, 1.0, "t50 ∝ quality^gamma"),
        Latent("eta", "identity", 0.0, 1.0, "t50 ∝ capability^(−eta)"),
    ),
    unscale=_unscale_sft,
    covariates=("chance", "past"),  # the evaluation's chance floor, log steps past the run's memorization
    run_effects=(("T", "log"), ("c", "identity")),  # runs differ in when they take off and where they plateau
    meaning="The project's joint SFT law (see fits/README.md). Accuracy rises as a logistic in log steps from "
            "0 (no answer in the graded format yet) to a plateau between the evaluation's known chance floor "
            "(data, not a parameter: the `chance` column a grid stores per split and family) and 1, placed by a "
            "ceiling set by base capability (any positive measure: non-embedding "
            "params, a probe score) and CoT quality; t50, the steps to half the rise, moves with diversity, "
            "quality and capability. Past each run's own memorization step (`past` = ln(step / "
            "memorization_step), 0 before it and for runs that never memorized), the ceiling's logit moves by "
            "beta per e-fold of steps: P(beta > 0) answers 'does training past 100% training accuracy help "
            "generalization?'. Every exponent is free in sign. Runs (a cell and seed) differ in their log t50 "
            "and ceiling logit (run_sd_T, run_sd_c: partial pooling), since seeds differ in when they take off.",
)

LAWS: dict[str, Law] = {law.name: law for law in (
    POWER, CHINCHILLA, MULTIPLICATIVE, RECTIFIED, LOGISTIC, ACCURACY, BNSL, BNSL2, TWO_STEP, SFT)}


def get_law(name: str) -> Law:
    """The registered law called `name`; an unknown name is a UserError listing the names."""
    try:
        return LAWS[name]
    except KeyError:
        raise UserError(f"unknown law {name!r}; the laws are {', '.join(LAWS)}") from None

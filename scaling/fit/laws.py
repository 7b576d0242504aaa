"""Scaling laws as pure functions of arrays, and the registry that names them.

A law's `mean(theta, x)` takes dicts of arrays (parameters in original units, one array per axis) and
broadcasts, so a (S, 1) column of posterior draws against a (1, m) row of inputs gives (S, m) curves.
numpyro models (models.py) wrap these functions with priors and likelihoods; nothing here samples.

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


@dataclass(frozen=True)
class Law:
    """A named law: its formula, inputs, reported parameters, response type and scale-free prior."""

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
    doc: str = field(init=False)  # what each parameter means and the priors, for `scaling fit --help`/docs

    def __post_init__(self) -> None:
        if self.response not in RESPONSES:
            raise ValueError(f"Law {self.name}: response must be one of {RESPONSES}, got {self.response!r}")
        y_units = "y / median(y)" if self.response == "loss" else "accuracy as is"
        priors = "\n".join(f"    {latent.describe()}" for latent in self.latent)
        likelihood = LIKELIHOODS[self.response]
        text = (f"{self.name}: {self.formula}\n{self.meaning.strip()}\n"
                f"  Priors, scale-free (each axis / its geometric mean, {y_units}); reported in original units:\n{priors}\n"
                f"  Likelihood: {likelihood}")
        object.__setattr__(self, "doc", text)

    def scaled(self, z: dict) -> dict:
        """The law's parameters in scaled units from its latent draws (site name -> value)."""
        return self.derive({lat.name: TRANSFORMS[lat.transform](z[lat.site]) for lat in self.latent})


def _power(v, exponent):
    return jnp.power(v, -exponent)


# --- the laws ----------------------------------------------------------------------------------------

def power_mean(theta, x):
    """y = E + A·x^(−alpha): a power-law decay towards the floor E (irreducible loss)."""
    return theta["E"] + theta["A"] * _power(x["x"], theta["alpha"])


def chinchilla_mean(theta, x):
    """L = E + A·N^(−alpha) + B·D^(−beta) (Hoffmann et al. 2022): parameters N and tokens D."""
    return theta["E"] + theta["A"] * _power(x["N"], theta["alpha"]) + theta["B"] * _power(x["D"], theta["beta"])


def multiplicative_mean(theta, x):
    """L = A·X^(−alpha)·D^(−beta) + E (Zhang et al. 2024): a scale factor X and fine-tuning data D, jointly."""
    return theta["A"] * _power(x["X"], theta["alpha"]) * _power(x["D"], theta["beta"]) + theta["E"]


def rectified_mean(theta, x):
    """L(D) = B / (D_l + D^beta) + E (Lin et al. 2024): D_l is the data the pre-trained model already 'knows'."""
    return theta["B"] / (theta["D_l"] + jnp.power(x["D"], theta["beta"])) + theta["E"]


def logistic_mean(theta, x):
    """acc = floor + (ceiling − floor) / (1 + (x / x50)^(−k)): logistic in log x."""
    return theta["floor"] + (theta["ceiling"] - theta["floor"]) / (1.0 + _power(x["x"] / theta["x50"], theta["k"]))


def saturating_accuracy_mean(theta, x):
    """acc = C / (1 + (x / x50)^(−k)): the logistic law with no floor (the demo's accuracy law)."""
    return theta["C"] / (1.0 + _power(x["x"] / theta["x50"], theta["k"]))


def _breaks(x, theta, count: int):
    """Π_i (1 + (x / d_i)^(1 / f_i))^(−c_i·f_i): each break bends the log-log slope by −c_i over a width f_i."""
    log_factor = 0.0
    for i in range(1, count + 1):
        c, d, f = theta[f"c{i}"], theta[f"d{i}"], theta[f"f{i}"]
        # log(1 + (x/d)^(1/f)) as a softplus: (x/d)^(1/f) overflows float32 for sharp breaks (small f).
        log_factor = log_factor - c * f * jax.nn.softplus(jnp.log(x / d) / f)
    return jnp.exp(log_factor)


def bnsl_mean(theta, x):
    """y = E + b·x^(−c0)·(1 + (x/d1)^(1/f1))^(−c1·f1) (Caballero et al. 2023), one break at d1."""
    return theta["E"] + theta["b"] * _power(x["x"], theta["c0"]) * _breaks(x["x"], theta, 1)


def bnsl2_mean(theta, x):
    """As bnsl with a second break at d2 > d1: memorization, then a post-memorization phase."""
    return theta["E"] + theta["b"] * _power(x["x"], theta["c0"]) * _breaks(x["x"], theta, 2)


def two_step_mean(theta, x):
    """acc = floor + (ceiling − floor)·sigmoid(margin − A·x^(−alpha)): a sigmoid of a power-law loss."""
    return theta["floor"] + (theta["ceiling"] - theta["floor"]) * jax.nn.sigmoid(theta["margin"] - theta["A"] * _power(x["x"], theta["alpha"]))


def _sft_parts(theta, x):
    """The SFT law's ceiling (set by base capability and CoT quality) and its rise over steps."""
    c, q = x["capability"], x["quality"]
    ceiling = 1.0 / (1.0 + theta["H"] * _power(c, theta["kappa"]) * _power(q, theta["rho"]))
    t50 = theta["T"] * jnp.power(x["diversity"], theta["delta"]) * jnp.power(q, theta["gamma"]) * _power(c, theta["eta"])
    rise = 1.0 / (1.0 + _power(x["step"] / t50, theta["k"]))
    return ceiling, rise


def sft_mean(theta, x):
    """Joint SFT law: floor + (ceiling(capability, quality) − floor)·rise(steps / t50(diversity, quality, capability))."""
    ceiling, rise = _sft_parts(theta, x)
    return theta["floor"] + (ceiling - theta["floor"]) * rise


def sft_break_mean(theta, x):
    """The SFT law with a break past the memorization step t_mem = M·diversity^mu: accuracy decays as
    (1 + step/t_mem)^(−drop) beyond it (drop → 0 recovers `sft`)."""
    ceiling, rise = _sft_parts(theta, x)
    fall = jnp.power(1.0 + x["step"] / (theta["M"] * jnp.power(x["diversity"], theta["mu"])), -theta["drop"])
    return theta["floor"] + (ceiling - theta["floor"]) * rise * fall


# --- scaled units -> original units ------------------------------------------------------------------
# x = x_ref·x', y = y_scale·y'; substituting into each law gives the factors below (accuracies: y_scale is 1).

def _unscale_power(t, r, s):
    return {"E": s * t["E"], "A": s * t["A"] * r["x"] ** t["alpha"], "alpha": t["alpha"]}


def _unscale_chinchilla(t, r, s):
    return {"E": s * t["E"], "A": s * t["A"] * r["N"] ** t["alpha"], "B": s * t["B"] * r["D"] ** t["beta"],
            "alpha": t["alpha"], "beta": t["beta"]}


def _unscale_multiplicative(t, r, s):
    return {"A": s * t["A"] * r["X"] ** t["alpha"] * r["D"] ** t["beta"], "alpha": t["alpha"], "beta": t["beta"], "E": s * t["E"]}


def _unscale_rectified(t, r, s):
    stretch = r["D"] ** t["beta"]
    return {"B": s * t["B"] * stretch, "D_l": t["D_l"] * stretch, "beta": t["beta"], "E": s * t["E"]}


def _unscale_logistic(t, r, s):
    return {"floor": t["floor"], "ceiling": t["ceiling"], "x50": r["x"] * t["x50"], "k": t["k"]}


def _unscale_saturating(t, r, s):
    return {"C": t["C"], "x50": r["x"] * t["x50"], "k": t["k"]}


def _unscale_bnsl(count: int):
    def unscale(t, r, s):
        out = {"E": s * t["E"], "b": s * t["b"] * r["x"] ** t["c0"], "c0": t["c0"]}
        for i in range(1, count + 1):
            out |= {f"c{i}": t[f"c{i}"], f"d{i}": r["x"] * t[f"d{i}"], f"f{i}": t[f"f{i}"]}
        return out
    return unscale


def _unscale_two_step(t, r, s):
    return {"floor": t["floor"], "ceiling": t["ceiling"], "A": t["A"] * r["x"] ** t["alpha"], "alpha": t["alpha"], "margin": t["margin"]}


def _unscale_sft(t, r, s):
    c, q = r["capability"], r["quality"]
    return {"floor": t["floor"], "H": t["H"] * c ** t["kappa"] * q ** t["rho"], "kappa": t["kappa"], "rho": t["rho"],
            "T": t["T"] * r["step"] * r["diversity"] ** -t["delta"] * q ** -t["gamma"] * c ** t["eta"], "k": t["k"],
            "delta": t["delta"], "gamma": t["gamma"], "eta": t["eta"]}


def _unscale_sft_break(t, r, s):
    return _unscale_sft(t, r, s) | {"M": t["M"] * r["step"] * r["diversity"] ** -t["mu"], "mu": t["mu"], "drop": t["drop"]}


# --- derived scaled quantities -----------------------------------------------------------------------

def _ceiling_above_floor(t):
    """ceiling = floor + (1 − floor)·headroom keeps floor < ceiling <= 1 for every draw."""
    t = dict(t)
    t["ceiling"] = t["floor"] + (1.0 - t["floor"]) * t.pop("headroom")
    return t


def _second_break_after_first(t):
    """d2 = d1·exp(gap): the post-memorization break always comes after the first."""
    t = dict(t)
    t["d2"] = t["d1"] * jnp.exp(t.pop("gap"))
    return t


# --- priors (scaled units) ---------------------------------------------------------------------------
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


# The SFT laws' axes, parameters and prior (scaled units: every axis over its geometric mean in the data).
SFT_AXES = ("step", "diversity", "quality", "capability")
SFT_PARAMS = ("floor", "H", "kappa", "rho", "T", "k", "delta", "gamma", "eta")
SFT_LATENT = (
    FLOOR_ACC,
    Latent("H", "log", math.log(0.25), 1.5, "ceiling = 1/(1 + H) at the reference capability and quality (prior: 0.8)"),
    Latent("kappa", "log", 0.0, 1.0, "how fast the ceiling's gap closes with capability: gap ∝ capability^(−kappa)"),
    Latent("rho", "log", 0.0, 1.0, "how fast the ceiling's gap closes with CoT quality: gap ∝ quality^(−rho)"),
    Latent("T", "log", 0.0, 1.5, "t50: steps to half the rise, at the reference diversity, quality and capability"),
    Latent("k", "log", math.log(2.0), 1.0, "steepness of the rise in log steps"),
    Latent("delta", "identity", 0.0, 1.0, "t50 ∝ diversity^delta"),
    Latent("gamma", "identity", 0.0, 1.0, "t50 ∝ quality^gamma"),
    Latent("eta", "identity", 0.0, 1.0, "t50 ∝ capability^(−eta)"),
)

LAWS: dict[str, Law] = {law.name: law for law in (
    Law("power", "y = E + A·x^(−alpha)", ("x",), ("E", "A", "alpha"), "loss", power_mean,
        (FLOOR_LOSS, _amplitude("A", 0.5, "excess over the floor at x_ref"), _exponent("alpha", "decay exponent")),
        _unscale_power,
        meaning="A saturating power law in one axis: E the floor, A the reducible part at x = 1, alpha its decay."),
    Law("chinchilla", "L = E + A·N^(−alpha) + B·D^(−beta)", ("N", "D"), ("E", "A", "B", "alpha", "beta"), "loss",
        chinchilla_mean,
        (FLOOR_LOSS, _amplitude("A", 0.25, "parameter term at the reference N"),
         _amplitude("B", 0.25, "data term at the reference D"),
         _exponent("alpha", "parameter exponent"), _exponent("beta", "data exponent")),
        _unscale_chinchilla,
        meaning="Hoffmann et al. 2022: N parameters, D training tokens; E the entropy floor, A and B the two "
                "reducible terms (at N = 1, D = 1), alpha and beta their exponents."),
    Law("multiplicative", "L = A·X^(−alpha)·D^(−beta) + E", ("X", "D"), ("A", "alpha", "beta", "E"), "loss",
        multiplicative_mean,
        (_amplitude("A", 0.5, "joint term at the reference X and D"),
         _exponent("alpha", "exponent of the scale factor X"), _exponent("beta", "exponent of the fine-tuning data D"),
         FLOOR_LOSS),
        _unscale_multiplicative,
        meaning="Zhang et al. 2024's joint fine-tuning law: X a scaling factor (model size, pre-training data, "
                "PEFT parameters), D the fine-tuning data; the two multiply."),
    Law("rectified", "L(D) = B / (D_l + D^beta) + E", ("D",), ("B", "D_l", "beta", "E"), "loss", rectified_mean,
        (_amplitude("B", 0.5, "scale of the reducible loss (with D_l, in units of D^beta)"),
         Latent("D_l", "log", 0.0, 2.0, "pre-learned data size, in units of D^beta: the bend from flat to power law"),
         _exponent("beta", "data exponent"), FLOOR_LOSS),
        _unscale_rectified,
        meaning="Lin et al. 2024: fine-tuning loss over fine-tuning data D; D_l is the data the pre-trained model "
                "behaves as if it had already seen, which flattens the start of the curve."),
    Law("logistic", "acc = floor + (ceiling − floor) / (1 + (x/x50)^(−k))", ("x",), ("floor", "ceiling", "x50", "k"),
        "accuracy", logistic_mean,
        (FLOOR_ACC, HEADROOM, Latent("x50", "log", 0.0, 2.0, "midpoint, relative to the geometric mean of x"),
         Latent("k", "log", 0.0, 1.0, "steepness: slope in log x")),
        _unscale_logistic, _ceiling_above_floor,
        meaning="Accuracy rising as a logistic in log x from a floor (chance) to a ceiling; x50 is where it is halfway."),
    Law("accuracy", "acc = C / (1 + (x/x50)^(−k))", ("x",), ("C", "x50", "k"), "accuracy", saturating_accuracy_mean,
        (Latent("C", "logit", 1.0, 1.5, "ceiling"), Latent("x50", "log", 0.0, 2.0, "steps to half the ceiling"),
         Latent("k", "log", math.log(2.0), 1.0, "steepness: the power of the early rise")),
        _unscale_saturating,
        meaning="The demo's accuracy law: logistic with no floor; a power x^k at small x, saturating at C."),
    Law("bnsl", "y = E + b·x^(−c0)·(1 + (x/d1)^(1/f1))^(−c1·f1)", ("x",), ("E", "b", "c0", "c1", "d1", "f1"), "loss",
        bnsl_mean,
        (FLOOR_LOSS, _amplitude("b", 0.5, "power-law term at x_ref"), _exponent("c0", "slope before the break"),
         Latent("c1", "identity", 0.0, 1.0, "change of slope at the break (negative: the loss turns up)"),
         Latent("d1", "log", 0.0, 1.5, "break location, relative to the geometric mean of x"),
         Latent("f1", "log", LOG_HALF, 1.0, "break width (smaller is sharper)")),
        _unscale_bnsl(1),
        meaning="Broken neural scaling law (Caballero et al. 2023), one break: slope c0 before d1, c0 + c1 after."),
    Law("bnsl2", "y = E + b·x^(−c0)·Π_{i=1,2}(1 + (x/d_i)^(1/f_i))^(−c_i·f_i)", ("x",),
        ("E", "b", "c0", "c1", "d1", "f1", "c2", "d2", "f2"), "loss", bnsl2_mean,
        (FLOOR_LOSS, _amplitude("b", 0.5, "power-law term at x_ref"), _exponent("c0", "slope before memorization"),
         Latent("c1", "identity", 0.0, 1.0, "slope change at memorization d1"),
         Latent("d1", "log", -0.5, 1.5, "memorization break, relative to the geometric mean of x"),
         Latent("f1", "log", LOG_HALF, 1.0, "first break width"),
         Latent("c2", "identity", 0.0, 1.0, "slope change at the post-memorization break d2"),
         Latent("gap", "log", 0.0, 0.75, "d2 = d1·exp(gap): how far (in log x) the second break follows"),
         Latent("f2", "log", LOG_HALF, 1.0, "second break width")),
        _unscale_bnsl(2), _second_break_after_first,
        meaning="Two breaks: a memorization phase after d1 and a post-memorization phase after d2 > d1."),
    Law("two-step", "acc = floor + (ceiling − floor)·sigmoid(margin − A·x^(−alpha))", ("x",),
        ("floor", "ceiling", "A", "alpha", "margin"), "accuracy", two_step_mean,
        (FLOOR_ACC, HEADROOM, _amplitude("A", 2.0, "reducible loss at x_ref, in units of the sigmoid's width"),
         _exponent("alpha", "the loss's decay exponent"),
         Latent("margin", "identity", 1.0, 2.0, "k·(L50 − E): how far the loss floor lies below the half-accuracy loss")),
        _unscale_two_step, _ceiling_above_floor,
        meaning="Loss → accuracy: the loss E + A'·x^(−alpha) (latent) maps to accuracy through a sigmoid of width 1/k. "
                "From accuracy alone only k·A' (reported as A) and k·(L50 − E) (margin) are identified; with "
                "margin finite, accuracy saturates below the ceiling because the loss has a floor."),
    Law("sft", "acc = floor + (ceiling − floor)·rise, ceiling = 1/(1 + H·capability^(−kappa)·quality^(−rho)), "
        "rise = 1/(1 + (step/t50)^(−k)), t50 = T·diversity^delta·quality^gamma·capability^(−eta)",
        SFT_AXES, SFT_PARAMS, "accuracy", sft_mean, SFT_LATENT, _unscale_sft,
        meaning="The project's joint SFT law, designed from the reference grid (runs/reference.toml; see "
                "fits/README.md). Accuracy rises as a logistic in log steps from the floor to a ceiling; the "
                "ceiling is set by base capability (any positive measure: non-embedding params, a benchmark "
                "score) and by CoT quality; the steps to half the rise, t50, grow with diversity (the same "
                "examples spread over more families: delta > 0), with errors in the CoT (gamma < 0) and shrink "
                "with capability (eta > 0). On the reference grid (id answer accuracy) it ties its break variant "
                "`sft-break` by PSIS-LOO (no decline past memorization in the data, so the simpler law stands) and "
                "beats the steps-only laws by 24-29 elpd (3.6-4.5 SE); see fits/README.md."),
    Law("sft-break", "sft · (1 + step/t_mem)^(−drop), t_mem = M·diversity^mu",
        SFT_AXES, (*SFT_PARAMS, "M", "mu", "drop"), "accuracy", sft_break_mean,
        (*SFT_LATENT,
         Latent("M", "log", math.log(4.0), 1.5, "memorization step at the reference diversity (prior: 4× x_ref)"),
         Latent("mu", "identity", 0.0, 1.0, "memorization step ∝ diversity^mu"),
         Latent("drop", "log", math.log(0.2), 1.0, "decay exponent past memorization (prior around 0.2)")),
        _unscale_sft_break,
        meaning="`sft` with a break at the memorization step, past which accuracy decays with exponent drop: "
                "the hypothesis that training far past 100% training accuracy hurts generalization. Kept to "
                "test that hypothesis against `sft` by PSIS-LOO."),
)}


def get_law(name: str) -> Law:
    """The registered law called `name`; an unknown name is a UserError listing the names."""
    try:
        return LAWS[name]
    except KeyError:
        raise UserError(f"unknown law {name!r}; the laws are {', '.join(LAWS)}") from None

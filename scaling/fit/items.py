"""Item-level law fits: per-example 0/1 grades with run effects and item effects crossed.

The evaluation problems are the same in every cell of a grid, so they are a random factor of their own: an
item that is hard in one run is hard in the others. A fit of aggregated accuracies (models.law_model's
Beta-Binomial) treats each run × step row as independent evidence, and its intervals describe these items,
not the family they were drawn from. Here each example is one Bernoulli outcome:

    logit p_ij = logit(law's mean at cell i, clipped as in models.py) + run effect + b_j,
    b_j = item_sd[family(j)] · z_j,  z_j ~ Normal(0, 1)

A cell is one distinct row of the law's inputs within a unit (a run's budget). The unit of run effects is a
run × family: a run's families do not share its luck. Run effects are the law's own (`Law.run_effects`, e.g.
the SFT law's log t50 and ceiling logit) or one constant offset on the logit, as in models.py. The law's mean
is computed once per cell and gathered per example, so a fit of hundreds of thousands of grades costs one
gather and one Bernoulli log-density per example and gradient.

Two populations, never mixed in one output:
- "these items": the fitted item effects; the backtest of held-out budgets of the same items.
- "new items of the family": the item effect integrated out over Normal(0, item_sd) (Gauss-Hermite), the
  `new_items` site: the family's mean accuracy for a typical run, what a fresh draw of problems would score.
The law's parameters themselves (the summary, returns) describe the median item (item effect 0).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache, partial

import arviz as az
import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import pandas as pd
from jax.scipy.special import logit
from numpyro.infer import Predictive
from scipy import stats

from scaling.fit import identify, models, progress
from scaling.fit.infer import LawFit, SamplerConfig, nuts_program, reported, run_chains, summarize_law
from scaling.fit.infer import _original_units
from scaling.fit.laws import Law
from scaling.fit.models import MEAN, OBSERVED, PROB_EPS, SEED_Z, TAU, TAU_MODE, Scales
from scaling.results import group_labels

ITEM_SD = "item_sd"  # spread of the item effects on the logit, one per family
ITEM_Z = "item_z"  # standardized item effects
CELL_LOGIT = "cell_logit"  # deterministic: logit of each cell's accuracy for an item of effect 0, run effects in
NEW_ITEMS = "new_items"  # deterministic: each cell's accuracy over new items of its family, for a typical run
# item_sd ~ Gamma(2, 1/ITEM_SD_MODE): mode 0.5, mean 1, 99% below 3.3 logits. Zero-avoiding, as the run spreads
# in models.py: a family whose items barely differ puts its posterior near 0, where a prior with mass at 0 and
# the non-centred z_j still leave NUTS a funnel-like neck; the issue measured per-item accuracy SD 0.18 for `add`
# against 0.06 from binomial noise (about 0.8 logits), well inside the prior's bulk.
ITEM_SD_MODE = 0.5
ITEM_SD_PRIOR = stats.gamma(2.0, scale=ITEM_SD_MODE)  # the same prior, for measuring what the data did to it
GAUSS_HERMITE_POINTS = 20  # E over Normal(0, sd) of a sigmoid: exact to ~1e-6 for sd up to a few logits
POPULATIONS = {"these": "these items", "new": "new items of the family", "median": "the median item (item effect 0)"}
KIND = "item-level Bernoulli"
LEVEL = 0.9  # the backtest's predictive interval
ITEM_SEPARATOR = "/"  # an item's name: its family, this, its value in the item column (`add/add:3+4`)
FAMILY_SEPARATOR = ","  # the posterior's `families` attribute: the item spreads' families, in order


@dataclass(frozen=True)
class ItemData:
    """Per-example 0/1 grades laid out for the item model: the law's inputs once per cell, codes per example."""

    x: dict[str, np.ndarray]  # the law's inputs per cell (c cells)
    cell_unit: np.ndarray  # per cell: its unit (run × family) code 0..U-1
    cell_family: np.ndarray  # per cell: its family code 0..F-1
    correct: np.ndarray  # per example: 0 or 1 (m examples)
    cell: np.ndarray  # per example: its cell code 0..c-1
    item: np.ndarray  # per example: its item code 0..J-1
    item_family: np.ndarray  # per item: its family code
    # Per example: its budget code 0..B-1, a unit at one point of the law's axes (a run's step in one family),
    # whatever the covariates (a chance floor can differ from item to item): what the backtest and the pointwise
    # log-likelihood report.
    budget: np.ndarray
    units: tuple[str, ...]  # unit names in code order ("" for one unnamed unit)
    items: tuple[str, ...]  # item names in code order (family and item column)
    families: tuple[str, ...]  # family names in code order
    cell_group: np.ndarray | None = None  # per cell: its --pool group code 0..G-1; None when not pooled

    @property
    def n_units(self) -> int:
        """Units with effects of their own: 0 when there is one (nothing to pool)."""
        return len(self.units) if len(self.units) > 1 else 0

    @property
    def n_groups(self) -> int:
        """Pooled groups (0 when not pooled)."""
        return 0 if self.cell_group is None else int(self.cell_group.max()) + 1

    @property
    def n_budgets(self) -> int:
        return int(self.budget.max()) + 1

    def per_budget(self, values: np.ndarray) -> np.ndarray:
        """The mean of per-example values (..., m) over each budget's examples: (..., B)."""
        values = np.asarray(values, float)
        sums = np.stack([np.bincount(self.budget, row, self.n_budgets) for row in values.reshape(-1, values.shape[-1])])
        return (sums / self.budget_sizes()).reshape(*values.shape[:-1], self.n_budgets)

    def budget_cell(self) -> np.ndarray:
        """Each budget's first cell (its unit, family and group are every one of its cells')."""
        return pd.Series(self.cell).groupby(self.budget).first().to_numpy()

    def budget_sizes(self) -> np.ndarray:
        return np.bincount(self.budget, minlength=self.n_budgets).astype(float)


def item_data(rows: pd.DataFrame, law: Law, x_columns: dict[str, str], y: str, item: str,
              unit_columns: tuple[str, ...], family: str | None, group: np.ndarray | None = None) -> ItemData:
    """ItemData from rows already converted and checked (data.as_numbers, data.check_values): cells are the
    distinct law inputs of each unit, units the combinations of `unit_columns` (a run and its family), items
    the distinct (family, item) values; `group` (per row) the --pool group of each."""
    family_of = rows[family].astype(str) if family else pd.Series("", index=rows.index)
    unit_of = group_labels(rows, unit_columns) if unit_columns else pd.Series("", index=rows.index)
    inputs = [x_columns[name] for name in law.inputs]
    grouped = pd.Series(0 if group is None else np.asarray(group), index=rows.index, name="_group")
    cell_keys = pd.concat([grouped, unit_of.rename("_unit"), rows[list(dict.fromkeys(inputs))]], axis=1)
    cell = cell_keys.groupby(list(cell_keys.columns), sort=False).ngroup().to_numpy()
    axes = list(dict.fromkeys(x_columns[name] for name in law.axes))
    budget = cell_keys.groupby(["_group", "_unit", *axes], sort=False).ngroup().to_numpy()
    first = pd.Series(np.arange(len(rows))).groupby(cell).first().to_numpy()
    units, unit_code = np.unique(unit_of.to_numpy(str), return_inverse=True)
    families, family_code = np.unique(family_of.to_numpy(str), return_inverse=True)
    item_names = np.array([item_name(f, i) for f, i in zip(family_of, rows[item].astype(str))], str)
    items, item_code = np.unique(item_names, return_inverse=True)
    item_family = np.zeros(len(items), int)
    item_family[item_code] = family_code
    return ItemData(x={name: rows[x_columns[name]].to_numpy(float)[first] for name in law.inputs},
                    cell_unit=unit_code[first], cell_family=family_code[first],
                    correct=rows[y].to_numpy(float), cell=cell, item=item_code, item_family=item_family, budget=budget,
                    units=tuple(units), items=tuple(items), families=tuple(families),
                    cell_group=None if group is None else np.asarray(group)[first])


def item_model(law: Law, x, cell, cell_unit, cell_family, item, item_family, cell_group, budget=None, y=None,
               n_units: int = 0, n_families: int = 1, n_groups: int = 0):
    """The law per cell with its prior (every latent site partially pooled across `cell_group` when n_groups > 1,
    as in models.law_model) and run effects, crossed item effects per family, Bernoulli per example."""
    z = {lat.site: numpyro.sample(lat.site, dist.Normal(lat.loc, lat.scale)) for lat in law.latent}
    if n_groups > 1:
        z = {site: value + models.pooled_deviation(site, n_groups)[cell_group] for site, value in z.items()}
    theta = law.scaled(z)
    cells = jnp.shape(x[law.axes[0]])
    mean = numpyro.deterministic(MEAN, jnp.broadcast_to(law.mean(theta, x), cells))
    typical = logit(jnp.clip(mean, PROB_EPS, 1 - PROB_EPS))
    with_runs = typical
    if n_units > 1 and law.run_effects:
        moved = law.for_runs(theta, {param: models.run_effect(param, n_units)[cell_unit] for param, _ in law.run_effects})
        with_runs = logit(jnp.clip(jnp.broadcast_to(law.mean(moved, x), cells), PROB_EPS, 1 - PROB_EPS))
    elif n_units > 1:
        tau = numpyro.sample(TAU, dist.Gamma(2.0, 1.0 / TAU_MODE["accuracy"]))
        with numpyro.plate("seeds", n_units):
            with_runs = typical + (tau * numpyro.sample(SEED_Z, dist.Normal(0.0, 1.0)))[cell_unit]
    numpyro.deterministic(CELL_LOGIT, with_runs)
    with numpyro.plate("families", n_families):
        spread = numpyro.sample(ITEM_SD, dist.Gamma(2.0, 1.0 / ITEM_SD_MODE))
    numpyro.deterministic(NEW_ITEMS, over_new_items(typical, spread[cell_family]))
    with numpyro.plate("items", item_family.shape[0]):
        effect = spread[item_family] * numpyro.sample(ITEM_Z, dist.Normal(0.0, 1.0))
    with numpyro.plate("obs", item.shape[0]):
        numpyro.sample(OBSERVED, dist.Bernoulli(logits=with_runs[cell] + effect[item]), obs=y)


def over_new_items(logit_p, spread):
    """E[sigmoid(logit_p + b)] over b ~ Normal(0, spread), by Gauss-Hermite quadrature: a new item's expected
    accuracy (below sigmoid(logit_p) above 0.5 and above it below: item spread pulls accuracies to the middle)."""
    nodes, weights = np.polynomial.hermite.hermgauss(GAUSS_HERMITE_POINTS)
    b = jnp.sqrt(2.0) * jnp.asarray(spread)[..., None] * nodes
    return jnp.sum(jax.nn.sigmoid(jnp.asarray(logit_p)[..., None] + b) * weights, axis=-1) / np.sqrt(np.pi)


def model_args(law: Law, data: ItemData, scales: Scales) -> dict:
    """item_model's data for these examples, the law's inputs in the prior's units."""
    return {"x": models.scaled_inputs(law, data.x, scales), "cell": jnp.asarray(data.cell),
            "cell_unit": jnp.asarray(data.cell_unit), "cell_family": jnp.asarray(data.cell_family),
            "item": jnp.asarray(data.item), "item_family": jnp.asarray(data.item_family),
            "budget": jnp.asarray(data.budget), "y": jnp.asarray(data.correct, jnp.float32),
            "cell_group": jnp.zeros(len(data.cell_unit), int) if data.cell_group is None else jnp.asarray(data.cell_group)}


def _bound(law: Law, n_units: int, n_families: int, n_groups: int):
    return partial(item_model, law, n_units=n_units, n_families=n_families, n_groups=n_groups)


@lru_cache(maxsize=16)
def _item_chain(law: Law, cells: int, examples: int, items: int, budgets: int, n_units: int, n_families: int,
                n_groups: int, warmup: int, samples: int, report: bool):
    """One NUTS chain of the item model, compiled once per law and data shape; its pointwise log-likelihood is
    summed per budget (a run's step: what a held-out comparison leaves out, and a fraction of the memory).
    (`budget` is data the model does not read: the per-budget sum is of its per-example densities.)"""
    example = {"x": {name: jnp.ones(cells) for name in law.inputs}, "cell": jnp.zeros(examples, int),
               "cell_unit": jnp.zeros(cells, int), "cell_family": jnp.zeros(cells, int),
               "item": jnp.zeros(examples, int), "item_family": jnp.zeros(items, int), "budget": jnp.zeros(examples, int),
               "y": jnp.ones(examples), "cell_group": jnp.zeros(cells, int)}

    def per_budget(log_lik, data):
        return jax.vmap(lambda row: jax.ops.segment_sum(row, data["budget"], num_segments=budgets))(log_lik)

    return nuts_program(_bound(law, n_units, n_families, n_groups), example, warmup, samples, report, per_budget)


def fit_items(law: Law, data: ItemData, sampler: SamplerConfig = SamplerConfig(), scales: Scales | None = None) -> LawFit:
    """The item-level fit by NUTS: a LawFit whose posterior holds the law's parameters, the run spreads and
    effects, one `item_sd` per family (`item_sd_FAMILY` with several) and the item effects' z over `item`.

    `scales` fixes the prior's units (default: each axis over its geometric mean over the cells)."""
    assert data.cell_group is None, "pooled groups are fitted by fit_items_pooled"
    return _fits(law, data, sampler, scales)[0]


def fit_items_pooled(law: Law, data: ItemData, sampler: SamplerConfig = SamplerConfig()) -> list[LawFit]:
    """One joint item-level fit in which every latent site of the law is partially pooled across
    `data.cell_group` (run effects, units and item effects are shared by the groups); a LawFit per group, as
    infer.fit_pooled's: its parameters, its families' item spreads, its budgets' pointwise log-likelihood."""
    assert data.n_groups > 1, "pooling needs two groups or more"
    return _fits(law, data, sampler, None)


def _fits(law: Law, data: ItemData, sampler: SamplerConfig, scales: Scales | None) -> list[LawFit]:
    assert law.response == "accuracy", "an item-level fit models 0/1 outcomes: an accuracy law"
    scales = scales or models.scales_of(law, data.x, np.ones(1))
    program = _item_chain(law, len(data.cell_unit), len(data.cell), len(data.items), data.n_budgets, data.n_units,
                          len(data.families), data.n_groups, sampler.warmup, sampler.samples, progress.active())
    latent, pointwise, divergent = run_chains(program, model_args(law, data, scales), sampler)
    latent = {site: value for site, value in latent.items() if site not in (CELL_LOGIT, NEW_ITEMS)}
    if not data.n_groups:
        return [_group_fit(law, data, latent, latent, pointwise, divergent, scales, None)]
    own = {lat.site for lat in law.latent}
    shared = {k: v for k, v in latent.items() if k not in own and not k.startswith((models.POOL_TAU, models.POOL_Z))}
    return [_group_fit(law, data, latent, shared | models.group_latents(law, latent, g), pointwise, divergent, scales, g)
            for g in range(data.n_groups)]


def _group_fit(law: Law, data: ItemData, latent: dict, mine: dict, pointwise: np.ndarray, divergent: np.ndarray,
               scales: Scales, group: int | None) -> LawFit:
    """One group's LawFit from the joint draws (`mine`: its own law sites and the shared ones); the whole fit
    without groups."""
    cells = np.ones(len(data.cell_unit), bool) if group is None else data.cell_group == group
    budgets = cells[data.budget_cell()]
    families = tuple(data.families[f] for f in np.unique(data.cell_family[cells]))
    codes = [data.families.index(f) for f in families]
    posterior = _original_units(law, mine, scales) | spreads_by_family(latent[ITEM_SD][..., codes], families)
    posterior[ITEM_Z] = np.asarray(latent[ITEM_Z], float)
    run_dim = {name: ["run"] for name in posterior if name.startswith(models.RUN_Z) or name == SEED_Z}
    coords = {"item": list(data.items)} | ({"run": list(data.units)} if run_dim else {})
    idata = az.from_dict(posterior=posterior, log_likelihood={OBSERVED: pointwise[..., budgets]},
                         observed_data={OBSERVED: data.per_budget(data.correct)[budgets]}, coords=coords,
                         dims=run_dim | {ITEM_Z: ["item"], OBSERVED: ["budget"]})
    idata.posterior.attrs.update({"law": law.name, "formula": law.formula, "method": "nuts", "likelihood": KIND,
                                  "runs_named": int(bool(run_dim)), "families": FAMILY_SEPARATOR.join(data.families),
                                  **{f"x_ref_{axis}": value for axis, value in scales.x_ref.items()}})
    if group is not None:
        idata.posterior.attrs["pooled_groups"] = data.n_groups
        for lat in law.latent:  # how far the groups spread on each latent site: the pooling's verdict
            idata.posterior[models.POOL_TAU + lat.site] = (("chain", "draw"), np.asarray(latent[models.POOL_TAU + lat.site]))
    summary = summarize_law(idata, (*reported(law, idata.posterior), *item_spreads(families)), with_diagnostics=True)
    x = models.scaled_inputs(law, {name: np.asarray(values)[cells] for name, values in data.x.items()}, scales)
    measured = identify.identification(law, mine, x, pooled=group is not None)
    item_sd = np.asarray(latent[ITEM_SD], float)[..., codes].reshape(-1, len(codes))
    for k, name in enumerate(item_spreads(families)):
        measured.loc[name] = identify.spread_identification(item_sd[:, k], ITEM_SD_PRIOR)
    summary = summary.join(measured, on="param")
    return LawFit(idata, summary, scales.x_ref[law.axes[0]], divergent, law, latent, scales, "nuts", None, group)


def item_spreads(families: tuple[str, ...]) -> tuple[str, ...]:
    """The posterior variables of the item spreads: `item_sd` for one family, `item_sd_FAMILY` for several."""
    return (ITEM_SD,) if len(families) == 1 else tuple(f"{ITEM_SD}_{family}" for family in families)


def spreads_by_family(draws: np.ndarray, families: tuple[str, ...]) -> dict[str, np.ndarray]:
    return {name: np.asarray(draws[..., f], float) for f, name in enumerate(item_spreads(families))}


def predict_items(fit: LawFit, data: ItemData, seed: int = 0, max_draws: int = 1000) -> dict[str, np.ndarray]:
    """Posterior-predictive draws of the item model at these examples (S, m), and its `new_items` curve per cell
    (S, c), replayed with numpyro's Predictive on the fit's own draws. Units and items the fit has seen keep
    their fitted effects (these items, a rollout of known runs); others get fresh ones from their prior."""
    post = fit.posterior.posterior
    total = post.sizes["chain"] * post.sizes["draw"]
    keep = np.unique(np.linspace(0, total - 1, min(total, max_draws)).round().astype(int))
    samples = {site: np.asarray(v, np.float64).reshape(total, *v.shape[2:])[keep] for site, v in fit.latent.items()}
    families = str(post.attrs["families"]).split(FAMILY_SEPARATOR)
    assert set(data.families) <= set(families), "items of a family the fit has not seen"
    family_code = np.array([families.index(f) for f in data.families], int)
    key = jax.random.key(seed)
    item, every_item = _known(list(post.coords["item"].values), data.items, samples, [ITEM_Z], jax.random.fold_in(key, 1))
    effects = [site for site in samples if site == SEED_Z or site.startswith(models.RUN_Z)]
    unit = (_known(list(post.coords["run"].values), data.units, samples, effects, jax.random.fold_in(key, 2))[0]
            if effects else np.zeros(len(data.units), int))
    n_units = samples[effects[0]].shape[-1] if effects else 0
    pooled = [site for site in samples if site.startswith(models.POOL_Z)]
    model = _bound(fit.law, n_units, len(families), samples[pooled[0]].shape[-1] if pooled else 0)
    with jax.enable_x64(True):
        args = model_args(fit.law, data, fit.scales) | {
            "y": None, "item": jnp.asarray(item[data.item]), "cell_unit": jnp.asarray(unit[data.cell_unit]),
            "item_family": jnp.asarray([families.index(family_of_item(name)) for name in every_item]),
            "cell_family": jnp.asarray(family_code[data.cell_family]), "cell_group": jnp.full(len(data.cell_unit), fit.group or 0)}
        drawn = Predictive(model, samples, return_sites=[OBSERVED, NEW_ITEMS], parallel=True)(key, **args)
    return {name: np.asarray(value, float) for name, value in drawn.items()}


def item_name(family: str, item: str) -> str:
    """An item's name: unique across families, and read back by family_of_item."""
    return f"{family}{ITEM_SEPARATOR}{item}"


def family_of_item(name: str) -> str:
    return name.split(ITEM_SEPARATOR, 1)[0]


def _known(fitted: list[str], names: tuple[str, ...], samples: dict, sites: list[str], key) -> tuple[np.ndarray, list[str]]:
    """Each name's index among the fitted ones, names the fit has not seen getting new indices past them, and
    every name so indexed; `samples` (modified in place) get fresh standardized effects for the new names from
    their Normal(0, 1) prior."""
    index = {str(name): i for i, name in enumerate(fitted)}
    new = [name for name in names if name not in index]
    for i, site in enumerate(sites):
        fresh = np.asarray(jax.random.normal(jax.random.fold_in(key, i), (samples[site].shape[0], len(new))))
        samples[site] = np.concatenate([samples[site], fresh], axis=1)
    index |= {name: len(fitted) + i for i, name in enumerate(new)}
    return np.array([index[name] for name in names], int), [*map(str, fitted), *new]


def budget_table(data: ItemData, x_columns: dict[str, str]) -> pd.DataFrame:
    """One row per budget (a run's step in one family): its run (unit), its inputs (a covariate averaged over its
    items), its items and the observed accuracy over them."""
    table = pd.DataFrame({column: data.per_budget(data.x[name][data.cell]) for name, column in x_columns.items()})
    table.insert(0, "run", np.asarray(data.units, dtype=object)[data.cell_unit[data.budget_cell()]] if data.n_units else "")
    table["items"] = data.budget_sizes().astype(int)
    table["observed"] = data.per_budget(data.correct)
    return table


def item_backtest(fit: LawFit, data: ItemData, x_columns: dict[str, str], held_out: bool) -> pd.DataFrame:
    """One row per budget (a run's step in one family): its inputs (a covariate averaged over its items), the
    observed accuracy over its items, and the predicted mean with a 90% posterior-predictive interval of that
    accuracy, for these items."""
    accuracy = data.per_budget(predict_items(fit, data)[OBSERVED])
    lo, hi = np.quantile(accuracy, [(1 - LEVEL) / 2, (1 + LEVEL) / 2], axis=0)
    table = budget_table(data, x_columns)
    table["mean"] = accuracy.mean(axis=0)
    table["lo"], table["hi"] = lo, hi
    table["held_out"] = held_out
    table["population"] = POPULATIONS["these"]
    return table

"""`scaling fit`: fit a law from the registry to the store's results or a tidy table, and write the
posterior, summary, diminishing returns, backtest and the spec to rerun it.

Outputs are written into a staging folder and moved into place at the end: a bad input, an
interrupt or an unconverged fit leaves nothing behind, and a folder not written by `scaling fit`
is never overwritten.
"""

from __future__ import annotations

import dataclasses
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import arviz as az
import numpy as np
import pandas as pd
import tomli_w
import xarray as xr

from scaling.errors import UserError
from scaling.fit import progress
from scaling.fit.backtest import backtest_scores, backtest_table
from scaling.fit.data import Columns, as_numbers, axis_columns, check_values, fit_data, groups, load_table, query, row_condition
from scaling.fit.infer import (DENSE_MASS, MAX_R_HAT, METHODS, MIN_ESS_BULK, TARGET_ACCEPT, UNIDENTIFIED, LawFit,
                               SamplerConfig, fit_law, fit_pooled, reported)
from scaling.fit.laws import Law, get_law
from scaling.fit.models import OBSERVED as OBSERVED_SITE, POOL_TAU
from scaling.fit.record import MARKER, as_columns, group_dim
from scaling.fit.returns import MemorizedRun, ReturnsConfig, returns_table
from scaling.schema import AXES
from scaling.staging import check_replaceable, publish_folder

WRITER = "scaling fit"
SIGNED_QUESTIONS = {"beta": "training past memorization"}  # parameters free in sign whose sign is the finding
SUMMARY_COLUMNS = ["param", "mean", "sd", "hdi_5%", "hdi_95%", "r_hat", "ess_bulk", "contraction", "p_positive"]


@dataclass(frozen=True)
class FitRequest:
    """One `scaling fit` invocation."""

    input: Path  # results.nc, or a .csv/.parquet table
    law: str  # a name in scaling.fit.laws.LAWS
    y: str  # the response column or variable
    x: tuple[str, ...] = ()  # AXIS=COLUMN mappings of the law's axes
    n: str | None = None  # examples behind each accuracy (Beta-Binomial likelihood)
    by: tuple[str, ...] = ()  # fit each group of these columns (each combination of their values) separately
    pool: bool = False  # with --by: one joint fit, every law parameter partially pooled across the groups
    seed_column: str | None = "seed"  # replicate seeds: partial pooling when present with several values
    where: str | None = None  # a row condition (scaling.fit.expression): the rows to use
    holdout: str | None = None  # a row condition: rows held out of the fit and predicted (the backtest)
    split: str | None = None  # results.nc: the split to fit
    method: str = "nuts"  # nuts, svi or huber
    sampler: SamplerConfig = field(default_factory=SamplerConfig)
    returns: ReturnsConfig = field(default_factory=ReturnsConfig)
    allow_unconverged: bool = False  # write the outputs even when diagnostics fail
    out: Path | None = None  # output folder (default fits/LAW)


    def __post_init__(self) -> None:
        object.__setattr__(self, "by", as_columns(self.by))  # "size,diversity" and ["size"] alike


@dataclass(frozen=True)
class GroupFit:
    label: str  # the group's label (see scaling.results.group_labels; "" without --by)
    key: dict  # the group's value of each --by column
    fit: LawFit
    returns: pd.DataFrame
    backtest: pd.DataFrame
    scores: dict[str, float]


@dataclass(frozen=True)
class Part:
    """One --by group's rows (all of them when there is no --by), split into fitted and held out."""

    label: str  # the group's label ("" without --by)
    key: dict  # its value of each --by column
    rows: pd.DataFrame
    held: pd.Series  # --holdout: rows held out of the fit and predicted
    train: pd.DataFrame  # the rows fitted


@dataclass(frozen=True)
class Prepared:
    """What a fit reads, every input problem found: nothing is printed or fitted before this exists."""

    law: Law
    rows: pd.DataFrame  # the rows of every group, the numeric columns as floats
    columns: Columns
    parts: tuple[Part, ...]
    dropped: int  # rows left out for a missing value in a column the fit reads


def prepare(request: FitRequest) -> Prepared:
    """The law, the rows to fit and the column roles; every input problem is found here, before fitting."""
    if request.method not in METHODS:
        raise UserError(f"--method must be one of {', '.join(METHODS)}, got {request.method!r}")
    if len(set(request.by)) < len(request.by):
        raise UserError(f"--by names a column twice: {', '.join(request.by)}")
    if request.pool and not request.by:
        raise UserError("--pool pools the groups of --by: give --by COLUMN")
    if request.pool and request.method == "huber":
        raise UserError("--pool needs a posterior (method nuts or svi), not huber")
    law = get_law(request.law)
    table = load_table(request.input, request.split)
    rows = query(table, request.where, "--where")
    x_columns = axis_columns(law, list(request.x), rows)
    if request.y not in rows.columns:
        raise UserError(f"--y: no column {request.y!r}; columns are {', '.join(map(str, rows.columns))}")
    if request.n and request.n not in rows.columns:
        raise UserError(f"--n: no column {request.n!r}; columns are {', '.join(map(str, rows.columns))}")
    for column in request.by:
        if column not in rows.columns:
            raise UserError(f"--by: no column {column!r}; columns are {', '.join(map(str, rows.columns))}")
    seed = request.seed_column if request.seed_column in rows.columns and request.seed_column not in request.by else None
    # Rows of a results hypercube name their run (cell) by its axes, and a grid's tables (grades, families) by
    # `cell_id`; any other table's columns are the user's to interpret.
    run = (tuple(a for a in AXES if a in rows.columns) if Path(request.input).suffix == ".nc"
           else ("cell_id",) if "cell_id" in rows.columns else ())
    columns = Columns(x=x_columns, y=request.y, n=request.n, seed=seed, run=run)
    rows = as_numbers(rows, columns)
    complete = rows.dropna(subset=list(columns.numeric()))
    dropped = len(rows) - len(complete)
    if complete.empty:
        raise UserError("no rows left to fit (check --where, --split and missing values)")
    check_values(complete, law, columns)
    rows = complete.reset_index(drop=True)
    held = row_condition(rows, request.holdout, "--holdout") if request.holdout is not None else pd.Series(False, index=rows.index)
    parts = []
    for label, key, part in groups(rows, request.by):
        part_held = held[part.index].reset_index(drop=True)
        part = part.reset_index(drop=True)
        train = part[~part_held].reset_index(drop=True)
        # A pooled group borrows strength from the others, so it needs rows, not a full set of them.
        if len(train) < (1 if request.pool else len(law.params)):
            raise UserError(f"group {label or 'all'}: {len(train)} rows to fit, fewer than the law's {len(law.params)} parameters")
        parts.append(Part(label, key, part, part_held, train))
    if request.pool and len(parts) < 2:
        raise UserError(f"--pool needs at least two groups of --by {','.join(request.by)}; there is one")
    return Prepared(law, rows, columns, tuple(parts), dropped)


def _summary(fit: LawFit) -> pd.DataFrame:
    """A fit's summary rows (with each parameter's posterior contraction) and whether the fit converged."""
    return fit.summary[SUMMARY_COLUMNS].assign(converged=fit.converged)


def memorized_runs(rows: pd.DataFrame, columns: Columns, steps_axis: str | None) -> list[MemorizedRun]:
    """Each run among the rows (a grid cell, named by its axes; else a combination of the law's other axes
    and the seed), at its own law-axis values, with its memorization step: none without that column."""
    if steps_axis is None or "memorization_step" not in rows:
        return []
    others = {axis: column for axis, column in columns.x.items() if axis != steps_axis}
    keys = list(columns.run) or list(dict.fromkeys([*others.values(), *([columns.seed] if columns.seed else [])]))
    firsts = rows.groupby(keys, sort=False, dropna=False).first().reset_index() if keys else rows.iloc[:1]
    return [MemorizedRun({axis: float(run[column]) for axis, column in others.items()}, float(run["memorization_step"]))
            for _, run in firsts.iterrows()]


def fit_groups(request: FitRequest, prepared: Prepared) -> list[GroupFit]:
    """One fit per --by group (or one pooled fit of them all): fitted on the rows not held out,
    backtested on the held-out ones."""
    law, columns, parts = prepared.law, prepared.columns, prepared.parts
    if request.pool:
        progress.stage(f"{len(parts)} groups, pooled")
        joint = pd.concat([part.train for part in parts], ignore_index=True)
        codes = np.concatenate([np.full(len(part.train), g) for g, part in enumerate(parts)])
        fits = fit_pooled(law, dataclasses.replace(fit_data(joint, law, columns), group=codes), request.method, request.sampler)
    else:
        fits = []
        for index, part in enumerate(parts, start=1):
            progress.stage(f"group {part.label}" if part.label else law.name, index - 1, len(parts))
            fits.append(fit_law(law, fit_data(part.train, law, columns), request.method, request.sampler))
    results = []
    for part, fit in zip(parts, fits):
        held_out = bool(part.held.any())
        tested = part.rows[part.held].reset_index(drop=True) if held_out else part.train
        backtest = backtest_table(fit, tested, fit_data(tested, law, columns), columns.x, held_out)
        steps_axis = next((a for a, c in columns.x.items() if c == "step"), None)
        x_train = fit_data(part.train, law, columns).x
        runs = memorized_runs(part.rows, columns, steps_axis)
        returns = returns_table(law, fit.draws(), x_train, request.returns, runs, steps_axis)
        results.append(GroupFit(part.label, part.key, fit, returns, backtest, backtest_scores(backtest)))
    return results


def run_fit(request: FitRequest, say: Callable[[str], None] = print) -> tuple[list[GroupFit], Path | None]:
    """Fit, report, and (when converged or allowed) write the outputs; returns the fits and the folder written."""
    prepared = prepare(request)
    law, rows = prepared.law, prepared.rows
    out = Path(request.out or Path("fits") / law.name)
    check_replaceable(out, MARKER, WRITER)
    if prepared.dropped:
        say(f"left out {prepared.dropped} rows with a missing value in {', '.join(prepared.columns.numeric())}")
    say(f"Fitting {law.name}: {law.formula} to {request.y} ({len(rows)} rows"
        + (f", {len(prepared.parts)} groups by {', '.join(request.by)}{' (pooled)' if request.pool else ''}" if request.by else "")
        + f") by {request.method}")
    fits = fit_groups(request, prepared)
    summary = _stack([_summary(g.fit) for g in fits], fits)
    say(summary.to_string(index=False, float_format=lambda v: f"{v:.4g}"))
    unidentified = sorted(set(summary.loc[summary["contraction"] < UNIDENTIFIED, "param"]))
    if unidentified:
        say(f"warning: the data barely narrow the prior of {', '.join(unidentified)} (posterior contraction < "
            f"{UNIDENTIFIED}): read their intervals as the prior's, not as measurements")
    for g in fits:
        for name, question in SIGNED_QUESTIONS.items():  # the law's answer to its question, a line per group
            if name in law.params:
                p = float((g.fit.posterior.posterior[name].values > 0).mean())
                say(f"P({name} > 0){' ' + g.label if g.label else ''} = {p:.3f}: {question} "
                    f"{'helps' if p > 0.5 else 'hurts'} with probability {max(p, 1 - p):.3f}")
    if request.pool:
        spreads = [(name, fits[0].fit.posterior.posterior[name].values) for name in fits[0].fit.posterior.posterior.data_vars
                   if name.startswith(POOL_TAU)]
        say("spread across groups (sd on the latent scale, 90% interval): " + ", ".join(
            f"{name[len(POOL_TAU):]} {np.median(v):.2g} [{np.quantile(v, 0.05):.2g}, {np.quantile(v, 0.95):.2g}]" for name, v in spreads))
    for g in fits:
        scores = g.scores
        say(f"backtest{' ' + g.label if g.label else ''}: {scores['rows']} {'held-out' if g.backtest['held_out'].any() else 'fitted'} rows, "
            f"90% interval coverage {scores['coverage_90']:.2f}, mean abs error {scores['mae']:.4g}")
    converged = all(g.fit.converged for g in fits)
    if request.method != "huber":
        divergences = _divergences(request, fits)
        status = "ok" if converged else "NOT converged"
        say(f"Diagnostics: {status} (max r_hat {summary['r_hat'].max():.3f}, needs <= {MAX_R_HAT}; min bulk ESS "
            f"{summary['ess_bulk'].min():.0f}, needs >= {MIN_ESS_BULK}; {divergences} divergences, needs 0)")
        if not converged and not request.allow_unconverged:
            return fits, None
    _write(request, law, fits, summary, out)
    say(f"wrote {out}/ (posterior.nc, summary.csv, returns.csv, backtest.csv, {MARKER})")
    return fits, out


def _divergences(request: FitRequest, fits: list[GroupFit]) -> int:
    """Divergent transitions: of each group's fit, or of the one joint fit that a pooled fit's groups share."""
    return fits[0].fit.divergences if request.pool else sum(g.fit.divergences for g in fits)


def _stack(frames: list[pd.DataFrame], fits: list[GroupFit]) -> pd.DataFrame:
    """One table of every group's rows, each led by its value of every --by column."""
    if not fits[0].key:
        return frames[0].reset_index(drop=True)
    return pd.concat([frame.assign(**g.key)[[*g.key, *frame.columns]] for frame, g in zip(frames, fits)],
                     ignore_index=True)


def _write(request: FitRequest, law: Law, fits: list[GroupFit], summary: pd.DataFrame, out: Path) -> None:
    from scaling.provenance import provenance

    def fill(staging: Path) -> None:
        _posterior(fits, request.by).to_netcdf(str(staging / "posterior.nc"))
        summary.to_csv(staging / "summary.csv", index=False)
        _stack([g.returns for g in fits], fits).to_csv(staging / "returns.csv", index=False)
        _stack([g.backtest for g in fits], fits).to_csv(staging / "backtest.csv", index=False)
        spec = _recorded(request, out)
        attrs = provenance(tomli_w.dumps({"fit": spec}))
        (staging / MARKER).write_text(tomli_w.dumps({
            "fit": spec, "law": {"name": law.name, "formula": law.formula, "params": list(law.params)},
            "diagnostics": {"converged": all(g.fit.converged for g in fits),
                            "divergences": _divergences(request, fits),
                            "groups_converged": sum(g.fit.converged for g in fits), "groups": len(fits)}
                           | ({"adaptation": {"target_accept": TARGET_ACCEPT, "dense_mass": DENSE_MASS,
                                              "warmup": request.sampler.warmup, "chains": request.sampler.chains}}
                              if request.method == "nuts" else {})
                           | ({"bootstrap_resampled": sorted({str(g.fit.posterior.posterior.attrs.get("bootstrap_resampled"))
                                                              for g in fits})}
                              if request.method == "huber" else {}),
            "backtest": {g.label or "all": g.scores for g in fits},
            "provenance": {k: v for k, v in attrs.items() if k != "spec"},
        }))

    publish_folder(out, fill, MARKER, WRITER)


def _recorded(request: FitRequest, out: Path) -> dict:
    """The request as fit.toml keeps it: the input relative to the fit folder (they move together), and no
    `out` (the folder is where the record lies)."""
    spec = _toml_ready(dataclasses.asdict(request))
    spec["input"] = Path(os.path.relpath(Path(request.input).resolve(), Path(out).resolve())).as_posix()
    spec.pop("out", None)
    return spec


def _toml_ready(value):
    """A dict TOML can hold: paths as strings, None values left out (TOML has no null)."""
    if isinstance(value, dict):
        return {k: _toml_ready(v) for k, v in value.items() if v is not None}
    if isinstance(value, (list, tuple)):
        return [_toml_ready(v) for v in value]
    return str(value) if isinstance(value, Path) else value


def _posterior(fits: list[GroupFit], by: tuple[str, ...]) -> az.InferenceData:
    """One fit's InferenceData as it is; several groups' posteriors stacked along the --by dimension (the
    column itself, or `group` for several columns: see scaling.fit.record.group_dim)."""
    if not by:
        return fits[0].fit.posterior
    params = list(reported(fits[0].fit.law, fits[0].fit.posterior.posterior))
    stacked = xr.concat([g.fit.posterior.posterior[params] for g in fits],
                        dim=pd.Index([g.label for g in fits], name=group_dim(by)))
    first = fits[0].fit.posterior.posterior
    stacked = stacked.assign({name: first[name] for name in first.data_vars if name.startswith(POOL_TAU)})  # shared
    return az.InferenceData(posterior=stacked)


def leave_out_unit(posterior: az.InferenceData, runs: np.ndarray | None) -> tuple[az.InferenceData, str]:
    """The posterior with its pointwise log-likelihood summed over each run's rows, so PSIS-LOO leaves out
    whole runs: a run's budgets share its seed's luck, and leaving out one of them while its neighbours stay
    in flatters a law. Without runs (a table of independent rows), rows are the unit."""
    if runs is None:
        return posterior, "leave-one-row-out"
    pointwise = posterior.log_likelihood[OBSERVED_SITE]
    codes = xr.DataArray(np.asarray(runs), dims=pointwise.dims[-1:])
    per_run = pointwise.groupby(codes.rename("run")).sum()
    summed = az.InferenceData(posterior=posterior.posterior, log_likelihood=xr.Dataset({OBSERVED_SITE: per_run}))
    return summed, f"leave-one-run-out ({per_run.sizes['run']} runs)"


def holdout_compare(request: FitRequest, prepared: dict, say: Callable[[str], None]) -> pd.DataFrame:
    """Every law fitted on the rows not held out and scored on the held-out ones by their exact log predictive
    density (a rollout when --holdout holds out the last budgets: each run keeps its own effects), summed per
    run (or per row, without runs): elpd_holdout, its SE over those units, and each law's difference from the
    best with the SE of that paired difference. On runs, `free-curves` is scored too when every held-out row
    belongs to a run with fitted rows."""
    units, converged = {}, {}
    for index, (name, one) in enumerate(prepared.items()):
        part = one.parts[0]
        progress.stage(f"law {name}", index, len(prepared))
        fit = fit_law(one.law, fit_data(part.train, one.law, one.columns), request.method, request.sampler)
        held = fit_data(part.rows[part.held].reset_index(drop=True), one.law, one.columns)
        units[name] = _unit_elpd(fit.log_predictive(held.x, held.y, held.n, runs=held.run_labels), held.run_labels)
        converged[name] = fit.converged
    one = next(iter(prepared.values()))
    part = one.parts[0]
    held_runs = fit_data(part.rows[part.held].reset_index(drop=True), one.law, one.columns).run_labels
    train_runs = fit_data(part.train, one.law, one.columns).run_labels
    if held_runs is not None and set(held_runs) <= set(train_runs):
        say(f"fitting the baseline {FREE_CURVES}: one `{BASELINE_LAW}` curve over steps per run, partially pooled")
        units[FREE_CURVES], converged[FREE_CURVES] = _free_curves_holdout(request, train_runs, held_runs)
    table = pd.DataFrame({name: u for name, u in units.items()})
    elpd = table.sum()
    best = elpd.idxmax()
    k = len(table)
    out = pd.DataFrame({
        "rank": elpd.rank(ascending=False, method="first").astype(int) - 1,
        "elpd_holdout": elpd,
        "elpd_diff": elpd[best] - elpd,
        "se": np.sqrt(k * table.var(ddof=1)),
        "dse": np.sqrt(k * (table[best].to_numpy()[:, None] - table).var(ddof=1)),
        "converged": pd.Series(converged),
    }).sort_values("rank")
    scheme = f"holdout ({int(part.held.sum())} rows, {k} {'runs' if held_runs is not None else 'rows'})"
    out["scheme"] = scheme
    say(f"scored on held-out rows by their exact log predictive density, {scheme}")
    say(out.drop(columns="scheme").to_string(float_format=lambda v: f"{v:.4g}"))
    return out


def _unit_elpd(log_lik: np.ndarray, runs: np.ndarray | None) -> pd.Series:
    """log mean_s p(y_i | draw s) per held-out row, summed per run where rows name runs."""
    pointwise = np.logaddexp.reduce(log_lik, axis=0) - np.log(log_lik.shape[0])
    return pd.Series(pointwise).groupby(np.asarray(runs) if runs is not None else np.arange(len(pointwise))).sum()


def _free_curves_holdout(request: FitRequest, train_runs: np.ndarray, held_runs: np.ndarray) -> tuple[pd.Series, bool]:
    """The free-curve baseline fitted on the rows not held out (a pooled curve per run) and scored per run."""
    one = _baseline(request)
    progress.stage(f"baseline {FREE_CURVES}")
    part = one.parts[0]
    names, codes = np.unique(train_runs, return_inverse=True)
    data = dataclasses.replace(fit_data(part.train, one.law, one.columns), run=None, seed=None, run_labels=None, group=codes)
    fits = fit_pooled(one.law, data, request.method, request.sampler)
    held = fit_data(part.rows[part.held].reset_index(drop=True), one.law, one.columns)
    log_lik = np.empty((min(1000, fits[0].posterior.posterior.sizes["chain"] * fits[0].posterior.posterior.sizes["draw"]),
                        len(held.y)))
    for g, name in enumerate(names):
        rows = held_runs == name
        if rows.any():
            pick = {a: v[rows] for a, v in held.x.items()}
            log_lik[:, rows] = fits[g].log_predictive(pick, held.y[rows], None if held.n is None else held.n[rows])
    return _unit_elpd(log_lik, held_runs), all(f.converged for f in fits)


FREE_CURVES = "free-curves"  # --compare's baseline on rows of runs
BASELINE_LAW = "logistic"  # its curve: floor to ceiling, logistic in log steps


def _baseline(request: FitRequest) -> Prepared:
    """The request's rows prepared for the free-curve baseline: BASELINE_LAW over the column --x maps to `step`."""
    steps = next((item.partition("=")[2] for item in request.x if item.partition("=")[0] == "step"), "step")
    return prepare(dataclasses.replace(request, law=BASELINE_LAW, x=(f"x={steps}",)))


def free_curves(request: FitRequest, runs: np.ndarray) -> tuple[az.InferenceData, bool]:
    """One logistic curve over steps per run, every parameter partially pooled across runs: no law of the
    grid's axes, only what each run's own budgets show. Its pointwise log-likelihood is over the same rows, in
    the same order, as the compared laws' (the rows of `prepare`). Returns the posterior and convergence."""
    one = _baseline(request)
    progress.stage(f"baseline {FREE_CURVES}")
    data = dataclasses.replace(fit_data(one.rows, one.law, one.columns), run=None, seed=None, run_labels=None,
                               group=np.unique(runs, return_inverse=True)[1])
    fits = fit_pooled(one.law, data, request.method, request.sampler)
    first = fits[0].posterior
    pointwise = np.empty((first.posterior.sizes["chain"], first.posterior.sizes["draw"], len(data.y)))
    for g, fit in enumerate(fits):
        pointwise[..., data.group == g] = fit.posterior.log_likelihood[OBSERVED_SITE].values
    posterior = az.from_dict(posterior={"k": first.posterior["k"].values}, log_likelihood={OBSERVED_SITE: pointwise},
                             dims={OBSERVED_SITE: ["obs"]})
    return posterior, all(fit.converged for fit in fits)


def compare_laws(request: FitRequest, names: list[str], say: Callable[[str], None] = print) -> pd.DataFrame:
    """PSIS-LOO comparison of several laws fitted to the same rows (no --by): elpd, its SE, differences, weights.
    On rows of runs (a results file) the baseline `free-curves` (a pooled logistic curve per run) is scored
    with them."""
    if request.by:
        raise UserError("--compare fits all rows together; drop --by (or filter with --where)")
    if request.method == "huber":
        raise UserError("--compare needs a posterior (method nuts or svi), not huber")
    if request.out is not None:
        check_replaceable(Path(request.out), MARKER, WRITER)
    every_axis = {axis for name in names for axis in get_law(name).inputs}
    for item in request.x:
        if item.partition("=")[0] not in every_axis:
            raise UserError(f"--x {item!r}: none of the compared laws has that axis ({', '.join(sorted(every_axis))})")
    if len(set(names)) < 2:
        raise UserError(f"--compare takes two or more different laws, got {','.join(names)}")
    # Each law takes the --x mappings of its own axes (a steps-only law fits against the same rows with its
    # one axis); PSIS-LOO compares them on the same observations. Every law's input is checked before any fit.
    prepared = {name: prepare(dataclasses.replace(request, law=name, x=tuple(
        item for item in request.x if item.partition("=")[0] in get_law(name).inputs))) for name in dict.fromkeys(names)}
    if request.holdout is not None:
        return _publish_compare(request, names, holdout_compare(request, prepared, say), say)
    posteriors, converged, schemes = {}, {}, set()
    for index, (name, one) in enumerate(prepared.items()):
        progress.stage(f"law {name}", index, len(prepared))
        data = fit_data(one.rows, one.law, one.columns)
        fit = fit_law(one.law, data, request.method, request.sampler)
        posteriors[name], scheme = leave_out_unit(fit.posterior, data.run)
        converged[name] = fit.converged
        schemes.add(scheme)
    if data.run is not None:  # rows of runs: the baseline every law must beat is a free curve per run
        say(f"fitting the baseline {FREE_CURVES}: one `{BASELINE_LAW}` curve over steps per run, partially pooled")
        posterior, converged[FREE_CURVES] = free_curves(request, data.run)
        posteriors[FREE_CURVES], scheme = leave_out_unit(posterior, data.run)
        schemes.add(scheme)
    if len(schemes) > 1:  # laws whose rows name their runs differently cannot be scored on the same units
        raise UserError(f"--compare: the laws' rows split into runs differently ({'; '.join(sorted(schemes))})")
    scheme = schemes.pop()
    say(f"scored by PSIS-LOO, {scheme}")
    with warnings.catch_warnings():  # ArviZ warns of high Pareto k̂ in a paragraph; the table's `warning` says it
        warnings.simplefilter("ignore", UserWarning)
        table = az.compare(posteriors, ic="loo")
    table["converged"] = [converged[name] for name in table.index]
    table["scheme"] = scheme
    columns = ["rank", "elpd_loo", "p_loo", "elpd_diff", "se", "dse", "weight", "converged", "scheme", "warning"]
    say(table[columns[:-2]].to_string(float_format=lambda v: f"{v:.4g}"))
    flagged = [name for name in table.index if table.loc[name, "warning"]]
    if flagged:
        say(f"PSIS-LOO is unreliable for {', '.join(flagged)} (a high Pareto k̂ for some rows: observations "
            "the fit leans on heavily); read their elpd with care")
    if not all(converged.values()):
        say(f"not converged (r_hat, ESS or divergences): {', '.join(n for n, ok in converged.items() if not ok)}; "
            "their elpd is not to be trusted (rerun with more --samples/--warmup)")
    return _publish_compare(request, names, table[columns], say)


def _publish_compare(request: FitRequest, names: list[str], table: pd.DataFrame, say: Callable[[str], None]) -> pd.DataFrame:
    """compare.csv and the request, staged like a fit's outputs (when --out is given)."""
    scheme = str(table["scheme"].iloc[0])
    if request.out is not None:
        def fill(staging: Path) -> None:
            table.rename_axis("law").to_csv(staging / "compare.csv")
            (staging / MARKER).write_text(tomli_w.dumps({"fit": _recorded(request, request.out),
                                                         "compare": {"laws": names, "ic": "loo" if "elpd_loo" in table
                                                                     else "holdout", "scheme": scheme}}))

        publish_folder(request.out, fill, MARKER, WRITER)
        say(f"wrote {request.out}/ (compare.csv, {MARKER})")
    return table


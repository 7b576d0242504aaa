"""The laws alone: known values, monotonicity, limits, scale-free priors, and the registry's errors."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from scaling.errors import UserError
from scaling.fit.laws import LAWS, get_law

X = np.geomspace(1e-2, 1e4, 61)


def _one(**theta):
    return {k: jnp.asarray(v, dtype=jnp.float32) for k, v in theta.items()}


def _prior_draw(law, key):
    """Scaled parameters from the law's prior, as the model would draw them."""
    z = {lat.site: lat.loc + lat.scale * jax.random.normal(jax.random.fold_in(key, i)) for i, lat in enumerate(law.latent)}
    return law.scaled(z)


def test_every_law_reports_its_params_and_documents_them():
    for name, law in LAWS.items():
        assert law.name == name and law.response in ("loss", "accuracy")
        theta = law.unscale(_prior_draw(law, jax.random.key(0)), {a: 2.0 for a in law.axes}, 3.0)
        assert all(c in law.doc for c in law.covariates), name
        assert set(theta) == set(law.params), name
        for param in law.params:
            assert param in law.doc, (name, param)
        assert "Normal(" in law.doc and law.formula in law.doc


@pytest.mark.parametrize("name", list(LAWS))
def test_scaled_parameters_are_the_same_law_in_other_units(name):
    """mean(unscale(theta'), x) == y_scale · mean(theta', x / x_ref): priors in scaled units are scale-free."""
    law = LAWS[name]
    rng = np.random.default_rng(0)
    x_ref = {a: float(10 ** rng.uniform(-1, 4)) for a in law.axes}
    y_scale = 2.7 if law.response == "loss" else 1.0
    x_scaled = {a: np.geomspace(0.05, 20, 9) * (1 + 0.1 * i) for i, a in enumerate(law.axes)}
    given = {c: np.linspace(0.0, 0.9, 9) for c in law.covariates}  # covariates are never rescaled
    for draw in range(5):
        theta_s = _prior_draw(law, jax.random.key(draw))
        with jax.enable_x64(True):
            theta_s64 = {k: jnp.asarray(v, jnp.float64) for k, v in theta_s.items()}
            scaled = y_scale * law.mean(theta_s64, {a: jnp.asarray(v) for a, v in (x_scaled | given).items()})
            original = law.mean(law.unscale(theta_s64, x_ref, y_scale),
                                {a: jnp.asarray(v * x_ref[a]) for a, v in x_scaled.items()} | given)
        np.testing.assert_allclose(np.asarray(original), np.asarray(scaled), rtol=1e-9, atol=1e-12)
        if law.response == "accuracy":
            assert ((np.asarray(scaled) >= 0) & (np.asarray(scaled) <= 1)).all()
        else:
            assert (np.asarray(scaled) > 0).all()


def test_power_known_values_and_limits():
    mean = LAWS["power"].mean
    theta = _one(E=0.5, A=2.0, alpha=1.0)
    assert float(mean(theta, {"x": 1.0})) == pytest.approx(2.5)
    assert float(mean(theta, {"x": 4.0})) == pytest.approx(1.0)
    assert float(mean(theta, {"x": 1e9})) == pytest.approx(0.5)
    assert (np.diff(np.asarray(mean(theta, {"x": X}))) < 0).all()


def test_chinchilla_known_values_monotone_in_both_axes():
    mean = LAWS["chinchilla"].mean
    theta = _one(E=1.69, A=406.4, B=410.7, alpha=0.34, beta=0.28)
    # Hoffmann et al.'s fit: Chinchilla itself (70B parameters, 1.4T tokens) sits near 1.94.
    assert float(mean(theta, {"N": 70e9, "D": 1.4e12})) == pytest.approx(1.69 + 406.4 / 70e9**0.34 + 410.7 / 1.4e12**0.28, rel=1e-5)
    assert float(mean(theta, {"N": 70e9, "D": 1.4e12})) == pytest.approx(1.937, abs=2e-3)
    grid = np.geomspace(1e7, 1e12, 20)
    assert (np.diff(np.asarray(mean(theta, {"N": grid, "D": 1e11}))) < 0).all()
    assert (np.diff(np.asarray(mean(theta, {"N": 1e9, "D": grid}))) < 0).all()
    assert float(mean(theta, {"N": 1e30, "D": 1e30})) == pytest.approx(1.69, abs=1e-4)


def test_multiplicative_is_a_product_of_powers_above_the_floor():
    mean = LAWS["multiplicative"].mean
    theta = _one(A=3.0, alpha=0.5, beta=0.25, E=1.0)
    assert float(mean(theta, {"X": 4.0, "D": 16.0})) == pytest.approx(3.0 / 2 / 2 + 1.0)
    assert (np.diff(np.asarray(mean(theta, {"X": X, "D": 10.0}))) < 0).all()
    assert float(mean(theta, {"X": 1e12, "D": 1e12})) == pytest.approx(1.0, abs=1e-3)


def test_rectified_is_flat_before_its_pre_learned_data_and_a_power_law_after():
    mean = LAWS["rectified"].mean
    theta = _one(B=100.0, D_l=10.0, beta=0.5, E=1.0)
    assert float(mean(theta, {"D": 100.0})) == pytest.approx(100 / (10 + 10) + 1.0)
    assert float(mean(theta, {"D": 1e-6})) == pytest.approx(100 / 10 + 1.0, rel=1e-3)  # D << D_l^(1/beta): flat
    far = np.asarray(mean(theta, {"D": np.array([1e8, 4e8])})) - 1.0
    assert far[0] / far[1] == pytest.approx(2.0, rel=2e-3)  # D >> D_l^(1/beta): slope −beta in log-log
    assert (np.diff(np.asarray(mean(theta, {"D": X}))) < 0).all()


def test_logistic_runs_from_floor_to_ceiling_and_is_halfway_at_x50():
    mean = LAWS["logistic"].mean
    theta = _one(floor=0.25, ceiling=0.85, x50=100.0, k=2.0)
    assert float(mean(theta, {"x": 100.0})) == pytest.approx(0.55)
    assert float(mean(theta, {"x": 1e-6})) == pytest.approx(0.25, abs=1e-6)
    assert float(mean(theta, {"x": 1e9})) == pytest.approx(0.85, abs=1e-6)
    assert (np.diff(np.asarray(mean(theta, {"x": X}))) >= 0).all()


def test_the_demo_accuracy_law_is_the_logistic_without_a_floor():
    acc, logistic = LAWS["accuracy"].mean, LAWS["logistic"].mean
    values = acc(_one(C=0.9, x50=30.0, k=1.5), {"x": X})
    same = logistic(_one(floor=0.0, ceiling=0.9, x50=30.0, k=1.5), {"x": X})
    np.testing.assert_allclose(np.asarray(values), np.asarray(same), rtol=1e-6)


def test_bnsl_bends_its_log_log_slope_at_the_break():
    mean = LAWS["bnsl"].mean
    theta = _one(E=0.0, b=1.0, c0=0.5, c1=1.0, d1=1.0, f1=0.1)
    x = np.array([1e-4, 1e-3, 1e3, 1e4])
    log_y = np.log(np.asarray(mean(theta, {"x": x})))
    assert (log_y[1] - log_y[0]) / np.log(10) == pytest.approx(-0.5, abs=1e-3)  # before the break: −c0
    assert (log_y[3] - log_y[2]) / np.log(10) == pytest.approx(-1.5, abs=1e-3)  # after: −(c0 + c1)
    turned = _one(E=0.2, b=1.0, c0=0.5, c1=-1.0, d1=1.0, f1=0.1)
    values = np.asarray(mean(turned, {"x": X}))
    assert values[X < 0.5].argmin() == (X < 0.5).sum() - 1 and values[-1] > values[X < 2][-1]  # memorization: the loss turns up


def test_bnsl2_has_two_breaks_and_reduces_to_bnsl_without_the_second():
    mean2, mean1 = LAWS["bnsl2"].mean, LAWS["bnsl"].mean
    one = dict(E=0.1, b=1.0, c0=0.5, c1=-0.8, d1=1.0, f1=0.2)
    same = mean2(_one(**one, c2=0.0, d2=100.0, f2=0.2), {"x": X})
    np.testing.assert_allclose(np.asarray(same), np.asarray(mean1(_one(**one), {"x": X})), rtol=1e-5)
    theta = _one(E=0.0, b=1.0, c0=0.5, c1=-0.8, d1=1.0, f1=0.05, c2=1.3, d2=1e3, f2=0.05)
    x = np.array([1e-5, 1e-4, 10.0, 100.0, 1e6, 1e7])
    slopes = np.diff(np.log(np.asarray(mean2(theta, {"x": x}))))[::2] / np.log(10)
    np.testing.assert_allclose(slopes, [-0.5, 0.3, -1.0], atol=2e-3)
    assert LAWS["bnsl2"].scaled({"log_d1": 0.0, "log_gap": 0.0, **{lat.site: 0.0 for lat in LAWS["bnsl2"].latent}})["d2"] > 1.0


def test_two_step_is_a_sigmoid_of_a_power_law_loss():
    mean = LAWS["two-step"].mean
    theta = _one(floor=0.25, ceiling=0.95, A=8.0, alpha=0.5, margin=2.0)
    assert float(mean(theta, {"x": 16.0})) == pytest.approx(0.25 + 0.7 * jax.nn.sigmoid(0.0))
    assert float(mean(theta, {"x": 1e-8})) == pytest.approx(0.25, abs=1e-6)
    # The loss has a floor, so accuracy saturates below the ceiling: floor + (ceiling − floor)·sigmoid(margin).
    assert float(mean(theta, {"x": 1e12})) == pytest.approx(0.25 + 0.7 * float(jax.nn.sigmoid(2.0)), abs=1e-4)
    assert (np.diff(np.asarray(mean(theta, {"x": X}))) >= 0).all()


def test_sft_rises_from_zero_to_a_plateau_between_chance_and_one_set_by_capability_and_quality():
    mean = LAWS["sft"].mean
    theta = _one(c=0.5, kappa=1.0, rho=2.0, beta=0.0, T=100.0, k=3.0, delta=1.0, gamma=-0.5, eta=0.5)
    late = {"step": 1e7, "diversity": 1.0, "chance": 0.2, "past": 0.0}
    capability = np.geomspace(0.01, 100, 9)
    plateau = np.asarray(mean(theta, late | {"quality": 1.0, "capability": capability}))
    ceiling = 1 / (1 + np.exp(-(0.5 + np.log(100.0))))
    assert (np.diff(plateau) > 0).all() and plateau[-1] == pytest.approx(0.2 + 0.8 * ceiling, abs=1e-4)
    assert (plateau > 0.2).all()  # a plateau never below the chance floor
    quality = np.linspace(0.3, 1.0, 8)
    assert (np.diff(np.asarray(mean(theta, late | {"quality": quality, "capability": 1.0}))) > 0).all()
    steps = np.geomspace(1, 1e7, 80)
    x = {"step": steps, "diversity": 1.0, "quality": 1.0, "capability": 1.0, "chance": 0.2, "past": 0.0}
    curve = np.asarray(mean(theta, x))
    assert (np.diff(curve) >= 0).all() and curve[0] == pytest.approx(0.0, abs=1e-3)  # no answer format yet
    assert (curve < 1).all() and (curve >= 0).all()
    # Half the rise at t50 = T·diversity^delta: four times the diversity takes four times the steps.
    half = (0.2 + 0.8 * float(jax.nn.sigmoid(0.5))) / 2
    assert float(mean(theta, x | {"step": 400.0, "diversity": 4.0})) == pytest.approx(half, abs=1e-5)


@pytest.mark.parametrize("beta", [-0.5, 0.5])
def test_sft_beta_moves_the_ceiling_past_memorization_either_way(beta):
    theta = _one(c=1.0, kappa=0.0, rho=0.0, beta=beta, T=10.0, k=3.0, delta=0.0, gamma=0.0, eta=0.0)
    x = {"step": 1e5, "diversity": 1.0, "quality": 1.0, "capability": 1.0, "chance": 0.0}
    before = float(LAWS["sft"].mean(theta, x | {"past": 0.0}))
    after = float(LAWS["sft"].mean(theta, x | {"past": 2.0}))
    assert before == pytest.approx(float(jax.nn.sigmoid(1.0)), abs=1e-4)
    assert (after > before) == (beta > 0) and after == pytest.approx(float(jax.nn.sigmoid(1.0 + 2 * beta)), abs=1e-4)


def test_sft_run_effects_move_a_runs_take_off_and_ceiling():
    law = LAWS["sft"]
    theta = dict(c=1.0, kappa=0.0, rho=0.0, beta=0.0, T=100.0, k=3.0, delta=0.0, gamma=0.0, eta=0.0)
    moved = law.for_runs(theta, {"T": np.log(2.0), "c": -0.5})
    assert moved["T"] == pytest.approx(200.0) and moved["c"] == pytest.approx(0.5) and theta["T"] == 100.0
    assert dict(law.run_effects) == {"T": "log", "c": "identity"}


def test_means_broadcast_draws_against_inputs():
    law = LAWS["chinchilla"]
    theta = {k: np.full((7, 1), v) for k, v in dict(E=1.8, A=480.0, B=2100.0, alpha=0.35, beta=0.37).items()}
    out = law.mean(theta, {"N": np.geomspace(1e8, 1e10, 5)[None, :], "D": np.full((1, 5), 1e10)})
    assert np.shape(out) == (7, 5)


def test_get_law_names_the_laws_for_an_unknown_name():
    assert get_law("chinchilla") is LAWS["chinchilla"]
    with pytest.raises(UserError, match="unknown law 'chinchila'.*chinchilla.*two-step.*sft"):
        get_law("chinchila")
    for required in ("power", "chinchilla", "multiplicative", "rectified", "logistic", "bnsl", "bnsl2", "two-step", "sft"):
        assert required in LAWS


def test_the_accuracy_law_keeps_finite_gradients_for_a_sharp_rise_far_below_its_midpoint():
    # (x / x50)^(−k) overflows float32 here; its nan gradients made NUTS diverge on the demo's per-family fits.
    mean = LAWS["accuracy"].mean
    grad = jax.grad(lambda k: mean({"C": 0.9, "x50": 1000.0, "k": k}, {"x": jnp.float32(1.0)}))(jnp.float32(30.0))
    assert jnp.isfinite(grad) and float(grad) == 0.0


def test_a_steep_rise_keeps_finite_gradients():
    """(x / x50)^(−k) overflows float32 for a steep rise far below x50 (k = 45 at a tenth of x50: 1e45), and the nan
    gradients made NUTS diverge on the demo's results; the rise of every accuracy law with one stays finite."""
    at = {"x": jnp.float32(0.1), "step": jnp.float32(0.1), "diversity": jnp.float32(1.0), "quality": jnp.float32(1.0),
          "capability": jnp.float32(1.0), "chance": jnp.float32(0.1), "past": jnp.float32(0.0)}
    for name in ("logistic", "accuracy", "sft"):
        law = LAWS[name]
        theta = law.scaled({lat.site: jnp.float32(lat.loc) for lat in law.latent}) | {"k": jnp.float32(45.0)}
        x = {axis: at[axis] for axis in law.inputs}
        value, grad = jax.value_and_grad(lambda t: law.mean(t, x))(theta)
        assert np.isfinite(float(value)) and all(np.isfinite(float(g)) for g in grad.values()), (name, grad)

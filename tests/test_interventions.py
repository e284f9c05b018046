"""Muon, grokfast's gradient filters and the initialisation scale, against NumPy
transcriptions of their definitions and through the command line."""

import dataclasses
import importlib.util
import json
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from conftest import TINY
from reference import adam_step

from grokjax import sweep
from grokjax.config import SweepConfig
from grokjax.driver import run_sweep
from grokjax.optim import grokfast_ema, grokfast_ma, make_optimizer
from grokjax.results import METRIC_NAMES
from grokjax.train import Hparams, forward, grid_hparams, init_run, run_dataset

NS_COEFFS = (3.4445, -4.775, 2.0315)  # the quintic Newton–Schulz iteration of Muon's reference code and optax


def newton_schulz(matrix: np.ndarray, steps: int = 5, eps: float = 1e-8) -> np.ndarray:
    """Muon's orthogonalisation of a matrix: transposed to be wide, scaled to unit Frobenius
    norm, then X <- a X + (b A + c A^2) X with A = X X^T, ``steps`` times."""
    a, b, c = NS_COEFFS
    wide = matrix.shape[0] > matrix.shape[1]
    x = matrix.T if wide else matrix
    x = x / (np.linalg.norm(x) + eps)
    for _ in range(steps):
        gram = x @ x.T
        x = a * x + (b * gram + c * gram @ gram) @ x
    return x.T if wide else x


def numpy_muon(theta: np.ndarray, grads: list[np.ndarray], lr: float, wd: float, beta: float = 0.95) -> np.ndarray:
    """Muon on one [inputs, outputs] matrix: momentum with Nesterov look-ahead (bias-corrected,
    as optax writes it), Newton–Schulz, width scale sqrt(max(1, outputs / inputs)), decoupled
    weight decay."""
    theta = theta.astype(np.float64)
    momentum = np.zeros_like(theta)
    for t, g in enumerate(grads, start=1):
        momentum = beta * momentum + (1 - beta) * g
        look_ahead = beta * momentum / (1 - beta ** (t + 1)) + (1 - beta) * g / (1 - beta**t)
        direction = newton_schulz(look_ahead) * np.sqrt(max(1.0, theta.shape[1] / theta.shape[0]))
        theta = theta - lr * (direction + wd * theta)
    return theta


def run_transformation(transformation, params, grads):
    state = transformation.init(params)
    for g in grads:
        updates, state = transformation.update(g, state, params)
        params = optax.apply_updates(params, updates)
    return params


@pytest.mark.parametrize("adam_lr", [None, 1e-3])
def test_muon_orthogonalises_the_hidden_matrix_and_adamw_updates_the_rest(adam_lr):
    rng = np.random.default_rng(0)
    shapes = {"embed": {"embedding": (5, 3)}, "fc1": {"kernel": (6, 4), "bias": (4,)}, "fc2": {"kernel": (4, 5), "bias": (5,)}}
    params = {"params": jax.tree.map(lambda shape: rng.normal(size=shape), shapes, is_leaf=lambda x: isinstance(x, tuple))}
    grads = [jax.tree.map(lambda p: rng.normal(size=p.shape), params) for _ in range(3)]
    lr, wd = 0.02, 0.1
    ours = run_transformation(make_optimizer("muon", jnp.float32(lr), jnp.float32(wd), muon_adam_lr=adam_lr),
                              jax.tree.map(jnp.float32, params),
                              [jax.tree.map(jnp.float32, g) for g in grads])

    hidden = [g["params"]["fc1"]["kernel"] for g in grads]
    expected = numpy_muon(params["params"]["fc1"]["kernel"], hidden, lr, wd)
    np.testing.assert_allclose(ours["params"]["fc1"]["kernel"], expected, rtol=2e-5, atol=2e-6)
    # Newton–Schulz makes the step's singular values of order 1, unlike AdamW's elementwise steps
    adamw = run_transformation(make_optimizer("adamw", lr, wd), params, grads)["params"]["fc1"]["kernel"]
    assert np.abs(expected - adamw).max() > 1e-3

    for path in (("embed", "embedding"), ("fc1", "bias"), ("fc2", "kernel"), ("fc2", "bias")):
        theta = np.asarray(params["params"][path[0]][path[1]], np.float64)
        m, v = np.zeros_like(theta), np.zeros_like(theta)
        for t, g in enumerate(grads, start=1):
            theta, m, v = adam_step(theta, g["params"][path[0]][path[1]], m, v, t, adam_lr or lr, wd, decoupled=True)
        np.testing.assert_allclose(ours["params"][path[0]][path[1]], theta, rtol=1e-5, atol=1e-6, err_msg=str(path))


def test_grokfast_filters_follow_their_definitions():
    rng = np.random.default_rng(1)
    grads = [rng.normal(size=(3, 2)).astype(np.float32) for _ in range(6)]
    alpha, lamb, window = 0.8, 1.5, 3

    ema, ma = grokfast_ema(jnp.float32(alpha), jnp.float32(lamb)), grokfast_ma(window, jnp.float32(lamb))
    states = ema.init(jnp.zeros((3, 2))), ma.init(jnp.zeros((3, 2)))
    average = None
    for t, g in enumerate(grads):
        average = g if average is None else alpha * average + (1 - alpha) * g  # starts at the first gradient
        recent = grads[max(0, t - window + 1) : t + 1]
        expected_ma = g + lamb * np.mean(recent, axis=0) if len(recent) == window else g  # only once the window is full
        filtered_ema, ema_state = ema.update(jnp.asarray(g), states[0])
        filtered_ma, ma_state = ma.update(jnp.asarray(g), states[1])
        states = ema_state, ma_state
        np.testing.assert_allclose(filtered_ema, g + lamb * average, rtol=1e-6, atol=1e-6, err_msg=f"ema step {t}")
        np.testing.assert_allclose(filtered_ma, expected_ma, rtol=1e-6, atol=1e-6, err_msg=f"ma step {t}")


def test_init_scale_multiplies_every_initial_parameter():
    config = SweepConfig(**TINY, seeds=(0,), wds=(0.0,), lrs=(1e-2,), init_scales=(1.0, 3.0))
    hparams = grid_hparams(config)
    np.testing.assert_array_equal(hparams.init_scale, [1.0, 3.0])
    (_, plain), (_, scaled) = (init_run(config, Hparams(*(np.asarray(x)[i] for x in hparams))) for i in range(2))
    for a, b in zip(jax.tree.leaves(plain.params), jax.tree.leaves(scaled.params)):
        np.testing.assert_array_equal(np.asarray(b), 3 * np.asarray(a))


@pytest.mark.parametrize("model", ["li2", "transformer"])
def test_zero_output_init_starts_the_output_layer_at_zero_after_the_scaling(model):
    shape = dict(model="transformer", d_model=8, heads=2, d_mlp=16) if model == "transformer" else dict(model="li2")
    config = SweepConfig(**{**TINY, **shape}, seeds=(0,), wds=(0.0,), lrs=(1e-2,), init_scales=(3.0,))
    hp = Hparams(*(np.asarray(x)[0] for x in grid_hparams(config)))
    (_, plain), (_, zeroed) = init_run(config, hp), init_run(dataclasses.replace(config, zero_output_init=True), hp)
    output = "unembed" if model == "transformer" else "fc2"
    for name, layer in plain.params["params"].items():
        for a, b in zip(jax.tree.leaves(layer), jax.tree.leaves(zeroed.params["params"][name])):
            np.testing.assert_array_equal(np.asarray(b), 0 * np.asarray(a) if name == output else np.asarray(a))
    assert np.any(np.asarray(plain.params["params"][output]["kernel"]))
    logits, features = forward(config, zeroed.params, run_dataset(config, hp).inputs[:5])
    assert not np.any(np.asarray(logits)) and np.any(np.asarray(features))  # the output is 0, the features are not


def run_command(tmp_path, name, *args):
    out = tmp_path / name
    assert sweep.main(["--m", "11", "--hidden", "8", "--batch-size", "16", "--epochs", "4", "--seeds", "2", "--wd", "1e-2",
                       "--lr", "1e-2", "--geometry-every", "2", "--quiet", "--out", str(out), *args]) == 0
    return out


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["ema", "ma"])
def test_lambda_zero_trains_exactly_the_unfiltered_run(kind):
    """A filter with lambda 0 passes every gradient on bit for bit, so its runs train as
    without a filter: equal up to float32 round-off (XLA compiles the program around the
    filter differently, which moves the last bit of some updates), while lambda 1 moves
    them far more."""
    base = SweepConfig(**{**TINY, "epochs": 4}, seeds=(0, 1, 2, 3), wds=(1e-2,), lrs=(1e-2,))
    plain = run_sweep(base)
    filtered = run_sweep(dataclasses.replace(base, seeds=(0, 1), grokfast=kind, grokfast_window=2, grokfast_lambdas=(0.0, 1.0)))
    np.testing.assert_array_equal(filtered.hparams.grokfast_lambda, [0, 1, 0, 1])
    for ours, theirs in zip(jax.tree.leaves(filtered.state.params), jax.tree.leaves(plain.state.params)):
        ours, theirs = np.asarray(ours), np.asarray(theirs)[:2]
        np.testing.assert_allclose(ours[[0, 2]], theirs, rtol=2e-6, atol=1e-7)
        assert np.abs(ours[[1, 3]] - theirs).max() > 1e-3  # lambda 1 does filter
    for name in METRIC_NAMES:
        np.testing.assert_allclose(filtered.metrics[name][[0, 2]], plain.metrics[name][:2], rtol=2e-6, atol=1e-7, err_msg=name)

    filters = {"ema": grokfast_ema(jnp.float32(0.9), jnp.float32(0.0)), "ma": grokfast_ma(2, jnp.float32(0.0))}
    grads = np.random.default_rng(2).normal(size=(3, 5, 4)).astype(np.float32)
    state = filters[kind].init(jnp.zeros((5, 4)))
    for g in grads:
        passed, state = jax.jit(filters[kind].update)(jnp.asarray(g), state)
        np.testing.assert_array_equal(passed, g)


@pytest.mark.slow
def test_the_filter_settings_are_coordinates_of_every_file(tmp_path, capsys):
    filtered = run_command(tmp_path, "filtered", "--grokfast", "ema", "--grokfast-lambda", "0,1", "--init-scale", "0.5")
    data = np.load(filtered / "metrics.npz")
    np.testing.assert_array_equal(data["grokfast_lambda"], [0, 1, 0, 1])
    np.testing.assert_array_equal(data["seed"], [0, 0, 1, 1])
    assert "init_scale" not in data and "grokfast_alpha" not in data  # one value each: not an axis
    summary = (filtered / "summary.csv").read_text().splitlines()
    assert summary[0].startswith("run,seed,data_seed,wd,lr,n_train,grokfast_lambda,")
    config = json.loads((filtered / "config.json").read_text())["config"]
    assert config["grokfast"] == "ema" and config["grokfast_lambdas"] == [0.0, 1.0] and config["init_scales"] == [0.5]
    assert "grokfast_lambda" in (filtered / "groups.csv").read_text().splitlines()[0]


@pytest.mark.parametrize(
    "args,message",
    [
        (["--init-scale", "0"], "init_scales must be positive, got 0.0"),
        (["--grokfast", "ema", "--grokfast-alpha", "1"], "grokfast_alphas must lie in [0, 1), got 1.0"),
        (["--grokfast", "ema", "--grokfast-lambda=-1"], "grokfast_lambdas must be non-negative, got -1.0"),
        (["--grokfast", "ma", "--grokfast-window", "0"], "grokfast_window must be >= 1, got 0"),
        (["--grokfast", "fast"], "grokfast must be one of none, ema, ma, got 'fast'"),
        (["--grokfast-lambda", "1,2"], "grokfast_lambdas lists several values, but grokfast none does not use them"),
        (["--grokfast", "ma", "--grokfast-alpha", "0.9,0.98"], "grokfast_alphas lists several values, but grokfast ma"),
        (["--optimizer", "lion"], "optimizer must be one of adam, adamw, sgd, muon, got 'lion'"),
    ],
)
def test_bad_intervention_values_are_refused_in_one_line(tmp_path, capsys, args, message):
    with pytest.raises(SystemExit) as exited:
        sweep.main([*args, "--out", str(tmp_path / "out")])
    error = capsys.readouterr().err
    assert exited.value.code == 2 and message in error and error.count("\n") == 1
    assert not (tmp_path / "out").exists()


# --- experiments/interventions.py: the analyses on made-up summaries ------------------------------

SCRIPT = Path(__file__).resolve().parents[1] / "experiments" / "interventions.py"
spec = importlib.util.spec_from_file_location("interventions", SCRIPT)
interventions = importlib.util.module_from_spec(spec)
spec.loader.exec_module(interventions)


def made_up_summary(**columns) -> dict[str, np.ndarray]:
    n = len(next(iter(columns.values())))
    base = {"seed": np.arange(n), "wd": np.full(n, 1e-4), "lr": np.full(n, 1e-3), "grokfast": np.full(n, "ema"),
            "grokfast_window": np.full(n, 100), "grokfast_alpha": np.full(n, 0.98), "grokfast_lambda": np.zeros(n),
            "init_scale": np.ones(n), "diverged_epoch": np.full(n, np.nan), "final_test_acc": np.ones(n)}
    return {**base, **{name: np.asarray(values) for name, values in columns.items()}}


def test_grokfast_speedup_is_paired_by_seed():
    """Three seeds without the filter (grok 300, 400, 500) and with lambda 2 (100, 100, never):
    speed-ups 3 and 4 for the seeds that grokked both ways."""
    summary = made_up_summary(seed=[0, 1, 2, 0, 1, 2], grokfast_lambda=[0, 0, 0, 2, 2, 2],
                              grok_epoch=[300.0, 400, 500, 100, 100, np.nan])
    baseline, filtered = interventions.grokfast_rows(summary)
    assert (baseline["lambda"], baseline["grokked"], baseline["grok"][0]) == (0.0, 3, 400.0)
    assert np.isnan(baseline["speedup"][0])
    assert (filtered["lambda"], filtered["grokked"], filtered["runs"]) == (2.0, 2, 3)
    assert filtered["grok"][0] == 100.0 and filtered["speedup"][0] == 3.5  # median of 3 and 4
    assert "| ema | – | 0.98 | 2 | 2/3 | 100 [100–100] | 3.50 [3.00–4.00] |" in interventions.grokfast_table([baseline, filtered])


def test_delay_law_recovers_a_known_exponent_and_the_collapse():
    """delay = 0.5 / (eta lambda): alpha 1 on eta*lambda pooled over both learning rates, and 1
    on lambda at each learning rate; left out: a run without a delay, and a cell (wd 10) where
    one seed never grokked, even its seed that did."""
    lr = np.repeat([1e-3, 3e-3], 4)
    wd = np.tile([0.1, 0.3, 1.0, 3.0], 2)
    delay = 0.5 / (lr * wd)
    summary = made_up_summary(lr=np.append(lr, [1e-3, 1e-3, 1e-3]), wd=np.append(wd, [1.0, 10.0, 10.0]),
                              delay=np.append(delay, [0.0, 900.0, np.nan]))
    summary["grok_epoch"] = summary["delay"] + 10
    fits = interventions.delay_law_fits(summary, n_epochs=2000)
    assert fits["runs_fitted"] == 8 and fits["runs"] == 11
    assert fits["eta_lambda"]["alpha"] == pytest.approx(1.0) and fits["eta_lambda"]["prefactor"] == pytest.approx(0.5)
    assert [fit["alpha"] for fit in fits["per_lr"].values()] == pytest.approx([1.0, 1.0])


def test_init_scale_rows_count_per_scale_and_weight_decay():
    summary = made_up_summary(wd=[0, 0, 1e-4, 1e-4], init_scale=[1, 8, 1, 8], grok_epoch=[np.nan, np.nan, 200.0, 600.0],
                              mem_epoch=[50.0, np.nan, 50.0, 300.0], delay=[np.nan, np.nan, 150.0, 300.0])
    rows = interventions.init_scale_rows(summary)
    assert [(r["wd"], r["init_scale"], r["memorised"], r["grokked"]) for r in rows] == [
        (0.0, 1.0, 1, 0), (0.0, 8.0, 0, 0), (1e-4, 1.0, 1, 1), (1e-4, 8.0, 1, 1)]
    assert rows[3]["grok"][0] == 600.0 and rows[3]["delay"][0] == 300.0


def test_optimizer_rows_pair_each_seed_with_adamw_in_the_same_cell():
    """Muon and AdamW at one (hidden, lr, wd), two seeds: AdamW groks at 400 and 300, Muon at
    100 and 200 (speed-ups 4 and 1.5); Muon's second cell has no AdamW twin (no speed-up) and
    one seed that never grokked; Adam's cell at a coupled wd is compared with nothing."""
    summary = made_up_summary(
        optimizer=["adamw", "adamw", "muon", "muon", "muon", "muon", "adam", "adam"],
        hidden=[128] * 8, lr=[1e-3] * 8, wd=[0.1, 0.1, 0.1, 0.1, 1.0, 1.0, 1e-4, 1e-4], seed=[0, 1, 0, 1, 0, 1, 0, 1],
        grok_epoch=[400.0, 300, 100, 200, 50, np.nan, 500, 700], delay=[300.0, 200, 50, 150, 10, np.nan, 400, 600],
        final_test_acc=[1, 1, 1, 1, 1, 0.2, 1, 1])
    rows = {(r["optimizer"], r["wd"]): r for r in interventions.optimizer_rows(summary)}
    assert list(rows) == [("adam", 1e-4), ("adamw", 0.1), ("muon", 0.1), ("muon", 1.0)]
    assert rows["muon", 0.1]["speedup"][0] == pytest.approx(2.75) and rows["muon", 0.1]["grok"][0] == 150.0
    assert all(np.isnan(rows[key]["speedup"][0]) for key in [("adam", 1e-4), ("adamw", 0.1), ("muon", 1.0)])
    assert (rows["muon", 1.0]["grokked"], rows["muon", 1.0]["grok"][0], rows["muon", 1.0]["final_test_acc"]) == (1, 50.0, 0.6)
    earliest = interventions.earliest_cells(list(rows.values()))
    # Muon's wd 1 is earlier but one seed never grokked there: its earliest complete cell is wd 0.1
    assert [(r["optimizer"], r["wd"], r["grok"][0]) for r in earliest] == [("adam", 1e-4, 600.0), ("adamw", 0.1, 350.0),
                                                                           ("muon", 0.1, 150.0)]
    table = interventions.optimizer_table(list(rows.values()))
    assert "| muon | 128 | 0.001 | 0.1 | 2/2 | 150 [100–200] | 100 [50–150] | 1.000 | 2.75 [1.50–4.00] |" in table
    assert interventions.cell(-0.4, -11.0, 1.0) == "0 [-11–1]"  # a delay that rounds to zero has no sign
    fig = interventions.optimizer_figure(list(rows.values()), "t")
    (muon_line,) = [line for line in fig.axes[0].get_lines() if list(line.get_xdata()) == [0.1, 1.0] and line.get_marker() == "o"]
    assert list(muon_line.get_ydata()) == [150.0, 50.0]


def test_li2_rows_count_the_frequencies_of_feature_neurons():
    """Two runs of four neurons: run 0's feature neurons (concentration > 0.5) sit on classes
    1, 1 and 3 (two frequencies; the 0.4 neuron on class 2 is not a feature); run 1 has one
    feature neuron."""
    summary = made_up_summary(optimizer=["adam", "adam"], hidden=[4, 4], wd=[0.0, 0.0], lr=[1e-2, 1e-2], grok_epoch=[np.nan, 900.0],
                              final_test_acc=[0.3, 0.9])
    dominant = np.array([[1, 1, 3, 2], [2, 2, 2, 2]])[:, None]  # [runs, snapshots, neurons]
    concentration = np.array([[0.9, 0.8, 0.7, 0.4], [0.9, 0.2, 0.3, 0.5]])[:, None]
    fourier = {"dominant_frequency": dominant, "concentration": concentration, "distinct_frequencies": np.array([[3], [1]])}
    assert list(interventions.feature_frequencies(dominant[:, -1], concentration[:, -1])) == [2, 1]
    (row,) = interventions.li2_rows(summary, fourier)
    assert (row["grokked"], row["feature_frequencies"], row["feature_neurons"], row["distinct_frequencies"]) == (
        1, (1.5, 1, 2), (2.0, 1, 3), (2.0, 1, 3))
    assert row["test_acc"][0] == pytest.approx(0.6)
    assert "| adam | 4 | 0.01 | 0 | 1/2 | 0.600 [0.300–0.900] | 1.5 [1–2] | 2 [1–3] | 2 [1–3] |" in interventions.li2_table([row], 11)
    fig = interventions.li2_figure([row], 11, "t")
    curves = [line for line in fig.axes[1].get_lines() if line.get_marker() == "o"]
    assert [list(line.get_ydata()) for line in curves] == [[1.5]] and fig.axes[0].get_title() == "lr 0.01"
    assert list(curves[0].get_xdata()) == [4.0]  # one setting: not shifted

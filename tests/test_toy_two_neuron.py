"""experiments/toy_two_neuron.py against NumPy: the gradient derived by hand, gradient descent
replayed step by step, every recorded metric recomputed, and the phase rules on made-up curves."""

import importlib.util
import json
import math
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "experiments" / "toy_two_neuron.py"
spec = importlib.util.spec_from_file_location("toy_two_neuron", SCRIPT)
toy = importlib.util.module_from_spec(spec)
sys.modules[spec.name] = toy  # dataclasses look the module up while building the config class
spec.loader.exec_module(toy)

TINY = toy.ToyConfig(dim=5, n_train=20, n_test=30, steps=4, record_every=1, lr=0.1, seeds=(0, 1), wds=(0.0, 0.05))


def numpy_gradient(w, v, x, y, wd):
    """Gradient of 1/(2n) sum_i (sum_j v_j (w_j . x_i)^2 - y_i)^2 + wd/2 (|w|^2 + |v|^2), by hand."""
    n = len(y)
    h = x @ w.T  # [n, 2]: pre-activations w_j . x_i
    r = (h**2) @ v - y  # residuals
    grad_v = (h**2).T @ r / n + wd * v
    grad_w = 2 * v[:, None] * ((h * r[:, None]).T @ x) / n + wd * w  # d(v_j h_ij^2)/dw_j = 2 v_j h_ij x_i
    return grad_w, grad_v


def numpy_metrics(w, v, w0, directions, data):
    """What the script records at one step, recomputed from the weights."""
    x, y = data["x_train"], data["y_train"]
    unit = w / np.linalg.norm(w, axis=1, keepdims=True)
    grad_w, _ = numpy_gradient(w, v, x, y, 0.0)
    with np.errstate(invalid="ignore"):  # 0/0 where no gradient reaches w (v = 0): NaN, as recorded
        grad_in_span = np.linalg.norm(grad_w @ directions.T, axis=1) / np.linalg.norm(grad_w, axis=1)
    return {
        "dw": np.linalg.norm(w - w0, axis=1),
        "cos": np.abs(unit @ directions.T),
        "cos12": abs(unit[0] @ unit[1]),
        "w_norm": np.linalg.norm(w, axis=1),
        "v": v,
        "v_norm": np.linalg.norm(v),
        "train_loss": 0.5 * np.mean(((x @ w.T) ** 2 @ v - y) ** 2),
        "test_loss": 0.5 * np.mean(((data["x_test"] @ w.T) ** 2 @ v - data["y_test"]) ** 2),
        "grad_in_span": grad_in_span,
    }


def run_data(seed, config):
    """The run's data as float64 NumPy arrays."""
    data = jax.jit(toy.make_data, static_argnums=1)(toy.split_seed(seed)[0], config)  # compiled: faster than op by op
    return {name: np.asarray(value, np.float64) for name, value in data.items()}


@pytest.fixture(scope="module")
def tiny_grid():
    curves, _ = toy.run_grid(TINY)
    return curves


def test_gradient_matches_hand_derivation():
    rng = np.random.default_rng(0)
    w, v = rng.normal(size=(2, 7)), rng.normal(size=2)
    x, y = rng.normal(size=(13, 7)), rng.normal(size=13)
    wd = 0.03
    params = {"w": jnp.asarray(w, jnp.float32), "v": jnp.asarray(v, jnp.float32)}
    grads = jax.grad(toy.objective)(params, jnp.asarray(x, jnp.float32), jnp.asarray(y, jnp.float32), wd)
    grad_w, grad_v = numpy_gradient(w, v, x, y, wd)
    np.testing.assert_allclose(grads["w"], grad_w, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(grads["v"], grad_v, rtol=1e-4, atol=1e-5)
    loss = 0.5 * np.mean(((x @ w.T) ** 2 @ v - y) ** 2) + 0.5 * wd * (np.sum(w**2) + np.sum(v**2))
    np.testing.assert_allclose(toy.objective(params, jnp.asarray(x, jnp.float32), jnp.asarray(y, jnp.float32), wd), loss, rtol=1e-5)


def test_data_follows_the_stated_law():
    data = run_data(3, TINY)
    np.testing.assert_allclose(data["directions"] @ data["directions"].T, np.eye(2), atol=1e-6)
    expected = ((data["x_train"] @ data["directions"].T) ** 2) @ np.array(TINY.amplitudes)
    np.testing.assert_allclose(data["y_train"], expected, rtol=1e-5)


def numpy_replay(curves, run, config=TINY):
    """Run ``run`` of a grid replayed in NumPy from its recorded initial weights: the metrics
    at every recorded step (as numpy_metrics gives them) and the final weights."""
    data = run_data(int(curves["seed"][run]), config)
    w0 = curves["w0"][run].astype(np.float64)
    np.testing.assert_allclose(data["directions"], curves["directions"][run], atol=1e-6)
    w, v = w0.copy(), np.zeros(2)
    records = []
    for step in range(config.steps + 1):
        if step:
            grad_w, grad_v = numpy_gradient(w, v, data["x_train"], data["y_train"], float(curves["wd"][run]))
            w, v = w - config.lr * grad_w, v - config.lr * grad_v
        if step % config.record_every == 0:
            records.append(numpy_metrics(w, v, w0, data["directions"], data))
    return records, w, v


def test_records_replay_gradient_descent_in_numpy(tiny_grid):
    curves = tiny_grid
    assert curves["cos"].shape == (4, TINY.steps + 1, 2, 2)
    np.testing.assert_array_equal(curves["seed"], [0, 0, 1, 1])
    np.testing.assert_allclose(curves["wd"], [0.0, 0.05, 0.0, 0.05])
    for r in range(4):
        records, w, v = numpy_replay(curves, r)
        for step, expected in enumerate(records):
            for name, value in expected.items():
                recorded = curves[name][r, step]
                if name == "grad_in_span" and step == 0:
                    assert np.isnan(recorded).all()  # v = 0: no gradient reaches w yet
                    continue
                np.testing.assert_allclose(recorded, value, rtol=2e-4, atol=1e-6, err_msg=f"{name}, run {r}, step {step}")
        np.testing.assert_allclose(curves["w_final"][r], w, rtol=1e-4, atol=1e-6)
        np.testing.assert_allclose(curves["v_final"][r], v, rtol=1e-4, atol=1e-6)


def synthetic_curves():
    """Ten records, ten steps apart: neuron 1 climbs to u1 (captured once it also carries
    a1/2, at step 60); neuron 2 follows it to |cos| 0.6, is pushed off and takes u2 at 80."""
    steps = np.arange(0, 100, 10)
    cos = np.full((10, 2, 2), 0.2)
    cos[:, 0, 0] = [0.2, 0.25, 0.31, 0.5, 0.8, 0.95, 0.97, 0.98, 0.99, 0.99]
    cos[:, 1, 0] = [0.2, 0.22, 0.3, 0.4, 0.5, 0.6, 0.4, 0.3, 0.2, 0.1]
    cos[:, 1, 1] = [0.2, 0.2, 0.2, 0.2, 0.3, 0.5, 0.7, 0.85, 0.92, 0.95]
    strength = np.zeros((10, 2))
    strength[:, 0] = [0, 0.01, 0.01, 0.02, 0.03, 0.04, 0.05, 0.08, 0.09, 0.1]
    strength[:, 1] = [0, 0.0, 0.0, 0.0, 0.0, 0.01, 0.02, 0.03, 0.04, 0.05]
    return steps, cos, strength


def test_phase_rules_on_made_up_curves():
    steps, cos, strength = synthetic_curves()
    phases = toy.phase_boundaries(steps, cos, strength, (0.1, 0.05))
    assert phases == {"phase_ii": 20.0, "phase_iii": 60.0, "done": 80.0, "leader": 0.0, "first_direction": 0.0,
                      "follower_peak": 0.6, "follower_final": 0.1, "specialised_at_end": 1.0}
    swapped = toy.phase_boundaries(steps, cos[:, ::-1], strength[:, ::-1], (0.1, 0.05))  # neuron 2 leads
    assert swapped == {**phases, "leader": 1.0}


def test_phase_rules_ignore_a_neuron_that_is_switched_off():
    steps, cos, strength = synthetic_curves()
    late = strength.copy()
    late[-1, 1] = 0.0  # neuron 2 held u2 from step 80 but is switched off at the last record
    phases = toy.phase_boundaries(steps, cos, late, (0.1, 0.05))
    assert phases["done"] == 80.0 and phases["specialised_at_end"] == 0.0
    strength[:, 1] = 0.0  # neuron 2 points along u2 but carries nothing
    phases = toy.phase_boundaries(steps, cos, strength, (0.1, 0.05))
    assert phases["phase_iii"] == 60.0 and math.isnan(phases["done"])
    strength[:, 0] = 0.0
    phases = toy.phase_boundaries(steps, cos, strength, (0.1, 0.05))
    assert math.isnan(phases["phase_iii"]) and math.isnan(phases["first_direction"])


def test_results_folder(tiny_grid, tmp_path):
    """Four steps capture nothing; what the folder records of them is checked against the NumPy replay."""
    rows = toy.write_results(tmp_path, TINY, "python experiments/toy_two_neuron.py --test", tiny_grid,
                             {"compile_s": 1.0, "train_s": 2.0})
    assert {p.name for p in tmp_path.iterdir()} == {"toy_two_neuron.png", "curves.npz", "config.json", "phases.md"}
    record = json.loads((tmp_path / "config.json").read_text())
    assert record["config"]["wds"] == [0.0, 0.05] and record["command"].endswith("--test")
    assert record["summary"] == rows
    assert record["representative_run"] == {"index": 0, "seed": 0, "wd": 0.0}  # nobody specialised: the first run
    replays = [numpy_replay(tiny_grid, r)[0] for r in range(4)]
    replayed = {name: np.array([[step[name] for step in replay] for replay in replays])
                for name in ("train_loss", "test_loss", "v", "w_norm", "cos")}
    phases = (tmp_path / "phases.md").read_text()
    for row, wd in zip(rows, TINY.wds):
        runs = np.flatnonzero(tiny_grid["wd"] == np.float32(wd))
        assert row["wd"] == wd and row["runs"] == 2 and list(runs) == ([0, 2] if wd == 0 else [1, 3])
        expected = {"initial_loss": np.median(replayed["train_loss"][runs, 0]), "lazy_loss": np.median(replayed["train_loss"][runs, 1]),
                    "final_train_loss": np.median(replayed["train_loss"][runs, -1]),
                    "final_test_loss": np.median(replayed["test_loss"][runs, -1])}
        for name, value in expected.items():
            np.testing.assert_allclose(row[name], value, rtol=2e-4, err_msg=name)
        assert f"| {expected['initial_loss']:.2g}, {expected['lazy_loss']:.2g}, {expected['final_train_loss']:.2g} |" in phases
        for name in ("phase_ii", "phase_iii", "done"):
            assert row[name] == {"reached": 0, "median": None, "min": None, "max": None}
    # no neuron carries under 1% of a2 after four steps (the replay says so), so no run is switched off
    assert (np.abs(replayed["v"] * replayed["w_norm"] ** 2)[:, -1] > 0.01 * TINY.amplitudes[1]).all()
    with np.load(tmp_path / "curves.npz") as saved:
        for name, values in tiny_grid.items():
            np.testing.assert_array_equal(saved[name], values, err_msg=name)
        np.testing.assert_array_equal(saved["step"], np.arange(TINY.steps + 1))
        assert list(saved["outcome"]) == ["unseparated"] * 4
        # Phase II: the first step at which some |cos(w_j, u_i)| has climbed 0.1 above its start (none, in four steps)
        climb = (replayed["cos"] - replayed["cos"][:, :1]).max(axis=(2, 3))
        steps = np.arange(TINY.steps + 1)  # recorded every step
        np.testing.assert_array_equal(saved["phase_phase_ii"], [steps[c >= 0.1][0] if (c >= 0.1).any() else np.nan for c in climb])
    assert "python experiments/toy_two_neuron.py --test" in phases


def made_up_grid():
    """Three seeds x two weight decays of twelve records, ten steps apart, built from
    synthetic_curves (w_norm 1, so v is each neuron's strength), with their phase boundaries
    and outcomes."""
    _, cos, strength = synthetic_curves()

    def padded(cos, strength, shift):  # ``shift`` records later, twelve records in all
        index = np.clip(np.arange(12) - shift, 0, 9)
        return cos[index], strength[index]

    late = padded(cos, strength, 0)
    late[1][-1, 1] = 0.0
    runs = [
        padded(cos, strength, 0),  # seed 0, wd 0: II at 20, III at 60, both captured at 80
        late,  # seed 0, wd 0.05: the same, but neuron 2 switched off at the last record
        padded(cos[:, ::-1], strength[:, ::-1], 1),  # seed 1, wd 0: neuron 2 leads, ten steps later
        (np.full((12, 2, 2), 0.2), np.full((12, 2), 0.02)),  # seed 1, wd 0.05: nothing climbs
        padded(cos, strength, 2),  # seed 2, wd 0: twenty steps later
        padded(cos, strength * [1, 0], 0),  # seed 2, wd 0.05: neuron 2 points along u2 but carries nothing
    ]
    cos, v = (np.stack(parts) for parts in zip(*runs))
    train_loss = np.arange(1, 7)[:, None] * 10.0 ** (-np.arange(12) / 4)
    curves = {"seed": np.repeat(np.arange(3, dtype=np.int32), 2), "wd": np.tile(np.float32([0.0, 0.05]), 3), "cos": cos, "v": v,
              "w_norm": np.ones((6, 12, 2)), "v_norm": np.linalg.norm(v, axis=-1), "dw": np.full((6, 12, 2), 0.1),
              "cos12": np.full((6, 12), 0.3), "train_loss": train_loss, "test_loss": 2 * train_loss,
              "grad_in_span": np.full((6, 12, 2), 0.5)}
    nan = math.nan
    boundaries = {  # phase_ii, phase_iii, done, leader, first_direction, follower_peak, follower_final, specialised_at_end
        0: (20, 60, 80, 0, 0, 0.6, 0.1, 1), 1: (20, 60, 80, 0, 0, 0.6, 0.1, 0), 2: (30, 70, 90, 1, 0, 0.6, 0.1, 1),
        3: (nan, nan, nan, nan, nan, nan, nan, 0), 4: (40, 80, 100, 0, 0, 0.6, 0.1, 1), 5: (20, 60, nan, 0, 0, 0.6, 0.1, 0)}
    outcomes = ["specialised", "switched off", "specialised", "unseparated", "specialised", "switched off"]
    return curves, boundaries, outcomes


def test_results_folder_of_made_up_curves(tmp_path):
    """The phase boundaries, outcomes, per-weight-decay summary and representative run that the
    results folder records, on curves whose answers are known."""
    config = toy.ToyConfig(steps=110, record_every=10, seeds=(0, 1, 2), wds=(0.0, 0.05))
    curves, boundaries, outcomes = made_up_grid()
    rows = toy.write_results(tmp_path, config, "made up", curves, {"compile_s": 0.0, "train_s": 0.0})
    with np.load(tmp_path / "curves.npz") as saved:
        assert list(saved["outcome"]) == outcomes
        names = ("phase_ii", "phase_iii", "done", "leader", "first_direction", "follower_peak", "follower_final", "specialised_at_end")
        for k, name in enumerate(names):
            np.testing.assert_allclose(saved[f"phase_{name}"], [boundaries[r][k] for r in range(6)], err_msg=name)

    def reached(values):
        return {"reached": len(values), "median": float(np.median(values)), "min": min(values), "max": max(values)}

    assert rows == json.loads((tmp_path / "config.json").read_text())["summary"] == [
        {"wd": 0.0, "runs": 3, "phase_ii": reached([20, 30, 40]), "phase_iii": reached([60, 70, 80]), "done": reached([80, 90, 100]),
         "u1_first": 3, "followed": 3, "outcomes": {"specialised": 3, "switched off": 0, "unseparated": 0},
         "initial_loss": 3.0, "lazy_loss": pytest.approx(3 * 10**-0.25), "final_train_loss": pytest.approx(3 * 10**-2.75),
         "final_test_loss": pytest.approx(6 * 10**-2.75)},
        {"wd": 0.05, "runs": 3, "phase_ii": reached([20, 20]), "phase_iii": reached([60, 60]), "done": reached([80]),
         "u1_first": 2, "followed": 2, "outcomes": {"specialised": 0, "switched off": 2, "unseparated": 1},
         "initial_loss": 4.0, "lazy_loss": pytest.approx(4 * 10**-0.25), "final_train_loss": pytest.approx(4 * 10**-2.75),
         "final_test_loss": pytest.approx(8 * 10**-2.75)},
    ]
    # shown: at wd 0, where all three specialise, the run whose boundaries lie nearest the medians
    assert json.loads((tmp_path / "config.json").read_text())["representative_run"] == {"index": 2, "seed": 1, "wd": 0.0}
    phases = (tmp_path / "phases.md").read_text()
    assert "| 0 | 30 [20–40] (3/3) | 70 [60–80] (3/3) | 90 [80–100] (3/3) | 3/3 | 3/3 | 3 / 0 / 0 |" in phases
    assert "| 5e-2 | 20 [20–20] (2/3) | 60 [60–60] (2/3) | 80 [80–80] (1/3) | 2/3 | 2/3 | 0 / 2 / 1 |" in phases


@pytest.mark.parametrize("args, message", [
    (["--wd=-1e-3"], "weight decays must be"),
    (["--wd", "0,abc"], "expected comma-separated numbers"),
    (["--steps", "1000", "--record-every", "300"], "must be a multiple of record_every"),
    (["--lr", "0"], "lr must be a positive number"),
    (["--seeds", "0"], "--seeds must be at least 1"),
])
def test_bad_values_are_refused_in_one_line(args, message, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        toy.main(["--out", str(tmp_path / "out"), *args])
    assert exit_info.value.code == 2
    error_line = capsys.readouterr().err.strip().splitlines()[-1]
    assert message in error_line
    assert not (tmp_path / "out").exists()

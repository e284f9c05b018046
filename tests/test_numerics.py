"""Prieto et al.'s pieces against NumPy transcriptions: the StableMax loss and its gradient,
⊥Grad, the softmax-collapse, zero-loss and naive-loss-minimisation measures, the loss's
precision as a static axis, and their MLP."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from grokjax import metrics as M
from grokjax.config import ConfigError, SweepConfig, sweep_plan_from_mapping
from grokjax.driver import run_sweep
from grokjax.optim import orthogonal_gradient
from grokjax.train import batch_loss, make_model


def numpy_stablemax_loss(z: np.ndarray, y: np.ndarray) -> np.ndarray:
    """-log(s(z_y) / sum_j s(z_j)), s(x) = x + 1 (x >= 0), 1 / (1 - x) (x < 0), in float64."""
    z = np.asarray(z, np.float64)
    s = np.where(z >= 0, z + 1, 1 / (1 - np.minimum(z, 0)))
    return -np.log(s[np.arange(len(y)), y] / s.sum(axis=1))


def numpy_stablemax_gradient(z: np.ndarray, y: np.ndarray) -> np.ndarray:
    """d loss / d z by hand: s'(x) = 1 (x >= 0), 1 / (1 - x)^2 (x < 0);
    d/dz_j [log sum s - log s_y] = s'_j / sum s - [j = y] s'_y / s_y."""
    z = np.asarray(z, np.float64)
    s = np.where(z >= 0, z + 1, 1 / (1 - np.minimum(z, 0)))
    ds = np.where(z >= 0, 1.0, 1 / (1 - np.minimum(z, 0)) ** 2)
    grad = ds / s.sum(axis=1, keepdims=True)
    rows = np.arange(len(y))
    grad[rows, y] -= ds[rows, y] / s[rows, y]
    return grad


# the x = 0 boundary (both sides and exactly), large negative logits, a large positive one
LOGITS = np.array([[0.0, -1e-7, 1e-7, 3.0], [-1e6, -50.0, 0.0, 2.0], [1e4, -1e4, 0.5, -0.5]])
LABELS = np.array([0, 1, 0])


def test_stablemax_loss_and_gradient_match_numpy():
    with jax.enable_x64(True):
        z = jnp.asarray(LOGITS, jnp.float64)
        loss = M.stablemax_cross_entropy(z, jnp.asarray(LABELS))
        np.testing.assert_allclose(loss, numpy_stablemax_loss(LOGITS, LABELS), rtol=1e-12, atol=1e-14)
        grad = jax.grad(lambda z: jnp.sum(M.stablemax_cross_entropy(z, jnp.asarray(LABELS))))(z)
        np.testing.assert_allclose(grad, numpy_stablemax_gradient(LOGITS, LABELS), rtol=1e-10, atol=1e-300)
        assert np.isfinite(np.asarray(grad)).all()
    # s(0) = 1 from both sides: the function is continuous there, and its slope is 1 on both sides
    np.testing.assert_allclose(M.stablemax(jnp.array([-1e-6, 0.0, 1e-6])), [1 / (1 + 1e-6), 1.0, 1 + 1e-6], rtol=1e-6)


def test_the_stablemax_loss_is_computed_in_float64_by_default():
    """With the loss precision "auto", StableMax is computed in float64 (as Prieto et al. do):
    a loss that float32 cannot tell from 0 stays positive."""
    config = SweepConfig(m=5, model="mlp", layers=1, hidden=4, loss="stablemax", batch_size=0, epochs=1, seeds=(0,),
                         wds=(0.0,))
    assert config.loss_dtype == "float64" and config.softmax_dtype == "float32"
    assert SweepConfig(loss="stablemax", logit_dtype="float32").loss_dtype == "float32"
    logits = np.array([[1e9, 0.0, 0.0, 0.0, 0.0]], np.float32)
    with jax.enable_x64(True):
        precise = M.per_example_loss("stablemax", jnp.asarray(logits), jnp.array([0]), "float64")
        rounded = M.per_example_loss("stablemax", jnp.asarray(logits), jnp.array([0]), "float32")
    assert float(precise[0]) == pytest.approx(float(numpy_stablemax_loss(logits, np.array([0]))[0]), rel=1e-9)
    assert float(precise[0]) > 0 and float(rounded[0]) == 0


def numpy_orthogonal(g: np.ndarray, w: np.ndarray, eps: float = 1e-30) -> np.ndarray:
    g, w = g.ravel().astype(np.float64), w.ravel().astype(np.float64)
    perp = g - (w @ g) / (w @ w + eps) * w
    return perp * np.linalg.norm(g) / (np.linalg.norm(perp) + eps)


def test_orthogonal_gradient_matches_numpy():
    rng = np.random.default_rng(0)
    params = {"w": rng.normal(size=(4, 3)).astype(np.float32), "b": rng.normal(size=3).astype(np.float32),
              "zero": np.zeros(3, np.float32)}
    grads = {name: rng.normal(size=value.shape).astype(np.float32) for name, value in params.items()}
    out, _ = orthogonal_gradient().update(grads, optax.EmptyState(), params)
    for name in params:
        ours = np.asarray(out[name], np.float64).ravel()
        np.testing.assert_allclose(ours, numpy_orthogonal(grads[name], params[name]), rtol=2e-5, atol=1e-6)
        np.testing.assert_allclose(np.linalg.norm(ours), np.linalg.norm(grads[name]), rtol=1e-5)  # norm preserved
    for name in ("w", "b"):  # orthogonal to its own parameter (per array, not over all parameters)
        assert abs(np.asarray(out[name]).ravel() @ params[name].ravel()) < 1e-5 * np.linalg.norm(params[name]) * 3
    np.testing.assert_allclose(out["zero"], grads["zero"], rtol=1e-6)  # a zero parameter: the gradient unchanged
    zero_grad, _ = orthogonal_gradient().update({"w": np.zeros(3, np.float32)}, optax.EmptyState(), {"w": np.ones(3, np.float32)})
    np.testing.assert_array_equal(zero_grad["w"], 0)  # no gradient: nothing, not NaN


def test_ortho_grad_runs_before_the_optimizer_and_its_decay():
    """⊥SGD with weight decay: the step is -lr (g_perp + wd w), the decay joining after ⊥Grad."""
    from grokjax.optim import make_optimizer

    w, g = np.array([3.0, 4.0], np.float32), np.array([1.0, 0.0], np.float32)
    optimizer = optax.chain(orthogonal_gradient(), make_optimizer("sgd", 0.1, 0.5))
    step, _ = optimizer.update({"w": g}, optimizer.init({"w": w}), {"w": w})
    expected = -0.1 * (numpy_orthogonal(g, w) + 0.5 * w)
    np.testing.assert_allclose(step["w"], expected, rtol=1e-6)


def test_collapse_zero_loss_and_alignment_on_hand_made_logits():
    """Row 0: a margin of 200 in float32 (every other exp(z - max) is 0: collapsed, loss 0);
    row 1: a margin of 10 (exp(-10) survives: neither); row 2: logits (20, 4, 4), a margin of
    16 whose loss is 0 in float32 though its softmax has not collapsed: 1 + 2 exp(-16) is still
    above 1, but 20 + log of it rounds to 20 (log-sum-exp rounds first)."""
    logits = np.array([[200.0, 0.0, 0.0], [10.0, 0.0, 0.0], [20.0, 4.0, 4.0]], np.float32)
    labels = np.array([0, 0, 0])
    collapsed = (np.exp(logits - logits.max(1, keepdims=True)).sum(1) == 1).astype(np.float32)
    np.testing.assert_array_equal(M.softmax_collapsed(jnp.asarray(logits)), collapsed)
    np.testing.assert_array_equal(collapsed, [1, 0, 0])
    loss = np.asarray(M.per_example_loss("ce", jnp.asarray(logits), jnp.asarray(labels)))
    np.testing.assert_array_equal(loss == 0, [True, False, True])
    with jax.enable_x64(True):  # in float64 neither collapses nor reaches 0 at margin 20
        np.testing.assert_array_equal(M.softmax_collapsed(jnp.asarray(logits[1:], jnp.float64)), [0, 0])
    grads = {"a": np.array([1.0, -2.0], np.float32), "b": np.array([[0.5]], np.float32)}
    params = {"a": np.array([-2.0, 4.0], np.float32), "b": np.array([[3.0]], np.float32)}
    g, w = np.array([1.0, -2.0, 0.5]), np.array([-2.0, 4.0, 3.0])
    assert float(M.naive_loss_alignment(grads, params)) == pytest.approx(-(g @ w) / np.linalg.norm(g) / np.linalg.norm(w), rel=1e-6)


def test_the_counts_of_a_batch_follow_the_loss_precision():
    """A batch's collapsed and zero-loss counts, and the loss itself, in float16, float32 and
    float64 from the same parameters: each precision its own program, each its own numbers."""
    base = dict(m=7, model="mlp", layers=2, hidden=8, batch_size=0, epochs=1, seeds=(0,), wds=(0.0,))
    plan = sweep_plan_from_mapping({**base, "logit_dtype": ["float16", "float32", "float64"]}, "test")
    assert [program.logit_dtype for program in plan.programs] == ["float16", "float32", "float64"]
    model = make_model(plan.programs[0])
    params = model.init(jax.random.key(0), jnp.zeros(1, jnp.int32), jnp.zeros(1, jnp.int32))
    params = jax.tree.map(lambda p: p * 40, params)  # large logits: precision matters
    a, b = np.arange(49) // 7, np.arange(49) % 7
    labels = np.asarray(model.apply(params, a, b)[0]).argmax(1)  # every example right, by a wide margin
    weights = np.ones(49, np.float32)
    results = {}
    with jax.enable_x64(True):
        for program in plan.programs:
            loss, counts = batch_loss(program, params, np.stack([a, b], axis=1), labels, weights)
            logits = np.asarray(model.apply(params, a, b)[0]).astype(program.logit_dtype)
            expected = (np.exp(logits - logits.max(1, keepdims=True)).sum(1) == 1).sum()
            assert float(counts.collapsed) == expected and float(counts.correct) == 49
            results[program.logit_dtype] = (float(loss), float(counts.collapsed), float(counts.zero_loss))
    assert results["float16"][1] >= results["float32"][1] >= results["float64"][1]
    assert len({r[0] for r in results.values()}) == 3  # three precisions, three losses


def test_the_mlp_is_prietos_network():
    """One-hot operands, `layers` hidden layers without biases, PyTorch's default uniform
    initialisation, ReLU: the forward pass against NumPy."""
    config = SweepConfig(m=7, model="mlp", layers=2, hidden=5, seeds=(0,), wds=(0.0,), batch_size=0)
    params = make_model(config).init(jax.random.key(1), jnp.zeros(1, jnp.int32), jnp.zeros(1, jnp.int32))["params"]
    assert {name: {k: v.shape for k, v in layer.items()} for name, layer in params.items()} == {
        "fc1": {"kernel": (14, 5)}, "hidden_1": {"kernel": (5, 5)}, "fc2": {"kernel": (5, 7)}}
    assert np.abs(params["fc1"]["kernel"]).max() <= 1 / np.sqrt(14) and np.abs(params["hidden_1"]["kernel"]).max() <= 1 / np.sqrt(5)
    a, b = np.array([0, 3, 6]), np.array([1, 1, 5])
    x = np.concatenate([np.eye(7)[a], np.eye(7)[b]], axis=1)
    h = np.maximum(x @ params["fc1"]["kernel"], 0)
    h = np.maximum(h @ params["hidden_1"]["kernel"], 0)
    logits, features = make_model(config).apply({"params": params}, a, b)
    np.testing.assert_allclose(features, h, rtol=1e-6)
    np.testing.assert_allclose(logits, h @ params["fc2"]["kernel"], rtol=1e-5, atol=1e-7)
    from grokjax.optim import hidden_matrix_labels  # Muon orthogonalises every hidden matrix, not the output layer

    assert hidden_matrix_labels({"params": params})["params"] == {"fc1": {"kernel": "muon"}, "hidden_1": {"kernel": "muon"},
                                                                 "fc2": {"kernel": "adam"}}


def test_a_sweep_records_the_numerics_metrics():
    """Full batch: the collapse and zero-loss fractions are those of the training set at the
    epoch's step, and the alignment is the step's; a sweep with ⊥Grad and StableMax in float64 runs."""
    config = SweepConfig(m=7, model="mlp", layers=2, hidden=16, batch_size=0, epochs=30, chunk_epochs=30, seeds=(0,),
                         wds=(0.0,), lrs=(0.05,), optimizer="adamw", train_fracs=(0.6,))
    metrics = run_sweep(config).metrics
    for name in ("softmax_collapse", "zero_loss_fraction"):
        assert ((metrics[name] >= 0) & (metrics[name] <= 1)).all()
    assert (np.abs(metrics["nlm_alignment"]) <= 1).all() and metrics["zero_loss_fraction"][0, -1] > 0
    with jax.enable_x64(True):
        stable = run_sweep(SweepConfig(**{**config.to_dict(), "loss": "stablemax", "ortho_grad": True})).metrics
    assert np.isfinite(stable["train_loss"]).all() and stable["zero_loss_fraction"][0, -1] == 0


def test_bad_numerics_settings_are_refused():
    with pytest.raises(ConfigError, match="logit_dtype must be one of auto, float16, bfloat16, float32, float64"):
        SweepConfig(logit_dtype="float8")
    with pytest.raises(ConfigError, match="ortho_grad must be true or false"):
        SweepConfig(ortho_grad="yes")
    with pytest.raises(ConfigError, match="loss ce, ce_log1p or stablemax"):
        SweepConfig(model="transformer", loss="mse")


def test_the_numerics_experiment_reads_folders_into_a_table_and_a_figure(tmp_path, capsys):
    """experiments/numerics.py: one row per program of each folder (here two loss precisions
    by hand-made metrics), with the epochs it reports computed here from the arrays."""
    import importlib.util
    import json
    from pathlib import Path

    from grokjax.results import METRIC_NAMES

    spec = importlib.util.spec_from_file_location("numerics", Path(__file__).parent.parent / "experiments" / "numerics.py")
    numerics = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(numerics)
    folder = tmp_path / "sweep"
    folder.mkdir()
    epochs, runs = 12, 4
    config = {**SweepConfig(epochs=epochs, seeds=(0, 1), wds=(0.0,), logit_dtype="float32").to_dict(),
              "logit_dtype": ["float32", "float64"]}
    (folder / "config.json").write_text(json.dumps({"config": config, "derived": {"n_runs": runs, "n_train": 10}}))
    metrics = {name: np.zeros((runs, epochs), np.float32) for name in METRIC_NAMES}
    metrics["test_acc"][:2, 5:] = 1.0  # the float32 runs generalise at epoch 6
    metrics["softmax_collapse"][:2, 8:] = 0.6  # ... and collapse from epoch 9
    metrics["zero_loss_fraction"][0, 10:] = 0.7  # one of them has most losses at 0 from epoch 11
    np.savez(folder / "metrics.npz", **metrics, seed=np.array([0, 1, 0, 1]), data_seed=np.array([0, 1, 0, 1]),
             wd=np.zeros(runs, np.float32), lr=np.full(runs, 1e-3, np.float32), n_train=np.full(runs, 10),
             logit_dtype=np.array(["float32", "float32", "float64", "float64"]))
    assert numerics.main([str(folder), "--out", str(tmp_path / "out")]) == 0
    table = (tmp_path / "out" / "numerics.md").read_text().splitlines()
    assert table[2] == "| sweep: loss ce, lr 0.001, loss in float32 | 2 | 12 | 6 (2/2) | 9 (2/2) | 11 (1/2) | 1.000 |"
    assert table[3] == "| sweep: loss ce, lr 0.001, loss in float64 | 2 | 12 | never | never | never | 0.000 |"
    assert (tmp_path / "out" / "numerics.png").stat().st_size > 0

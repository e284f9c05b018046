import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from conftest import TINY
from reference import (
    adam_step,
    cross_entropy,
    forward,
    mean_pairwise_cosine,
    singular_value_entropy,
)

from grokjax.config import SweepConfig
from grokjax.data import batch_schedule, make_dataset, random_subset
from grokjax.driver import run_sweep
from grokjax.results import METRIC_NAMES
from grokjax.train import Hparams, epoch_keys, grid_hparams, init_run


def take_run(hparams: Hparams, i: int) -> Hparams:
    return Hparams(*(np.asarray(x)[i : i + 1] for x in hparams))


@pytest.mark.slow
def test_sweep_shapes_and_finite(tiny_config, tiny_sweep):
    assert set(tiny_sweep.metrics) == set(METRIC_NAMES)
    unused = {"train_acc_corrupted", "corrupted_true_acc", "secret_weight_share"}  # no corrupted labels, no parity task
    for name, values in tiny_sweep.metrics.items():
        assert values.shape == (tiny_config.n_runs, tiny_config.epochs), name
        assert np.isnan(values).all() if name in unused else np.isfinite(values).all(), name
    np.testing.assert_array_equal(tiny_sweep.metrics["train_acc_clean"], tiny_sweep.metrics["train_acc"])
    # the grid is seeds x wd x lr with lr fastest
    np.testing.assert_array_equal(tiny_sweep.hparams.seed, [0, 0, 0, 0, 1, 1, 1, 1])
    np.testing.assert_allclose(tiny_sweep.hparams.wd, [0, 0, 1e-2, 1e-2] * 2)
    np.testing.assert_allclose(tiny_sweep.hparams.lr, [1e-2, 3e-3] * 4, rtol=1e-6)
    # the tiny task is learnable: training accuracy rises
    assert (tiny_sweep.metrics["train_acc"][:, -1] > tiny_sweep.metrics["train_acc"][:, 0]).all()


@pytest.mark.slow
def test_vmapped_run_equals_run_trained_alone(tiny_config, tiny_sweep):
    for i in (0, 6):
        alone = run_sweep(tiny_config, hparams=take_run(tiny_sweep.hparams, i))
        for name in ("train_loss", "test_loss", "w1_norm", "grad_norm"):
            np.testing.assert_allclose(alone.metrics[name][0], tiny_sweep.metrics[name][i], rtol=1e-4, err_msg=name)


def test_chunking_does_not_change_results(tiny_config, tiny_sweep):
    # 20 epochs in chunks of 7: three chunks, the last one running past the end.
    chunked = run_sweep(SweepConfig(**{**tiny_config.to_dict(), "chunk_epochs": 7}))
    for name in METRIC_NAMES:
        np.testing.assert_allclose(chunked.metrics[name], tiny_sweep.metrics[name], rtol=1e-5, atol=1e-6, err_msg=name)


def test_same_configuration_same_bits(tiny_config, tiny_sweep):
    again = run_sweep(tiny_config)
    for name in METRIC_NAMES:
        np.testing.assert_array_equal(again.metrics[name], tiny_sweep.metrics[name], err_msg=name)


def reference_training(config: SweepConfig, hp: Hparams, epochs: int) -> dict[str, list[float]]:
    """The study's loop written out by hand: NumPy forward and Adam, JAX only for the
    gradient of a hand-written loss. Same split, initialisation and batch order."""
    dataset = make_dataset(config.m, config.op)
    run_data, state = init_run(config, hp)
    train, test = np.asarray(run_data.train_pairs), np.asarray(run_data.test_pairs)
    trained_labels, corrupted = np.asarray(run_data.train_labels), np.asarray(run_data.train_corrupted) > 0
    params = jax.tree.map(lambda x: np.asarray(x, np.float64), state.params)
    leaves, treedef = jax.tree.flatten(params)
    adam_moments = [(np.zeros_like(x), np.zeros_like(x)) for x in leaves]

    def loss_fn(p, a, b, y):
        p = p["params"]
        x = jnp.concatenate([p["embed"]["embedding"][a], p["embed"]["embedding"][b]], axis=1)
        logits = jax.nn.relu(x @ p["fc1"]["kernel"] + p["fc1"]["bias"]) @ p["fc2"]["kernel"] + p["fc2"]["bias"]
        return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()

    grad_fn = jax.jit(jax.grad(loss_fn))
    history = {name: [] for name in METRIC_NAMES}
    grads_w1, previous_w1, step = [], None, 0
    for epoch in range(epochs):
        order_key, probe_key = epoch_keys(hp, epoch)
        positions, weights = map(np.asarray, batch_schedule(order_key, config.n_train, config.effective_batch))
        loss_sum = correct_sum = collapsed_sum = zero_sum = 0.0
        clean_sum, corrupted_sum, true_sum = 0.0, 0.0, 0.0
        for batch_positions, batch_weights in zip(positions, weights):
            batch_positions = batch_positions[batch_weights > 0]
            index = train[batch_positions]
            a, b, y = dataset.a[index], dataset.b[index], trained_labels[batch_positions]
            logits, _ = forward(params, a, b)
            loss_sum += cross_entropy(logits, y).sum()
            correct_sum += (logits.argmax(1) == y).sum()
            noisy = corrupted[batch_positions]
            clean_sum += (logits.argmax(1) == y)[~noisy].sum()
            corrupted_sum += (logits.argmax(1) == y)[noisy].sum()
            true_sum += (logits.argmax(1) == dataset.label[index])[noisy].sum()
            single = logits.astype(np.float32)  # the loss's precision: the model's
            collapsed_sum += (np.exp(single - single.max(1, keepdims=True)).sum(1) == 1).sum()
            zero_sum += (cross_entropy(single, y) == 0).sum()
            grads = grad_fn(jax.tree.map(jnp.float32, params), a, b, y)
            grad_leaves = [np.asarray(g, np.float64) for g in jax.tree.leaves(grads)]
            step += 1
            leaves = jax.tree.leaves(params)
            flat_g, flat_w = np.concatenate([g.ravel() for g in grad_leaves]), np.concatenate([w.ravel() for w in leaves])
            alignment = -(flat_g @ flat_w) / (np.linalg.norm(flat_g) * np.linalg.norm(flat_w))
            new_leaves = []
            for k, (theta, g) in enumerate(zip(leaves, grad_leaves)):
                theta, m, v = adam_step(theta, g, *adam_moments[k], step, float(hp.lr), float(hp.wd))
                adam_moments[k] = (m, v)
                new_leaves.append(theta)
            params = jax.tree.unflatten(treedef, new_leaves)
            last_grad_w1 = np.asarray(grads["params"]["fc1"]["kernel"], np.float64)
        w1 = params["params"]["fc1"]["kernel"]
        test_logits, _ = forward(params, dataset.a[test], dataset.b[test])
        probe = train[np.asarray(random_subset(probe_key, config.n_train, config.effective_batch))]
        _, features = forward(params, dataset.a[probe], dataset.b[probe])
        grads_w1 = (grads_w1 + [last_grad_w1.ravel()])[-5:]
        history["train_loss"].append(loss_sum / config.n_train)
        history["train_acc"].append(correct_sum / config.n_train)
        history["test_loss"].append(cross_entropy(test_logits, dataset.label[test]).mean())
        history["test_acc"].append((test_logits.argmax(1) == dataset.label[test]).mean())
        history["w1_norm"].append(np.linalg.norm(w1))
        history["w1_delta_norm"].append(0.0 if previous_w1 is None else np.linalg.norm(w1 - previous_w1))
        history["grad_norm"].append(np.linalg.norm(last_grad_w1))
        history["grad_cosine_sim"].append(mean_pairwise_cosine(grads_w1))
        history["feature_diversity"].append(singular_value_entropy(features))
        history["neuron_grad_cosine"].append(mean_pairwise_cosine(last_grad_w1.T, absolute=True))
        history["node_similarity"].append(mean_pairwise_cosine(w1.T))
        history["softmax_collapse"].append(collapsed_sum / config.n_train)
        history["zero_loss_fraction"].append(zero_sum / config.n_train)
        history["nlm_alignment"].append(alignment)
        n_corrupted = corrupted.sum()
        history["train_acc_clean"].append(clean_sum / (config.n_train - n_corrupted))
        history["train_acc_corrupted"].append(corrupted_sum / n_corrupted if n_corrupted else np.nan)
        history["corrupted_true_acc"].append(true_sum / n_corrupted if n_corrupted else np.nan)
        history["secret_weight_share"].append(np.nan)  # the parity task's alone
        previous_w1 = w1
    return history


def test_metrics_match_a_hand_written_training_loop(tiny_config, tiny_sweep):
    run = 6  # seed 1, wd 1e-2, lr 1e-2
    hp = Hparams(*(np.asarray(x)[run] for x in tiny_sweep.hparams))
    epochs = 7  # long enough for a full 5-epoch gradient history
    reference = reference_training(tiny_config, hp, epochs)
    for name in METRIC_NAMES:
        np.testing.assert_allclose(
            tiny_sweep.metrics[name][run, :epochs], reference[name], rtol=2e-4, atol=2e-5, err_msg=name
        )


@pytest.mark.parametrize("label_noise", [0.0, 0.3])
def test_full_batch_matches_hand_written_loop(label_noise):
    config = SweepConfig(**{**TINY, "batch_size": 0, "epochs": 4}, seeds=(0,), wds=(1e-2,), lrs=(1e-2,),
                         label_noises=(label_noise,))
    sweep = run_sweep(config)
    hp = Hparams(*(np.asarray(x)[0] for x in grid_hparams(config)))
    reference = reference_training(config, hp, config.epochs)
    for name in METRIC_NAMES:
        np.testing.assert_allclose(sweep.metrics[name][0], reference[name], rtol=2e-4, atol=2e-5, err_msg=name)


@pytest.mark.slow
def test_run_groups_give_the_same_results(tiny_config, tiny_sweep):
    # 8 runs in groups of 3: padded to 9, looped over 3 groups inside the compiled chunk
    grouped = run_sweep(SweepConfig(**{**tiny_config.to_dict(), "run_group": 3}))
    for name in METRIC_NAMES:
        np.testing.assert_allclose(grouped.metrics[name], tiny_sweep.metrics[name], rtol=1e-5, atol=1e-6, err_msg=name)


LI2_TINY = dict(m=11, hidden=16, model="li2", activation="square", loss="mse", train_fracs=(0.5,), batch_size=0,
                epochs=12, chunk_epochs=4, fourier_every=4, seeds=(0, 1), wds=(0.0, 1e-2), lrs=(1e-2,))


@pytest.mark.slow
def test_li2_training_and_fourier_snapshots(tmp_path):
    """The Li2 network trains through the same code; its snapshots are the Fourier measures
    of the parameters at those epochs (checked on the final and the initial ones), and an
    interrupted sweep resumes with its snapshots."""
    from grokjax import fourier
    from grokjax.driver import SweepInterrupted, snapshot_epochs
    from grokjax.model import operand_weights

    config = SweepConfig(**LI2_TINY)
    sweep = run_sweep(config)
    np.testing.assert_array_equal(snapshot_epochs(config), [0, 4, 8, 12])
    assert sweep.fourier["spectrum"].shape == (4, 4, 16, 5) and sweep.fourier["gini"].shape == (4, 4)
    assert (sweep.metrics["train_loss"][:, -1] < sweep.metrics["train_loss"][:, 0]).all()
    after_4 = run_sweep(SweepConfig(**{**LI2_TINY, "epochs": 4})).state.params  # snapshot 1 is taken after epoch 4
    dataset = make_dataset(config.m, config.op)
    for run in range(config.n_runs):
        hp = Hparams(*(np.asarray(x)[run] for x in grid_hparams(config)))
        run_data, state = init_run(config, hp)
        params_at = {0: state.params, 1: jax.tree.map(lambda x, run=run: x[run], after_4),
                     3: jax.tree.map(lambda x, run=run: x[run], sweep.state.params)}
        for index, params in params_at.items():
            expected = fourier.fourier_summary(*operand_weights(params))
            for name in ("spectrum", "dominant_frequency", "concentration", "mean_concentration", "gini", "distinct_frequencies"):
                np.testing.assert_allclose(sweep.fourier[name][run, index], expected[name], rtol=2e-3, atol=1e-3, err_msg=name)
            # G_F = (Y - centred outputs) V^T over the training pairs, in NumPy
            train = np.asarray(run_data.train_pairs)
            a, b, label = dataset.a[train], dataset.b[train], dataset.label[train]
            p = {name: np.asarray(layer["kernel"], np.float64) for name, layer in params["params"].items()}
            outputs = (p["fc1"][a] + p["fc1"][config.m + b]) ** 2 @ p["fc2"]
            target = np.eye(config.m)[label] - 1 / config.m
            residual = target - (outputs - outputs.mean(axis=1, keepdims=True))
            np.testing.assert_allclose(sweep.fourier["gf_norm"][run, index], np.linalg.norm(residual @ p["fc2"].T), rtol=1e-4)

    # the report draws a Fourier figure per representative run, also when one snapshot is all it shows
    from grokjax import plots, report, results

    results.write_metrics(tmp_path / "metrics.npz", sweep.hparams._asdict(), sweep.metrics)
    results.write_fourier(tmp_path / "fourier.npz", snapshot_epochs(config), sweep.fourier)
    report.write_report(tmp_path, config.to_dict(), sweep.hparams._asdict(), sweep.metrics)
    assert {"fourier_wd0_lr0.01.png", "fourier_wd0.01_lr0.01.png"} <= {p.name for p in (tmp_path / "figures").iterdir()}
    single = {name: values[0] for name, values in sweep.fourier.items()}
    test_acc = sweep.metrics["test_acc"][0]
    fig = plots.fourier_features(np.arange(1, 13), snapshot_epochs(config), single, [3], test_acc, "one")
    heatmap, colour_bar, left, right, signal, left_acc = fig.axes
    # the heatmap of snapshot 3 (after epoch 12): neurons sorted by their final dominant frequency, among
    # equals the more concentrated first
    order = sorted(range(16), key=lambda k: (single["dominant_frequency"][-1][k], -single["concentration"][-1][k]))
    assert order != list(range(16))
    np.testing.assert_array_equal(heatmap.images[0].get_array(), single["spectrum"][3][order])
    assert heatmap.get_title() == f"epoch 12, test acc {test_acc[11]:.2f}\nmean concentration {single['mean_concentration'][3]:.2f}"
    assert heatmap.get_xlabel() == "frequency class f" and colour_bar.get_ylabel() == "share of the neuron's non-constant power"
    # the summaries over the four snapshots, each against test accuracy over the twelve epochs
    drawn = {ax: [(list(line.get_xdata()), list(line.get_ydata())) for line in ax.get_lines()] for ax in (left, right, signal, left_acc)}
    snapshots, epochs = [0, 4, 8, 12], list(range(1, 13))
    assert drawn[left] == [(snapshots, list(single["distinct_frequencies"]))]
    assert drawn[right] == [(snapshots, list(single["mean_concentration"])), (snapshots, list(single["gini"])), (epochs, list(test_acc))]
    assert drawn[signal] == [(snapshots, list(single["gf_norm"]))] and signal.get_yscale() == "log"
    assert drawn[left_acc] == [(epochs, list(test_acc))]
    assert fig.get_suptitle() == "one"
    # in a folder of several widths a narrower run's neurons are padded with NaN: only its own are drawn
    padded = dict(single, spectrum=np.concatenate([single["spectrum"], np.full((4, 4, single["spectrum"].shape[-1]), np.nan)], 1),
                  concentration=np.concatenate([single["concentration"], np.full((4, 4), np.nan)], 1),
                  dominant_frequency=np.concatenate([single["dominant_frequency"], np.ones((4, 4), int)], 1))
    heatmap = plots.fourier_features(np.arange(1, 13), snapshot_epochs(config), padded, [3], test_acc, "one").axes[0]
    np.testing.assert_array_equal(heatmap.images[0].get_array(), single["spectrum"][3][order])

    calls = []
    stop_after_first_chunk = lambda: calls.append(1) or len(calls) == 1  # noqa: E731
    checkpoint = tmp_path / "checkpoint.npz"
    with pytest.raises(SweepInterrupted) as stopped:
        run_sweep(config, checkpoint=checkpoint, stop_requested=stop_after_first_chunk)
    assert stopped.value.next_epoch == 4
    resumed = run_sweep(config, checkpoint=checkpoint)
    for name, values in {**sweep.metrics, **sweep.fourier}.items():
        np.testing.assert_array_equal(resumed.metrics.get(name, resumed.fourier.get(name)), values, err_msg=name)


@pytest.mark.slow
def test_geometry_every_measures_every_nth_epoch(tiny_config, tiny_sweep):
    """--geometry-every 3: the four geometry metrics after epochs 3, 6, ... equal those of the
    every-epoch sweep, NaN between; the other metrics are untouched."""
    from grokjax.results import GEOMETRY_METRICS

    sparse = run_sweep(SweepConfig(**{**tiny_config.to_dict(), "geometry_every": 3}))
    measured = (np.arange(tiny_config.epochs) + 1) % 3 == 0
    for name in METRIC_NAMES:
        if name in GEOMETRY_METRICS:
            assert np.isnan(sparse.metrics[name][:, ~measured]).all(), name
            np.testing.assert_allclose(sparse.metrics[name][:, measured], tiny_sweep.metrics[name][:, measured],
                                       rtol=1e-5, atol=1e-6, err_msg=name)
        else:
            np.testing.assert_allclose(sparse.metrics[name], tiny_sweep.metrics[name], rtol=1e-5, atol=1e-6, err_msg=name)


@pytest.mark.slow
def test_run_group_auto_times_every_size_and_takes_the_fastest(tiny_config, capsys):
    from grokjax.sweep import main, pick_run_group

    config, measured = pick_run_group(tiny_config, candidates=(0, 16, 4))
    assert sorted(measured) == [0, 4] and all(ms > 0 for ms in measured.values())  # 16 >= the 8 runs: skipped
    assert config.run_group == min(measured, key=measured.get)
    assert f"using {config.run_group or 'all'}" in capsys.readouterr().out
    with pytest.raises(SystemExit) as exit_info:
        main(["--run-group", "auto", "--resume", "somewhere"])
    assert exit_info.value.code == 2 and "--run-group auto times a new single-process sweep" in capsys.readouterr().err

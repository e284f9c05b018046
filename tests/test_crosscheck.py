import csv
import itertools
import json
import re
import subprocess
import sys

import jax
import numpy as np
import pytest
import torch
from reference import forward

from grokjax import crosscheck
from grokjax.config import SweepConfig
from grokjax.torch_ref import ModularNet as TorchNet
from grokjax.torch_ref import load_flax_params, study_schedule, train_reference
from grokjax.train import Hparams, grid_hparams, init_run


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "grokjax.crosscheck", *args], capture_output=True, text=True, timeout=600)


def test_flax_parameters_load_into_pytorch():
    config = SweepConfig(m=11, hidden=8, batch_size=16, seeds=(3,), wds=(0.0,))
    hp = Hparams(*(np.asarray(x)[0] for x in grid_hparams(config)))
    _, state = init_run(config, hp)
    model = TorchNet(11, 8)
    load_flax_params(model, state.params)
    x = torch.tensor([[1, 2], [10, 0], [5, 5]])
    expected, _ = forward(state.params, x[:, 0].numpy(), x[:, 1].numpy())
    np.testing.assert_allclose(model(x).detach().numpy(), expected, rtol=1e-5, atol=1e-6)


def test_study_schedule_is_reproducible_and_a_partition():
    first = study_schedule(121, 0.5, 16, seed=4)
    second = study_schedule(121, 0.5, 16, seed=4)
    np.testing.assert_array_equal(first.train_pairs, second.train_pairs)
    assert sorted(np.concatenate([first.train_pairs, first.test_pairs]).tolist()) == list(range(121))
    batches = first.epoch_batches(0)
    assert [len(b) for b in batches] == [16, 16, 16, 12]  # last batch kept partial
    assert sorted(np.concatenate(batches).tolist()) == list(range(60))


def test_reference_history_uses_the_study_keys():
    history = train_reference(11, "add", 8, 3, 1e-2, 1e-3, study_schedule(121, 0.5, 16, seed=0))
    assert set(history) == set(crosscheck.STUDY_KEYS) | {"elapsed"}
    assert all(len(history[key]) == 3 for key in crosscheck.STUDY_KEYS)
    assert history["delta_w_norm_fc1"][0] == 0.0 and history["grad_cosine_sim"][0] == 0.0


@pytest.mark.slow
def test_parity_float64_passes_and_catches_adamw_posing_as_adam(capsys):
    # in this process: float64 holds inside the command's call only (jax.enable_x64)
    args = ["parity", "--m", "11", "--hidden", "8", "--wd", "0.05", "--optimizers", "adam", "--batch-sizes", "16"]
    assert crosscheck.main(args) == 0
    passed = capsys.readouterr().out
    assert "float64: 50 epochs = 200 steps" in passed and "every float64 case agrees" in passed
    assert "batch   16 float32: 3 epochs = 12 steps; largest deviation" in passed
    assert "bound 6.2e-02" in passed  # float32: 1/16, one example's share of a 16-example step
    assert crosscheck.main([*args, "--torch-optimizer", "adamw"]) == 1
    assert "1 float64 case(s) failed" in capsys.readouterr().out
    assert not jax.config.jax_enable_x64  # the process is back in float32


def test_the_float32_bound_is_one_examples_share_of_a_step():
    assert crosscheck.float32_bound(128) == 1 / 128
    assert crosscheck.float32_bound(SweepConfig(batch_size=0).effective_batch) == 1 / 4704


def test_mann_whitney_permutation_against_brute_force():
    assert crosscheck.mann_whitney_permutation([1, 2, 3], [4, 5, 6]) == (0.0, 0.1)  # 2 of 20 splits as extreme
    rng = np.random.default_rng(0)
    x, y = rng.integers(0, 6, 5).astype(float), rng.integers(2, 8, 4).astype(float)
    pooled = np.concatenate([x, y])

    def u(first):
        a, b = pooled[list(first)], np.delete(pooled, list(first))
        return sum((ai > bi) + 0.5 * (ai == bi) for ai in a for bi in b)

    observed = u(range(5))
    null = [u(c) for c in itertools.combinations(range(9), 5)]
    expected_p = np.mean([abs(v - 10) >= abs(observed - 10) - 1e-9 for v in null])
    assert crosscheck.mann_whitney_permutation(x, y) == pytest.approx((observed, expected_p))


def write_json(path, data):
    path.write_text(json.dumps(data))
    return path


def history(epochs=6, **overrides):
    h = {"train_loss": [1.0] * epochs, "train_acc": [0.5] * epochs, "test_loss": [2.0] * epochs,
         "test_acc": [0.1] * epochs, "w_norm_fc1": [3.0] * epochs, "elapsed": 1.5}
    h.update(overrides)
    return h


def test_reads_a_single_run_file_with_its_configuration_from_the_name(tmp_path):
    path = write_json(tmp_path / "grok_mod_full_m97_hd128_lr0.001_wd0.0001_hist.json", {"history": history(), "stage_start": {}})
    (run,) = crosscheck.read_study_histories(path)
    assert (run.m, run.hidden, run.lr, run.wd) == (97, 128, 0.001, 0.0001)
    assert set(run.history) == {"train_loss", "train_acc", "test_loss", "test_acc", "w1_norm"}
    assert np.isnan(run.grok_point)


def test_reads_the_combined_file(tmp_path):
    acc = [0.0] * 60 + [1.0] * 10
    data = {"hist": {"m97_hd32_lr0.0005_wd0.0": history(70, test_acc=acc), "m97_hd64_lr0.001_wd0.0001": history(70, test_acc=acc)},
            "grok_pt": {"m97_hd32_lr0.0005_wd0.0": None, "m97_hd64_lr0.001_wd0.0001": 42}}
    runs = crosscheck.read_study_histories(write_json(tmp_path / "grokking_all_full_hist.json", data))
    assert [(r.hidden, r.lr, r.wd) for r in runs] == [(32, 0.0005, 0.0), (64, 0.001, 0.0001)]
    assert runs[0].grok_point == 61  # computed with the study's rule where the file has none
    assert runs[1].grok_point == 43  # the file's own grok point wins: the study's 0-based index 42 is epoch 43


@pytest.mark.parametrize(
    "name,content,message",
    [
        ("x_m97_hd128_lr0.001_wd0.0001.json", "{not json", "is not valid JSON"),
        ("x_m97_hd128_lr0.001_wd0.0001.json", "[1, 2]", "expected a JSON object"),
        ("results.json", json.dumps(history()), "cannot read the configuration"),
        ("x_m97_hd128_lr0.001_wd0.0001.json", json.dumps({"train_acc": [1.0]}), "has no 'test_acc'"),
        ("x_m97_hd128_lr0.001_wd0.0001.json", json.dumps(history(test_acc=[0.1, "a"])), "'test_acc' must be a non-empty list"),
        ("x_m97_hd128_lr0.001_wd0.0001.json", json.dumps(history(train_acc=[0.5])), "differ in length"),
        ("all.json", json.dumps({"hist": {}}), "'hist' must be a non-empty object"),
        ("all.json", json.dumps({"hist": {"run_a": history()}}), "[run_a]: cannot read the configuration"),
    ],
)
def test_bad_history_files_get_a_clear_error(tmp_path, capsys, name, content, message):
    path = tmp_path / name
    path.write_text(content)
    with pytest.raises(ValueError, match=re.escape(message)):
        crosscheck.read_study_histories(path)
    with pytest.raises(SystemExit) as exited:
        crosscheck.main(["history", str(path), "--out", str(tmp_path / "out")])
    assert exited.value.code == 2
    error = capsys.readouterr().err
    assert error.startswith("python -m grokjax.crosscheck history: error: ") and message in error and error.count("\n") == 1
    assert not (tmp_path / "out").exists()


def test_missing_history_file(tmp_path, capsys):
    with pytest.raises(SystemExit) as exited:
        crosscheck.main(["history", str(tmp_path / "nothing.json")])
    assert exited.value.code == 2 and "no such file" in capsys.readouterr().err


def test_history_end_to_end(tmp_path, capsys):
    """A one-run file: its figure is named after the run's key, not the file."""
    path = write_json(tmp_path / "grok_mod_full_m11_hd8_lr0.01_wd0.001_hist.json", history(8, test_acc=[0.0] * 8))
    out = tmp_path / "out"
    assert crosscheck.main(["history", str(path), "--seeds", "2", "--batch-size", "16", "--out", str(out), "--quiet"]) == 0
    assert "m11_hd8_lr0.01_wd0.001" in capsys.readouterr().out
    assert {p.name for p in out.iterdir()} == {"history_m11_hd8_lr0.01_wd0.001.png", "history.csv", "history.json"}
    with open(out / "history.csv") as f:
        (row,) = list(csv.DictReader(f))
    assert row["grokjax_grokked"] == "0/2" and row["pytorch_grok_epoch"] == "" and row["pytorch_grok_percentile"] == "50"


def test_history_trains_exactly_the_files_configurations():
    """Two runs (wd 0, lr 1e-2) and (wd 1e-3, lr 3e-3): every seed of each, in the file's
    pairing, not the four combinations of their wds and lrs."""
    config = SweepConfig(m=11, hidden=8, batch_size=16, seeds=(0, 1, 2), wds=(0.0, 1e-3), lrs=(3e-3, 1e-2))
    members = [crosscheck.StudyRun("a", 11, 8, 1e-2, 0.0, {}, np.nan), crosscheck.StudyRun("b", 11, 8, 3e-3, 1e-3, {}, np.nan)]
    hparams = crosscheck.file_runs_hparams(config, members)
    np.testing.assert_array_equal(hparams.seed, [0, 0, 1, 1, 2, 2])
    np.testing.assert_allclose(hparams.lr, [1e-2, 3e-3] * 3, rtol=1e-6)
    np.testing.assert_allclose(hparams.wd, [0.0, 1e-3] * 3, rtol=1e-6)
    grid = grid_hparams(config)  # the same seed's split and size as in a sweep
    np.testing.assert_array_equal(hparams.data_seed, hparams.seed)
    assert set(hparams.n_train) == set(grid.n_train)


def test_seeds_end_to_end(tmp_path, capsys, monkeypatch):
    from grokjax import results

    figures = {}
    save = results.save_figure
    monkeypatch.setattr(results, "save_figure", lambda fig, path: figures.setdefault(path.name, fig) and save(fig, path))
    out = tmp_path / "seeds"
    assert crosscheck.main(["seeds", "--m", "11", "--hidden", "8", "--batch-size", "16", "--seeds", "2", "--epochs", "4",
                            "--out", str(out), "--quiet"]) == 0
    assert "verdict:" in capsys.readouterr().out
    record = json.loads((out / "seeds.json").read_text())
    assert set(record["comparison"]) == {"grok_epoch", "final_w1_norm", "final_test_acc"}
    assert len(record["comparison"]["final_w1_norm"]["pytorch"]["values"]) == 2
    combined = json.loads((out / "pytorch_histories.json").read_text())
    assert len(combined["hist"]) == 2 and len(crosscheck.read_study_histories(out / "pytorch_histories.json")) == 2
    # the figure: one panel per compared metric, each framework's runs and median drawn from its own data
    assert (out / "seeds.png").exists()
    panels = [ax for ax in figures["seeds.png"].axes if ax.get_visible()]
    assert [ax.get_title() for ax in panels] == ["test_acc", "train_acc", "w1_norm"]
    ours = np.load(out / "metrics.npz")
    theirs = [combined["hist"][key] for key in sorted(combined["hist"])]
    for ax, name, study_key in zip(panels, ("test_acc", "train_acc", "w1_norm"), ("test_acc", "train_acc", "w_norm_fc1")):
        lines = [line.get_ydata() for line in ax.get_lines()]
        assert len(lines) == 6  # per framework: 2 runs and their median
        np.testing.assert_allclose(lines[:2], ours[name], rtol=1e-6)
        np.testing.assert_allclose(lines[2], np.median(ours[name], axis=0), rtol=1e-6)
        np.testing.assert_allclose(lines[3:5], [h[study_key] for h in theirs], rtol=1e-6)

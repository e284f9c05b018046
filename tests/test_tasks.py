"""The S5 and corrupted-label sweeps end to end, through the command's Python API, and the
figures and tables experiments/tasks.py makes of them."""

import importlib.util
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import grokjax

SCRIPT = Path(__file__).resolve().parents[1] / "experiments" / "tasks.py"
spec = importlib.util.spec_from_file_location("tasks", SCRIPT)
tasks = importlib.util.module_from_spec(spec)
spec.loader.exec_module(tasks)


def test_label_noise_sweep_summary_table_and_figure(tmp_path):
    results = grokjax.run(out=tmp_path / "noise", m=11, hidden=16, batch_size=0, lr=1e-2, wd=[0, 1e-2], label_noise=[0, 0.3],
                          seeds=2, epochs=20, chunk_epochs=10, fourier_every=10, geometry_every=0)
    summary = results.summary
    assert set(summary["noise_phase"]) <= set(tasks.NOISE_PHASES)
    clean = summary["label_noise"] == 0
    assert summary.loc[clean, "final_train_acc_corrupted"].isna().all()
    assert summary.loc[~clean, "final_train_acc_corrupted"].notna().all()
    groups = results.groups
    for _, row in groups.iterrows():
        runs = summary[(summary["label_noise"] == row["label_noise"]) & (summary["wd"] == row["wd"])]
        assert row["n_noise_coexistence"] == (runs["noise_phase"] == "coexistence").sum()
    tasks.label_noise(tmp_path / "noise", shown_noise=0.3)
    table = (tmp_path / "noise" / "label_noise.md").read_text().splitlines()
    assert table[0] == "| label noise | wd 0 | wd 0.01 |" and len(table) >= 4
    assert (tmp_path / "noise" / "label_noise.png").stat().st_size > 0


@pytest.mark.slow
def test_s5_sweep_and_its_comparison_with_addition(tmp_path):
    common = dict(train_frac=[0.3, 0.5], wd=1e-3, seeds=2, epochs=4, chunk_epochs=2, geometry_every=0, hidden=16,
                  batch_size=32)
    grokjax.run(out=tmp_path / "s5", m=120, op=["s5", "s5aba"], **common)
    grokjax.run(out=tmp_path / "add", m=11, **common)
    tasks.s5([tmp_path / "s5"], tmp_path / "add")
    table = (tmp_path / "s5" / "s5.md").read_text().splitlines()
    assert table[0] == ("| training fraction | s5: epoch (seeds); test acc | s5aba: epoch (seeds); test acc | "
                        "add (m 11): epoch (seeds); test acc |")
    groups = pd.read_csv(tmp_path / "s5" / "groups.csv")
    row = groups[(groups["op"] == "s5aba") & np.isclose(groups["train_frac"], 0.5)].iloc[0]
    assert table[3].split(" | ")[2].endswith(f"({row['generalised']}/2); {row['final_test_acc_mean']:.3f}")


PARITY = dict(task="parity", model="mlp", n_bits=12, parity_k=3, n_samples=300, hidden=32, batch_size=0,
              epochs=12, chunk_epochs=6, geometry_every=3)


def test_parity_labels_secret_bits_and_the_weight_share_on_them():
    from grokjax.config import SweepConfig
    from grokjax.driver import run_sweep
    from grokjax.train import grid_hparams, run_dataset

    config = SweepConfig(**PARITY, seeds=(0, 1), data_seeds=(0, 1), wds=(0.0, 1e-2), lrs=(1e-2,))
    sweep = run_sweep(config)
    hparams = grid_hparams(config)
    datasets = {}
    for run in range(config.n_runs):
        hp = type(hparams)(*(np.asarray(x)[run] for x in hparams))
        data = run_dataset(config, hp)
        bits, secret = np.asarray(data.inputs), np.flatnonzero(np.asarray(data.relevant))
        assert bits.shape == (300, 12) and set(np.unique(bits)) == {0, 1} and len(secret) == 3
        np.testing.assert_array_equal(np.asarray(data.label), bits[:, secret].sum(axis=1) % 2)
        datasets.setdefault(int(hp.data_seed), []).append((bits, tuple(secret)))
        # the last epoch's weight share on the secret rows of fc1, from the final parameters
        fc1 = np.asarray(sweep.state.params["params"]["fc1"]["kernel"][run], np.float64)
        squares = (fc1**2).sum(axis=1)
        np.testing.assert_allclose(sweep.metrics["secret_weight_share"][run, -1], squares[list(secret)].sum() / squares.sum(),
                                   rtol=1e-5)
    for same in datasets.values():  # the data seed alone draws the samples and the secret
        assert all(np.array_equal(bits, same[0][0]) and secret == same[0][1] for bits, secret in same)
    assert not np.array_equal(datasets[0][0][0], datasets[1][0][0])
    # runs in groups (each group with its own samples) train as all at once
    grouped = run_sweep(SweepConfig(**{**config.to_dict(), "run_group": 2}))
    for name in ("train_loss", "test_acc", "secret_weight_share"):
        np.testing.assert_allclose(grouped.metrics[name], sweep.metrics[name], rtol=1e-5, atol=1e-6, err_msg=name)


@pytest.mark.slow
def test_parity_folder_reports_and_refuses_the_study_export(tmp_path, capsys):
    from grokjax import export, report

    grokjax.run(out=tmp_path / "parity", **PARITY, wd=[0, 1e-2], lr=1e-2, seeds=2)
    assert report.main([str(tmp_path / "parity")]) == 0
    assert (tmp_path / "parity" / "figures" / "overview.png").exists()
    record = report.load_sweep(tmp_path / "parity")[0]
    assert report.sweep_title(record["config"]).startswith("parity of 3 of 12 bits, 300 samples, mlp 1 x hidden 32")
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_info:
        export.main([str(tmp_path / "parity"), "--format", "study", "--out", str(tmp_path / "study")])
    captured = capsys.readouterr()
    assert exit_info.value.code == 2 and "trains the parity task" in captured.err and captured.err.count("\n") == 1
    assert not (tmp_path / "study").exists()


@pytest.mark.parametrize("args,message", [
    (["--task", "parity", "--model", "modularnet"], "the parity task trains an MLP on the bits: model mlp"),
    (["--task", "parity", "--model", "mlp", "--n-bits", "2", "--parity-k", "3"], "cannot be drawn from n_bits 2"),
    (["--task", "parity", "--model", "mlp", "--n-bits", "8", "--n-samples", "300"], "exceeds the 256 distinct inputs"),
    (["--task", "parity", "--model", "mlp", "--op", "s5", "--m", "120"], "the parity task has none"),
    (["--task", "parity", "--model", "mlp", "--fourier-every", "10"], "the parity task has none"),
])
def test_parity_refuses_what_it_cannot_train(args, message, tmp_path, capsys):
    from grokjax import sweep

    with pytest.raises(SystemExit) as exit_info:
        sweep.main([*args, "--out", str(tmp_path / "out")])
    captured = capsys.readouterr()
    assert exit_info.value.code == 2 and captured.err.count("\n") == 1 and message in captured.err
    assert not (tmp_path / "out").exists()


def test_the_dashboard_draws_a_task_s_own_curves_with_the_accuracies():
    from grokjax import plots

    epochs = 6
    base = {name: np.linspace(0.1, 0.9, epochs) for name in ("train_acc", "test_acc", "train_loss", "test_loss", "w1_norm",
                                                                "w1_delta_norm", "grad_norm", "grad_cosine_sim",
                                                                "feature_diversity", "neuron_grad_cosine")}
    labels = np.ones(epochs, np.int8)
    clean = dict(base, train_acc_corrupted=np.full(epochs, np.nan), secret_weight_share=np.full(epochs, np.nan))
    noisy = dict(clean, train_acc_corrupted=np.linspace(0, 1, epochs), corrupted_true_acc=np.linspace(1, 0, epochs))
    drawn = {name: [line.get_label() for line in plots.dashboard(run, labels, np.nan, 2, "t", "s").axes[0].get_lines()]
             for name, run in (("clean", clean), ("noisy", noisy))}
    assert drawn["clean"] == ["train", "test"]
    assert drawn["noisy"] == ["train", "test", "train, corrupted examples", "corrupted given their true label"]
    line = plots.dashboard(noisy, labels, np.nan, 2, "t", "s").axes[0].get_lines()[3]
    np.testing.assert_array_equal(line.get_ydata(), noisy["corrupted_true_acc"])

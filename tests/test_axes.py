"""Sweeps over more axes: lists for static flags (one compiled program per combination),
training fractions traced per run in minibatch mode, the study-grid preset, the study's
file format as an output, and the refusals of bad lists."""

import dataclasses
import json

import numpy as np
import pytest
from conftest import TINY

from grokjax import crosscheck, export, report, results, sweep
from grokjax.config import ConfigError, SweepConfig, sweep_plan_from_mapping
from grokjax.driver import SweepInterrupted, run_sweep, train_plan
from grokjax.results import METRIC_NAMES
from grokjax.train import grid_hparams

SMALL = {**TINY, "hidden": 8, "epochs": 8, "chunk_epochs": 4, "seeds": (0, 1), "wds": (1e-2,), "lrs": (1e-2,)}


@pytest.fixture(scope="module")
def two_axis_plan():
    return sweep_plan_from_mapping({**SMALL, "hidden": [8, 12], "optimizer": ["adam", "adamw"], "fourier_every": 4}, "test")


@pytest.fixture(scope="module")
def two_axis_result(two_axis_plan):
    return train_plan(two_axis_plan)


@pytest.mark.slow
def test_static_lists_make_one_program_per_combination(two_axis_plan, two_axis_result):
    plan, trained = two_axis_plan, two_axis_result
    assert plan.axes == ("hidden", "optimizer")
    assert [(p.hidden, p.optimizer) for p in plan.programs] == [(8, "adam"), (8, "adamw"), (12, "adam"), (12, "adamw")]
    assert plan.n_runs == 8 and plan.to_dict()["hidden"] == [8, 12]
    coords = trained.coordinates
    np.testing.assert_array_equal(coords["hidden"], [8, 8, 8, 8, 12, 12, 12, 12])
    np.testing.assert_array_equal(coords["optimizer"], ["adam", "adam", "adamw", "adamw"] * 2)
    np.testing.assert_array_equal(coords["seed"], [0, 1] * 4)
    assert [info["hidden"] for info in trained.programs] == [8, 8, 12, 12]
    assert all(info["train_seconds"] > 0 and info["n_runs"] == 2 for info in trained.programs)
    # each program's rows are that program trained on its own; narrower programs' neurons padded with NaN
    spectrum = trained.fourier["spectrum"]
    assert spectrum.shape == (8, 3, 12, 5)  # snapshots at epochs 0, 4, 8; 12 neurons; 11 // 2 frequencies
    for index in (1, 2):
        alone = run_sweep(plan.programs[index])
        rows = slice(2 * index, 2 * index + 2)
        for name in METRIC_NAMES:
            np.testing.assert_array_equal(trained.metrics[name][rows], alone.metrics[name], err_msg=name)
        hidden = plan.programs[index].hidden
        np.testing.assert_array_equal(spectrum[rows, :, :hidden], alone.fourier["spectrum"])
        assert np.isnan(spectrum[rows, :, hidden:]).all()
        np.testing.assert_array_equal(trained.fourier["gini"][rows], alone.fourier["gini"])
    # the optimizers really differ: decoupled and coupled decay give other weights
    assert not np.allclose(trained.metrics["w1_norm"][0], trained.metrics["w1_norm"][2])


def test_an_interrupted_plan_resumes_past_its_finished_programs(two_axis_plan, two_axis_result, tmp_path):
    plan = dataclasses.replace(two_axis_plan, programs=two_axis_plan.programs[:2])
    calls = []

    def stop_in_second_program():
        calls.append(1)
        return len(calls) >= 2  # from the first program's last chunk on, which ends it anyway

    with pytest.raises(SweepInterrupted) as stopped:
        train_plan(plan, tmp_path, stop_requested=stop_in_second_program)
    assert "program 2/2" in stopped.value.program
    assert {p.name for p in tmp_path.iterdir()} == {"program-0.npz", "checkpoint-1.npz"}
    resumed = train_plan(plan, tmp_path)
    for name in METRIC_NAMES:
        np.testing.assert_array_equal(resumed.metrics[name], two_axis_result.metrics[name][:4], err_msg=name)
    results.remove_partial_files(tmp_path)
    assert not any(tmp_path.iterdir())


@pytest.mark.slow
def test_a_run_in_a_multi_fraction_minibatch_sweep_equals_it_trained_alone():
    """Each run's epoch is a shuffled pass over its own training set: a smaller set skips
    the steps past its last batch and tests on every pair it does not train on."""
    base = SweepConfig(**{**SMALL, "epochs": 12, "chunk_epochs": 12})
    fractions = (0.3, 0.5, 0.7)  # 36, 60, 84 of 121 pairs; batch 16: 3, 4, 6 steps
    multi = run_sweep(dataclasses.replace(base, train_fracs=fractions))
    assert multi.hparams.n_train.tolist() == [36, 60, 84, 36, 60, 84]
    for k, frac in enumerate(fractions):
        alone = run_sweep(dataclasses.replace(base, train_fracs=(frac,)))
        for name in METRIC_NAMES:
            np.testing.assert_allclose(multi.metrics[name][k::3], alone.metrics[name], rtol=5e-4, atol=2e-6, err_msg=name)
    # the runs learn: the smallest set is memorised fastest
    assert multi.metrics["train_acc"][0, -1] > multi.metrics["train_acc"][0, 0]


def test_grid_order_and_data_seed_lists():
    config = SweepConfig(**{**SMALL, "seeds": (0, 1), "data_seeds": (5, 6), "train_fracs": (0.3, 0.5), "wds": (0.0, 1e-2)})
    hp = grid_hparams(config)
    assert config.n_runs == 16 == len(hp.seed)
    assert hp.seed.tolist() == [0] * 8 + [1] * 8
    assert hp.data_seed.tolist() == ([5] * 4 + [6] * 4) * 2
    assert hp.n_train.tolist() == [36, 36, 60, 60] * 4
    np.testing.assert_allclose(hp.wd, [0, 1e-2] * 8)


def test_study_grid_preset():
    plan = sweep_plan_from_mapping({"preset": "study-grid"}, "test")
    assert plan.axes == ("hidden",) and [p.hidden for p in plan.programs] == [32, 64, 128]
    first = plan.programs[0]
    assert (first.lrs, first.wds, first.epochs, first.seeds) == ((1e-3, 5e-4), (0.0, 1e-4), 1000, (0,))
    assert (first.m, first.batch_size, first.optimizer, first.train_fracs) == (97, 128, "adam", (0.5,))
    assert sweep_plan_from_mapping({"preset": "study-grid", "seeds": 8}, "test").n_runs == 96


@pytest.mark.parametrize("mapping,message", [
    ({"hidden": [8, 8]}, "hidden lists 8 twice"),
    ({"wds": [1e-3, 1e-3]}, "wds lists 0.001 twice"),
    ({"optimizer": []}, "optimizer is an empty list"),
    ({"optimizer": ["adam", "rmsprop"]}, "optimizer rmsprop: optimizer must be one of adam, adamw, sgd"),
    ({"train_fracs": [0.5, 1.0]}, "train_fracs must lie strictly between 0 and 1, got 1.0"),
    ({"train_fracs": [0.001, 0.5]}, "leaves 0 train"),
    ({"train_fracs": [0.1, 0.5]}, "batch_size 16 exceeds the 12 training pairs of train_frac 0.1"),
    ({"train_fracs": [0.5, 0.501]}, "give the training-set sizes 60, 60"),
    ({"batch_size": [16, 100]}, "batch_size 100: batch_size 100 exceeds the 60 training pairs"),
])
def test_bad_lists_name_the_field_and_value(mapping, message):
    with pytest.raises(ConfigError) as error:
        sweep_plan_from_mapping({**SMALL, **mapping}, "the command line")
    assert message in str(error.value)


@pytest.mark.parametrize("flags,message", [
    (["--hidden", "8,8"], "hidden lists 8 twice"),
    (["--hidden", ""], "expected comma-separated integers"),
    (["--optimizer", "adam,rmsprop"], "optimizer must be one of adam, adamw, sgd, muon, got 'rmsprop'"),
    (["--train-frac", "0.1,0.5"], "batch_size 16 exceeds the 12 training pairs of train_frac 0.1"),
    (["--data-seed", "1,1"], "data_seeds lists 1 twice"),
    (["--hidden", "8,16", "--run-group", "auto"], "--run-group auto times one program; this sweep has 2"),
])
def test_the_command_refuses_bad_lists_before_writing(flags, message, tmp_path, capsys):
    out = tmp_path / "never"
    with pytest.raises(SystemExit) as stopped:
        sweep.main(["--m", "11", "--batch-size", "16", "--epochs", "4", "--quiet", "--out", str(out), *flags])
    assert stopped.value.code == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1
    assert not out.exists()


def test_the_command_writes_one_folder_for_all_programs(two_program_folder):
    out = two_program_folder
    assert {p.name for p in out.iterdir()} == {"config.json", "metrics.npz", "summary.csv", "groups.csv", "stages.npz",
                                               "delay_fit.json", "figures"}
    record = json.loads((out / "config.json").read_text())
    assert record["config"]["hidden"] == [8, 12] and record["config"]["train_fracs"] == [0.3, 0.5]
    assert [p["hidden"] for p in record["programs"]] == [8, 12]
    assert [p["n_train"] for p in record["derived"]["programs"]] == [60, 60]
    with np.load(out / "metrics.npz") as data:
        assert data["test_acc"].shape == (8, 6)
        assert data["hidden"].tolist() == [8] * 4 + [12] * 4
        assert data["train_frac"].tolist() == [0.3, 0.5] * 4
    groups = (out / "groups.csv").read_text().splitlines()
    assert groups[0].startswith("hidden,train_frac,wd,lr,runs,") and len(groups) == 5
    assert groups[1].startswith("8,0.3,0.01,0.01,2,")
    figures = {p.name for p in (out / "figures").iterdir()}
    assert "dashboard_wd0.01_lr0.01_hidden12_train_frac0.3.png" in figures
    assert figures - {name for name in figures if name.startswith("dashboard_")} == {"overview.png", "delay_vs_wd.png",
                                                                                     "train_frac.png"}
    assert len(figures) == 4 + 3


@pytest.mark.slow
def test_report_draws_along_any_axis(two_program_folder, tmp_path, capsys):
    copy = tmp_path / "copy"
    copy.mkdir()
    for name in ("config.json", "metrics.npz"):
        (copy / name).write_bytes((two_program_folder / name).read_bytes())
    assert report.main([str(copy), "--x", "train_frac", "--y", "hidden"]) == 0
    assert "hidden train_frac       wd       lr" in capsys.readouterr().out
    assert {"epochs_vs_train_frac.png", "phase_hidden_train_frac.png"} <= {p.name for p in (copy / "figures").iterdir()}
    for flags, message in ((["--x", "optimizer"], "--x optimizer: not a numeric axis of this sweep (it varies hidden, "
                                                  "train_frac, wd, lr)"),
                           (["--y", "hidden"], "--y draws a phase diagram over two axes")):
        with pytest.raises(SystemExit) as stopped:
            report.main([str(copy), *flags])
        assert stopped.value.code == 2 and message in capsys.readouterr().err


def test_epochs_against_an_axis_draw_medians_and_mark_never():
    from grokjax import plots

    summary = {"wd": np.full(8, 1e-3), "lr": np.full(8, 1e-3), "train_frac": np.repeat([0.2, 0.4, 0.6, 0.8], 2),
               "diverged_epoch": np.full(8, np.nan),
               "generalised_epoch": np.array([np.nan, np.nan, 300, 500, 150, 250, np.nan, 90]),
               "generalised": np.array([0, 0, 1, 1, 1, 1, 0, 1]),
               "mem_epoch": np.array([20, 22, 30, 34, 40, 44, 50, 54], float)}
    fig = plots.epochs_vs_axis(summary, ("train_frac", "wd", "lr"), "train_frac",
                               {"generalised_epoch": "95% test", "mem_epoch": "99% train"}, "test")
    (ax,) = fig.axes
    lines = {container.get_label(): container.lines[0] for container in ax.containers}  # errorbar: data line first
    test_line = lines["95% test, wd 0.001, lr 0.001"]
    np.testing.assert_array_equal(test_line.get_xdata(), [0.4, 0.6, 0.8])
    np.testing.assert_array_equal(test_line.get_ydata(), [400, 200, 90])
    np.testing.assert_array_equal(lines["99% train, wd 0.001, lr 0.001"].get_ydata(), [21, 32, 42, 52])
    marks = [line for line in ax.get_lines() if line.get_marker() == "x" and len(line.get_xdata())]
    assert [line.get_xdata()[0] for line in marks] == [0.2]  # nobody at 0.2 generalised
    assert {text.get_text() for text in ax.texts} == {"1/2"}  # one of two seeds at 0.8


def test_study_export_reads_back_through_the_crosscheck(tmp_path):
    config = SweepConfig(**{**SMALL, "epochs": 60, "chunk_epochs": 60, "seeds": (0, 1), "wds": (1e-4, 1e-3),
                            "lrs": (1e-3,)})
    trained = run_sweep(config)
    # a hand-made grokking curve for run 1, so that grok_pt has a value to carry
    metrics = {name: values.copy() for name, values in trained.metrics.items()}
    metrics["test_acc"][1] = np.where(np.arange(60) >= 54, 0.97, 0.2)
    # run 2 measured every 5 epochs (--eval-every 5): its grokking point reads the held measurements
    metrics["test_acc"][2] = np.where(np.arange(60) % 5 == 4, np.where(np.arange(60) >= 54, 0.97, 0.2), np.nan)
    keys = export.export_study(config.to_dict(), trained.hparams._asdict(), metrics, tmp_path)
    assert keys[:2] == ["m11_hd8_lr0.001_wd0.0001_seed0", "m11_hd8_lr0.001_wd0.001_seed0"]
    single = json.loads((tmp_path / "grok_mod_full_m11_hd8_lr0.001_wd0.001_seed0_hist.json").read_text())
    assert list(single) == list(export.STUDY_HISTORY_KEYS)
    combined = json.loads((tmp_path / "grokking_all_full_hist.json").read_text())
    assert combined["grok_pt"]["m11_hd8_lr0.001_wd0.001_seed0"] == 54  # 0-based index of epoch 55
    assert combined["grok_pt"]["m11_hd8_lr0.001_wd0.0001_seed0"] is None
    assert combined["grok_pt"]["m11_hd8_lr0.001_wd0.0001_seed1"] == 54
    runs = crosscheck.read_study_histories(tmp_path / "grokking_all_full_hist.json")
    assert [run.key for run in runs] == keys
    assert [(run.m, run.hidden, run.lr, run.wd) for run in runs[:2]] == [(11, 8, 0.001, 0.0001), (11, 8, 0.001, 0.001)]
    assert runs[1].grok_point == 55 and np.isnan(runs[0].grok_point)
    for run, index in zip(runs, range(len(keys))):
        for name, values in run.history.items():
            np.testing.assert_allclose(values, metrics[name][index], rtol=1e-7, err_msg=name)


@pytest.mark.slow
def test_report_loads_the_axes_of_a_folder(tmp_path):
    plan = sweep_plan_from_mapping({**SMALL, "hidden": [8, 12], "epochs": 4}, "test")
    trained = train_plan(plan)
    results.write_metrics(tmp_path / "metrics.npz", trained.coordinates, trained.metrics)
    results.write_config(tmp_path / "config.json", plan, "test")
    record, coordinates, metrics = report.load_sweep(tmp_path)
    assert coordinates["hidden"].tolist() == [8, 8, 12, 12]
    np.testing.assert_array_equal(metrics["test_acc"], trained.metrics["test_acc"])


@pytest.mark.slow
def test_a_loss_axis_reports_with_each_runs_own_loss_in_its_dashboard(tmp_path):
    """Several losses in one folder: each dashboard names its run's loss (a list in the
    configuration once broke the report after training)."""
    import grokjax
    from grokjax import report

    grokjax.run(out=tmp_path / "losses", m=7, hidden=8, batch_size=0, loss=["ce", "mse"], wd=0, seeds=1, epochs=3,
                geometry_every=0)
    record, coordinates, metrics = report.load_sweep(tmp_path / "losses")
    analysed = report.write_report(tmp_path / "losses", record["config"], coordinates, metrics)
    titles = [report.dashboard_figure(record["config"], metrics, analysed, run).axes[1].get_title() for run in (0, 1)]
    assert titles == ["cross-entropy loss", "centred MSE loss"]

"""experiments/own_settings.py: steps to 95 % and the fair-baseline ratios of grokfast's
setting, Lyu et al.'s delay-law times and fits, and the optimizers' best cells, against hand
computations."""

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest

from grokjax import sweep
from grokjax.report import load_sweep

EXPERIMENTS = Path(__file__).resolve().parents[1] / "experiments"
sys.path.insert(0, str(EXPERIMENTS))  # the script imports its sibling interventions.py
spec = importlib.util.spec_from_file_location("own_settings", EXPERIMENTS / "own_settings.py")
own = importlib.util.module_from_spec(spec)
spec.loader.exec_module(own)


def made_up_runs(**columns) -> dict[str, np.ndarray]:
    n = len(next(iter(columns.values())))
    base = {"filter": np.full(n, "none", object), "lambda": np.zeros(n), "wd": np.zeros(n), "lr": np.full(n, 1e-3),
            "seed": np.arange(n) % 4, "budget": np.full(n, 3000.0), "every": np.full(n, 10)}
    return {**base, **{name: np.asarray(values, object if name == "filter" else float) for name, values in columns.items()}}


def test_grokfast_ratios_are_paired_by_seed_and_censored_references_are_lower_bounds():
    runs = made_up_runs(filter=["ema"] * 4 + ["none"] * 8, **{"lambda": [2.0] * 4 + [0.0] * 8},
                        wd=[0.005] * 8 + [0.0] * 4, lr=[1e-3] * 4 + [3e-3] * 4 + [1e-3] * 4,
                        seed=[0, 1, 2, 3] * 3,
                        steps=[100, 200, 400, 800,  # the filter
                               300, 400, 1200, np.nan,  # no filter, lr x 3: seed 3 never got there (budget 3000)
                               np.nan, np.nan, np.nan, np.nan])
    filtered = np.arange(4)
    missed = {**runs, "steps": np.where(np.arange(12) == 3, np.nan, runs["steps"])}  # the filter's seed 3 never got there
    assert own.paired_ratio(missed, filtered, np.arange(4, 8)) == "3.0 [2.0–3.0] (3 seeds; 1 filtered run never got there)"
    # seed by seed: 300/100, 400/200, 1200/400, 3000/800 (censored at the budget) -> 3, 2, 3, 3.75
    assert own.paired_ratio(runs, filtered, np.arange(4, 8)).startswith("≥ 3.0 [")
    assert own.paired_ratio(runs, filtered, np.arange(8, 12)).startswith("≥ 11.2 [")  # 30, 15, 7.5, 3.75
    table = own.grokfast_table({**runs, "curve": own.one_per_run([np.array([0.0, 1.0])] * 12)})
    # no unfiltered cell at the filter's wd and lr; the other two references paired as above
    assert "| ema λ 2, wd 0.005, lr 0.001 | not run | ≥ 3.0 [" in table and "| ≥ 11.2 [" in table
    assert "| no filter, wd 0.005, lr 0.003 | 3/4 | 400 [" in table


def test_delay_fits_recover_the_law_from_times_that_follow_it():
    alphas, wds = np.array([10.0, 30.0, 100.0]), np.array([1e-3, 2e-3, 4e-3])
    grid = np.array([(a, wd, seed) for a in alphas for wd in wds for seed in range(3)])
    rng = np.random.default_rng(0)
    t = (np.log(grid[:, 0]) + 1.5) / grid[:, 1] * (1 + 0.01 * rng.standard_normal(len(grid)))
    runs = {"alpha": grid[:, 0], "wd": grid[:, 1], "t_0.5": t / 2, "t_0.95": t}
    fits = own.delay_fits(runs)
    for wd in wds:
        line = fits[0.95]["alpha"][wd]
        assert abs(wd * line["slope"] - 1) < 0.05 and line["slope_low"] <= line["slope"] <= line["slope_high"]
    for alpha in alphas:
        law = fits[0.95]["wd"][alpha]
        assert abs(law["alpha"] - 1) < 0.02
    # times of 1/λ alone (no log α) give slope 0 over log α
    flat = own.delay_fits({**runs, "t_0.95": 1 / grid[:, 1]})
    assert abs(flat[0.95]["alpha"][1e-3]["slope"]) < 1e-6
    # the law from α 30 on only: the local slopes say from where it holds, the overall fit cannot
    late = np.where(grid[:, 0] == 10, (np.log(30) + 1.5) / grid[:, 1], t)
    fits = own.delay_fits({**runs, "t_0.95": late})
    (low, high, first), (_, _, second) = fits[0.95]["alpha_pairs"][2e-3]
    assert (low, high) == (10, 30) and abs(2e-3 * first["slope"]) < 0.1 and abs(2e-3 * second["slope"] - 1) < 0.1
    assert abs(2e-3 * fits[0.95]["alpha"][2e-3]["slope"] - 1) > 0.2
    # and the exponent over λ between each pair of neighbouring weight decays: 1 where the times follow the law
    for alpha in (30.0, 100.0):
        assert [(low, high) for low, high, _ in fits[0.95]["wd_pairs"][alpha]] == [(1e-3, 2e-3), (2e-3, 4e-3)]
        assert all(abs(law["alpha"] - 1) < 0.05 for _, _, law in fits[0.95]["wd_pairs"][alpha])


def test_each_optimizer_is_compared_at_its_own_best_cell_and_cell_by_cell():
    epochs = [[40, 50, 60, 70], [30, np.nan, 30, 30],  # adamw lr 1e-3: 4/4; lr 1e-2: 3/4 (earlier, but fewer)
              [20, 25, 20, 35], [80, 100, 90, 140]]  # muon lr 1e-3, lr 1e-2
    runs = {"optimizer": np.repeat(["adamw", "muon"], 8), "wd": np.ones(16), "lr": np.tile(np.repeat([1e-3, 1e-2], 4), 2),
            "seed": np.tile(np.arange(4), 4), "epoch": np.ravel(epochs), "budget": np.full(16, 3000.0),
            "curve": own.one_per_run([np.array([0.0, 1.0])] * 16)}
    runs["steps"] = runs["epoch"] * 10
    assert own.best_cell(runs, "adamw") == ("adamw", 1.0, 1e-3) and own.best_cell(runs, "muon") == ("muon", 1.0, 1e-3)
    table = own.optimizers_table(runs)
    # best against best, seed by seed 40/20, 50/25, 60/20, 70/35: 2, 2, 3, 2
    assert "Speed-up, best cell against best cell: 2.0 [2.0–" in table
    # lr 1e-2: 30/80, 3000/100 (adamw's seed 1 censored at its budget), 30/90, 30/140
    assert "| 1 | 0.01 | ≥ 0.4 [" in table and "| adamw | 1 | 0.01 | 3/4 | 30 [30–30] | 300 |" in table
    runs["epoch"][12:] = np.nan  # muon at lr 1e-2 never got there: counted beside the ratio
    runs["steps"] = runs["epoch"] * 10
    assert "| 1 | 0.01 | – |" in own.optimizers_table(runs)


@pytest.mark.slow
def test_the_times_are_read_from_the_folders_as_numpy_finds_them(tmp_path, monkeypatch):
    # thresholds these tiny runs reach (test accuracy measured every 3 epochs, NaN between)
    monkeypatch.setattr(own, "DELAY_THRESHOLDS", (0.0, 0.01))
    out = tmp_path / "lyu"
    assert sweep.main(["--model", "li2", "--m", "11", "--hidden", "64", "--batch-size", "0", "--optimizer", "sgd", "--lr", "0.5",
                       "--wd", "1e-3,3e-3", "--init-scale", "4,8", "--zero-output-init", "--seeds", "2", "--epochs", "100",
                       "--eval-every", "3", "--geometry-every", "0", "--quiet", "--out", str(out)]) == 0
    runs = own.delay_runs([out])
    _, coordinates, metrics = load_sweep(out)
    for r in range(len(runs["seed"])):
        test = np.nan_to_num(metrics["test_acc"][r], nan=-1)
        for q in own.DELAY_THRESHOLDS:
            hits = np.flatnonzero(test >= q)
            expected = (hits[0] + 1) * 0.5 if len(hits) else np.nan
            np.testing.assert_equal(runs[f"t_{q:g}"][r], expected)
        assert runs["t_0"][r] == 3 * 0.5  # the first measured epoch
        memorised = np.flatnonzero(metrics["train_acc"][r] >= 0.99)
        np.testing.assert_equal(runs["t_mem"][r], (memorised[0] + 1) * 0.5 if len(memorised) else np.nan)
        assert runs["alpha"][r] == coordinates["init_scale"][r] and runs["wd"][r] == coordinates["wd"][r]
    assert np.isfinite(runs["t_mem"]).all()  # every run memorised: the check above compared numbers

    grokfast = tmp_path / "grokfast"
    assert sweep.main(["--m", "11", "--hidden", "8", "--batch-size", "16", "--grokfast", "ema", "--grokfast-lambda", "0,2",
                       "--wd", "1e-2", "--lr", "1e-2", "--seeds", "2", "--epochs", "30", "--geometry-every", "0", "--quiet",
                       "--out", str(grokfast)]) == 0
    longer = tmp_path / "longer"  # the unfiltered runs again, longer: they replace the λ-0 runs of the first folder
    assert sweep.main(["--m", "11", "--hidden", "8", "--batch-size", "16", "--wd", "1e-2", "--lr", "1e-2", "--seeds", "2",
                       "--epochs", "40", "--geometry-every", "0", "--quiet", "--out", str(longer)]) == 0
    both = own.grokfast_runs([grokfast, longer])
    assert len(both["seed"]) == 4 and sorted(both["budget"]) == [120, 120, 160, 160]
    assert set(both["filter"][both["budget"] == 160]) == {"none"} and set(both["every"].tolist()) == {4}
    with pytest.raises(ValueError, match="varies init_scales"):  # an axis the cells do not name
        own.grokfast_runs([grokfast, tmp_path / "lyu"])
    runs = own.grokfast_runs([grokfast])
    _, coordinates, metrics = load_sweep(grokfast)
    per_epoch = -(-int(0.5 * 121) // 16)  # 60 training pairs in batches of 16: 4 steps an epoch
    for r in range(len(runs["seed"])):
        hits = np.flatnonzero(metrics["test_acc"][r] >= 0.95)
        np.testing.assert_equal(runs["steps"][r], (hits[0] + 1) * per_epoch if len(hits) else np.nan)
        assert runs["filter"][r] == ("ema α 0.98" if coordinates["grokfast_lambda"][r] > 0 else "none")
    assert runs["budget"][0] == 30 * per_epoch

    optimizers = tmp_path / "optimizers"
    assert sweep.main(["--m", "11", "--hidden", "8", "--batch-size", "16", "--optimizer", "adamw,muon", "--wd", "1e-2",
                       "--lr", "1e-2,3e-2", "--seeds", "2", "--epochs", "30", "--geometry-every", "0", "--quiet",
                       "--out", str(optimizers)]) == 0
    runs, _ = own.optimizer_runs(optimizers)
    _, coordinates, metrics = load_sweep(optimizers)
    for r in range(len(runs["seed"])):
        hits = np.flatnonzero(metrics["test_acc"][r] >= 0.95)
        np.testing.assert_equal(runs["epoch"][r], hits[0] + 1 if len(hits) else np.nan)
        assert runs["steps"][r] == runs["epoch"][r] * per_epoch or np.isnan(runs["epoch"][r])
        assert runs["optimizer"][r] == coordinates["optimizer"][r]
    with pytest.raises(ValueError, match="no optimizer axis"):
        own.optimizer_runs(grokfast)

"""experiments/scaling_law.py: the size grid, the 50 % crossing and the law fits on made-up
numbers, and one tiny masked sweep against runs trained on their own."""

import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import pytest

from grokjax.driver import run_sweep
from grokjax.train import grid_hparams

SCRIPT = Path(__file__).resolve().parents[1] / "experiments" / "scaling_law.py"
spec = importlib.util.spec_from_file_location("scaling_law", SCRIPT)
scaling = importlib.util.module_from_spec(spec)
sys.modules[spec.name] = scaling  # dataclasses look the module up while building the config class
spec.loader.exec_module(scaling)


def test_train_sizes_are_multiples_of_m_ln_m_capped():
    config = scaling.ScalingConfig(ratios=(0.5, 1.0, 3.0))
    # 2.7482 * 23 * ln 23 = 198.19: sizes 99, 198, and 595 capped at int(0.9 * 529) = 476
    np.testing.assert_array_equal(scaling.train_sizes(23, config), [99, 198, 476])
    sweep = scaling.sweep_config(23, scaling.train_sizes(23, config), config)
    assert (sweep.n_train, sweep.n_train_min, sweep.n_test) == (476, 99, 529 - 99)
    assert sweep.model == "li2" and sweep.loss == "mse" and sweep.batch_size == 0


def test_critical_size_interpolates_in_log_n():
    sizes = np.array([100, 200, 400, 800])
    # 0.2 at 200 and 0.8 at 400: 0.5 lies halfway in log n, at sqrt(200 * 400)
    assert np.isclose(scaling.critical_size(sizes, np.array([0.0, 0.2, 0.8, 1.0])), np.sqrt(200 * 400))
    assert np.isclose(scaling.critical_size(sizes, np.array([0.0, 0.5, 1.0, 1.0])), 200)
    assert np.isnan(scaling.critical_size(sizes, np.array([0.0, 0.0, 0.2, 0.4])))  # never crosses
    assert np.isnan(scaling.critical_size(sizes, np.array([0.6, 1.0, 1.0, 1.0])))  # crosses below the grid


def test_fit_laws_recovers_the_law_that_made_the_data():
    moduli = np.array([23, 31, 41, 53, 71])
    fits = scaling.fit_laws(moduli, 3.5 * moduli * np.log(moduli))
    assert np.isclose(fits["M ln M"]["a"], 3.5) and fits["M ln M"]["rms_log_residual"] < 1e-12
    assert fits["M^1.5"]["rms_log_residual"] > 0.01 and fits["M^2"]["rms_log_residual"] > 0.1
    fits = scaling.fit_laws(moduli, 0.7 * moduli**1.5)
    assert np.isclose(fits["M^beta"]["beta"], 1.5) and np.isclose(fits["M^beta"]["a"], 0.7)
    assert fits["M^1.5"]["rms_log_residual"] < 1e-12


@pytest.mark.slow
def test_a_masked_run_equals_the_run_trained_on_its_own(size=30):
    """In one program sized for 20..60 training pairs, a run with 30 pairs trains and is
    tested exactly like a sweep built for that size alone (same split prefix)."""
    import dataclasses

    config = scaling.ScalingConfig(moduli=(11,), seeds=1, epochs=30, hidden=16, lr=1e-2)
    # every metric and a Fourier snapshot, so that the masked feature matrix and G_F are checked too
    masked_config = dataclasses.replace(scaling.sweep_config(11, np.array([20, 60]), config), run_group=0,
                                        geometry_every=1, fourier_every=30)
    masked = run_sweep(masked_config, scaling.size_seed_hparams(masked_config, np.array([size]), 1))
    alone_config = dataclasses.replace(masked_config, train_fracs=((size + 0.5) / 121,), min_train_frac=None)
    alone = run_sweep(alone_config, grid_hparams(alone_config))
    for name, values in masked.metrics.items():
        np.testing.assert_allclose(values, alone.metrics[name], rtol=2e-4, atol=1e-5, err_msg=name)
    for name in ("gf_norm", "mean_concentration", "gini"):
        np.testing.assert_allclose(masked.fourier[name], alone.fourier[name], rtol=2e-4, atol=1e-5, err_msg=name)


def test_results_are_redrawn_from_runs_csv(tmp_path):
    """write_results on made-up runs (M 23: 3 of 5 seeds generalise at the middle size),
    then --replot from the files alone gives the same tables."""
    config = scaling.ScalingConfig(moduli=(23, 31), ratios=(0.5, 1.0, 2.0))
    runs = {"m": [], "n_train": [], "seed": [], "first_epoch_generalised": [], "final_test_acc": [], "max_test_acc": []}
    for m, reached in ((23, (0, 3, 5)), (31, (0, 0, 5))):
        for n, count in zip(scaling.train_sizes(m, config), reached):
            for seed in range(5):
                runs["m"].append(m)
                runs["n_train"].append(n)
                runs["seed"].append(seed)
                runs["first_epoch_generalised"].append(100.0 + seed if seed < count else np.nan)
                runs["final_test_acc"].append(1.0 if seed < count else 0.1)
                runs["max_test_acc"].append(1.0 if seed < count else 0.1)
    runs = {name: np.array(values) for name, values in runs.items()}
    scaling.write_results(tmp_path, config, runs, {23: 1.0, 31: 2.0}, "python experiments/scaling_law.py --test")
    table = (tmp_path / "table.csv").read_text()
    assert "23,198,0.9990403,0.3742911,0.6,101" in table  # 3 of 5 seeds, median epoch of 100..102
    scaling.main(["--replot", str(tmp_path)])
    assert (tmp_path / "table.csv").read_text() == table
    fit = json.loads((tmp_path / "fit.json").read_text())
    assert fit["critical_n"]["31"] is not None and fit["seconds_per_modulus"] == {"23": 1.0, "31": 2.0}

import numpy as np
import pytest
from reference import grok_epoch_loop

from grokjax import analysis
from grokjax.config import AnalysisConfig


def curve(n_epochs, segments):
    """A hand-made accuracy curve: ``segments`` maps a 0-based start index to a level."""
    acc = np.zeros(n_epochs)
    for start, level in sorted(segments.items()):
        acc[start:] = level
    return acc


@pytest.mark.parametrize(
    "segments,expected",
    [
        ({0: 0.1, 100: 0.96}, 101),  # clean crossing at index 100 -> epoch 101
        ({0: 0.1, 60: 0.97, 63: 0.5, 200: 0.99}, 201),  # a 3-epoch blip does not count
        ({0: 0.1, 10: 0.99}, None),  # grokked before index 50: the study's rule never fires
        ({0: 0.1, 100: 0.96, 104: 0.5}, None),  # touches 0.95 for 4 epochs only
        ({0: 0.0}, None),  # never groks
        ({0: 0.1, 50: 0.99}, 51),  # the earliest reportable epoch
        ({0: 0.1, 297: 0.99}, None),  # crossing too close to the end for 5 epochs
        ({0: 0.1, 100: 0.95}, 101),  # the threshold itself counts
        ({0: 0.1, 100: 0.9499}, None),
    ],
)
def test_grok_epoch_on_hand_made_curves(segments, expected):
    acc = curve(300, segments)
    result = analysis.grok_epoch(acc[None, :])[0]
    assert (np.isnan(result) and expected is None) or result == expected
    assert grok_epoch_loop(acc) == expected


def test_grok_epoch_agrees_with_a_plain_loop_on_noisy_curves():
    rng = np.random.default_rng(0)
    curves = np.clip(np.cumsum(rng.normal(0.004, 0.03, size=(200, 150)), axis=1), 0, 1)
    ours = analysis.grok_epoch(curves, min_index=20, window=3)
    loop = [grok_epoch_loop(c, min_index=20, window=3) for c in curves]
    assert sum(x is not None for x in loop) > 20  # the test exercises both outcomes
    for value, expected in zip(ours, loop):
        assert (np.isnan(value) and expected is None) or value == expected


def test_grok_thresholds_are_configurable():
    acc = curve(300, {0: 0.1, 30: 0.9, 100: 0.99})
    assert analysis.grok_epoch(acc[None])[0] == 101
    assert analysis.grok_epoch(acc[None], threshold=0.85)[0] != 101  # crossed at index 30 < 50: never
    assert analysis.grok_epoch(acc[None], threshold=0.85, min_index=20)[0] == 31
    assert np.isnan(analysis.grok_epoch(curve(300, {0: 0.1, 100: 0.99, 105: 0.1})[None], window=6)[0])


def test_mem_epoch():
    acc = np.array([[0.1, 0.5, 0.99, 1.0], [0.1, 0.2, 0.3, 0.98]])
    np.testing.assert_array_equal(analysis.mem_epoch(acc), [3, np.nan])


def test_summary_and_groups():
    n_epochs = 300
    test_acc = np.stack(
        [
            curve(n_epochs, {0: 0.0}),  # wd 0, never groks
            curve(n_epochs, {0: 0.0}),
            curve(n_epochs, {0: 0.0, 200: 1.0}),  # wd 1e-3
            curve(n_epochs, {0: 0.0, 100: 1.0}),
        ]
    )
    train_acc = np.stack([curve(n_epochs, {0: 0.5, 40: 1.0})] * 4)
    coordinates = {"seed": np.array([0, 1, 0, 1]), "data_seed": np.array([0, 1, 0, 1]), "lr": np.full(4, 1e-3, np.float32),
                   "wd": np.array([0, 0, 1e-3, 1e-3], np.float32), "n_train": np.full(4, 60)}
    w1_norm = np.stack([np.linspace(6, 40, n_epochs)] * 4)  # still growing: no W1 peak
    metrics = {"train_acc": train_acc, "test_acc": test_acc, "w1_norm": w1_norm, "train_loss": np.ones((4, n_epochs)),
               "w1_delta_norm": np.full((4, n_epochs), 0.2),
               "grad_cosine_sim": np.zeros((4, n_epochs)), "grad_norm": np.full((4, n_epochs), 0.5)}
    summary = analysis.run_summary(coordinates, metrics)
    np.testing.assert_array_equal(summary["mem_epoch"], [41, 41, 41, 41])
    np.testing.assert_array_equal(summary["grok_epoch"], [np.nan, np.nan, 201, 101])
    np.testing.assert_array_equal(summary["delay"], [np.nan, np.nan, 160, 60])
    np.testing.assert_array_equal(summary["grokked"], [0, 0, 1, 1])
    rows = analysis.group_summary(summary)
    assert [(r["runs"], r["grokked"], r["diverged"]) for r in rows] == [(2, 0, 0), (2, 2, 0)]
    assert rows[1]["grok_median"] == 151 and rows[1]["grok_min"] == 101 and rows[1]["grok_max"] == 201
    assert rows[1]["delay_median"] == 110
    assert rows[1]["frac_grokked"] == 1.0 and rows[0]["frac_grokked"] == 0.0
    assert rows[1]["grok_ci_low"] == 101 and rows[1]["grok_ci_high"] == 201  # bootstrap of two values
    assert rows[0]["n_memorization"] == 2 and rows[1]["n_grokking"] == 2
    table = analysis.format_group_table(rows)
    assert "151 [101-201]" in table and "0/2" in table and "2/2" in table


def series(n_epochs, segments, start=0.0):
    """A piecewise-constant metric series; ``segments`` maps a 0-based start index to a value."""
    return curve(n_epochs, {0: start, **segments})


def test_readme_rules_epoch_by_epoch():
    n = 60
    w1 = np.concatenate([np.full(20, 5.0), np.linspace(5, 8, 11), np.full(n - 31, 8.0)])  # rising over indices 20..30
    metrics = {
        "w1_delta_norm": series(n, {0: 0.0, 10: 0.2}),  # below 1e-3 for indices 0..9
        "test_acc": series(n, {40: 0.97}),
        "grad_cosine_sim": series(n, {20: 0.7, 31: 0.1}),
        "w1_norm": w1,
        "grad_norm": series(n, {0: 0.5, 50: 0.01}),
    }
    metrics = {k: v[None] for k, v in metrics.items()}
    labels = analysis.stages_readme(metrics)[0]
    expected = np.zeros(n, int)
    expected[:10] = 1
    expected[21:31] = 2  # rising from index 21 (W1 at 20 equals W1 at 19)
    expected[40:50] = 3
    np.testing.assert_array_equal(labels, expected)
    np.testing.assert_array_equal(analysis.stage_starts(labels[None])[0], [1, 22, 41])


def test_script_rules_use_trailing_means_and_the_grokking_epoch():
    n = 200
    metrics = {
        "w1_delta_norm": series(n, {0: 0.001, 30: 0.01}),
        "grad_cosine_sim": series(n, {0: 0.0, 60: 0.04}),
        "test_acc": series(n, {0: 0.0, 120: 1.0}),
    }
    metrics = {k: v[None] for k, v in metrics.items()}
    labels = analysis.stages_script(metrics)[0]
    # the 10-epoch mean of grad_cosine_sim passes 0.03 once 8 of its 10 values are 0.04: index 67
    np.testing.assert_array_equal(analysis.stage_starts(labels[None])[0], [1, 68, 121])
    assert (labels[:67] == 1).all() and (labels[67:120] == 2).all() and (labels[120:] == 3).all()


def test_event_rules():
    n = 300
    rise = np.concatenate([np.linspace(6, 40, 150), np.linspace(40, 25, 150)])  # peaks at index 149
    metrics = {
        "train_acc": series(n, {0: 0.2, 49: 1.0})[None].repeat(3, 0),
        "test_acc": series(n, {0: 0.0, 179: 0.5, 200: 1.0})[None].repeat(3, 0),
        "w1_norm": np.stack([rise, np.linspace(6, 40, n), rise]),  # run 1 never turns
    }
    metrics["train_acc"][2] = 0.5  # run 2 never memorises
    labels = analysis.stages_events(metrics)
    starts = analysis.stage_starts(labels)
    np.testing.assert_array_equal(starts[0], [1, 50, 150])
    np.testing.assert_array_equal(starts[1], [1, 50, np.nan])
    # without memorisation, Stage II is never entered; the W1 turn still marks Stage III
    np.testing.assert_array_equal(starts[2], [1, np.nan, 150])
    with_rise = analysis.stages_events(metrics, AnalysisConfig(stage3_event="test_rise"))
    np.testing.assert_array_equal(analysis.stage_starts(with_rise)[0], [1, 50, 180])


def test_w1_peak_needs_a_real_drop():
    turn = np.concatenate([np.linspace(10, 40, 100), np.linspace(40, 39, 100)])  # falls 2.5 %: not yet a peak
    assert np.isnan(analysis.w1_peak_epoch(turn[None])[0])
    assert analysis.w1_peak_epoch(turn[None], drop=0.02)[0] == 100


@pytest.mark.parametrize(
    "train,test,phase",
    [
        ({0: 0.1, 20: 1.0}, {0: 0.0, 21: 1.0}, "comprehension"),  # test follows within 1% of 1000 epochs
        ({0: 0.1, 20: 1.0}, {0: 0.0, 300: 1.0}, "grokking"),
        ({0: 0.1, 20: 1.0}, {0: 0.0}, "memorization"),
        ({0: 0.1}, {0: 0.0}, "confusion"),
    ],
)
def test_phase_labels(train, test, phase):
    assert analysis.phase_label(curve(1000, train)[None], curve(1000, test)[None])[0] == phase


def test_power_law_fit_recovers_a_known_exponent():
    rng = np.random.default_rng(1)
    wd = np.repeat([1e-5, 3e-5, 1e-4, 3e-4, 1e-3], 8)
    delay = 2.0 * wd**-0.8 * np.exp(rng.normal(0, 0.1, len(wd)))
    fit = analysis.fit_power_law(wd, delay, samples=500)
    assert abs(fit["alpha"] - 0.8) < 0.03
    assert fit["alpha_low"] < 0.8 < fit["alpha_high"] and fit["alpha_high"] - fit["alpha_low"] < 0.1
    assert fit["n_points"] == 40 and fit["n_levels"] == 5
    assert analysis.fit_power_law(np.full(5, 1e-4), delay[:5]) is None


def test_bootstrap_median():
    rng = np.random.default_rng(0)
    median, low, high = analysis.bootstrap_median(np.array([1.0, 2.0, 3.0, 4.0, 100.0]), 1000, rng)
    assert median == 3.0 and 1.0 <= low <= 3.0 <= high <= 100.0
    assert analysis.bootstrap_median(np.array([7.0]), 100, rng) == (7.0, 7.0, 7.0)


def test_delay_fit_leaves_out_runs_without_a_real_delay():
    wd = np.repeat([1e-4, 1e-3, 1e-2], 4)
    delay = 5.0 * wd**-0.5
    delay[8:] = [3.0, -2.0, 2.0, 5.0]  # at wd 1e-2 test accuracy rose with train accuracy
    summary = {"wd": wd, "lr": np.full(12, 1e-3), "delay": delay, "diverged_epoch": np.full(12, np.nan)}
    fit = analysis.delay_power_law(summary, n_epochs=1000)  # gap: 10 epochs
    assert fit["n_points"] == 8 and fit["n_levels"] == 2
    assert fit["alpha"] == pytest.approx(0.5)
    assert [level["wd"] for level in fit["levels"]] == [1e-4, 1e-3]
    assert fit["levels"][0]["median"] == pytest.approx(500.0)
    assert analysis.delay_power_law(summary, n_epochs=10_000) is not None  # gap 100: 1e-3's delay 158 still counts
    assert analysis.delay_power_law({**summary, "delay": np.full(12, 5.0)}, n_epochs=1000) is None
    diverged = np.where(wd == 1e-3, 7.0, np.nan)  # a diverged run's delay never counts
    assert analysis.delay_power_law({**summary, "diverged_epoch": diverged}, n_epochs=1000) is None


def test_diverged_runs_are_counted_and_left_out():
    n_epochs = 300
    test_acc = np.stack([curve(n_epochs, {0: 0.0, 100: 1.0}), curve(n_epochs, {0: 0.0, 200: 1.0}), curve(n_epochs, {0: 0.0})])
    train_loss = np.ones((3, n_epochs))
    train_loss[2, 40:] = np.nan  # the third run diverged at epoch 41
    test_acc[2, 40:] = np.nan
    metrics = {"train_acc": np.ones((3, n_epochs)), "test_acc": test_acc, "train_loss": train_loss,
               "w1_norm": np.ones((3, n_epochs)), "w1_delta_norm": np.ones((3, n_epochs)),
               "grad_cosine_sim": np.zeros((3, n_epochs)), "grad_norm": np.ones((3, n_epochs))}
    coordinates = {"seed": np.arange(3), "data_seed": np.arange(3), "lr": np.full(3, 1e-3), "wd": np.full(3, 1e-3),
                   "n_train": np.full(3, 60)}
    summary = analysis.run_summary(coordinates, metrics)
    np.testing.assert_array_equal(summary["diverged_epoch"], [np.nan, np.nan, 41])
    (row,) = analysis.group_summary(summary)
    assert (row["runs"], row["diverged"], row["grokked"]) == (2, 1, 2)
    assert "diverged (loss or parameters not finite; left out above): wd 0.001 lr 0.001: 1" in analysis.format_group_table([row])


def test_sparse_metrics_hold_and_average_over_measured_epochs():
    """--geometry-every N leaves NaN between measurements: the readme rules hold the latest
    measurement, the script rules average the measured epochs of each window."""
    x = np.array([[np.nan, 2.0, np.nan, np.nan, 6.0, np.nan]])
    np.testing.assert_array_equal(analysis.latest_measured(x), [[np.nan, 2, 2, 2, 6, 6]])
    # windows of 3 ending at epochs 3..6: {2}, {2}, {6}, {6}; before a full window NaN
    np.testing.assert_array_equal(analysis.trailing_mean(x, 3), [[np.nan, np.nan, 2, 2, 6, 6]])
    dense = np.arange(6.0)[None]
    np.testing.assert_allclose(analysis.trailing_mean(dense, 2), [[np.nan, 0.5, 1.5, 2.5, 3.5, 4.5]])
    assert np.isnan(analysis.trailing_mean(np.full((1, 4), np.nan), 2)).all()


def hand_made_sweep(test_curves: list[np.ndarray], w1_norms: list[np.ndarray], wd: float = 1e-3):
    """Run summary and groups of one group of hand-made runs (train accuracy 1 from epoch 20)."""
    n_runs, n_epochs = len(test_curves), len(test_curves[0])
    coordinates = {"seed": np.arange(n_runs), "data_seed": np.arange(n_runs), "wd": np.full(n_runs, wd, np.float32),
                   "lr": np.full(n_runs, 1e-3, np.float32), "n_train": np.full(n_runs, 60)}
    metrics = {"train_acc": np.stack([curve(n_epochs, {0: 0.5, 19: 1.0})] * n_runs), "test_acc": np.stack(test_curves),
               "w1_norm": np.stack(w1_norms), "train_loss": np.ones((n_runs, n_epochs)),
               "w1_delta_norm": np.full((n_runs, n_epochs), 0.2), "grad_cosine_sim": np.zeros((n_runs, n_epochs)),
               "grad_norm": np.full((n_runs, n_epochs), 0.5)}
    summary = analysis.run_summary(coordinates, metrics)
    return summary, analysis.group_summary(summary)


def test_generalisation_the_study_rule_misses_is_counted_and_explained():
    """Three hand-made runs: one generalises at epoch 31 and stays (the rule's earliest epoch is
    51: not grokked), one generalises at 31, dips at 80 and crosses again at 151 (grokked at
    151), one generalises at 101 (both agree)."""
    n = 300
    tests = [curve(n, {0: 0.1, 30: 0.99}), curve(n, {0: 0.1, 30: 0.99, 80: 0.6, 150: 0.99}), curve(n, {0: 0.1, 100: 0.99})]
    turning = np.concatenate([np.linspace(6, 30, 100), np.linspace(30, 20, n - 100)])  # peaks at epoch 100, falls 33 %
    summary, (row,) = hand_made_sweep(tests, [turning] * 3)
    np.testing.assert_array_equal(summary["grok_epoch"], [np.nan, 151, 101])
    np.testing.assert_array_equal(summary["generalised_epoch"], [31, 31, 101])
    np.testing.assert_array_equal(summary["generalised"], [1, 1, 1])
    assert summary["grok_rule_miss"].tolist() == ["early", "recrossing", ""]
    assert (row["grokked"], row["generalised"], row["n_early"], row["n_recrossing"]) == (2, 3, 1, 1)
    assert row["generalised_median"] == 31 and row["grok_median"] == 126
    table = analysis.format_group_table([row]).splitlines()
    assert table[2].split()[2] == "2/3[1,2]" and " 3/3 " in table[2] and "31 [31-101]" in table[2]
    assert ("[1] grokked: runs that generalised before epoch 51, the study's rule's earliest, and stayed there, so that the "
            "rule counts them as not grokked: 1/3 at wd 0.001 lr 0.001") in table
    assert ("[2] grokked: runs that generalised before epoch 51, dipped and crossed again, so that the rule counts the "
            "later crossing: 1/3 at wd 0.001 lr 0.001") in table
    # the boundary: generalised at epoch 50 (index 49) is before the rule's earliest, at 51 it is the rule's
    assert analysis.grok_rule_miss(np.array([np.nan, 51.0]), np.array([50.0, 51.0]), min_index=50).tolist() == ["early", ""]
    # from the rule's earliest epoch on, the two agree
    assert analysis.grok_rule_miss(np.array([31.0, np.nan]), np.array([31.0, np.nan]), min_index=20).tolist() == ["", ""]


def test_a_stage_a_run_cannot_reach_gets_a_note_not_a_bare_dash():
    """No weight-norm turn (a norm that only grows, as without weight decay or with Muon): no
    Stage III, and the table says why; a group where some runs turned shows their median."""
    n = 300
    growing = np.linspace(6, 40, n)
    turning = np.concatenate([np.linspace(6, 30, 100), np.linspace(30, 20, n - 100)])
    tests = [curve(n, {0: 0.1, 100: 0.99})] * 3
    _, (none_turned,) = hand_made_sweep(tests, [growing] * 3)
    _, (one_turned,) = hand_made_sweep(tests, [growing, growing, turning])
    assert none_turned["stageIII_start_reached"] == 0 and np.isnan(none_turned["stageIII_start_median"])
    assert one_turned["stageIII_start_reached"] == 1 and one_turned["stageIII_start_median"] == 100
    assert none_turned["stageII_start_median"] == 20  # memorised at epoch 20: Stage II
    for row, cell, count in ((none_turned, "-[1]", "3/3"), (one_turned, "100[1]", "2/3")):
        lines = analysis.format_group_table([row]).splitlines()
        assert lines[2].split()[-2] == cell
        note = next(line for line in lines if line.startswith("[1]"))
        assert note.startswith("[1] III from: runs whose W1 norm never turned (fell 5% below its peak)")
        assert note.endswith(f": {count} at wd 0.001 lr 0.001" if count == "2/3" else ": every run")
    assert "a stage or phase column shows the median over the runs that reached it" in lines


def test_transformer_tables_show_nanda_phases():
    """A transformer's table reports the phases of its progress measures (hand-made snapshots:
    the excluded loss lowest at epoch 40, the test loss halving at epoch 61, the Gini reaching
    95 % of its final value at epoch 80); without snapshots it says so."""
    n_epochs, snapshot_epochs = 100, np.arange(0, 101, 20)
    test_loss = np.where(np.arange(n_epochs) < 60, 4.0, 0.1)[None]
    snapshots = {"excluded_loss": np.array([[3.0, 2.0, 1.0, 2.0, 3.0, 4.0]]), "gini": np.array([[0.1, 0.2, 0.3, 0.5, 0.9, 0.92]]),
                 "key_frequency": np.ones((1, 6, 5)), "n_key_frequencies": np.full((1, 6), 5.0)}
    test_acc = curve(n_epochs, {0: 0.1, 61: 1.0})[None]
    coordinates = {"seed": np.array([0]), "data_seed": np.array([0]), "wd": np.array([1.0], np.float32),
                   "lr": np.array([1e-3], np.float32), "n_train": np.array([60])}
    metrics = {"train_acc": curve(n_epochs, {0: 0.5, 10: 1.0})[None], "test_acc": test_acc, "test_loss": test_loss,
               "w1_norm": np.linspace(6, 40, n_epochs)[None], "train_loss": np.ones((1, n_epochs)),
               "w1_delta_norm": np.full((1, n_epochs), 0.2), "grad_cosine_sim": np.zeros((1, n_epochs)),
               "grad_norm": np.full((1, n_epochs), 0.5)}
    events = analysis.milestones(transformer=True)
    summary = analysis.run_summary(coordinates, metrics, fourier=(snapshot_epochs, snapshots))
    assert (summary["circuit_epoch"][0], summary["cleanup_epoch"][0], summary["cleanup_end_epoch"][0]) == (40, 61, 80)
    (row,) = analysis.group_summary(summary, events=events)
    assert (row["circuit_median"], row["cleanup_median"], row["cleanup_end_median"]) == (40, 61, 80)
    lines = analysis.format_group_table([row], events=events).splitlines()
    assert "circuit from cleanup from cleanup to" in " ".join(lines[0].split())
    assert lines[2].split()[-4:-1] == ["40", "61", "80"] and "II from" not in lines[0]
    # the same run without snapshots: every phase cell says why it is empty
    (row,) = analysis.group_summary(analysis.run_summary(coordinates, metrics), events=events)
    lines = analysis.format_group_table([row], events=events).splitlines()
    assert lines[2].split()[-4:-1] == ["-[1]", "-[2]", "-[3]"]
    assert lines[4] == ("[1] circuit from: runs without progress measures (the sweep took no snapshots: --fourier-every): "
                        "every run")


def two_by_three_sweep():
    """Hand-made runs over hidden {64, 128} x lr {1e-3, 2e-3, 4e-3} x wd {1e-4, 1e-3}, 2 seeds:
    in combination k the delay is 100 * (wd / 1e-4)^(-alpha_k), alpha_k = 0.2, 0.3, ... 0.7."""
    hiddens, lrs, wds = (64, 128), (1e-3, 2e-3, 4e-3), (1e-4, 1e-3)
    alphas = {}
    rows = []
    for k, (hidden, lr) in enumerate((h, v) for h in hiddens for v in lrs):
        alphas[(hidden, lr)] = 0.2 + 0.1 * k
        for wd in wds:
            for seed in (0, 1):
                delay = 100 * (wd / 1e-4) ** -alphas[(hidden, lr)] * (1 + 0.01 * seed)
                rows.append((seed, hidden, lr, wd, delay))
    seed, hidden, lr, wd, delay = (np.array(column) for column in zip(*rows))
    n = len(seed)
    summary = {"seed": seed, "hidden": hidden, "lr": lr, "wd": wd, "mem_epoch": np.full(n, 20.0), "delay": delay,
               "grok_epoch": delay + 20, "generalised_epoch": delay + 20, "generalised": np.ones(n, int),
               "grok_rule_miss": np.full(n, ""), "diverged_epoch": np.full(n, np.nan), "final_test_acc": np.ones(n),
               "phase": np.full(n, "grokking"), "events_stageII_start": np.full(n, 20.0),
               "events_stageIII_start": np.full(n, 50.0)}
    return summary, alphas


def test_a_delay_fit_and_a_figure_per_combination_of_the_other_axes():
    from grokjax import plots

    summary, alphas = two_by_three_sweep()
    axes = ("hidden", "wd", "lr")
    fits = analysis.delay_power_laws(summary, 1000, axes=axes)
    assert [fit["at"] for fit in fits] == [{"hidden": h, "lr": v} for h, v in alphas]
    for fit in fits:
        assert abs(fit["alpha"] - alphas[(fit["at"]["hidden"], fit["at"]["lr"])]) < 0.01 and fit["n_points"] == 4
    rows = analysis.group_summary(summary, axes=axes)
    table = analysis.format_group_table(rows, fits, axes).splitlines()
    assert sum(line.startswith("delay ∝ wd^-α at hidden") for line in table) == 6
    assert "delay ∝ wd^-α at hidden 128, lr 0.004: α = 0.70" in "\n".join(table)
    held = analysis.delay_power_laws(summary, 1000, axes=axes, at={"hidden": 64})
    assert [fit["at"] for fit in held] == [{"hidden": 64, "lr": v} for v in (1e-3, 2e-3, 4e-3)]

    fig = plots.delay_vs_wd(summary, rows, fits, "t", axes)
    labels = [text.get_text() for text in fig.axes[0].get_legend().get_texts()]
    assert [label.split(":")[0] for label in labels[:6]] == [f"hidden {h}, lr {v:g}" for h, v in alphas]
    assert labels[5].startswith("hidden 128, lr 0.004: delay ∝ wd^-0.70")
    assert fig.axes[0].get_title() == "t\ngrokking epoch and delay vs weight decay, a colour per hidden, lr"
    fig = plots.delay_vs_wd(summary, rows, held, "t", axes, at={"hidden": 64})
    labels = [text.get_text() for text in fig.axes[0].get_legend().get_texts()]
    assert [label.split(":")[0] for label in labels[:3]] == ["hidden 64, lr 0.001", "hidden 64, lr 0.002", "hidden 64, lr 0.004"]
    assert fig.axes[0].get_title() == "t at hidden 64\ngrokking epoch and delay vs weight decay, a colour per lr"
    fig = plots.phase_diagram(rows, axes, "wd", "lr", "t")
    assert [ax.get_title() for ax in fig.axes if ax.images] == [
        f"{name}\nhidden {h}" for h in (64, 128) for name in ("fraction of seeds grokked", "median grokking epoch")]


def test_figures_draw_the_combinations_with_the_most_generalised_runs_and_say_which_they_leave_out():
    from grokjax import plots

    summary, alphas = two_by_three_sweep()
    # a third hidden width, 32, whose runs never generalise: 9 combinations, 6 drawn
    extra = {name: values[summary["hidden"] == 64].copy() for name, values in summary.items()}
    extra["hidden"][:] = 32
    extra["generalised"][:] = 0
    summary = {name: np.concatenate([extra[name], summary[name]]) for name in summary}
    shown, left = plots.shown_combinations(summary, ("hidden", "lr"))
    assert left == [{"hidden": 32, "lr": v} for v in (1e-3, 2e-3, 4e-3)] and len(shown) == plots.MAX_SERIES
    assert plots.left_out_note(left) == ("not drawn (fewer generalised runs; report --at chooses): hidden 32, lr 0.001; "
                                         "hidden 32, lr 0.002; hidden 32, lr 0.004")
    fig = plots.epochs_vs_axis(summary, ("hidden", "wd", "lr"), "wd", {"grok_epoch": "grokking epoch"}, "t")
    assert plots.left_out_note(left) in [text.get_text() for text in fig.axes[0].texts]
    assert len(fig.axes[0].get_legend().get_texts()) == 6


def test_noise_phases_from_the_last_epochs_accuracies():
    """Doshi et al.'s phases, one hand-made run each: (train, test, on corrupted labels,
    true label given to corrupted examples)."""
    runs = {"coexistence": (1.0, 0.97, 0.95, 0.02), "full inversion": (0.7, 0.99, 0.05, 0.93),
            "partial inversion": (0.85, 0.95, 0.5, 0.45), "memorization": (0.99, 0.1, 0.98, 0.0),
            "forgetting": (0.4, 0.2, 0.1, 0.1), "generalization": (1.0, 0.99, np.nan, np.nan)}
    final = dict(zip(("train_acc", "test_acc", "train_acc_corrupted", "corrupted_true_acc"),
                     map(np.array, zip(*runs.values()))))
    assert analysis.noise_phase(final).tolist() == list(runs)
    # a stricter threshold: 0.95 of the corrupted labels no longer counts as fitting them, 0.93 as inverting them,
    # 0.95 test accuracy as generalising
    assert analysis.noise_phase(final, 0.96).tolist() == ["partial inversion", "partial inversion", "forgetting",
                                                          "memorization", "forgetting", "generalization"]

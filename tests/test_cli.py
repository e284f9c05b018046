import contextlib
import csv
import io
import json
import math
import os
import subprocess
import sys

import numpy as np
import pytest

from grokjax import analysis, plots, report, sweep
from grokjax.analysis import DEFAULT
from grokjax.config import AnalysisConfig
from grokjax.results import GEOMETRY_METRICS, METRIC_NAMES

TINY_ARGS = ["--m", "11", "--hidden", "8", "--batch-size", "16", "--epochs", "6", "--chunk-epochs", "4", "--quiet"]
TITLE = "m=11 add, hidden 8, adam, batch 16"  # the settings the tiny sweep's runs share, as figure titles show them


@pytest.fixture(scope="module")
def tiny_folder(tmp_path_factory):
    """The one test of the real command line, ``python -m grokjax.sweep``, in a process of its own;
    the other tests call the commands' main() in this process."""
    out = tmp_path_factory.mktemp("cli") / "run"
    result = subprocess.run([sys.executable, "-m", "grokjax.sweep", *TINY_ARGS, "--seeds", "3", "--wd", "0,1e-2",
                             "--lr", "1e-2,3e-3", "--out", str(out)], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert "grokked" in result.stdout and str(out) in result.stdout
    return out


REPORT_FILES = {"summary.csv", "groups.csv", "stages.npz", "delay_fit.json", "figures"}
FIGURES = {"overview.png", "delay_vs_wd.png", "phase_diagram.png"} | {
    f"dashboard_wd{wd}_lr{lr}.png" for wd in ("0", "0.01") for lr in ("0.01", "0.003")
}


def read_table(path) -> dict[str, list[str]]:
    """A CSV file as {column: cells}, in the file's column order."""
    with open(path) as f:
        rows = list(csv.DictReader(f))
    return {name: [row[name] for row in rows] for name in rows[0]}


def numbers(cells: list[str]) -> np.ndarray:
    """CSV cells as floats; an empty cell (not reached) is NaN."""
    return np.array([math.nan if cell == "" else float(cell) for cell in cells])


def first_reached(values: np.ndarray, threshold: float) -> float:
    """1-based first epoch with values >= threshold, NaN if none: the memorisation epoch written out."""
    hits = np.flatnonzero(values >= threshold)
    return float(hits[0] + 1) if hits.size else math.nan


def study_grok_epoch(test_acc: np.ndarray, threshold: float, min_index: int, window: int) -> float:
    """The study's grokking rule written out: the first 0-based epoch i >= min_index whose
    predecessor (if any) is below the threshold and whose ``window`` epochs from i on are all at
    or above it; returns i + 1, NaN if there is none."""
    above = test_acc >= threshold
    for i in range(min_index, len(above) - window + 1):
        if above[i : i + window].all() and (i == 0 or not above[i - 1]):
            return float(i + 1)
    return math.nan


def expected_events(metrics, cfg: AnalysisConfig) -> dict[str, np.ndarray]:
    """Memorisation and grokking epochs of every run, from the stored arrays, by hand."""
    mem = np.array([first_reached(row, cfg.mem_threshold) for row in metrics["train_acc"]])
    grok = np.array([study_grok_epoch(row, cfg.grok_threshold, cfg.grok_min_index, cfg.grok_window) for row in metrics["test_acc"]])
    return {"mem_epoch": mem, "grok_epoch": grok, "delay": grok - mem, "grokked": (~np.isnan(grok)).astype(float)}


def check_summary(table: dict[str, list[str]], metrics, coordinates, cfg: AnalysisConfig) -> None:
    """summary.csv holds, for every run, its final accuracies, memorisation and grokking epochs
    as computed by hand from metrics.npz, and every column is what grokjax.analysis makes of the
    stored arrays."""
    np.testing.assert_allclose(numbers(table["final_train_acc"]), metrics["train_acc"][:, -1], rtol=1e-6)
    np.testing.assert_allclose(numbers(table["final_test_acc"]), metrics["test_acc"][:, -1], rtol=1e-6)
    for name, values in expected_events(metrics, cfg).items():
        np.testing.assert_array_equal(numbers(table[name]), values, err_msg=name)
    expected = analysis.run_summary(coordinates, metrics, cfg)
    assert list(table) == list(expected)
    for name, values in expected.items():
        if values.dtype.kind in "fiu":
            np.testing.assert_allclose(numbers(table[name]), values, rtol=1e-6, err_msg=name)
        else:
            assert table[name] == list(values), name


def representative(wd: np.ndarray, lr: np.ndarray, grok: np.ndarray) -> dict[str, int]:
    """Dashboard file name -> the run it shows: per (wd, lr), the run whose grokking epoch is
    nearest the median over the group's runs that grokked (the first on a tie), else the group's first run."""
    chosen = {}
    for w in np.unique(wd):
        for v in np.unique(lr):
            members = np.flatnonzero((wd == w) & (lr == v))
            grokked = [r for r in members if not np.isnan(grok[r])]
            if grokked:
                median = np.median(grok[grokked])
                run = min(grokked, key=lambda r, median=median: abs(grok[r] - median))
            else:
                run = members[0]
            chosen[f"dashboard_wd{w:g}_lr{v:g}.png"] = int(run)
    return chosen


# the dashboard's panels: the metric rows each draws, and whether its y axis is logarithmic (values <= 0 left out)
DASHBOARD_PANELS = [
    ("accuracy", ("train_acc", "test_acc"), False),
    ("cross-entropy loss", ("train_loss", "test_loss"), True),
    ("W1 norm ‖W1‖_F", ("w1_norm",), False),
    ("W1 change per epoch ‖ΔW1‖_F", ("w1_delta_norm",), True),
    ("W1 gradient norm (last minibatch)", ("grad_norm",), True),
    ("gradient cosine over last 5 epochs", ("grad_cosine_sim",), False),
    ("feature diversity (singular-value entropy)", ("feature_diversity",), False),
    ("neuron-gradient |cos| across neurons", ("neuron_grad_cosine",), False),
    ("generalisation gap (train − test acc)", ("gap",), False),
]


def check_dashboard(fig, metrics, run: int, events: dict[str, np.ndarray], labels: np.ndarray) -> None:
    """A dashboard draws run ``run``'s metric rows, one panel each, the grokking epoch as a
    crimson line in every panel, its stages (``labels``, per epoch) as shaded bands, and says in
    its title which run it is and when it memorised and grokked."""
    rows = {name: metrics[name][run] for name in METRIC_NAMES}
    rows["gap"] = rows["train_acc"] - rows["test_acc"]
    epochs = np.arange(1, len(rows["train_acc"]) + 1)
    grok, mem = events["grok_epoch"][run], events["mem_epoch"][run]
    assert len(fig.axes) == 9
    for ax, (title, names, log) in zip(fig.axes, DASHBOARD_PANELS):
        assert ax.get_title() == title and ax.get_xlabel() == "epoch"
        assert ax.get_yscale() == ("log" if log else "linear"), title
        marks = [line for line in ax.get_lines() if line.get_color() == "crimson"]
        curves = [line for line in ax.get_lines() if line.get_color() != "crimson"]
        assert len(curves) == len(names), title
        for line, name in zip(curves, names):
            shown = rows[name] > 0 if log else ~np.isnan(rows[name])
            np.testing.assert_array_equal(line.get_xdata(), epochs[shown], err_msg=title)
            np.testing.assert_allclose(line.get_ydata(), rows[name][shown], rtol=1e-6, err_msg=title)
        assert [tuple(line.get_xdata()) for line in marks] == ([] if np.isnan(grok) else [(grok, grok)]), title
        bands = [(patch.get_x(), patch.get_x() + patch.get_width()) for patch in ax.patches]
        assert bands == [(first - 0.5, last + 0.5) for first, last, label in plots.label_segments(labels) if label], title
    assert [line.get_label() for line in fig.axes[0].get_lines()[:2]] == ["train", "test"]
    suptitle = fig.get_suptitle()
    assert suptitle.startswith(f"{TITLE}; wd {metrics['wd'][run]:g}, lr {metrics['lr'][run]:g}, seed {metrics['seed'][run]} (run {run})")
    assert ("never memorised" if np.isnan(mem) else f"memorised at epoch {mem:.0f};") in suptitle
    assert ("never grokked" if np.isnan(grok) else f"grokked at epoch {grok:.0f} (dashed)") in suptitle


def test_dashboard_says_which_panels_were_not_measured():
    """A sweep run with --geometry-every 0 has NaN geometry rows: their panels say so and draw
    no curve, while the measured panels keep their curves and scales."""
    epochs = 20
    rows = {name: np.linspace(0.1, 1.0, epochs) for name in METRIC_NAMES}
    for name in GEOMETRY_METRICS:
        rows[name] = np.full(epochs, np.nan)
    fig = plots.dashboard(rows, np.zeros(epochs, int), np.nan, 5.0, "t", "events")
    unmeasured = {ax.get_title() for ax in fig.axes if [t.get_text() for t in ax.texts] == ["not measured in this sweep"]}
    assert unmeasured == {"gradient cosine over last 5 epochs", "feature diversity (singular-value entropy)",
                          "neuron-gradient |cos| across neurons"}
    for ax in fig.axes:
        drawn = [line for line in ax.get_lines() if len(line.get_xdata())]
        assert (len(drawn) == 0) == (ax.get_title() in unmeasured), ax.get_title()
    assert fig.axes[1].get_yscale() == "log"


def check_overview(fig, metrics) -> None:
    """One panel per learning rate; in each, per weight decay, every seed's test accuracy and
    their median (labelled)."""
    test_acc, wd, lr = metrics["test_acc"], metrics["wd"], metrics["lr"]
    epochs = np.arange(1, test_acc.shape[1] + 1)
    panels = [ax for ax in fig.axes if ax.get_visible()]
    assert [ax.get_title() for ax in panels] == [f"lr {v:g}" for v in np.unique(lr)]
    assert panels[0].get_ylabel() == "test accuracy"
    for ax, v in zip(panels, np.unique(lr)):
        expected, labels = [], []
        for w in np.unique(wd):
            runs = (wd == w) & (lr == v)
            expected += [*test_acc[runs], np.median(test_acc[runs], axis=0)]
            labels.append(f"wd {w:g} (median of {runs.sum()})")
        lines = ax.get_lines()
        assert len(lines) == len(expected)
        for line, values in zip(lines, expected):
            np.testing.assert_array_equal(line.get_xdata(), epochs)
            np.testing.assert_allclose(line.get_ydata(), values, rtol=1e-6)
        assert [line.get_label() for line in lines if not line.get_label().startswith("_")] == labels
    assert fig.get_suptitle() == f"{TITLE}\ntest accuracy of every run (thin: seeds, thick: median)"


def check_phase_diagram(fig, metrics, grok: np.ndarray) -> None:
    """lr x wd grids of the fraction of seeds that grokked and their median grokking epoch."""
    wds, lrs = np.unique(metrics["wd"]), np.unique(metrics["lr"])
    fraction = np.zeros((len(lrs), len(wds)))
    median = np.full((len(lrs), len(wds)), np.nan)
    for i, v in enumerate(lrs):
        for j, w in enumerate(wds):
            values = grok[(metrics["wd"] == w) & (metrics["lr"] == v)]
            fraction[i, j] = np.mean(~np.isnan(values))
            if not np.isnan(values).all():
                median[i, j] = np.nanmedian(values)
    grids = [ax for ax in fig.axes if ax.images]
    assert len(grids) == 2 and len(fig.axes) == 4  # and two colour bars
    assert [ax.get_title() for ax in grids] == ["fraction of seeds grokked", "median grokking epoch"]
    for ax, values in zip(grids, (fraction, median)):
        assert (ax.get_xlabel(), ax.get_ylabel()) == ("weight decay", "learning rate")
        assert [t.get_text() for t in ax.get_xticklabels()] == [f"{w:g}" for w in wds]
        assert [t.get_text() for t in ax.get_yticklabels()] == [f"{v:g}" for v in lrs]
        shown = ax.images[0].get_array()
        np.testing.assert_array_equal(np.ma.getmaskarray(shown), np.isnan(values))
        np.testing.assert_allclose(shown.filled(np.nan), values)
    assert [t.get_text() for t in grids[1].texts] == ["never" if np.isnan(m) else f"{m:.0f}" for m in median.ravel()]


def check_delay_vs_wd(fig, metrics, grok: np.ndarray) -> None:
    """Without a power law to fit (one weight decay > 0), the grokking epochs of the runs with
    wd > 0 at the smallest learning rate (the first of two colours, drawn a little left of its
    weight decay: 10^(-0.012 / 2) on the log axis), or a note that none grokked."""
    (ax,) = fig.axes
    assert ax.get_title() == f"{TITLE}\ngrokking epoch and delay vs weight decay, a colour per lr"
    assert (ax.get_xlabel(), ax.get_ylabel()) == ("weight decay", "epochs")
    runs = (metrics["wd"] > 0) & (metrics["lr"] == metrics["lr"].min()) & ~np.isnan(grok)
    drawn = np.ma.filled(ax.collections[0].get_offsets(), np.nan)  # a masked point (NaN) is drawn as nothing
    np.testing.assert_allclose(drawn, np.stack([metrics["wd"][runs] * 10 ** -0.006, grok[runs]], axis=1).reshape(-1, 2))
    assert ("no run with wd > 0 grokked" in [t.get_text() for t in ax.texts]) == (not runs.any())


def report_figures(folder, cfg: AnalysisConfig = DEFAULT) -> dict:
    """The report's figures of a results folder, drawn as grokjax.report.write_report draws them."""
    record, coordinates, metrics = report.load_sweep(folder)
    axes = ("wd", "lr")
    summary = analysis.run_summary(coordinates, metrics, cfg)
    rows = analysis.group_summary(summary, cfg, axes)
    fits = analysis.delay_power_laws(summary, metrics["test_acc"].shape[1], cfg, axes)
    title = report.sweep_title(record["config"])
    return {
        "overview.png": plots.overview(metrics["test_acc"], summary, axes, title),
        "delay_vs_wd.png": plots.delay_vs_wd(summary, rows, fits, title, axes),
        "phase_diagram.png": plots.phase_diagram(rows, axes, "wd", "lr", title),
    }


def png(fig) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100)  # as grokjax.results.save_figure
    return buffer.getvalue()


@pytest.mark.slow
def test_cli_end_to_end(tiny_folder):
    out = tiny_folder
    assert {p.name for p in out.iterdir()} == {"config.json", "metrics.npz"} | REPORT_FILES
    assert {p.name for p in (out / "figures").iterdir()} == FIGURES

    with np.load(out / "metrics.npz") as stored:
        metrics = dict(stored)
    for name in METRIC_NAMES:
        assert metrics[name].shape == (12, 6)
    np.testing.assert_array_equal(metrics["seed"], [0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2])
    np.testing.assert_allclose(metrics["wd"], [0, 0, 1e-2, 1e-2] * 3)
    np.testing.assert_allclose(metrics["lr"], [1e-2, 3e-3] * 6)
    # the command split the CPU into one host device per usable core, at most one per run
    environment = json.loads((out / "config.json").read_text())["environment"]
    assert environment["device_count"] == environment["cpu_devices"] == min(len(os.sched_getaffinity(0)), 12)

    table = read_table(out / "summary.csv")
    assert len(table["run"]) == 12
    assert table["wd"][2] == "0.01" and table["lr"][1] == "0.003"
    assert {"phase", "w1_peak_epoch", "events_stageII_start", "readme_stageIII_start", "script_stageI_start"} <= set(table)
    _, coordinates, _ = report.load_sweep(out)
    check_summary(table, metrics, coordinates, DEFAULT)
    groups = read_table(out / "groups.csv")
    assert list(zip(groups["wd"], groups["lr"], groups["runs"])) == [
        ("0", "0.003", "3"), ("0", "0.01", "3"), ("0.01", "0.003", "3"), ("0.01", "0.01", "3")]
    grok = expected_events(metrics, DEFAULT)["grok_epoch"]
    assert groups["grokked"] == [str(int((~np.isnan(grok[(metrics["wd"] == float(w)) & (metrics["lr"] == float(v))])).sum()))
                                 for w, v in zip(groups["wd"], groups["lr"])]
    with np.load(out / "stages.npz") as stages:
        assert {name: stages[name].shape for name in stages.files} == dict.fromkeys(("events", "readme", "script"), (12, 6))

    record = json.loads((out / "config.json").read_text())
    assert record["config"]["wds"] == [0.0, 0.01] and record["config"]["epochs"] == 6
    assert record["derived"]["n_train"] == 60 and record["derived"]["steps_per_epoch"] == 4
    assert record["environment"]["backend"] == "cpu" and record["environment"]["versions"]["jax"]
    assert record["timing"]["train_seconds"] > 0
    assert record["command"].startswith("python -m grokjax.sweep --m 11")


@pytest.mark.slow
def test_report_redraws_a_folder_without_training(tiny_folder, tmp_path):
    copy = tmp_path / "copy"
    copy.mkdir()
    for name in ("config.json", "metrics.npz"):
        (copy / name).write_bytes((tiny_folder / name).read_bytes())
    result = subprocess.run([sys.executable, "-m", "grokjax.report", str(copy)], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert "grokked" in result.stdout
    assert {p.name for p in copy.iterdir()} == {"config.json", "metrics.npz"} | REPORT_FILES
    assert {p.name for p in (copy / "figures").iterdir()} == FIGURES
    assert (copy / "summary.csv").read_text() == (tiny_folder / "summary.csv").read_text()
    assert (copy / "groups.csv").read_text() == (tiny_folder / "groups.csv").read_text()

    # what the figures draw: the folder's data, drawn here by grokjax.plots as the report draws them
    with np.load(copy / "metrics.npz") as stored:
        metrics = dict(stored)
    events = expected_events(metrics, DEFAULT)
    figures = report_figures(copy)
    check_overview(figures["overview.png"], metrics)
    check_phase_diagram(figures["phase_diagram.png"], metrics, events["grok_epoch"])
    check_delay_vs_wd(figures["delay_vs_wd.png"], metrics, events["grok_epoch"])
    # ... and those are the figures the command wrote (the dashboards are checked where the report runs in this process)
    for name, fig in figures.items():
        assert png(fig) == (copy / "figures" / name).read_bytes(), name


def test_report_thresholds_reach_the_tables_and_figures(tiny_folder, tmp_path, monkeypatch):
    """``python -m grokjax.report`` with its own thresholds: thresholds under which some of the
    six-epoch runs memorise and grok (and some not) change summary.csv, groups.csv and the
    figures as the rules written out here say."""
    with np.load(tiny_folder / "metrics.npz") as stored:
        metrics = dict(stored)
    min_index, window, runs = 0, 2, len(metrics["seed"])

    def levels(values):  # thresholds equal to measured values: "at or above" is tested too
        return [float(t) for t in np.unique(values) if t > 0]

    def grokked(threshold):
        return ~np.isnan([study_grok_epoch(row, threshold, min_index, window) for row in metrics["test_acc"]])

    def memorised(threshold):
        return ~np.isnan([first_reached(row, threshold) for row in metrics["train_acc"]])

    # thresholds from the data: half the runs grok, as near as may be; then as many of those as
    # possible memorise, but not every run
    grok_threshold = min(levels(metrics["test_acc"]), key=lambda t: abs(grokked(t).sum() - runs / 2))
    mem_threshold = max((t for t in levels(metrics["train_acc"]) if 0 < memorised(t).sum() < runs),
                        key=lambda t: (memorised(t) & grokked(grok_threshold)).sum())
    cfg = AnalysisConfig(mem_threshold=mem_threshold, grok_threshold=grok_threshold, grok_min_index=min_index, grok_window=window)
    events = expected_events(metrics, cfg)
    assert 0 < events["grokked"].sum() < runs and 0 < (~np.isnan(events["mem_epoch"])).sum() < runs  # the data allow a test
    assert (~np.isnan(events["delay"])).any()

    for name in ("config.json", "metrics.npz"):
        (tmp_path / name).write_bytes((tiny_folder / name).read_bytes())
    figures = {}
    monkeypatch.setattr(report, "save_figure", lambda fig, path: figures.__setitem__(path.name, fig))  # drawn, not rendered
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        assert report.main([str(tmp_path), "--mem-threshold", repr(mem_threshold), "--grok-threshold", repr(grok_threshold),
                            "--grok-min-index", str(min_index), "--grok-window", str(window)]) == 0
    table = printed.getvalue().splitlines()[2:6]  # after the header and its rule: one line per (wd, lr), sorted
    assert [line.split()[2] for line in table] == [
        f"{int(events['grokked'][(metrics['wd'] == w) & (metrics['lr'] == v)].sum())}/3"
        for w in np.unique(metrics["wd"]) for v in np.unique(metrics["lr"])]

    _, coordinates, _ = report.load_sweep(tmp_path)
    check_summary(read_table(tmp_path / "summary.csv"), metrics, coordinates, cfg)
    groups = read_table(tmp_path / "groups.csv")
    for w, v, grokked, median in zip(groups["wd"], groups["lr"], groups["grokked"], numbers(groups["grok_median"])):
        grok = events["grok_epoch"][(metrics["wd"] == float(w)) & (metrics["lr"] == float(v))]
        assert int(grokked) == (~np.isnan(grok)).sum()
        np.testing.assert_equal(median, np.nanmedian(grok) if (~np.isnan(grok)).any() else np.nan)
    recorded = json.loads((tmp_path / "delay_fit.json").read_text())["analysis"]
    assert (recorded["mem_threshold"], recorded["grok_threshold"], recorded["grok_min_index"], recorded["grok_window"]) == (
        mem_threshold, grok_threshold, min_index, window)

    assert set(figures) == FIGURES
    labels = analysis.stage_labels(metrics, "events", cfg)
    for name, run in representative(metrics["wd"], metrics["lr"], events["grok_epoch"]).items():
        check_dashboard(figures[name], metrics, run, events, labels[run])
    check_overview(figures["overview.png"], metrics)
    check_phase_diagram(figures["phase_diagram.png"], metrics, events["grok_epoch"])
    check_delay_vs_wd(figures["delay_vs_wd.png"], metrics, events["grok_epoch"])


def test_report_rejects_a_folder_that_is_not_a_sweep(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        report.main([str(tmp_path)])
    assert exit_info.value.code == 2
    captured = capsys.readouterr()
    assert captured.err == f"python -m grokjax.report: error: {tmp_path} has no config.json: not a grokjax results folder\n"
    assert captured.out == "" and list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    "args,message",
    [
        (["--m", "1"], "m must be >= 2"),
        (["--train-frac", "1.5"], "train_fracs must lie strictly between 0 and 1"),
        (["--wd=-1e-4"], "wds must be non-negative"),
        (["--wd", "abc"], "expected comma-separated numbers"),
        (["--batch-size", "100000"], "exceeds the 4704 training pairs"),
        (["--optimizer", "rmsprop"], "optimizer must be one of adam, adamw, sgd"),
        (["--op", "div", "--m", "12"], "needs a prime m"),
        (["--epochs", "0"], "epochs must be >= 1"),
        (["--seeds", "0"], "seeds must be >= 1"),
        (["--fourier-every", "-1"], "fourier_every must be >= 0"),
        (["--preset", "li3"], "invalid choice"),
        (["--label-noise", "1"], "label_noises must lie in [0, 1)"),
        (["--op", "s5"], "give m 120"),
    ],
)
def test_cli_rejects_bad_input(args, message, tmp_path, capsys):
    out = tmp_path / "out"
    with pytest.raises(SystemExit) as exit_info:
        sweep.main([*args, "--out", str(out)])
    assert exit_info.value.code == 2
    captured = capsys.readouterr()
    assert captured.err.startswith("python -m grokjax.sweep: error: ") and captured.err.count("\n") == 1  # one line
    assert message in captured.err and captured.out == ""
    assert not out.exists()  # refused before the results folder is made


def test_cli_refuses_an_existing_results_folder(tmp_path, capsys):
    (tmp_path / "keep.txt").write_text("earlier results")
    with pytest.raises(SystemExit) as exit_info:
        sweep.main([*TINY_ARGS, "--out", str(tmp_path)])
    assert exit_info.value.code == 2
    captured = capsys.readouterr()
    assert captured.err == (f"python -m grokjax.sweep: error: output folder {tmp_path} already exists and is not empty; "
                            "choose another --out\n")
    assert {p.name for p in tmp_path.iterdir()} == {"keep.txt"} and (tmp_path / "keep.txt").read_text() == "earlier results"


def test_report_at_holds_an_axis_in_the_fits_and_figures(tiny_folder, tmp_path, monkeypatch):
    """``--at lr=0.003``: the figures over groups draw that learning rate only and say so, and
    delay_fit.json records what was held; the tables still cover every group."""
    for name in ("config.json", "metrics.npz"):
        (tmp_path / name).write_bytes((tiny_folder / name).read_bytes())
    figures = {}
    monkeypatch.setattr(report, "save_figure", lambda fig, path: figures.__setitem__(path.name, fig))  # drawn, not rendered
    with contextlib.redirect_stdout(io.StringIO()):
        assert report.main([str(tmp_path), "--at", "lr=0.003"]) == 0
    held = float(np.float32(3e-3))
    assert json.loads((tmp_path / "delay_fit.json").read_text())["at"] == {"lr": held}
    assert [ax.get_title() for ax in figures["overview.png"].axes if ax.get_visible()] == ["lr 0.003"]
    assert figures["overview.png"].get_suptitle().startswith(f"{TITLE} at lr 0.003\n")
    assert figures["delay_vs_wd.png"].axes[0].get_title().startswith(f"{TITLE} at lr 0.003\n")
    assert len(read_table(tmp_path / "groups.csv")["lr"]) == 4  # every (wd, lr)


@pytest.mark.parametrize("at,message", [
    ("lr=0.5", "--at lr=0.5: lr takes 0.003, 0.01 in this sweep"),
    ("hidden=8", "--at hidden: not an axis this sweep varies (wd, lr)"),
    ("lr", "--at lr: expected AXIS=VALUE[,AXIS=VALUE...]"),
])
def test_report_at_refuses_what_the_sweep_does_not_have(tiny_folder, tmp_path, capsys, at, message):
    for name in ("config.json", "metrics.npz"):
        (tmp_path / name).write_bytes((tiny_folder / name).read_bytes())
    before = sorted(p.name for p in tmp_path.iterdir())
    with pytest.raises(SystemExit) as exit_info:
        report.main([str(tmp_path), "--at", at])
    assert exit_info.value.code == 2
    captured = capsys.readouterr()
    assert captured.err == f"python -m grokjax.report: error: {message}\n" and captured.out == ""
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # nothing written

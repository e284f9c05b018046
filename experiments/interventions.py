"""Tables and figures of the intervention experiments, read from their sweeps' results folders.

* ``grokfast DIR [DIR ...]``: sweeps with ``--grokfast`` and lambda 0 among their lambdas;
  per filter setting, the grokking epoch and the per-seed speed-up against lambda 0 (the
  same seed without the filter), medians with 95 % bootstrap intervals;
* ``delay-law DIR [DIR ...]``: sweeps over wd x lr (one optimizer each); the delay (grokking
  epoch - memorisation epoch) against eta*lambda, a power law fitted per optimizer on eta*lambda
  and per learning rate on lambda alone;
* ``init-scale DIR``: a sweep over ``--init-scale`` x wd; the grokking epoch, fraction grokked
  and the median W1 norm curve per initialisation scale;
* ``optimizers DIR [DIR ...]``: sweeps over optimizer x hidden x wd x lr (split over folders
  as they were run); per cell the grokking epoch, delay and fraction grokked, each
  optimizer's earliest cell per width, and the per-seed speed-up of every optimizer against
  AdamW in the cells both ran;
* ``li2-optimizers DIR``: a ``--preset li2`` sweep over optimizer x hidden x lr (with Fourier
  snapshots); per cell the final test accuracy and the number of distinct frequencies the
  hidden neurons settled on, per learning rate.

Each writes a Markdown table and a figure into ``--out``::

    python experiments/interventions.py grokfast results/grokfast/ema results/grokfast/ma --out results/grokfast
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from matplotlib import colormaps
from matplotlib.figure import Figure

from grokjax import analysis
from grokjax.cli import OneLineErrorParser
from grokjax.files import DamagedFile
from grokjax.report import load_fourier, load_sweep, sweep_title
from grokjax.results import save_figure, write_atomic

BOOTSTRAP = dict(samples=2000, seed=0)


def load_summary(folder: Path) -> tuple[dict, dict[str, np.ndarray], dict[str, np.ndarray]]:
    """A folder's configuration, per-run summary (coordinates, events) and metric arrays."""
    record, coordinates, metrics = load_sweep(folder)
    config = record["config"]
    n_runs = len(metrics["test_acc"])
    # settings with one value for the whole folder (folders of earlier versions lack the newer ones)
    for name, default in (("optimizer", "adam"), ("hidden", 128), ("grokfast", "none"), ("grokfast_window", 100)):
        if name not in coordinates:
            coordinates[name] = np.full(n_runs, config.get(name, default))
    for field, name, default in (("grokfast_alphas", "grokfast_alpha", 0.98), ("grokfast_lambdas", "grokfast_lambda", 2.0),
                                 ("init_scales", "init_scale", 1.0)):
        if name not in coordinates:
            coordinates[name] = np.full(n_runs, float(config.get(field, [default])[0]))
    return config, analysis.run_summary(coordinates, metrics), metrics


def median_interval(values: np.ndarray) -> tuple[float, float, float]:
    """Median of the finite values and its 95 % bootstrap interval (NaNs when there are none)."""
    values = np.asarray(values, float)
    rng = np.random.default_rng(BOOTSTRAP["seed"])
    return analysis.bootstrap_median(values[np.isfinite(values)], BOOTSTRAP["samples"], rng)


def cell(median: float, low: float, high: float, digits: str = ".0f") -> str:
    def show(value: float) -> str:
        text = f"{value:{digits}}"
        return text.lstrip("-") if float(text) == 0 else text  # no "-0" for a value that rounds to zero

    return "–" if np.isnan(median) else f"{show(median)} [{show(low)}–{show(high)}]"


# --- grokfast -----------------------------------------------------------------------------------


def grokfast_rows(summary: dict[str, np.ndarray]) -> list[dict]:
    """Per filter setting (filter, window, alpha, lambda; lambda 0 included): seeds grokked, grokking epoch and
    the speed-up grok(lambda 0) / grok(setting) of each seed against the same seed's lambda-0 run."""
    baseline = {}
    for run in np.flatnonzero(summary["grokfast_lambda"] == 0):
        baseline.setdefault((summary["grokfast_window"][run], summary["seed"][run]), summary["grok_epoch"][run])
    keys = sorted({(str(summary["grokfast"][r]), int(summary["grokfast_window"][r]), float(summary["grokfast_alpha"][r]),
                    float(summary["grokfast_lambda"][r])) for r in range(len(summary["seed"]))})
    rows = []
    for kind, window, alpha, lamb in keys:
        runs = np.flatnonzero((summary["grokfast"] == kind) & (summary["grokfast_window"] == window)
                              & (summary["grokfast_alpha"] == alpha) & (summary["grokfast_lambda"] == lamb))
        grok = summary["grok_epoch"][runs]
        reference = np.array([baseline.get((window, summary["seed"][r]), np.nan) for r in runs])
        rows.append({"filter": kind, "window": window, "alpha": alpha, "lambda": lamb, "runs": len(runs),
                     "grokked": int(np.isfinite(grok).sum()), "grok": median_interval(grok),
                     "speedup": median_interval(reference / grok) if lamb > 0 else (np.nan,) * 3})
    return rows


def grokfast_table(rows: list[dict]) -> str:
    lines = ["| filter | window | α | λ | grokked | grokking epoch, median [95 % CI] | speed-up vs λ 0, median [95 % CI] |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    for row in rows:
        window = str(row["window"]) if row["filter"] == "ma" else "–"
        alpha = f"{row['alpha']:g}" if row["filter"] == "ema" else "–"
        lines.append(f"| {row['filter']} | {window} | {alpha} | {row['lambda']:g} | {row['grokked']}/{row['runs']} | "
                     f"{cell(*row['grok'])} | {cell(*row['speedup'], digits='.2f')} |")
    return "\n".join(lines) + "\n"


def grokfast_figure(rows: list[dict], title: str) -> Figure:
    """Grokking epoch against lambda, one line per filter setting (median and interval)."""
    fig = Figure(figsize=(7, 4.5), layout="constrained")
    ax = fig.subplots()
    settings = sorted({(r["filter"], r["window"], r["alpha"]) for r in rows})
    colours = colormaps["viridis"](np.linspace(0, 0.9, len(settings)))
    for colour, (kind, window, alpha) in zip(colours, settings):
        mine = [r for r in rows if (r["filter"], r["window"], r["alpha"]) == (kind, window, alpha)]
        lambdas = np.array([r["lambda"] for r in mine])
        median, low, high = (np.array([r["grok"][i] for r in mine]) for i in range(3))
        label = f"ema α {alpha:g}" if kind == "ema" else f"ma window {window}"
        ax.errorbar(lambdas, median, yerr=[median - low, high - median], marker="o", capsize=3, color=colour, label=label)
    ax.set_xlabel("λ (0: no filter)")
    ax.set_ylabel("grokking epoch (median, 95 % CI)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return fig


# --- delay law ----------------------------------------------------------------------------------


def delayed_runs(summary: dict[str, np.ndarray], n_epochs: int) -> np.ndarray:
    """The runs of the sweep's own delay fit (:func:`grokjax.analysis.has_real_delay`) in
    (lr, wd) cells where every seed grokked by the study's rule. In the other cells decay is
    either too strong to generalise at all, or so strong that runs generalise as they
    memorise, before the rule's earliest epoch (51), and the rule only counts a later
    re-crossing after a dip: those delays measure the dips, not the law."""
    every_seed = np.ones(len(summary["wd"]), bool)
    for key in analysis.group_keys(summary, ("lr", "wd")):
        runs = analysis.group_mask(summary, ("lr", "wd"), key)
        if np.isnan(summary["grok_epoch"][runs]).any():
            every_seed &= ~runs
    return analysis.has_real_delay(summary, n_epochs) & every_seed


def delay_law_fits(summary: dict[str, np.ndarray], n_epochs: int) -> dict:
    """delay = c (eta lambda)^-alpha over every learning rate, and delay = c lambda^-alpha per
    learning rate; with 95 % bootstrap intervals."""
    use = delayed_runs(summary, n_epochs)
    pooled = analysis.fit_power_law(summary["lr"][use] * summary["wd"][use], summary["delay"][use], **BOOTSTRAP)
    per_lr = {float(lr): analysis.fit_power_law(summary["wd"][use & (summary["lr"] == lr)],
                                                summary["delay"][use & (summary["lr"] == lr)], **BOOTSTRAP)
              for lr in np.unique(summary["lr"])}
    return {"eta_lambda": pooled, "per_lr": per_lr, "runs_fitted": int(use.sum()), "runs": len(use)}


def fit_cell(fit: dict | None) -> str:
    return "–" if fit is None else f"{fit['alpha']:.2f} [{fit['alpha_low']:.2f}–{fit['alpha_high']:.2f}]"


def delay_law_table(fits: dict[str, dict]) -> str:
    lrs = sorted({lr for fit in fits.values() for lr in fit["per_lr"]})
    lines = ["| optimizer | runs fitted | α on η·λ (pooled lrs) | " + " | ".join(f"α on λ, lr {lr:g}" for lr in lrs) + " |",
             "|---|---:|---:|" + "---:|" * len(lrs)]
    for name, fit in fits.items():
        lines.append(f"| {name} | {fit['runs_fitted']}/{fit['runs']} | {fit_cell(fit['eta_lambda'])} | "
                     + " | ".join(fit_cell(fit["per_lr"].get(lr)) for lr in lrs) + " |")
    return "\n".join(lines) + "\n"


def delay_law_figure(summaries: dict[str, dict[str, np.ndarray]], fits: dict[str, dict], n_epochs: dict[str, int]) -> Figure:
    """One panel per optimizer: every delayed run's delay against eta*lambda, coloured by lr,
    the median per (lr, wd) and the pooled power law."""
    fig = Figure(figsize=(5.5 * len(summaries), 4.5), layout="constrained")
    axes = np.atleast_1d(fig.subplots(1, len(summaries), sharey=True))
    for ax, (name, summary) in zip(axes, summaries.items()):
        use = delayed_runs(summary, n_epochs[name])
        lrs = np.unique(summary["lr"])
        for colour, lr in zip(colormaps["plasma"](np.linspace(0.1, 0.8, len(lrs))), lrs):
            mine = use & (summary["lr"] == lr)
            x = summary["lr"][mine] * summary["wd"][mine]
            ax.scatter(x, summary["delay"][mine], s=12, alpha=0.4, color=colour)
            levels = np.unique(x)
            ax.plot(levels, [np.median(summary["delay"][mine][x == v]) for v in levels], "o-", color=colour, label=f"lr {lr:g}")
        fit = fits[name]["eta_lambda"]
        if fit is not None:
            x = np.geomspace(*np.percentile(summary["lr"][use] * summary["wd"][use], [0, 100]), 50)
            ax.plot(x, fit["prefactor"] * x ** -fit["alpha"], "k--", label=f"fit: α = {fit['alpha']:.2f}")
        if use.any():
            ax.set_xscale("log")
            ax.set_yscale("log")
        else:
            ax.text(0.5, 0.5, "no run with wd > 0 grokked after a delay", transform=ax.transAxes, ha="center")
        ax.set_xlabel("η·λ (lr × weight decay)")
        ax.set_title(f"{name}: {int(use.sum())} of {len(use)} runs fitted\n(a delay, in a cell where every seed grokked)")
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=8)
    axes[0].set_ylabel("delay: grokking − memorisation epoch")
    return fig


# --- init scale ---------------------------------------------------------------------------------


def init_scale_rows(summary: dict[str, np.ndarray]) -> list[dict]:
    rows = []
    for wd, scale in analysis.group_keys(summary, ("wd", "init_scale")):
        runs = analysis.group_mask(summary, ("wd", "init_scale"), (wd, scale))
        rows.append({"wd": wd, "init_scale": scale, "runs": int(runs.sum()),
                     "grokked": int(np.isfinite(summary["grok_epoch"][runs]).sum()),
                     "memorised": int(np.isfinite(summary["mem_epoch"][runs]).sum()),
                     "grok": median_interval(summary["grok_epoch"][runs]), "delay": median_interval(summary["delay"][runs]),
                     "final_test_acc": float(np.median(summary["final_test_acc"][runs]))})
    return rows


def init_scale_table(rows: list[dict]) -> str:
    lines = ["| wd | init scale α | memorised | grokked | grokking epoch [95 % CI] | delay [95 % CI] | final test acc (median) |",
             "|---:|---:|---:|---:|---:|---:|---:|"]
    for row in rows:
        lines.append(f"| {row['wd']:g} | {row['init_scale']:g} | {row['memorised']}/{row['runs']} | {row['grokked']}/{row['runs']} | "
                     f"{cell(*row['grok'])} | {cell(*row['delay'])} | {row['final_test_acc']:.3f} |")
    return "\n".join(lines) + "\n"


def init_scale_figure(summary: dict[str, np.ndarray], w1_norm: np.ndarray, title: str) -> Figure:
    """Per weight decay: the median W1 norm curve of each initialisation scale, the median
    grokking epoch marked on it."""
    wds, scales = np.unique(summary["wd"]), np.unique(summary["init_scale"])
    fig = Figure(figsize=(5 * len(wds), 4.2), layout="constrained")
    axes = np.atleast_1d(fig.subplots(1, len(wds), sharey=True))
    epochs = np.arange(1, w1_norm.shape[1] + 1)
    for ax, wd in zip(axes, wds):
        for colour, scale in zip(colormaps["viridis"](np.linspace(0, 0.9, len(scales))), scales):
            runs = (summary["wd"] == wd) & (summary["init_scale"] == scale)
            curve = np.median(w1_norm[runs], axis=0)
            grok = analysis.median_reached(summary["grok_epoch"][runs])
            grokked = f"{np.isfinite(summary['grok_epoch'][runs]).sum()}/{runs.sum()} grokked"
            ax.plot(epochs, curve, color=colour, label=f"α {scale:g}: {grokked}")
            if np.isfinite(grok):
                ax.plot(grok, curve[int(grok) - 1], "o", color=colour, mec="k")
        ax.set_yscale("log")
        ax.set_xlabel("epoch")
        ax.set_title(f"wd {wd:g} (dot: median grokking epoch)")
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=8)
    axes[0].set_ylabel("‖W1‖_F, median over seeds")
    fig.suptitle(title)
    return fig


# --- optimizers ---------------------------------------------------------------------------------

REFERENCE_OPTIMIZER = "adamw"  # Muon's non-matrix part and the decoupled decay it shares
CELL_AXES = ("optimizer", "hidden", "lr", "wd")  # a cell: the runs that differ only by seed


def merge_summaries(summaries: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """One summary of several folders' runs: the columns they all have, concatenated."""
    names = [name for name in summaries[0] if all(name in summary for summary in summaries)]
    return {name: np.concatenate([summary[name] for summary in summaries]) for name in names}


def optimizer_rows(summary: dict[str, np.ndarray]) -> list[dict]:
    """Per (optimizer, hidden, lr, wd): seeds grokked, grokking epoch and delay (medians with
    95 % intervals over the seeds that grokked), median final test accuracy, and the
    speed-up grok(AdamW) / grok(optimizer) of each seed against the same seed under AdamW
    in the same cell (NaNs where AdamW did not run that cell)."""
    reference = {(int(h), float(lr), float(wd), int(seed)): grok for o, h, lr, wd, seed, grok in zip(
        summary["optimizer"], summary["hidden"], summary["lr"], summary["wd"], summary["seed"], summary["grok_epoch"])
        if o == REFERENCE_OPTIMIZER}
    rows = []
    for optimizer, hidden, lr, wd in analysis.group_keys(summary, CELL_AXES):
        runs = np.flatnonzero(analysis.group_mask(summary, CELL_AXES, (optimizer, hidden, lr, wd)))
        grok = summary["grok_epoch"][runs]
        paired = np.array([reference.get((hidden, lr, wd, int(summary["seed"][r])), np.nan) for r in runs])
        compared = optimizer != REFERENCE_OPTIMIZER and np.isfinite(paired).any()
        rows.append({"optimizer": optimizer, "hidden": hidden, "lr": lr, "wd": wd, "runs": len(runs),
                     "grokked": int(np.isfinite(grok).sum()), "grok": median_interval(grok),
                     "delay": median_interval(summary["delay"][runs]),
                     "final_test_acc": float(np.median(summary["final_test_acc"][runs])),
                     "speedup": median_interval(paired / grok) if compared else (np.nan,) * 3})
    return rows


def earliest_cells(rows: list[dict]) -> list[dict]:
    """Per (optimizer, hidden): the cell with the earliest median grokking epoch among the
    cells where every seed grokked (none if no cell did)."""
    best = {}
    for row in rows:
        key = (row["optimizer"], row["hidden"])
        if row["grokked"] == row["runs"] and (key not in best or row["grok"][0] < best[key]["grok"][0]):
            best[key] = row
    return [best[key] for key in sorted(best)]


def optimizer_table(rows: list[dict]) -> str:
    lines = ["| optimizer | hidden | lr | wd | grokked | grokking epoch [95 % CI] | delay [95 % CI] | final test acc (median) "
             f"| speed-up vs {REFERENCE_OPTIMIZER}, same seed [95 % CI] |", "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for row in rows:
        lines.append(f"| {row['optimizer']} | {row['hidden']} | {row['lr']:g} | {row['wd']:g} | {row['grokked']}/{row['runs']} | "
                     f"{cell(*row['grok'])} | {cell(*row['delay'])} | {row['final_test_acc']:.3f} | "
                     f"{cell(*row['speedup'], digits='.2f')} |")
    lines += ["", "Earliest cell of each optimizer and width (every seed grokked):", "",
              "| optimizer | hidden | lr | wd | grokking epoch [95 % CI] |", "|---|---:|---:|---:|---:|"]
    for row in earliest_cells(rows):
        lines.append(f"| {row['optimizer']} | {row['hidden']} | {row['lr']:g} | {row['wd']:g} | {cell(*row['grok'])} |")
    return "\n".join(lines) + "\n"


def optimizer_figure(rows: list[dict], title: str) -> Figure:
    """One panel per (hidden, lr): grokking epoch against wd, a line per optimizer (median and
    interval over the seeds that grokked; a cell where not every seed grokked is labelled
    with how many did, and a cell where none did sits on the top edge as an open marker)."""
    hiddens, lrs = sorted({r["hidden"] for r in rows}), sorted({r["lr"] for r in rows})
    optimizers = sorted({r["optimizer"] for r in rows})
    fig = Figure(figsize=(5 * len(lrs), 3.8 * len(hiddens)), layout="constrained")
    axes = np.array(fig.subplots(len(hiddens), len(lrs), sharex=True, sharey=True)).reshape(len(hiddens), len(lrs))
    top = max((r["grok"][2] for r in rows if np.isfinite(r["grok"][2])), default=1.0) * 1.3
    colours = dict(zip(optimizers, colormaps["tab10"](np.arange(len(optimizers)))))
    for (i, hidden), (j, lr) in ((a, b) for a in enumerate(hiddens) for b in enumerate(lrs)):
        ax = axes[i, j]
        for optimizer in optimizers:
            mine = [r for r in rows if (r["optimizer"], r["hidden"], r["lr"]) == (optimizer, hidden, lr)]
            wds = np.array([r["wd"] for r in mine])
            median, low, high = (np.array([r["grok"][k] for r in mine]) for k in range(3))
            ax.errorbar(wds, median, yerr=[median - low, high - median], marker="o", capsize=3, color=colours[optimizer],
                        label=optimizer)
            never = np.isnan(median)
            ax.plot(wds[never], np.full(never.sum(), top), "o", mfc="none", color=colours[optimizer])
            for r in mine:
                if 0 < r["grokked"] < r["runs"]:
                    ax.annotate(f"{r['grokked']}/{r['runs']}", (r["wd"], r["grok"][0]), fontsize=7, color=colours[optimizer],
                                textcoords="offset points", xytext=(4, 4))
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_title(f"hidden {hidden}, lr {lr:g}")
        ax.grid(alpha=0.3, which="both")
        if i == len(hiddens) - 1:
            ax.set_xlabel("weight decay (adam: coupled L2; adamw, muon: decoupled)")
        if j == 0:
            ax.set_ylabel("grokking epoch (median, 95 % CI)")
    axes[0, 0].legend(fontsize=8, title="open: none grokked", title_fontsize=7)
    fig.suptitle(title)
    return fig


# --- the Li2 network with few hidden nodes -------------------------------------------------------

FEATURE_CONCENTRATION = 0.5  # a neuron with more than half its power in one frequency class is a Fourier feature


def feature_frequencies(dominant: np.ndarray, concentration: np.ndarray) -> np.ndarray:
    """int [runs] how many distinct frequency classes the Fourier-feature neurons of each run
    (concentration > FEATURE_CONCENTRATION) have as their dominant one."""
    return np.array([len(np.unique(d[c > FEATURE_CONCENTRATION])) for d, c in zip(dominant, concentration)])


def median_range(counts: np.ndarray) -> tuple[float, int, int]:
    return float(np.median(counts)), int(counts.min()), int(counts.max())


def li2_rows(summary: dict[str, np.ndarray], fourier: dict[str, np.ndarray]) -> list[dict]:
    """Per (optimizer, hidden, lr, wd) at the last snapshot: final test accuracy (median and
    interval), seeds grokked, distinct frequencies among the feature neurons and among all
    neurons (median, min, max), and the number of feature neurons."""
    features = feature_frequencies(fourier["dominant_frequency"][:, -1], fourier["concentration"][:, -1])
    n_features = (fourier["concentration"][:, -1] > FEATURE_CONCENTRATION).sum(axis=1)
    rows = []
    for optimizer, hidden, lr, wd in analysis.group_keys(summary, CELL_AXES):
        runs = np.flatnonzero(analysis.group_mask(summary, CELL_AXES, (optimizer, hidden, lr, wd)))
        rows.append({"optimizer": optimizer, "hidden": hidden, "lr": lr, "wd": wd, "runs": len(runs),
                     "grokked": int(np.isfinite(summary["grok_epoch"][runs]).sum()),
                     "test_acc": median_interval(summary["final_test_acc"][runs]),
                     "feature_frequencies": median_range(features[runs]), "feature_neurons": median_range(n_features[runs]),
                     "distinct_frequencies": median_range(fourier["distinct_frequencies"][runs, -1])})
    return rows


def li2_table(rows: list[dict], n_frequencies: int) -> str:
    def spread(values):
        return f"{values[0]:g} [{values[1]}–{values[2]}]"

    lines = [f"| optimizer | hidden K | lr | wd | grokked | final test acc [95 % CI] | frequencies of feature neurons (of {n_frequencies}) "
             "[min–max] | feature neurons [min–max] | dominant frequencies, all neurons [min–max] |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for row in rows:
        lines.append(f"| {row['optimizer']} | {row['hidden']} | {row['lr']:g} | {row['wd']:g} | {row['grokked']}/{row['runs']} | "
                     f"{cell(*row['test_acc'], digits='.3f')} | {spread(row['feature_frequencies'])} | "
                     f"{spread(row['feature_neurons'])} | {spread(row['distinct_frequencies'])} |")
    return "\n".join(lines) + "\n"


def li2_figure(rows: list[dict], n_frequencies: int, title: str) -> Figure:
    """One column per learning rate: final test accuracy (top) and the feature neurons'
    distinct frequencies (bottom) against the width K, a line per (optimizer, wd)."""
    lrs = sorted({r["lr"] for r in rows})
    settings = sorted({(r["optimizer"], r["wd"]) for r in rows})
    colours = dict(zip(settings, colormaps["tab10"](np.arange(len(settings)))))
    fig = Figure(figsize=(4.2 * len(lrs), 7.5), layout="constrained")
    axes = np.array(fig.subplots(2, len(lrs), sharex=True, sharey="row")).reshape(2, len(lrs))
    for column, lr in enumerate(lrs):
        acc_ax, freq_ax = axes[:, column]
        for index, (optimizer, wd) in enumerate(settings):
            mine = [r for r in rows if (r["optimizer"], r["lr"], r["wd"]) == (optimizer, lr, wd)]
            # settings side by side around each width, so that equal results stay visible
            widths = np.array([r["hidden"] for r in mine]) * 2 ** (0.06 * (index - (len(settings) - 1) / 2))
            for ax, name in ((acc_ax, "test_acc"), (freq_ax, "feature_frequencies")):
                median, low, high = (np.array([r[name][k] for r in mine], float) for k in range(3))
                ax.errorbar(widths, median, yerr=[median - low, high - median], marker="o", capsize=3,
                            color=colours[optimizer, wd], label=f"{optimizer}, wd {wd:g}")
        acc_ax.set_title(f"lr {lr:g}")
        freq_ax.axhline(n_frequencies, color="k", lw=0.8, ls=":")
        freq_ax.set_xlabel("hidden nodes K")
        for ax in (acc_ax, freq_ax):
            ax.set_xscale("log", base=2)
            ax.set_xticks(sorted({r["hidden"] for r in rows}), [str(k) for k in sorted({r["hidden"] for r in rows})])
            ax.grid(alpha=0.3, which="both")
    axes[0, 0].set_ylabel("final test accuracy (median, 95 % CI)")
    axes[1, 0].set_ylabel(f"distinct frequencies of feature neurons\n(concentration > {FEATURE_CONCENTRATION:g}; median, min–max)")
    axes[0, 0].legend(fontsize=8)
    fig.suptitle(title)
    return fig


# --- command line -------------------------------------------------------------------------------


def write_outputs(out: Path, name: str, table: str, fig: Figure) -> None:
    out.mkdir(parents=True, exist_ok=True)
    write_atomic(out / f"{name}.md", table.encode())
    save_figure(fig, out / f"{name}.png")
    print(table + f"\nwrote {out / (name + '.md')} and {out / (name + '.png')}")


def main(argv: list[str] | None = None) -> int:
    parser = OneLineErrorParser(prog="python experiments/interventions.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("analysis", choices=("grokfast", "delay-law", "init-scale", "optimizers", "li2-optimizers"))
    parser.add_argument("folders", nargs="+", type=Path, help="results folders of the experiment's sweeps")
    parser.add_argument("--out", type=Path, help="where the table and figure go (default: the first folder's parent)")
    args = parser.parse_args(argv)
    out = args.out or args.folders[0].parent
    try:
        loaded = {folder: load_summary(folder) for folder in args.folders}
    except DamagedFile as error:
        parser.exit(2, f"{parser.prog}: error: {error}\n")
    summaries = {folder: summary for folder, (_, summary, _) in loaded.items()}
    first = loaded[args.folders[0]][0]
    # the filter is in each figure's legend: the folders of one analysis may use different ones
    title = f"{sweep_title({**first, 'grokfast': 'none'})}, lr {'/'.join(f'{v:g}' for v in first['lrs'])}, {len(first['seeds'])} seeds"
    if args.analysis == "grokfast":
        rows = [row for summary in summaries.values() for row in grokfast_rows(summary)]
        wds = "/".join(f"{w:g}" for w in first["wds"])
        write_outputs(out, "grokfast", grokfast_table(rows), grokfast_figure(rows, f"{title}, wd {wds}"))
    elif args.analysis == "delay-law":
        names = {folder: str(config["optimizer"]) for folder, (config, _, _) in loaded.items()}
        epochs = {names[folder]: int(config["epochs"]) for folder, (config, _, _) in loaded.items()}
        by_name = {names[folder]: summary for folder, summary in summaries.items()}
        fits = {name: delay_law_fits(summary, epochs[name]) for name, summary in by_name.items()}
        write_outputs(out, "delay_law", delay_law_table(fits), delay_law_figure(by_name, fits, epochs))
    elif args.analysis == "optimizers":
        rows = optimizer_rows(merge_summaries(list(summaries.values())))
        write_outputs(out, "optimizers", optimizer_table(rows), optimizer_figure(rows, f"m={first['m']} {first['op']}, "
                      f"batch {first['batch_size']}, {len(first['seeds'])} seeds: grokking epoch per optimizer"))
    elif args.analysis == "li2-optimizers":
        (folder,) = args.folders
        config, summary, _ = loaded[folder]
        fourier = load_fourier(folder, len(summary["run"]))
        if fourier is None:
            parser.exit(2, f"{parser.prog}: error: {folder} has no fourier.npz: run the sweep with --fourier-every\n")
        n_frequencies = fourier[1]["spectrum"].shape[-1]
        rows = li2_rows(summary, fourier[1])
        write_outputs(out, "li2_optimizers", li2_table(rows, n_frequencies), li2_figure(rows, n_frequencies, title))
    else:
        (folder,) = args.folders
        config, summary, metrics = loaded[folder]
        write_outputs(out, "init_scale", init_scale_table(init_scale_rows(summary)),
                      init_scale_figure(summary, metrics["w1_norm"], f"{title}: initialisation scale α × weight decay"))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Figures of a sweep (matplotlib, PNG). Each function takes arrays and returns a
``Figure``; nothing here trains or reads files. ``Figure`` objects are made directly,
not through pyplot, so no global state or display backend is involved."""

from __future__ import annotations

import textwrap

import numpy as np
from matplotlib import colormaps
from matplotlib.colors import LogNorm
from matplotlib.figure import Figure
from matplotlib.patches import Patch
from matplotlib.ticker import LogLocator, NullFormatter, NullLocator, ScalarFormatter

from grokjax.analysis import (
    combinations,
    format_value,
    group_label,
    group_mask,
    medians_along,
    top_in_order,
)

AXIS_NAMES = {"wd": "weight decay", "lr": "learning rate", "train_frac": "training fraction", "hidden": "hidden width",
              "batch_size": "batch size", "m": "modulus m", "init_scale": "initialisation scale α",
              "grokfast_alpha": "grokfast α", "grokfast_lambda": "grokfast λ", "grokfast_window": "grokfast window"}
# what a dashboard shades: per label, its name and colour (a label without an entry is not shaded)
STAGE_BANDS = {1: ("Stage I lazy", "#bbbbbb"), 2: ("Stage II independent", "#6fa8dc"), 3: ("Stage III interactive", "#93c47d")}
# Nanda et al.'s phases of a transformer run (the label after cleanup, 4, is not shaded)
PROGRESS_BANDS = {1: ("memorisation", "#bbbbbb"), 2: ("circuit formation", "#6fa8dc"), 3: ("cleanup", "#93c47d")}
MAX_SERIES = 6  # combinations of the other axes one figure draws; beyond, those with the most generalised runs


def label_segments(labels: np.ndarray) -> list[tuple[int, int, int]]:
    """Contiguous runs of one run's per-epoch labels as (first epoch, last epoch, label), 1-based."""
    labels = np.asarray(labels)
    change = np.flatnonzero(np.diff(labels)) + 1
    starts = np.concatenate([[0], change])
    ends = np.concatenate([change, [len(labels)]])
    return [(int(s) + 1, int(e), int(labels[s])) for s, e in zip(starts, ends)]


def shade_bands(ax, labels: np.ndarray, bands: dict[int, tuple[str, str]]) -> None:
    for first, last, label in label_segments(labels):
        if label in bands:
            ax.axvspan(first - 0.5, last + 0.5, color=bands[label][1], alpha=0.25, lw=0)


# Curves of some tasks drawn with the accuracies when a run has them: corrupted labels, sparse parity.
TASK_CURVES = (("train, corrupted examples", "train_acc_corrupted"), ("corrupted given their true label", "corrupted_true_acc"),
               ("W1 share on the secret bits", "secret_weight_share"))


def dashboard(run_metrics: dict[str, np.ndarray], labels: np.ndarray, grok: float, mem: float, title: str, shading: str,
              loss_name: str = "cross-entropy", bands: dict[int, tuple[str, str]] = STAGE_BANDS) -> Figure:
    """The study's 3x3 per-run figure, with the epochs' ``labels`` shaded as ``bands`` say
    (the stages, or a transformer's phases; ``shading`` names them in the title). Metrics
    measured only every few epochs (NaN between) are drawn through their measured points."""
    epochs = np.arange(1, len(run_metrics["train_acc"]) + 1)
    fig = Figure(figsize=(15, 11), layout="constrained")
    axes = fig.subplots(3, 3).ravel()
    gap = run_metrics["train_acc"] - run_metrics["test_acc"]
    accuracy = [("train", run_metrics["train_acc"]), ("test", run_metrics["test_acc"])]
    accuracy += [(label, run_metrics[name]) for label, name in TASK_CURVES
                 if name in run_metrics and np.isfinite(np.asarray(run_metrics[name], float)).any()]
    panels = [
        ("accuracy", accuracy, "linear"),
        (f"{loss_name} loss", [("train", run_metrics["train_loss"]), ("test", run_metrics["test_loss"])], "log"),
        ("W1 norm ‖W1‖_F", [(None, run_metrics["w1_norm"])], "linear"),
        ("W1 change per epoch ‖ΔW1‖_F", [(None, run_metrics["w1_delta_norm"])], "log"),
        ("W1 gradient norm (last minibatch)", [(None, run_metrics["grad_norm"])], "log"),
        ("gradient cosine over last 5 epochs", [(None, run_metrics["grad_cosine_sim"])], "linear"),
        ("feature diversity (singular-value entropy)", [(None, run_metrics["feature_diversity"])], "linear"),
        ("neuron-gradient |cos| across neurons", [(None, run_metrics["neuron_grad_cosine"])], "linear"),
        ("generalisation gap (train − test acc)", [(None, gap)], "linear"),
    ]
    for ax, (name, series, scale) in zip(axes, panels):
        shade_bands(ax, labels, bands)
        measured = False
        for label, values in series:
            values = np.asarray(values, float)
            if scale == "log":
                values = np.where(values > 0, values, np.nan)  # e.g. ΔW1 is 0 at epoch 1 by definition
            shown = ~np.isnan(values)
            measured |= shown.any()
            ax.plot(epochs[shown], values[shown], lw=1.2, label=label, marker="." if shown.mean() < 0.5 else None)
        if measured:
            ax.set_yscale(scale)
        else:  # a geometry metric of a sweep run with --geometry-every 0
            ax.text(0.5, 0.5, "not measured in this sweep", transform=ax.transAxes, ha="center", va="center", color="0.4")
            ax.set_yticks([])
        ax.set_title(name, fontsize=11)
        ax.set_xlabel("epoch")
        ax.set_xlim(0.5, epochs[-1] + 0.5)
        if not np.isnan(grok):
            ax.axvline(grok, color="crimson", ls="--", lw=1)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("accuracy")
    axes[0].set_ylim(-0.02, 1.02)
    handles = [Patch(color=colour, alpha=0.5, label=name) for name, colour in bands.values()]
    handles += axes[0].get_legend_handles_labels()[0]
    grok_text = "never grokked" if np.isnan(grok) else f"grokked at epoch {grok:.0f} (dashed)"
    mem_text = "never memorised" if np.isnan(mem) else f"memorised at epoch {mem:.0f}"
    axes[0].legend(handles=handles, fontsize=8, loc="center right")
    axes[1].legend(fontsize=8)
    # a long settings line (a transformer's) wraps rather than running off the figure's edges
    fig.suptitle("\n".join(textwrap.wrap(title, 150)) + f"\n{mem_text}; {grok_text}; shaded: {shading}", fontsize=13)
    return fig


def wd_colours(wds: np.ndarray):
    """A colour per weight decay on a log scale; wd = 0 is black."""
    positive = wds[wds > 0]
    norm = LogNorm(positive.min(), positive.max() * (1.0001 if len(positive) == 1 else 1)) if len(positive) else None
    cmap = colormaps["viridis"]
    return {wd: ("black" if wd == 0 else cmap(0.9 * norm(wd))) for wd in wds}


def shown_combinations(table: dict[str, np.ndarray], others: tuple[str, ...], at: dict | None = None
                       ) -> tuple[list[dict], list[dict]]:
    """The combinations of the ``others`` axes a figure draws, those in ``at`` held at its
    value: every one up to ``MAX_SERIES``, beyond that the ones with the most generalised
    runs (``table``: the run summary or the groups as columns, with a ``generalised``
    column); and the combinations left out."""
    every = combinations(table, others, at)
    shown = top_in_order(every, lambda c: table["generalised"][group_mask(table, tuple(c), tuple(c.values()))].sum(),
                         MAX_SERIES)
    return shown, [c for c in every if c not in shown]


def left_out_note(left: list[dict]) -> str:
    """What a figure leaves out, for its caption."""
    if not left:
        return ""
    names = "; ".join(group_label(c, ", ") for c in left)
    text = names if len(left) <= 3 else f"{len(left)} combinations"
    return f"not drawn (fewer generalised runs; report --at chooses): {text}"


def held_text(at: dict) -> str:
    """`` at hidden 128`` for a title: what ``--at`` holds fixed."""
    return f" at {group_label(at, ', ')}" if at else ""


def overview(test_acc: np.ndarray, summary: dict[str, np.ndarray], axes: tuple[str, ...], title: str,
             at: dict | None = None) -> Figure:
    """Test accuracy of every run: colour by wd, thin lines per seed, the median thick;
    one panel per value of the other ``axes`` (lr, and any other varied axis; those in
    ``at`` held at its value)."""
    wd = summary["wd"]
    others = tuple(axis for axis in axes if axis != "wd")
    panels = combinations(summary, others, at)
    colours = wd_colours(np.unique(wd))
    epochs = np.arange(1, test_acc.shape[1] + 1)
    columns = min(len(panels), 3)
    rows = -(-len(panels) // columns)
    fig = Figure(figsize=(7 * columns, 5 * rows), layout="constrained")
    grid = np.atleast_1d(fig.subplots(rows, columns, sharey=True, squeeze=False)).ravel()
    for ax, panel in zip(grid, panels):
        in_panel = group_mask(summary, tuple(panel), tuple(panel.values()))
        for this_wd in np.unique(wd[in_panel]):
            runs = in_panel & (wd == this_wd)
            # through the measured epochs: with --eval-every the others read NaN
            for curve in test_acc[runs]:
                measured = ~np.isnan(curve)
                ax.plot(epochs[measured], curve[measured], color=colours[this_wd], lw=0.6, alpha=0.35)
            measured = ~np.isnan(test_acc[runs]).all(axis=0)
            ax.plot(epochs[measured], np.median(test_acc[runs][:, measured], axis=0), color=colours[this_wd], lw=2.4,
                    label=f"wd {this_wd:g} (median of {runs.sum()})")
        ax.set_title(group_label(panel, ", "))
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, loc="upper left")
    for ax in grid[len(panels):]:
        ax.set_visible(False)
    grid[0].set_ylabel("test accuracy")
    fig.suptitle(f"{title}{held_text(at or {})}\ntest accuracy of every run (thin: seeds, thick: median)", wrap=True)
    return fig


def medians_with_errors(points: list[dict], value: str = "median", low: str = "low", high: str = "high"):
    """x, median and the error bars' extents of points that have a median."""
    y = np.array([p[value] for p in points], float)
    return y, np.abs(np.array([[p[low] for p in points], [p[high] for p in points]], float) - y)


def delay_vs_wd(summary: dict[str, np.ndarray], rows: list[dict], fits: list[dict], title: str,
                axes: tuple[str, ...] = ("wd", "lr"), at: dict | None = None) -> Figure:
    """Grokking epoch and delay against weight decay on log–log axes, one colour per
    combination of the other axes (those in ``at`` held at its value; beyond ``MAX_SERIES``,
    the combinations with the most generalised runs): each run faint, medians with
    bootstrap 95% intervals, and the fitted power law of the delay (whose points are the
    runs the fit used)."""
    fig = Figure(figsize=(9, 7.5), layout="constrained")
    ax = fig.subplots()
    others = tuple(axis for axis in axes if axis != "wd")
    shown, left = shown_combinations(summary, others, at)
    colours = colormaps["tab10"]
    notes, drawn = [], False
    for number, combination in enumerate(shown):
        colour = colours(number % 10)
        dodge = 10 ** (0.012 * (number - (len(shown) - 1) / 2))  # side by side at each wd, on the log axis
        label = group_label(combination, ", ")
        selected = group_mask(summary, tuple(combination), tuple(combination.values()))
        grokked = selected & (summary["wd"] > 0) & ~np.isnan(summary["grok_epoch"])
        ax.scatter(summary["wd"][grokked] * dodge, summary["grok_epoch"][grokked], marker="s", s=10, alpha=0.3, color=colour)
        in_rows = [r for r in rows if all(r[axis] == value for axis, value in combination.items())]
        medians = [r for r in in_rows if r["wd"] > 0 and r["grokked"]]
        if medians:
            drawn = True
            y, err = medians_with_errors(medians, "grok_median", "grok_ci_low", "grok_ci_high")
            ax.errorbar(np.array([r["wd"] for r in medians]) * dodge, y, yerr=err, fmt="s:", color=colour, lw=1.2, ms=6,
                        capsize=3, mfc="white")
        fit = next((f for f in fits if f["at"] == combination), None)
        if fit is not None:
            use = selected & np.isin(summary["wd"], [level["wd"] for level in fit["levels"]]) & (summary["delay"] > 0)
            ax.scatter(summary["wd"][use] * dodge, summary["delay"][use], marker="o", s=10, alpha=0.3, color=colour)
            y, err = medians_with_errors(fit["levels"])
            x = np.array([level["wd"] for level in fit["levels"]])
            ax.errorbar(x * dodge, y, yerr=err, fmt="o-", color=colour, lw=1.5, ms=6, capsize=3, mfc="white")
            xs = np.geomspace(x.min(), x.max(), 50)
            ax.plot(xs, fit["prefactor"] * xs ** (-fit["alpha"]), "--", color=colour, lw=1.2)
            label += f": delay ∝ wd^-{fit['alpha']:.2f} [{fit['alpha_low']:.2f}–{fit['alpha_high']:.2f}], {fit['n_points']} runs"
        else:
            delays = [r for r in medians if not np.isnan(r["delay_median"])]
            if delays:
                y, err = medians_with_errors(delays, "delay_median", "delay_ci_low", "delay_ci_high")
                ax.errorbar(np.array([r["wd"] for r in delays]) * dodge, y, yerr=err, fmt="o-", color=colour, lw=1.5, ms=6,
                            capsize=3, mfc="white")
            label += ": no delay fit (it needs delays at two weight decays)"
        ax.plot([], [], "-", color=colour, lw=3, label=label)
        notes += [f"{group_label({**combination, 'wd': r['wd']}, ', ')}: {r['grokked']}/{r['runs']} grokked, "
                  f"{r['generalised']}/{r['runs']} generalised" for r in in_rows if r["grokked"] < r["runs"] and r["wd"] > 0]
    for style, text in (("s:", "grokking epoch: median, 95% CI (faint: each run)"),
                        ("o-", "delay (grok − memorisation): median, 95% CI"), ("--", "delay fit (runs above the gap)")):
        ax.plot([], [], style, color="0.35", mfc="white", label=text)
    if len(notes) > 6:
        notes = [f"{len(notes)} groups where not every seed grokked (groups.csv)"]
    for note in notes + ([left_out_note(left)] if left else []):
        ax.plot([], [], " ", label=note)
    ax.set_xlabel("weight decay")
    ax.set_ylabel("epochs")
    ax.grid(alpha=0.3, which="both")
    if drawn:  # log axes need something positive to show
        ax.set_xscale("log")
        ax.set_yscale("log")
        wds = np.unique(summary["wd"][(summary["wd"] > 0) & ~np.isnan(summary["grok_epoch"])])
        ax.set_xticks(wds, [f"{w:g}" for w in wds])
        ax.xaxis.set_minor_locator(NullLocator())
        ax.yaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
        ax.yaxis.set_major_formatter(ScalarFormatter())
        ax.yaxis.set_minor_formatter(NullFormatter())
        ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.1), ncol=2 if len(shown) > 2 else 1)
    else:
        ax.text(0.5, 0.5, "no run with wd > 0 grokked", transform=ax.transAxes, ha="center", va="center")
    per = ", ".join(axis for axis in others if axis not in (at or {}))
    ax.set_title(f"{title}{held_text(at or {})}\ngrokking epoch and delay vs weight decay"
                 + (f", a colour per {per}" if per else ""), fontsize=11, wrap=True)
    return fig


def epochs_vs_axis(summary: dict[str, np.ndarray], axes: tuple[str, ...], x: str, quantities: dict[str, str],
                   title: str, at: dict | None = None) -> Figure:
    """Epoch columns of the run summary (``quantities``: column -> label, e.g. grok_epoch ->
    "grokking epoch") against the numeric axis ``x``: per series (a combination of the other
    axes, those in ``at`` held at its value; beyond ``MAX_SERIES``, the combinations with the
    most generalised runs) the median over seeds with its bootstrap 95% interval, solid for
    the first quantity and dashed for the others; a value where no seed reached the event is
    marked × at the top ("never"), and one where only some did is annotated with the count."""
    fig = Figure(figsize=(8.5, 5.8), layout="constrained")
    ax = fig.subplots()
    colours = colormaps["tab10"]
    styles = ("o-", "s--", "^:", "d-.")
    shown, left = shown_combinations(summary, tuple(axis for axis in axes if axis != x), at)
    selected = np.zeros(len(summary["wd"]), bool)
    for combination in shown:
        selected |= group_mask(summary, tuple(combination), tuple(combination.values()))
    xs = np.unique(summary[x][selected])
    log_x = xs.min() > 0 and xs.max() / xs.min() >= 20
    highest = 1.0
    never, positive = [], True
    for column, style in zip(quantities, styles):
        every = medians_along(summary, x, axes, column)
        for number, series in enumerate(s for s in every if s["at"] in shown):
            points = [p for p in series["points"] if p["runs"]]
            colour = colours(number % 10)
            shown_points = [p for p in points if p["reached"]]
            label = f"{quantities[column]}" + (f", {group_label(series['at'], ', ')}" if series["at"] else "")
            if shown_points:
                py, err = medians_with_errors(shown_points)
                ax.errorbar([p["x"] for p in shown_points], py, yerr=err, fmt=style, color=colour, lw=1.5, ms=6, capsize=3,
                            mfc="white", label=label)
                highest = max(highest, np.nanmax([p["high"] for p in shown_points]))
                positive &= bool((py > 0).all())
                for p in shown_points:
                    if p["reached"] < p["runs"]:
                        ax.annotate(f"{p['reached']}/{p['runs']}", (p["x"], p["median"]), textcoords="offset points",
                                    xytext=(4, 4), fontsize=7, color=colour)
            never += [(p["x"], colour) for p in points if not p["reached"]]
    for value, colour in never:
        ax.plot([value], [highest * 1.25], "x", color=colour, ms=9, mew=2)
    if never:
        ax.plot([], [], "x", color="gray", ms=9, mew=2, label="never reached by any seed (at the top)")
    if positive:
        ax.set_yscale("log")  # else a delay <= 0 (test rose with train) needs the linear axis
    if log_x:
        ax.set_xscale("log")
    ax.set_xticks(xs, [format_value(v) for v in xs])
    ax.xaxis.set_minor_locator(NullLocator())
    ax.yaxis.set_major_formatter(ScalarFormatter())
    ax.set_xlabel(AXIS_NAMES.get(x, x))
    ax.set_ylabel("epochs (median over seeds, 95% CI)")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    if left:
        ax.text(0.01, 0.01, left_out_note(left), transform=ax.transAxes, fontsize=7, va="bottom")
    ax.set_title(f"{title}{held_text(at or {})}\n{' and '.join(quantities.values())} vs {AXIS_NAMES.get(x, x)}",
                 fontsize=11)
    return fig


def phase_diagram(rows: list[dict], axes: tuple[str, ...], x: str, y: str, title: str, at: dict | None = None) -> Figure:
    """A ``y`` x ``x`` grid of groups (two of the sweep's ``axes``, e.g. lr x wd): fraction
    of seeds that grokked and their median grokking epoch; one such pair of panels per
    combination of the other axes (those in ``at`` held at its value; beyond ``MAX_SERIES``,
    the combinations with the most generalised runs), its values in the panels' titles."""
    table = {key: np.array([r[key] for r in rows]) for key in (*axes, "generalised")}
    shown, left = shown_combinations(table, tuple(axis for axis in axes if axis not in (x, y)), at)
    xs = sorted({r[x] for r in rows})
    ys = sorted({r[y] for r in rows})
    fig = Figure(figsize=(6 + 1.1 * len(xs), (1.2 * len(ys) + 1.6) * len(shown) + 1), layout="constrained")
    panels = np.atleast_2d(fig.subplots(len(shown), 2, squeeze=False))
    for pair, combination in zip(panels, shown):
        frac = np.full((len(ys), len(xs)), np.nan)
        epoch = np.full((len(ys), len(xs)), np.nan)
        for r in rows:
            if all(r[axis] == value for axis, value in combination.items()):
                frac[ys.index(r[y]), xs.index(r[x])] = r["frac_grokked"]
                epoch[ys.index(r[y]), xs.index(r[x])] = r["grok_median"]
        for ax, values, name, fmt, limits in ((pair[0], frac, "fraction of seeds grokked", "{:.2f}", (0, 1)),
                                              (pair[1], epoch, "median grokking epoch", "{:.0f}", (None, None))):
            image = ax.imshow(np.ma.masked_invalid(values), origin="lower", aspect="auto", cmap="viridis",
                              vmin=limits[0], vmax=limits[1])
            fig.colorbar(image, ax=ax, label=name)
            for i in range(len(ys)):
                for j in range(len(xs)):
                    text = "never" if np.isnan(values[i, j]) else fmt.format(values[i, j])
                    ax.text(j, i, text, ha="center", va="center", fontsize=9,
                            bbox=dict(boxstyle="round", fc="white", alpha=0.6, lw=0))
            ax.set_xticks(range(len(xs)), [format_value(w) for w in xs])
            ax.set_yticks(range(len(ys)), [format_value(v) for v in ys])
            ax.set_xlabel(AXIS_NAMES.get(x, x))
            ax.set_ylabel(AXIS_NAMES.get(y, y))
            ax.set_title(f"{name}" + (f"\n{group_label(combination, ', ')}" if combination else ""), fontsize=10)
    caption = f"\n{left_out_note(left)}" if left else ""
    fig.suptitle(f"{title}{held_text(at or {})}\n{y} × {x} phase diagram{caption}", wrap=True)
    return fig


FRAMEWORK_COLOURS = {"grokjax": "tab:blue", "PyTorch": "tab:orange"}
LOG_SCALE_METRICS = ("train_loss", "test_loss", "w1_delta_norm", "grad_norm")


def framework_curves(curves: dict[str, dict[str, np.ndarray]], names: tuple[str, ...], title: str) -> Figure:
    """grokjax against PyTorch, one panel per metric: every run as a thin line and the
    median thick, per framework. ``curves`` maps a framework to {metric: [runs, epochs]}."""
    columns = min(3, len(names))
    rows = -(-len(names) // columns)
    fig = Figure(figsize=(5.5 * columns, 4 * rows), layout="constrained")
    axes = np.atleast_1d(fig.subplots(rows, columns)).ravel()
    for ax, name in zip(axes, names):
        for framework, metrics in curves.items():
            values = np.asarray(metrics[name], float)
            median = np.median(values, axis=0)
            if name in LOG_SCALE_METRICS:  # e.g. ΔW1 is 0 at epoch 1 by definition
                values, median = (np.where(v > 0, v, np.nan) for v in (values, median))
            epochs = np.arange(1, values.shape[1] + 1)
            colour = FRAMEWORK_COLOURS[framework]
            for curve in values:
                ax.plot(epochs, curve, color=colour, lw=0.6, alpha=0.3)
            ax.plot(epochs, median, color=colour, lw=2.2,
                    label=f"{framework}: median of {len(values)}" if len(values) > 1 else framework)
        if name in LOG_SCALE_METRICS:
            ax.set_yscale("log")
        ax.set_title(name)
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    for ax in axes[len(names):]:
        ax.set_visible(False)
    fig.suptitle(f"{title}\nthin: each run; thick: median", wrap=True)
    return fig


def fourier_features(
    epochs: np.ndarray,
    snapshot_epochs: np.ndarray,
    snapshots: dict[str, np.ndarray],
    shown: list[int],
    test_acc: np.ndarray,
    title: str,
) -> Figure:
    """One run's Fourier features: neuron x frequency heatmaps (each neuron's share of its
    power per frequency class) at the snapshots ``shown`` (indices into
    ``snapshot_epochs``), then the layer's summaries over the snapshots against test accuracy.
    Neurons are sorted by their dominant frequency at the last snapshot, so a learned
    Fourier feature shows as one bright cell per row."""
    spectrum = np.asarray(snapshots["spectrum"], np.float32)  # [snapshots, K, F]
    final = snapshots["dominant_frequency"][-1]
    # a folder of several widths pads the narrower runs' neurons with NaN: those are not drawn
    neurons = np.flatnonzero(~np.isnan(snapshots["concentration"][-1]))
    order = neurons[np.lexsort((-snapshots["concentration"][-1][neurons], final[neurons]))]
    columns = max(len(shown), 2)  # the bottom row needs two panels even when one snapshot is shown
    fig = Figure(figsize=(5 * columns, 9), layout="constrained")
    grid = fig.add_gridspec(2, columns, height_ratios=(3, 2))
    n_frequencies = spectrum.shape[-1]
    for column, index in enumerate(shown):
        ax = fig.add_subplot(grid[0, column])
        image = ax.imshow(spectrum[index][order], aspect="auto", interpolation="nearest", cmap="magma", vmin=0, vmax=1,
                          extent=(0.5, n_frequencies + 0.5, len(order) - 0.5, -0.5))
        epoch = int(snapshot_epochs[index])
        acc = f", test acc {test_acc[epoch - 1]:.2f}" if epoch > 0 else " (initialisation)"
        ax.set_title(f"epoch {epoch}{acc}\nmean concentration {snapshots['mean_concentration'][index]:.2f}", fontsize=10)
        ax.set_xlabel("frequency class f")
        if column == 0:
            ax.set_ylabel("neuron (sorted by final dominant frequency)")
    fig.colorbar(image, ax=fig.axes, location="right", shrink=0.6, label="share of the neuron's non-constant power")
    left = fig.add_subplot(grid[1, : columns // 2])
    left.plot(snapshot_epochs, snapshots["distinct_frequencies"], "o-", color="tab:purple", label="distinct dominant frequencies")
    left.set_ylabel("distinct dominant frequencies")
    left.set_ylim(0, n_frequencies + 0.5)
    right = fig.add_subplot(grid[1, columns // 2 :])
    right.plot(snapshot_epochs, snapshots["mean_concentration"], "o-", color="tab:orange", label="mean concentration")
    right.plot(snapshot_epochs, snapshots["gini"], "o-", color="tab:green", label="Gini of per-frequency norms")
    right.set_ylim(-0.02, 1.02)
    signal = right.twinx()
    signal.plot(snapshot_epochs, snapshots["gf_norm"], "s--", color="tab:gray", ms=3, label="‖G_F‖ (back-propagated signal)")
    signal.set_yscale("log")
    signal.set_ylabel("‖G_F‖_F over the training set")
    left_acc = left.twinx()
    left_acc.set_ylim(-0.02, 1.02)
    left_acc.set_ylabel("test accuracy")
    for ax in (left_acc, right):
        ax.plot(epochs, test_acc, color="tab:red", lw=1, alpha=0.7, label="test accuracy")
    for ax in (left, right):
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
    left.legend(handles=left.get_legend_handles_labels()[0] + left_acc.get_legend_handles_labels()[0], fontsize=8,
                loc="lower right")
    handles = right.get_legend_handles_labels()[0] + signal.get_legend_handles_labels()[0]
    right.legend(handles=handles, fontsize=8, loc="center right")
    fig.suptitle(title)
    return fig




def progress_measures(
    epochs: np.ndarray,
    snapshot_epochs: np.ndarray,
    snapshots: dict[str, np.ndarray],
    curves: dict[str, np.ndarray],
    phase_starts: list[float],
    title: str,
) -> Figure:
    """One transformer run as Nanda et al. read it: train and test loss with the restricted
    and excluded losses at the snapshots, its phases shaded (``phase_starts``: the epochs
    where circuit formation, cleanup and what follows begin; NaN for never) (top); the token embedding's share of its
    non-constant power per frequency class at each snapshot, key frequencies marked
    (bottom left); the Gini coefficient of its per-frequency norms and the number of key
    frequencies (bottom right). Test metrics measured every few epochs are drawn through
    their measured points."""
    fig = Figure(figsize=(13, 9), layout="constrained")
    grid = fig.add_gridspec(2, 2, height_ratios=(1, 1))
    losses = fig.add_subplot(grid[0, :])
    for name, colour in (("train_loss", "tab:blue"), ("test_loss", "tab:red")):
        measured = ~np.isnan(curves[name])
        losses.plot(epochs[measured], curves[name][measured], color=colour, lw=1.2, label=name.replace("_", " "))
    losses.plot(snapshot_epochs, snapshots["restricted_loss"], "o-", ms=2.5, color="tab:green",
                label="restricted loss (key frequencies only, all pairs)")
    losses.plot(snapshot_epochs, snapshots["excluded_loss"], "o-", ms=2.5, color="tab:purple",
                label="excluded loss (key frequencies removed, training pairs)")
    bounds = [0.0, *phase_starts, float(epochs[-1])]
    for (start, end), (name, colour) in zip(zip(bounds, bounds[1:]), PROGRESS_BANDS.values()):
        if np.isfinite(start):
            losses.axvspan(start, end if np.isfinite(end) else epochs[-1], color=colour, alpha=0.12, lw=0, label=name)
    losses.set_yscale("log")
    losses.set_xlabel("epoch")
    losses.set_ylabel("cross-entropy")
    losses.grid(alpha=0.3)
    losses.legend(fontsize=8, loc="lower left")
    accuracy = losses.twinx()
    measured = ~np.isnan(curves["test_acc"])
    accuracy.plot(epochs[measured], curves["test_acc"][measured], color="tab:red", lw=0.8, ls=":", label="test accuracy")
    accuracy.set_ylim(-0.02, 1.02)
    accuracy.set_ylabel("test accuracy (dotted)")

    norms = np.asarray(snapshots["embedding_norm"], float)  # [snapshots, F]
    share = norms**2 / np.maximum(np.sum(norms**2, axis=-1, keepdims=True), np.finfo(float).tiny)
    heat = fig.add_subplot(grid[1, 0])
    n_frequencies = share.shape[-1]
    last = snapshot_epochs[-1] if len(snapshot_epochs) > 1 else 1
    image = heat.imshow(share.T, aspect="auto", interpolation="nearest", cmap="magma", origin="lower",
                        extent=(snapshot_epochs[0], last, 0.5, n_frequencies + 0.5))
    for f in np.flatnonzero(snapshots["key_frequency"][-1] > 0) + 1:
        heat.annotate(f"{f}", (last, f), xytext=(3, 0), textcoords="offset points", fontsize=7, va="center",
                      color="tab:green", annotation_clip=False)
    heat.set_xlabel("epoch")
    heat.set_ylabel("frequency class f (final key frequencies labelled)")
    heat.set_title("token embedding W_E: share of its power per frequency", fontsize=10)
    fig.colorbar(image, ax=heat, label="share")

    sparsity = fig.add_subplot(grid[1, 1])
    sparsity.plot(snapshot_epochs, snapshots["gini"], "o-", ms=2.5, color="tab:green", label="Gini of W_E's frequency norms")
    sparsity.set_ylim(-0.02, 1.02)
    sparsity.set_xlabel("epoch")
    sparsity.set_ylabel("Gini")
    sparsity.grid(alpha=0.3)
    count = sparsity.twinx()
    count.step(snapshot_epochs, snapshots["n_key_frequencies"], where="post", color="tab:orange", label="key frequencies")
    count.set_ylabel("number of key frequencies")
    count.set_ylim(0, max(np.nanmax(snapshots["n_key_frequencies"]), 1) + 1)
    handles = sparsity.get_legend_handles_labels()[0] + count.get_legend_handles_labels()[0]
    sparsity.legend(handles=handles, fontsize=8, loc="center right")
    fig.suptitle(title)
    return fig
